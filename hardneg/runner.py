"""Executes a suite's run specs, skipping finished ones, one atomic record per run.

Contract of :func:`run_suite`:

- The results folder is locked for the whole invocation (an OS advisory lock on the folder
  itself, released by the kernel however the process dies, so a SIGKILL never leaves a
  stale lock). A second runner on the same folder fails at once with a message naming the
  holder (pid, host, start time) instead of writing beside it.
- Specs whose record exists with status 'ok' are skipped; specs without a record, or with a
  failure record, run. Temporary files left by a killed writer are removed first.
- Each run goes through :func:`hardneg.train.execute`; any exception (a NaN loss included)
  becomes a failure record with the error type, message and traceback, and the suite goes
  on. Ctrl-C stops the suite without writing a record for the interrupted run.
- Every record gets the fields the store needs (schema_version, suite, run_id, spec,
  method, status, started_at / finished_at in ISO UTC, wall_time_s, git commit, host,
  versions) whether or not the trainer filled them.
- ``jobs > 1`` runs independent specs in worker processes (spawned, so each has a clean
  torch state); each worker writes its own record. If a record cannot be written (disk
  full, read-only folder) the suite stops with a clear error; records already written stay.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import adapters
from . import results as store
from .config import Suite
from .data import cache_dir
from .errors import HardnegError
from .results import ResultsError
from .spec import RunSpec

Log = Callable[[str], None]
ExecuteFn = Callable[..., Mapping[str, Any]]

LOCK_INFO = ".runner.json"


# ---- the folder lock ------------------------------------------------------------------------

class ResultsLockedError(ResultsError):
    """Another runner holds the results folder."""


class FolderLock:
    """Exclusive, non-blocking lock on a results folder for one runner process.

    POSIX: ``flock`` on the folder's own descriptor; the kernel drops it when the process
    ends, however it ends. A small ``.runner.json`` beside the records names the holder for
    the message a second runner prints; it is removed on release (a stale one after a kill
    is harmless and overwritten). Elsewhere: an exclusive-create lock file.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._fd: int | None = None
        self._excl: Path | None = None

    def _holder(self) -> str:
        try:
            info = json.loads((self.folder / LOCK_INFO).read_text())
            return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started_at')}: "
                    f"{info.get('command')}")
        except (OSError, ValueError):
            return "holder unknown"

    def acquire(self) -> "FolderLock":
        store.ensure_writable(self.folder)
        msg = (f"results folder {self.folder} is in use by another hardneg runner ({{holder}}). "
               "Wait for it to finish, or pass --results with another folder.")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            fcntl = None
        if fcntl is not None:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ResultsLockedError(msg.format(holder=self._holder())) from None
            except OSError as exc:  # file systems without flock support
                os.close(fd)
                raise ResultsError(f"cannot lock results folder {self.folder}: {exc.strerror}") from None
            self._fd = fd
        else:  # pragma: no cover
            path = self.folder / ".hardneg.lock"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise ResultsLockedError(msg.format(holder=self._holder()) +
                                         f" If no runner is alive, delete {path}.") from None
            self._excl = path
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now(),
                "command": " ".join(sys.argv)}
        try:
            store.atomic_write_text(self.folder / LOCK_INFO, json.dumps(info) + "\n")
        except ResultsError:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self._fd is None and self._excl is None:
            return
        try:
            (self.folder / LOCK_INFO).unlink()
        except OSError:
            pass
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._excl is not None:  # pragma: no cover
            try:
                self._excl.unlink()
            except OSError:
                pass
            self._excl = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ---- provenance -------------------------------------------------------------------------------

def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds, e.g. 2025-01-31T12:00:00Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("hardneg", "torch", "numpy"):
        m = sys.modules.get(mod)
        v = getattr(m, "__version__", None) if m else None
        if v is None and mod == "hardneg":
            try:
                from importlib.metadata import version
                v = version("hardneg")
            except Exception:  # noqa: BLE001 - metadata absent in a plain checkout
                v = None
        if v is not None:
            out[mod] = str(v)
    return out


