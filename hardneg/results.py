"""The results store: one JSON record per run under ``results/<suite>/<run_id>.json``.

Record schema (``schema_version`` = :data:`SCHEMA_VERSION`)::

    schema_version  int    bumped whenever a field changes meaning; readers refuse other versions
    suite, run_id   str    run_id = RunSpec.run_id (hash of the resolved settings)
    status          str    'ok' | 'failed'
    method          str    RunSpec.method ('jsd', 'hard-infonce', 'random-init', ...)
    spec            dict   RunSpec.to_dict(): modality, dataset, seed, loss, train, options (resolved)
    metrics         list   [{metric, value, split, protocol, selection, std}, ...] (long format)
    curves          list   one dict per epoch: epoch, loss, steps, samples, seconds, diag_* (loss-core diagnostics)
    diagnostics     dict   the last epoch's diagnostics
    error           dict   {type, message, traceback} on failure, else null
    started_at, finished_at  ISO-8601 UTC (set by the runner); wall_time_s (runner-measured);
    timing {wall_s, prepare_s, train_s, eval_s, ...}; memory {peak_mb, kind}; device; versions;
    git_commit (null outside a git checkout), git_dirty; data_checksums; counters; host

Writes are atomic: the record is written to a hidden temporary file in the same folder,
flushed and fsync'ed, then renamed over the final name (``os.replace``), and the folder is
fsync'ed. A reader therefore sees either no record or a whole one, whatever kills the
writer; a killed writer leaves at most a ``.tmp-*`` file, which :func:`clean_stale` removes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .errors import HardnegError

SCHEMA_VERSION = 1
TMP_PREFIX = ".tmp-"
RECORD_SUFFIX = ".json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ResultsError(HardnegError):
    """The results folder cannot be read or written (schema, disk full, permissions, corruption)."""


# ---- writing ------------------------------------------------------------------------------

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


def _explain_oserror(exc: OSError, what: str, folder: Path) -> ResultsError:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        hint = "the disk is full; free space or pass --results on another disk"
    elif exc.errno in (errno.EROFS,):
        hint = "the file system is read-only; pass --results with a writable folder"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "permission denied; pass --results with a writable folder"
    else:
        hint = exc.strerror or str(exc)
    return ResultsError(f"cannot {what} in results folder {folder}: {hint} "
                        f"([Errno {exc.errno}] {exc.strerror}). Records already written are intact.")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    folder = path.parent
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.stem + "-", suffix=".part", dir=folder)
        try:  # mkstemp makes 0600 files; records are ordinary files (0666 minus the umask)
            os.fchmod(fd, 0o666 & ~_UMASK)
        except (AttributeError, OSError):
            pass
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except OSError as exc:
        raise _explain_oserror(exc, f"write {path.name}", folder) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def record_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}{RECORD_SUFFIX}"


def write_record(results_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Atomically write ``record`` to ``results_dir/<run_id>.json`` and return the path."""
    if "run_id" not in record:
        raise ValueError("a record needs a run_id")
    folder = Path(results_dir)
    ensure_writable(folder)
    rec = dict(record)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    path = record_path(folder, rec["run_id"])
    atomic_write_text(path, dumps_record(rec))
    return path


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and prove it accepts a file (write, fsync, delete), else ResultsError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain_oserror(exc, "create the folder", folder) from None
    if not folder.is_dir():
        raise ResultsError(f"results folder {folder} exists but is not a folder")


def probe_writable(folder: Path) -> None:
    """Fail early (before any training) if records could not be stored in ``folder``."""
    ensure_writable(folder)
    atomic_write_text(folder / ".write-probe", "ok\n")
    try:
        (folder / ".write-probe").unlink()
    except OSError as exc:
        raise _explain_oserror(exc, "delete a probe file", folder) from None


def clean_stale(folder: str | os.PathLike) -> list[Path]:
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


# ---- reading ------------------------------------------------------------------------------

