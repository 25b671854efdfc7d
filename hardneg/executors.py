"""Where runs execute: one run as a picklable task, and the executors that carry tasks out.

A :class:`Job` is one pending run (its spec, label and adapter class, resolved once by the
runner). :class:`RunTask` carries out one job anywhere: it trains through
:func:`hardneg.train.run_spec`, builds the record (:func:`hardneg.record.build`; an exception
becomes a failure record) and writes it atomically into the results folder; it returns an
:class:`Outcome`. It holds only plain data, so it can be sent to another process (or host).

An :class:`Executor` decides where tasks run and reports each start and finish back to the
runner, in the runner's process: :class:`Sequential` (in this process, one at a time),
:class:`LocalProcesses` (``--jobs N``: spawned worker processes, each with a clean torch
state) and :class:`RayCluster` (``--executor ray``: one Ray task a run, with the CPUs and GPUs
it states; the worker returns the record, this process writes it). Each is registered in
:data:`EXECUTORS`; the suite logic (which runs are pending, reuse, the lock, the summary)
does not depend on which one runs.

If a record cannot be written (disk full, read-only folder), the task raises
:class:`hardneg.record.ResultsError` and every executor stops the suite with it; records
already written stay.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import record
from .data import cache_dir
from .errors import HardnegError
from .record import ResultsError
from .spec import RunSpec

Log = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """One pending run: its spec, the adapter class that runs it, its method and human label."""

    spec: RunSpec
    adapter: type
    method: str
    detail: str = ""   # what else tells it from the suite's other runs of its data set (runner.plan)

    @property
    def record_ids(self) -> tuple[str, ...]:
        """Run ids a finished record of this job may carry: its own first, then the ids the same
        run had before options declared ``added_later`` existed (without them, where at their
        default) and while the adapter's ``retired_options`` existed (with them)."""
        opts = getattr(self.adapter, "options", {})
        retired = dict(getattr(self.adapter, "retired_options", {}))
        older = {k: v for k, v in self.spec.options.items()
                 if not (k in opts and opts[k].added_later and v == opts[k].default)}
        ids = [self.spec.run_id]
        for options in (older, {**older, **retired}, {**self.spec.options, **retired}):
            rid = dataclasses.replace(self.spec, options=options).run_id
            if rid not in ids:
                ids.append(rid)
        return tuple(ids)

    @property
    def label(self) -> str:
        """``modality/dataset method b=.. t+=.. sSEED [detail]`` (untrained runs: no loss settings)."""
        s = self.spec
        tail = f" [{self.detail}]" if self.detail else ""
        if s.train.epochs == 0:
            return f"{s.modality}/{s.dataset} {self.method} s{s.seed}{tail}"
        return f"{s.modality}/{s.dataset} {self.method} b={s.loss.beta:g} t+={s.loss.tau_plus:g} s{s.seed}{tail}"


@dataclass(frozen=True)
class Outcome:
    """What the runner learns of a finished task."""

    run_id: str
    status: str
    wall_time_s: float
    error: str | None = None


@dataclass
class RunTask:
    """Run one job and write its record (ok or failed) into ``results_dir``; see the module doc.

    ``execute`` replaces :func:`hardneg.train.run_spec` (tests; it must return a
    :class:`hardneg.record.Measured`). A per-epoch checkpoint lives in the cache, keyed by
    the results folder and run, so a run killed mid-training resumes from its last epoch.
    """

    results_dir: str
    data_root: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = False
    execute: Callable[..., record.Measured] | None = None

    def checkpoint(self, run_id: str) -> Path:
        key = hashlib.sha256(str(Path(self.results_dir).resolve()).encode()).hexdigest()[:12]
        return cache_dir("checkpoints", key) / f"{run_id}.pt"

    def __call__(self, job: Job, log: Log) -> Outcome:
        """Only writing the record may raise (ResultsError): the run's own errors become its record."""
        rec = self.measure(job, log)
        outcome = self.finish(rec, log)
        self.drop_checkpoint(rec)
        return outcome

    def drop_checkpoint(self, rec: Mapping[str, Any]) -> None:
        """Remove the run's checkpoint once its record is written, unless it was refused for its
        world size (:class:`hardneg.train.CheckpointMismatch`): that one is kept to resume from."""
        if (rec.get("error") or {}).get("type") != "CheckpointMismatch":
            self.checkpoint(rec["run_id"]).unlink(missing_ok=True)

    def measure(self, job: Job, log: Log) -> dict[str, Any]:
        """Run ``job`` and return its whole record (ok, or failed with the error); writes nothing."""
        spec = job.spec
        started, t0 = record.utc_now(), time.perf_counter()
        try:
            if self.execute is not None:
                outcome: record.Measured | BaseException = self.execute(spec, data_root=self.data_root, log=log)
            else:
                from .train import run_spec
                outcome = run_spec(spec, adapter=job.adapter, data_root=self.data_root, log=log,
                                   progress=self.progress, checkpoint=self.checkpoint(spec.run_id))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every run error must become a record
            outcome = exc
        return record.build(spec, outcome, started_at=started, finished_at=record.utc_now(),
                            wall_time_s=time.perf_counter() - t0, provenance=self.provenance, method=job.method,
                            adapter=record.adapter_provenance(job.adapter))

    def finish(self, rec: Mapping[str, Any], log: Log) -> Outcome:
        """Write the record ``rec`` (:meth:`store`) and say what the runner learns of it."""
        self.store(rec, log)
        err = rec["error"]
        return Outcome(rec["run_id"], rec["status"], rec["wall_time_s"],
                       f"{err['type']}: {err['message']}" if err else None)

    def store(self, rec: Mapping[str, Any], log: Log) -> None:
        """Write ``rec``; a finished or unreadable file it replaces is moved to ``.superseded/`` first."""
        path = record.record_path(self.results_dir, rec["run_id"])
        if path.exists():
            try:
                old = record.read_record(path)
                reason = "superseded" if old.get("status") == "ok" else None
            except record.UnreadableRecord:
                reason = "unreadable"
            if reason:
                log(f"kept the file it replaces as {record.set_aside(path, reason)}")
        record.write_record(self.results_dir, rec)

    def crashed(self, job: Job, exc: BaseException, log: Log) -> Outcome:
        """The failure record of a job whose worker died before it could write one."""
        now = record.utc_now()
        rec = record.build(job.spec, exc, started_at=now, finished_at=now, wall_time_s=0.0,
                           provenance=self.provenance, method=job.method,
                           adapter=record.adapter_provenance(job.adapter))
        self.store(rec, log)
        return Outcome(job.spec.run_id, "failed", 0.0, f"worker process died: {type(exc).__name__}: {exc}")