def complete_record(rec: Mapping[str, Any], spec: RunSpec, *, started_at: str, finished_at: str,
                    wall_time_s: float, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's record with every field the store requires (trainer's values win)."""
    out = dict(rec)
    out["schema_version"] = store.SCHEMA_VERSION
    out["suite"] = spec.suite
    out["run_id"] = spec.run_id
    out.setdefault("spec", spec.to_dict())
    out["spec"] = {**out["spec"], "suite": spec.suite}
    if "method" not in out:
        out["method"] = method_name(spec)
    out.setdefault("status", "ok")
    out.setdefault("metrics", [])
    out.setdefault("curves", {})
    out.setdefault("diagnostics", {})
    out.setdefault("error", None)
    out["started_at"] = started_at
    out["finished_at"] = finished_at
    out.setdefault("wall_time_s", round(wall_time_s, 3))
    out["runner_wall_time_s"] = round(wall_time_s, 3)
    for k, v in provenance.items():
        out.setdefault(k, v)
    versions = dict(out.get("versions") or {})
    for k, v in _versions().items():
        versions.setdefault(k, v)
    out["versions"] = versions
    return out


def failure_record(spec: RunSpec, exc: BaseException) -> dict[str, Any]:
    """A record for a run that raised: error type, message and traceback; no metrics."""
    return {
        "status": "failed",
        "spec": spec.to_dict(),
        "metrics": [],
        "error": {"type": type(exc).__name__, "message": str(exc),
                  "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))},
    }


# ---- one run ------------------------------------------------------------------------------------

def _default_execute() -> ExecuteFn:
    from . import train
    return train.execute


def method_name(spec: RunSpec) -> str:
    """The adapter's name for the run's method (RunSpec.method if the adapter cannot load)."""
    try:
        return adapters.get(spec.modality).method_name(spec)
    except HardnegError:
        return spec.method


def run_label(spec: RunSpec) -> str:
    """Short human label: modality/dataset method b=.. t+=.. seed."""
    if spec.train.epochs == 0:
        return f"{spec.modality}/{spec.dataset} {method_name(spec)} s{spec.seed}"
    return (f"{spec.modality}/{spec.dataset} {spec.method} b={spec.loss.beta:g} "
            f"t+={spec.loss.tau_plus:g} s{spec.seed}")


def execute_and_record(spec: RunSpec, results_dir: Path, *, data_root: str | os.PathLike | None,
                       provenance: Mapping[str, Any], log: Log, execute: ExecuteFn | None = None,
                       progress: bool = False) -> dict[str, Any]:
    """Run one spec and write its record (ok or failed). Returns a short outcome dict.

    Only writing the record may raise (ResultsError): a run's own errors become its record.
    """
    started = utc_now()
    t0 = time.perf_counter()
    # per-epoch checkpoint in the cache (keyed by results folder and run): a run killed
    # mid-training resumes from its last finished epoch; the results folder holds records only
    folder_key = hashlib.sha256(str(Path(results_dir).resolve()).encode()).hexdigest()[:12]
    ckpt = cache_dir("checkpoints", folder_key) / f"{spec.run_id}.pt"
    try:
        if execute is None:
            rec = dict(_default_execute()(spec, data_root=data_root, log=log, progress=progress,
                                          checkpoint=ckpt))
        else:
            rec = dict(execute(spec, data_root=data_root, log=log))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every run error must become a record
        rec = failure_record(spec, exc)
    wall = time.perf_counter() - t0
    rec = complete_record(rec, spec, started_at=started, finished_at=utc_now(), wall_time_s=wall,
                          provenance=provenance)
    store.write_record(results_dir, rec)
    ckpt.unlink(missing_ok=True)
    err = rec.get("error") or {}
    return {"run_id": spec.run_id, "status": rec["status"], "wall_time_s": wall,
            "error": f"{err.get('type')}: {err.get('message')}" if err else None}


def _worker(spec_dict: dict[str, Any], results_dir: str, data_root: str | None,
            provenance: dict[str, Any], adapter_classes: dict[str, Any], threads: int) -> dict[str, Any]:
    """Entry point of a worker process (spawned): register adapters, run, write the record."""
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from . import adapters
    for name, cls in adapter_classes.items():
        adapters.register(name, cls, replace=True)
    spec = RunSpec.from_dict(spec_dict)
    label = run_label(spec)

    def log(msg: str) -> None:
        print(f"[{label}] {msg}", file=sys.stderr, flush=True)

    return execute_and_record(spec, Path(results_dir), data_root=data_root, provenance=provenance, log=log)


# ---- the suite ----------------------------------------------------------------------------------

@dataclass
class SuiteSummary:
    """What one invocation did."""

    suite: str
    results_dir: Path
    total: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)   # (run_id, label, error)
    removed_tmp: int = 0
    foreign_records: int = 0     # records in the folder that this suite no longer expands to
    wall_time_s: float = 0.0
    interrupted: bool = False

    def lines(self) -> list[str]:
        out = [f"suite {self.suite}: {self.total} runs; {self.skipped} already done, {self.ok} ran ok, "
               f"{self.failed} failed; {self.wall_time_s:.1f}s; records in {self.results_dir}"]
        if self.removed_tmp:
            out.append(f"removed {self.removed_tmp} partial record file(s) left by an interrupted run")
        if self.foreign_records:
            out.append(f"note: {self.foreign_records} record(s) in the folder are not part of this suite "
                       "as configured now; the report includes them")
        for rid, label, err in self.failures:
            out.append(f"FAILED {rid} {label}: {err}")
        if self.failed:
            out.append("failed runs are retried the next time the suite runs")
        if self.interrupted:
            out.append("interrupted: run the same command again to resume")
        return out


class _Eta:
    """Remaining-time estimate from wall times of finished runs of the same kind."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, list[float]] = {}

    @staticmethod
    def keys(spec: RunSpec) -> list[tuple]:
        opts = json.dumps(dict(spec.options), sort_keys=True, default=str)
        return [(spec.modality, spec.dataset, spec.train.epochs, opts),
                (spec.modality, spec.dataset, spec.train.epochs), (spec.modality,), ()]

    def add(self, spec: RunSpec, seconds: float) -> None:
        for k in self.keys(spec):
            self.by_key.setdefault(k, []).append(seconds)

    def estimate(self, spec: RunSpec) -> float | None:
        for k in self.keys(spec):
            if k in self.by_key:
                v = self.by_key[k]
                return sum(v) / len(v)
        return None

    def remaining(self, specs: Sequence[RunSpec]) -> float | None:
        est = [self.estimate(s) for s in specs]
        if not specs:
            return 0.0
        if all(e is None for e in est):
            return None
        known = [e for e in est if e is not None]
        fill = sum(known) / len(known)
        return sum(fill if e is None else e for e in est)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def default_results_dir(suite_name: str, base: str | os.PathLike = "results") -> Path:
    return Path(base) / suite_name


