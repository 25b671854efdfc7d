"""Reading and writing records: schema checks, the upgrade of older layouts, atomic writes, clear errors."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .. import atomic
from ..errors import ConfigError, non_finite
from . import READABLE_SCHEMAS, RECORD_SUFFIX, SCHEMA_VERSION, NewerRecord, ResultsError, UnreadableRecord
from .provenance import utc_now

TMP_PREFIX = atomic.TMP_PREFIX


def upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of any readable schema with every schema-2 field (in memory; the file is untouched)."""
    if rec.get("schema_version") == 1:
        spec = rec.get("spec") or {}
        mod = rec.get("modality") or spec.get("modality")
        from ..adapters import BUILTIN
        hardneg_version = (rec.get("versions") or {}).get("hardneg")
        if mod in BUILTIN:
            rec.setdefault("adapter", {"name": mod, "class": BUILTIN[mod], "distribution": "hardneg",
                                       "version": hardneg_version,
                                       "inferred": "schema 1: a built-in adapter, at versions.hardneg"})
        else:
            rec.setdefault("adapter", {"name": mod, "class": None, "distribution": None, "version": None,
                                       "inferred": "schema 1: not recorded"})
        if not isinstance(rec.get("curves"), list):
            rec["curves"] = []          # schema-1 failure records held {}
        for key, default in (("trivial_baselines", []), ("headline_metrics", []), ("modality", mod),
                             ("dataset", spec.get("dataset")), ("seed", spec.get("seed"))):
            rec.setdefault(key, default)
    return rec


def read_record(path: str | Path) -> dict[str, Any]:
    """One record, schema-checked and upgraded. Raises :class:`UnreadableRecord` naming the path
    if the file cannot be read, is not JSON, is not a run record, or has a newer schema."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableRecord(f"cannot read {p}: {exc.strerror}", p) from None
    except UnicodeDecodeError:
        raise UnreadableRecord(f"{p} is not a run record (not UTF-8 text); hardneg skips it", p) from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableRecord(f"{p} is not valid JSON ({exc}): a damaged or hand-edited file (hardneg's "
                               "atomic writer never leaves a partial one); hardneg skips it", p) from None
    if not isinstance(rec, dict) or not {"run_id", "status", "spec"} <= set(rec):
        raise UnreadableRecord(f"{p} is not a run record (a JSON object with run_id, status and spec); "
                               "hardneg skips it. Move it out of the results folder to silence this", p)
    v = rec.get("schema_version")
    if v not in READABLE_SCHEMAS:
        newer = isinstance(v, int) and not isinstance(v, bool) and v > SCHEMA_VERSION
        raise (NewerRecord if newer else UnreadableRecord)(
            f"{p} was written by {'a newer' if newer else 'an unknown'} results schema (schema_version={v!r}); "
            f"this hardneg reads schemas {', '.join(map(str, READABLE_SCHEMAS))}"
            + (". Upgrade hardneg to read it" if newer else "; hardneg skips it"), p)
    return upgrade(rec)


def record_files(path: str | Path) -> list[Path]:
    """Record files under ``path``: a record file itself, a suite folder, or a folder of suite folders."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ResultsError(f"results path {p} does not exist")
    files = [q for q in p.glob(f"*{RECORD_SUFFIX}") if not q.name.startswith(".")]
    if not files:
        files = [q for q in p.glob(f"*/*{RECORD_SUFFIX}") if not q.name.startswith(".")]
    return sorted(files)


def scan(path: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[UnreadableRecord]]:
    """Every readable record under ``path`` with its file, and the problems of the others."""
    good, bad = [], []
    for f in record_files(path):
        try:
            good.append((f, read_record(f)))
        except UnreadableRecord as exc:
            bad.append(exc)
    return good, bad


