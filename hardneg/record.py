"""The run record: its one owner (layout, provenance, completion, reading and the atomic write).

One JSON file per run, ``results/<suite>/<run_id>.json``, written atomically
(:mod:`hardneg.atomic`). Layout of ``schema_version`` :data:`SCHEMA_VERSION` = 2::

    schema_version     int    2 (1: written before adapter provenance; read, see below)
    run_id, suite      str    run_id = RunSpec.run_id (hash of the resolved settings)
    status             str    'ok' | 'failed'
    modality, dataset, seed   copies of the spec's
    method             str    ModalityAdapter.method_name(spec): 'hard-jsd', 'random-init', ...
    spec               dict   RunSpec.to_dict(): modality, dataset, seed, loss, train, options, suite
    options            dict   the adapter's resolved options (= spec.options)
    metrics            list   [{metric, value, split, protocol, selection, std}, ...] (long format)
    trivial_baselines  list   the same form: ModalityAdapter.trivial_baselines(run), selection 'trivial'
    headline_metrics   list   ModalityAdapter.headline_metrics
    curves             list   one dict per epoch: epoch, loss, steps, samples, seconds, samples_per_s,
                              diag_* (loss-core diagnostics), eval_* (train.eval_every)
    diagnostics        dict   the last epoch's diag_* without the prefix
    counters, details  dict   what the adapter counted / noted (RunContext.counters / details)
    timing             dict   wall_s, prepare_s, train_s, eval_s, epochs, mid_training_eval_s,
                              train_samples_per_s (measured by the trainer)
    memory             dict   peak_mb, kind ('process_max_rss' | 'cuda_max_allocated')
    wall_time_s        float  the whole run as the runner timed it (seconds)
    device             str    the processor kind (:func:`processor_kind`): runs are bit-identical
                              on the same kind only
    versions           dict   python and the version of every distribution the process imported
                              (collected once per process)
    adapter            dict   name, class ('module:Class'), distribution and version of the
                              package providing the adapter (built-ins: hardneg)
    git_commit, git_dirty, host   the hardneg checkout (null outside git) and the machine
    data_checksums     dict   what prepare() recorded of the data it read (SHA-256s)
    started_at, finished_at   ISO-8601 UTC, 'YYYY-MM-DDTHH:MM:SSZ'
    error              null | {type, message, traceback} (status 'failed')

Schema 1 records (every record before this layout) have the same fields less ``adapter``
(and with ``runner_wall_time_s``, a copy of ``wall_time_s``); :func:`upgrade` adds it when
they are read: for a built-in modality the adapter was hardneg's own, so its version is the
record's ``versions.hardneg`` (``adapter.inferred`` says so); for any other its version is
unknown (null), and the runner reuses such records and says that it cannot check them.
Readers refuse records of a newer schema.

A record whose spec holds NaN or inf is never written (:func:`write_record` refuses it).
"""

from __future__ import annotations

import errno
import functools
import json
import math
import platform
import resource
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import atomic
from .errors import ConfigError, HardnegError, non_finite
from .spec import RunSpec

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
RECORD_SUFFIX = ".json"
TMP_PREFIX = atomic.TMP_PREFIX
#: packages named in every record, installed or not (None)
CORE_PACKAGES = ("torch", "torchvision", "torch-geometric", "sentence-transformers", "transformers",
                 "datasets", "numpy", "scikit-learn", "pandas", "hardneg")
_BUILTIN_TOPS = ("hardneg", "modalities")


#: the top-level fields of a schema-2 record, in the order of the layout above (ok and failed alike)
FIELDS = ("schema_version", "run_id", "suite", "status", "modality", "dataset", "seed", "method", "spec",
          "options", "metrics", "trivial_baselines", "headline_metrics", "curves", "diagnostics", "counters",
          "details", "timing", "memory", "wall_time_s", "device", "versions", "adapter", "git_commit",
          "git_dirty", "host", "data_checksums", "started_at", "finished_at", "error")


class ResultsError(HardnegError):
    """The results folder cannot be read or written (schema, disk full, permissions, corruption)."""


class UnreadableRecord(ResultsError):
    """A file in a results folder that is not a readable run record (its message names the path)."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else Path()


class NewerRecord(UnreadableRecord):
    """A record written by a newer hardneg (a newer schema): whole, but not readable here."""


# ---- provenance -------------------------------------------------------------------------------

def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds, e.g. 2025-01-31T12:00:00Z (every record time)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some installed package
        return {}


def versions() -> dict[str, str | None]:
    """Python, :data:`CORE_PACKAGES`, and every distribution providing a module imported now.

    Each distribution's version is looked up once per process."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in CORE_PACKAGES:
        out[pkg] = _dist_version(pkg)
    mapping = _module_distributions()
    for top in sorted({m.partition(".")[0] for m in list(sys.modules)}):
        for dist in mapping.get(top, ()):
            key = dist.lower().replace("_", "-")
            if key not in out:
                out[key] = _dist_version(dist)
    return out