def run_suite(suite: Suite, *, results_dir: str | os.PathLike | None = None,
              data_root: str | os.PathLike | None = None, jobs: int = 1, log: Log | None = None,
              progress: bool | None = None, execute: ExecuteFn | None = None) -> SuiteSummary:
    """Run every spec of ``suite`` that has no ok record in ``results_dir``; see the module doc.

    ``execute`` replaces :func:`hardneg.train.execute` (sequential mode only; tests).
    """
    if jobs < 1:
        raise HardnegError(f"--jobs {jobs} is invalid; allowed: an integer >= 1")
    if jobs > 1 and execute is not None:
        raise HardnegError("a custom execute function works only with jobs=1")
    folder = Path(results_dir) if results_dir is not None else default_results_dir(suite.name)
    t_start = time.perf_counter()
    summary = SuiteSummary(suite=suite.name, results_dir=folder, total=len(suite.specs))
    use_bar = progress if progress is not None else sys.stderr.isatty()
    bar = None

    def say(msg: str) -> None:
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        elif log is not None:
            log(msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    with FolderLock(folder):
        summary.removed_tmp = len(store.clean_stale(folder))
        store.probe_writable(folder)
        eta = _Eta()
        done: set[str] = set()
        wanted = {s.run_id for s in suite.specs}
        for f in sorted(q for q in folder.glob("*" + store.RECORD_SUFFIX) if not q.name.startswith(".")):
            rec = store.read_record(f)
            rid = rec.get("run_id")
            if rid not in wanted:
                summary.foreign_records += 1
                continue
            if rec.get("status") == "ok":
                done.add(rid)
                spec = RunSpec.from_dict(rec["spec"]) if "spec" in rec else None
                if spec is not None and rec.get("runner_wall_time_s") is not None:
                    eta.add(spec, float(rec["runner_wall_time_s"]))
        todo = [s for s in suite.specs if s.run_id not in done]
        summary.skipped = len(suite.specs) - len(todo)
        provenance = {**git_info(), "host": socket.gethostname()}
        say(f"suite {suite.name}: {len(suite.specs)} runs, {summary.skipped} already done, "
            f"{len(todo)} to run" + (f" with {jobs} parallel jobs" if jobs > 1 else "")
            + f"; records -> {folder}")
        if use_bar and todo:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc=suite.name, unit="run", dynamic_ncols=True, file=sys.stderr,
                       bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}{postfix}")

        count = 0

        def finished(spec: RunSpec, outcome: Mapping[str, Any]) -> None:
            nonlocal count
            count += 1
            eta.add(spec, outcome["wall_time_s"])
            if outcome["status"] == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                summary.failures.append((spec.run_id, run_label(spec), outcome.get("error") or "?"))
            pending = [s for s in todo if s.run_id not in finished_ids]
            rem = eta.remaining(pending)
            if jobs > 1 and rem is not None:
                rem /= min(jobs, max(1, len(pending)))
            line = (f"[{count}/{len(todo)}] {outcome['status']:6s} {spec.run_id} {run_label(spec)} "
                    f"{outcome['wall_time_s']:.1f}s; ETA {_fmt_s(rem)}")
            if outcome["status"] != "ok":
                line += f"; {outcome.get('error')}"
            say(line)
            if bar is not None:
                bar.set_postfix_str(f"ok={summary.ok} failed={summary.failed} ETA {_fmt_s(rem)}")
                bar.update(1)

        finished_ids: set[str] = set()
        try:
            if jobs == 1:
                for spec in todo:
                    label = run_label(spec)
                    est = eta.estimate(spec)
                    say(f"-> {spec.run_id} {label}" + (f" (expected ~{_fmt_s(est)})" if est else ""))
                    if bar is not None:
                        bar.set_description_str(f"{suite.name} [{label}]")

                    def run_log(msg: str, _label: str = label) -> None:
                        say(f"   [{_label}] {msg}")

                    outcome = execute_and_record(spec, folder, data_root=data_root, provenance=provenance,
                                                 log=run_log, execute=execute, progress=use_bar)
                    finished_ids.add(spec.run_id)
                    finished(spec, outcome)
            elif todo:
                _run_parallel(todo, folder, data_root, provenance, jobs, finished, finished_ids, say)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if bar is not None:
                bar.close()
    summary.wall_time_s = time.perf_counter() - t_start
    return summary