def load_records(path: str | Path, *, on_problem: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """All records under ``path``, sorted by (suite, run_id).

    An unreadable file raises :class:`UnreadableRecord`, unless ``on_problem`` is given: then
    it gets the message (naming the path) and the file is skipped."""
    good, bad = scan(path)
    if bad and on_problem is None:
        raise bad[0]
    for exc in bad:
        on_problem(str(exc))
    recs = [r for _, r in good]
    recs.sort(key=lambda r: (str(r.get("suite")), str(r.get("run_id"))))
    return recs


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records under ``path`` one by one (raises on an unreadable file)."""
    for f in record_files(path):
        yield read_record(f)


# ---- writing ------------------------------------------------------------------------------------

def _finite(obj: Any) -> Any:
    """JSON cannot hold NaN/inf portably: store them as null (the error/status says why)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return _finite(obj.item())
        except (TypeError, ValueError):
            return str(obj)
    return obj


def dumps_record(record: Mapping[str, Any]) -> str:
    """Canonical JSON text of a record: sorted keys, 2-space indent, finite numbers only."""
    return json.dumps(_finite(record), sort_keys=True, indent=2, allow_nan=False, default=str) + "\n"


def explain_oserror(exc: OSError, what: str, folder: Path) -> ResultsError:
    """A ResultsError saying what failed in ``folder`` and what to do (full disk, read-only, ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full; free space or pass --results on another disk"
    elif exc.errno == errno.EROFS:
        hint = "the file system is read-only; pass --results with a writable folder"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "permission denied; pass --results with a writable folder"
    else:
        hint = exc.strerror or str(exc)
    return ResultsError(f"cannot {what} in results folder {folder}: {hint} "
                        f"([Errno {exc.errno}] {exc.strerror}). Records already written are intact.")


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`hardneg.atomic.write_text` with results-folder error messages."""
    try:
        atomic.write_text(path, text)
    except OSError as exc:
        raise explain_oserror(exc, f"write {Path(path).name}", Path(path).parent) from None


def record_path(results_dir: str | Path, run_id: str) -> Path:
    """Where the record of ``run_id`` lives in ``results_dir``."""
    return Path(results_dir) / f"{run_id}{RECORD_SUFFIX}"


def write_record(results_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Atomically write ``record`` to ``results_dir/<run_id>.json`` and return the path.

    Refuses (ConfigError) a record whose spec holds NaN or inf: it could never be rerun."""
    if "run_id" not in record:
        raise ValueError("a record needs a run_id")
    bad = list(non_finite(dict(record.get("spec") or {}), "spec"))
    if bad:
        raise ConfigError(f"the record of run {record['run_id']} is not written: {', '.join(bad)}; "
                          "allowed: finite numbers")
    folder = Path(results_dir)
    ensure_writable(folder)
    rec = dict(record)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    path = record_path(folder, rec["run_id"])
    atomic_write_text(path, dumps_record(rec))
    return path


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` (ResultsError if it cannot be, or is a file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_oserror(exc, "create the folder", folder) from None
    if not folder.is_dir():
        raise ResultsError(f"results folder {folder} exists but is not a folder")


def probe_writable(folder: Path) -> None:
    """Fail early (before any training) if records could not be stored in ``folder``."""
    ensure_writable(folder)
    atomic_write_text(folder / ".write-probe", "ok\n")
    try:
        (folder / ".write-probe").unlink()
    except OSError as exc:
        raise explain_oserror(exc, "delete a probe file", folder) from None


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temporary files a killed writer left behind; call only while holding the folder lock."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.glob(TMP_PREFIX + "*")):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def set_aside(path: Path, reason: str) -> Path:
    """Move a record file that is about to be replaced into ``<folder>/.superseded/`` (kept, never
    deleted); the new name carries the time and ``reason`` ('data-changed', 'unreadable', ...)."""
    dest_dir = path.parent / ".superseded"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{path.stem}.{utc_now().replace(':', '')}.{reason}{path.suffix}"
    try:
        path.replace(dest)
    except OSError as exc:
        raise explain_oserror(exc, f"move {path.name} aside", path.parent) from None
    return dest