@functools.cache
def adapter_provenance(cls: type) -> dict[str, Any]:
    """``{name, class, distribution, version}`` of an adapter class.

    The distribution is the installed package whose files provide the class's top-level
    module (importlib.metadata); built-ins (hardneg, modalities) are hardneg's. A class
    outside any installed distribution (a script, a test) has distribution and version null:
    its edits cannot be told apart from the version alone."""
    module = cls.__module__
    top = module.partition(".")[0]
    if top in _BUILTIN_TOPS:
        from . import __version__
        dist, version = "hardneg", _dist_version("hardneg") or __version__
    else:
        dists = _module_distributions().get(top) or []
        dist = dists[0] if dists else None
        version = _dist_version(dist) if dist else None
    return {"name": getattr(cls, "name", None), "class": f"{module}:{cls.__qualname__}",
            "distribution": dist, "version": version}


def git_info(path: Path | None = None) -> dict[str, Any]:
    """Commit of the hardneg source checkout (null outside git) and whether it had local changes."""
    where = path or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 else None
        dirty = None
        if commit:
            st = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty}


def invocation_provenance() -> dict[str, Any]:
    """What one ``hardneg run`` stamps on every record it writes: git commit, dirty flag, host."""
    return {**git_info(), "host": socket.gethostname()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def processor_kind(device: Any) -> str:
    """The device as a record states it. On CPU: the processor and the vector instruction set
    torch dispatches to. Runs are bit-reproducible on the same kind of processor; another one
    (AVX2 vs AVX-512, Intel vs AMD math libraries) rounds differently, and over hundreds of
    epochs that grows into differences of the size of a seed's."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - very old torch
        isa = "?"
    return f"cpu:{platform.machine()} {_cpu_model()} ({isa}) x{torch.get_num_threads()} threads"


def peak_memory(device: Any) -> dict[str, Any]:
    """``{peak_mb, kind}``: CUDA's max allocated, else this process's max RSS."""
    import torch

    if device.type == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20, "kind": "cuda_max_allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10
    return {"peak_mb": rss_kb * scale, "kind": "process_max_rss"}


# ---- completion --------------------------------------------------------------------------------

@dataclass
class Measured:
    """What the trainer measured in one finished run (the record's results and cost fields)."""

    method: str
    adapter: dict[str, Any]
    options: dict[str, Any]
    metrics: list[dict[str, Any]]
    trivial_baselines: list[dict[str, Any]]
    headline_metrics: list[str]
    curves: list[dict[str, Any]]
    timing: dict[str, Any]
    memory: dict[str, Any]
    device: str
    data_checksums: dict[str, str] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def build(spec: RunSpec, outcome: Measured | BaseException, *, started_at: str, finished_at: str,
          wall_time_s: float, provenance: Mapping[str, Any] | None = None,
          method: str | None = None, adapter: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole record of one run: ``outcome`` is what the trainer measured, or the exception
    that ended the run (a failure record: error type, message and traceback, no metrics).
    ``method`` and ``adapter`` name the run when the trainer did not get far enough to."""
    ok = isinstance(outcome, Measured)
    m = outcome if ok else None
    curves = m.curves if m else []
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "suite": spec.suite,
        "status": "ok" if ok else "failed",
        "modality": spec.modality, "dataset": spec.dataset, "seed": spec.seed,
        "method": m.method if m else (method or spec.method),
        "spec": spec.to_dict(), "options": m.options if m else dict(spec.options),
        "metrics": m.metrics if m else [], "trivial_baselines": m.trivial_baselines if m else [],
        "headline_metrics": m.headline_metrics if m else [],
        "curves": curves,
        "diagnostics": {k[5:]: v for k, v in (curves[-1] if curves else {}).items() if k.startswith("diag_")},
        "counters": m.counters if m else {}, "details": m.details if m else {},
        "timing": m.timing if m else {}, "memory": m.memory if m else {},
        "wall_time_s": round(wall_time_s, 3),
        "device": m.device if m else None,
        "versions": versions(),
        "adapter": dict(m.adapter if m else (adapter or {"name": spec.modality, "class": None,
                                                          "distribution": None, "version": None})),
        "git_commit": None, "git_dirty": None, "host": None,
        "data_checksums": m.data_checksums if m else {},
        "started_at": started_at, "finished_at": finished_at,
        "error": None,
    }
    rec.update({k: v for k, v in (provenance or {}).items() if k in ("git_commit", "git_dirty", "host")})
    if not ok:
        exc = outcome
        rec["error"] = {"type": type(exc).__name__, "message": str(exc),
                        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    return rec


# ---- reading ------------------------------------------------------------------------------------

def upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of any readable schema with every schema-2 field (in memory; the file is untouched)."""
    if rec.get("schema_version") == 1:
        spec = rec.get("spec") or {}
        mod = rec.get("modality") or spec.get("modality")
        from .adapters import BUILTIN
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