class Executor(abc.ABC):
    """Carries out jobs; calls ``started(job)`` and ``finished(job, outcome)`` in the caller's process."""

    name: ClassVar[str] = ""
    #: how many jobs run at once (the runner divides its remaining-time estimate by it)
    parallelism: int = 1

    @abc.abstractmethod
    def run(self, jobs: Sequence[Job], task: RunTask, *, started: Callable[[Job], None],
            finished: Callable[[Job, Outcome], None], log_for: Callable[[Job], Log]) -> None:
        """Run every job; a ResultsError from a task stops the rest and propagates."""


class Sequential(Executor):
    """One job after another in this process."""

    name = "sequential"

    def run(self, jobs, task, *, started, finished, log_for) -> None:
        for job in jobs:
            started(job)
            finished(job, task(job, log_for(job)))


def _stderr_log(label: str) -> Log:
    def log(msg: str) -> None:
        print(f"[{label}] {msg}", file=sys.stderr, flush=True)
    return log


def _process_entry(task: RunTask, job: Job) -> Outcome:
    """Entry point of a worker process (spawned)."""
    if job.spec.train.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(job.spec.train.threads))
    return task(job, _stderr_log(job.label))


class LocalProcesses(Executor):
    """Up to ``workers`` jobs at once in spawned processes of this machine (``--jobs N``)."""

    name = "processes"

    def __init__(self, workers: int) -> None:
        self.parallelism = workers

    def run(self, jobs, task, *, started, finished, log_for) -> None:
        import multiprocessing as mp

        if task.execute is not None:
            raise HardnegError("a custom execute function works only with the sequential executor")
        with ProcessPoolExecutor(max_workers=self.parallelism, mp_context=mp.get_context("spawn")) as pool:
            futures: dict[Future, Job] = {}
            queue = list(jobs)
            try:
                while queue or futures:
                    while queue and len(futures) < self.parallelism:
                        job = queue.pop(0)
                        started(job)
                        futures[pool.submit(_process_entry, task, job)] = job
                    done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = futures.pop(fut)
                        try:
                            outcome = fut.result()
                        except ResultsError:
                            raise
                        except Exception as exc:  # noqa: BLE001 - the worker process itself died
                            outcome = task.crashed(job, exc, log_for(job))
                        finished(job, outcome)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def ray_resources(spec: RunSpec) -> dict[str, float]:
    """What one run asks a Ray cluster for, from what its suite states: ``num_cpus`` =
    ``train.threads`` (1 where it is 0, torch's default), ``num_gpus`` = 1 where ``train.device``
    names CUDA ('cuda', 'cuda:N'), else 0 ('auto' runs on the CPU there: Ray hides the GPUs of a
    task that asked for none)."""
    t = spec.train
    return {"num_cpus": float(t.threads or 1), "num_gpus": 1.0 if t.device.startswith("cuda") else 0.0}


def _ray_entry(task: RunTask, job: Job) -> dict[str, Any]:
    """Entry point of a Ray task: the run's whole record, stamped with the worker's host."""
    import socket
    task = dataclasses.replace(task, provenance={**task.provenance, "host": socket.gethostname()})
    rec = task.measure(job, _stderr_log(job.label))
    task.drop_checkpoint(rec)
    return rec


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HardnegError(f"--address {address!r} is invalid; allowed: HOST:PORT of a Ray head node "
                           "(the GCS port of `ray start --head --port=PORT`), e.g. 127.0.0.1:6379")
    return host, int(port)