def _run_parallel(todo: Sequence[RunSpec], folder: Path, data_root: Any, provenance: Mapping[str, Any],
                  jobs: int, finished: Callable, finished_ids: set[str], say: Log) -> None:
    import multiprocessing as mp

    from . import adapters
    classes = {m: type(adapters.get(m)) for m in sorted({s.modality for s in todo})}
    threads = max(1, min(s.train.threads or 1 for s in todo))
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures: dict[Future, RunSpec] = {}
        queue = list(todo)
        try:
            while queue or futures:
                while queue and len(futures) < jobs:
                    spec = queue.pop(0)
                    say(f"-> {spec.run_id} {run_label(spec)}")
                    fut = pool.submit(_worker, spec.to_dict(), str(folder),
                                      None if data_root is None else str(data_root), dict(provenance),
                                      classes, threads)
                    futures[fut] = spec
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        outcome = fut.result()
                    except ResultsError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - the worker process itself died
                        rec = complete_record(failure_record(spec, exc), spec, started_at=utc_now(),
                                              finished_at=utc_now(), wall_time_s=0.0, provenance=provenance)
                        store.write_record(folder, rec)
                        outcome = {"run_id": spec.run_id, "status": "failed", "wall_time_s": 0.0,
                                   "error": f"worker process died: {type(exc).__name__}: {exc}"}
                    finished_ids.add(spec.run_id)
                    finished(spec, outcome)
        except BaseException:
            for fut in futures:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