def check_schema(record: Mapping[str, Any], path: Path | str) -> None:
    v = record.get("schema_version")
    if v == SCHEMA_VERSION:
        return
    if not isinstance(v, int) or v < SCHEMA_VERSION:
        raise ResultsError(
            f"{path} was written by an older results schema (schema_version={v!r}); this hardneg "
            f"reads schema {SCHEMA_VERSION}. Move that results folder aside and rerun the suite "
            f"(or regenerate it with the hardneg version that wrote it).")
    raise ResultsError(
        f"{path} was written by a newer results schema (schema_version={v}); this hardneg reads "
        f"schema {SCHEMA_VERSION}. Upgrade hardneg to read it.")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """One record, schema-checked. Raises ResultsError if unreadable, not JSON, or wrong schema."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot read record {p}: {exc.strerror}") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"record {p} is not valid JSON ({exc}); it was not written by hardneg's atomic "
                           "writer (edited by hand?). Delete it to rerun that run.") from None
    if not isinstance(rec, dict):
        raise ResultsError(f"record {p} is not a JSON object")
    check_schema(rec, p)
    return rec


def record_files(path: str | os.PathLike) -> list[Path]:
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


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    for f in record_files(path):
        yield read_record(f)


def load_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records under ``path``, sorted by (suite, run_id)."""
    recs = list(iter_records(path))
    recs.sort(key=lambda r: (str(r.get("suite")), str(r.get("run_id"))))
    return recs


# ---- the tidy table -----------------------------------------------------------------------

#: columns taken from spec.loss / spec.train (the resolved settings)
LOSS_COLUMNS = ("objective", "beta", "tau_plus", "temperature", "floor", "hardness", "multi_positive",
                "jsd_convention")
TRAIN_COLUMNS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "grad_clip",
                 "max_steps_per_epoch", "amp", "eval_every")
#: values of settings that records written before the setting existed ran with
_TRAIN_DEFAULTS_OF_OLD_RECORDS = {"eval_every": 0}
BASE_COLUMNS = ("suite", "run_id", "modality", "dataset", "method", "beta", "tau_plus", "temperature",
                "seed", "metric", "value", "status", "std", "split", "protocol", "selection")


def record_rows(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows of one record: one per metric, or one row with metric=None for a run without metrics."""
    spec = rec.get("spec") or {}
    loss = spec.get("loss") or {}
    train = spec.get("train") or {}
    opts = spec.get("options") or {}
    base: dict[str, Any] = {
        "suite": rec.get("suite", spec.get("suite")),
        "run_id": rec.get("run_id"),
        "modality": spec.get("modality"),
        "dataset": spec.get("dataset"),
        "method": rec.get("method"),
        "seed": spec.get("seed"),
        "status": rec.get("status"),
    }
    for k in LOSS_COLUMNS:
        base[k] = loss.get(k)
    for k in TRAIN_COLUMNS:
        base[k] = train.get(k, _TRAIN_DEFAULTS_OF_OLD_RECORDS.get(k))
    for k, v in sorted(opts.items()):
        base[f"opt.{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    base["device"] = rec.get("device")
    base["wall_time_s"] = rec.get("wall_time_s")
    base["peak_memory_mb"] = (rec.get("memory") or {}).get("peak_mb")
    base["git_commit"] = rec.get("git_commit")
    base["finished_at"] = rec.get("finished_at")
    err = rec.get("error") or {}
    base["error"] = (f"{err.get('type')}: {err.get('message')}" if err else None)
    metrics = rec.get("metrics") or []
    if not metrics:
        return [{**base, "metric": None, "value": float("nan"), "std": None, "split": None,
                 "protocol": None, "selection": None}]
    rows = []
    for m in metrics:
        v = m.get("value")
        rows.append({**base, "metric": m.get("metric"), "value": float("nan") if v is None else float(v),
                     "std": m.get("std"), "split": m.get("split"), "protocol": m.get("protocol"),
                     "selection": m.get("selection")})
    return rows


def to_frame(records: Iterable[Mapping[str, Any]]):
    """Tidy DataFrame (one row per run and metric) from record dicts."""
    import pandas as pd

    rows = [row for rec in records for row in record_rows(rec)]
    extra = sorted({k for r in rows for k in r} - set(BASE_COLUMNS))
    cols = list(BASE_COLUMNS) + extra
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        df = df.sort_values(["suite", "modality", "dataset", "run_id", "metric"], na_position="last",
                            kind="mergesort").reset_index(drop=True)
    return df


def load(path: str | os.PathLike):
    """All records under ``path`` as a tidy pandas DataFrame, one row per (run, metric).

    Columns: suite, run_id, modality, dataset, method, beta, tau_plus, temperature, seed,
    metric, value, status, std, split, protocol, selection, then the other resolved loss and
    training settings, the adapter options as ``opt.NAME``, device, wall_time_s,
    peak_memory_mb, git_commit, finished_at and error. A failed run contributes one row with
    metric None and value NaN, so failures stay visible.
    """
    return to_frame(load_records(path))