class RayCluster(Executor):
    """Each job as one Ray task with its :func:`ray_resources` (``--executor ray [--address HOST:PORT]``).

    The worker trains and returns the record; this process writes it (:meth:`RunTask.finish`),
    so records land in the results folder exactly as with the local executor and a suite can be
    resumed by either. Workers need the same hardneg (and adapter packages) installed and the
    data at ``--data-root`` (or their own ``$HARDNEG_DATA``); the results folder needs to exist
    only here. A task whose worker dies (killed, node lost) becomes a failure record (Ray's
    retries are off by default, ``max_retries``), retried on the next invocation like any
    failed run. A run's per-epoch checkpoint lives in the cache of the worker that ran it (a
    rerun resumes from it when it lands on the same node, else starts over). Without
    ``address`` Ray's own default applies ($RAY_ADDRESS, else a Ray
    instance started on this machine). An address where nothing answers within
    ``connect_timeout_s`` is a :class:`HardnegError` before anything runs.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, connect_timeout_s: float = 10.0, max_retries: int = 0) -> None:
        try:
            import ray
        except ImportError:
            raise HardnegError('--executor ray needs Ray, which is not installed; install it with: '
                               'pip install "hardneg[ray]"') from None
        self._ray, self.max_retries = ray, max_retries
        if address:
            host, port = _parse_address(address)
            try:
                socket.create_connection((host, port), timeout=connect_timeout_s).close()
            except OSError as exc:
                why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
                raise HardnegError(f"--address {address}: no Ray cluster answers there ({why}, waited up to "
                                   f"{connect_timeout_s:g}s); start one with `ray start --head --port={port}` or "
                                   "pass the address of a running head node") from None
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, logging_level="ERROR", log_to_driver=True)
            except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ...
                raise HardnegError(f"cannot connect to the Ray cluster at {address or '(default)'}: "
                                   f"{type(exc).__name__}: {exc}") from None
        self.cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        self.parallelism = max(1, int(self.cluster.get("CPU", 1)))

    def _capacity(self, jobs: Sequence[Job]) -> int:
        """How many of ``jobs`` fit on the cluster at once (by the most any of them asks)."""
        need = {k: max(ray_resources(j.spec)[k] for j in jobs) for k in ("num_cpus", "num_gpus")}
        have = {"num_cpus": self.cluster.get("CPU", 0.0), "num_gpus": self.cluster.get("GPU", 0.0)}
        fits = [int(have[k] // v) for k, v in need.items() if v > 0]
        if min(fits) < 1:
            raise HardnegError(f"a run asks for {need['num_cpus']:g} CPU(s) and {need['num_gpus']:g} GPU(s) "
                               f"(train.threads, train.device) but the Ray cluster has {have['num_cpus']:g} CPU(s) "
                               f"and {have['num_gpus']:g} GPU(s); allowed: runs that fit on it")
        return min(fits)

    def run(self, jobs, task, *, started, finished, log_for) -> None:
        ray = self._ray
        if task.execute is not None:
            raise HardnegError("a custom execute function works only with the sequential executor")
        task = dataclasses.replace(task, results_dir=str(Path(task.results_dir).resolve()), progress=False,
                                   data_root=None if task.data_root is None else str(Path(task.data_root).resolve()))
        self.parallelism = min(self._capacity(jobs), len(jobs))
        remote = ray.remote(_ray_entry)
        refs: dict[Any, Job] = {}
        queue = list(jobs)
        try:
            while queue or refs:
                while queue and len(refs) < self.parallelism:
                    job = queue.pop(0)
                    started(job)
                    ref = remote.options(name=f"hardneg {job.spec.run_id}", max_retries=self.max_retries,
                                         **ray_resources(job.spec)).remote(task, job)
                    refs[ref] = job
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    job = refs.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except ray.exceptions.RayError as exc:   # the worker or its node died
                        outcome = task.crashed(job, exc, log_for(job))
                    else:
                        outcome = task.finish(rec, log_for(job))
                    finished(job, outcome)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise


def _local(jobs: int = 1, address: str | None = None, **_: Any) -> Executor:
    if address:
        raise HardnegError(f"--address {address} needs --executor ray; the local executor runs on this machine")
    return Sequential() if jobs == 1 else LocalProcesses(jobs)


def _ray(jobs: int = 1, address: str | None = None, **options: Any) -> Executor:
    if jobs != 1:
        raise HardnegError(f"--jobs {jobs} applies to the local executor; with --executor ray as many runs go at "
                           "once as the cluster has CPUs and GPUs for (train.threads, train.device)")
    return RayCluster(address, **options)


#: ``--executor NAME`` -> factory(jobs=N, address=..., **backend options) -> Executor
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": _local, "ray": _ray}


def make_executor(name: str = "local", *, jobs: int = 1, **options: Any) -> Executor:
    """The executor ``name``: ``local`` (sequential for ``jobs = 1``, else local processes) or
    ``ray`` (:class:`RayCluster`; ``address=HOST:PORT``)."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise HardnegError(f"--jobs {jobs} is invalid; allowed: an integer >= 1")
    if name not in EXECUTORS:
        raise HardnegError(f"--executor {name!r} is not known; allowed: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](jobs=jobs, **options)
