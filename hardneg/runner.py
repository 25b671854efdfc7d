"""Which runs of a suite still need running, whether finished ones can be reused, and the suite
loop that runs them under the results folder's lock (:mod:`hardneg.record.lock`).

Contract of :func:`run_suite`:

- The results folder is locked for the whole invocation (an OS advisory lock on the folder
  itself, released by the kernel however the process dies, so a SIGKILL never leaves a
  stale lock). A second runner on the same folder fails at once with a message naming the
  holder (pid, host, start time) instead of writing beside it.
- Each spec's adapter class and method label are resolved once (:func:`plan`); the jobs
  then flow down to an executor (:mod:`hardneg.executors`), which runs each through
  :class:`~hardneg.executors.RunTask` (train, build the record, write it atomically).
- Reuse (:func:`inspect_folder`): a spec whose record exists with status 'ok' is skipped,
  unless the record no longer matches what a rerun would use: its adapter's distribution or
  version differs from the installed one, or its data checksums differ from what the
  adapter reports for the data root now (:meth:`~hardneg.adapters.ModalityAdapter.data_fingerprint`).
  Such records are *changed*: by default the runner refuses to start and lists them
  (``on_changed='refuse'``); with ``on_changed='rerun'`` (``--rerun-changed``) they run
  again and each old record is kept in ``.superseded/``. A record whose adapter version is
  unknown (schema 1 of a non-built-in adapter, or an adapter outside an installed
  distribution) cannot be checked: it is reused, and the summary says how many.
- A record made before an adapter option existed (declared ``added_later``) carries the id the
  spec had without it; it counts as the run with that option at its default (:attr:`Job.record_ids`).
- A file that is not a readable record is named (path and reason) and skipped; if it sits
  where a planned run's record goes, that run counts as pending and the file is moved to
  ``.superseded/`` when the new record is written. A record of a newer schema is kept and
  its run not repeated. Spec validation fails before anything runs (NaN / inf refused).
- A failed run (a NaN loss included) becomes a failure record and the suite goes on;
  failure records are retried on the next invocation. Ctrl-C stops the suite without a
  record for the interrupted run. Temporary files left by a killed writer are removed first.
- If a record cannot be written (disk full, read-only folder) the suite stops with a clear
  error; records already written stay.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import record
from .adapters import adapter_class
from .config import Suite
from .errors import ConfigError, HardnegError
from .estimate import EtaModel, fmt_s, option_defaults
from .executors import Executor, Job, Outcome, RunTask, make_executor
from .record import ResultsError
from .record.lock import FolderLock
from .spec import RunSpec

Log = Callable[[str], None]
ON_CHANGED = ("refuse", "rerun")


# ---- the plan --------------------------------------------------------------------------------

def plan(specs: Sequence[RunSpec]) -> list[Job]:
    """One job per spec, validated (ConfigError before anything runs), adapter classes resolved
    once, each with the :func:`details` that tell it from its data set's other runs."""
    classes: dict[str, type] = {}
    for spec in specs:
        try:
            spec.validate()
        except HardnegError as exc:
            raise ConfigError(f"run {spec.run_id} ({spec.modality}/{spec.dataset}): {exc}") from None
        if spec.modality not in classes:
            classes[spec.modality] = adapter_class(spec.modality)
    jobs = [Job(spec, classes[spec.modality], classes[spec.modality]().method_name(spec)) for spec in specs]
    return [dataclasses.replace(j, detail=d) for j, d in zip(jobs, details(jobs))]


#: settings a job label already shows (method, beta, tau+, seed) or that never tell runs apart
_LABELLED = {"loss.beta", "loss.tau_plus", "loss.objective", "loss.jsd_convention", "train.epochs"}


def _shown_untrained(job: Job, key: str) -> bool:
    kind, _, name = key.partition(".")
    opt = getattr(job.adapter, "options", {}).get(name)
    return kind == "options" and not (opt is not None and opt.training_only)


def details(jobs: Sequence[Job]) -> list[str]:
    """Per job, 'name=value, ...' of the loss settings and adapter options that vary among the
    trained jobs of its modality and data set and that its label does not already show
    (untrained runs: options that are not training-only), e.g. 'positives=next' or
    'temperature=1.0, scores=raw'; '' when none vary."""
    def fields(j: Job) -> dict[str, str]:
        out = {f"loss.{k}": str(v) for k, v in dataclasses.asdict(j.spec.loss).items()}
        out.update({f"options.{k}": str(v) for k, v in j.spec.options.items()})
        return {k: v for k, v in out.items() if k not in _LABELLED}

    per = [fields(j) for j in jobs]
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault((j.spec.modality, j.spec.dataset), []).append(i)
    out = [""] * len(jobs)
    for idx in groups.values():
        trained = [i for i in idx if jobs[i].spec.train.epochs > 0]
        keys = sorted({k for i in trained for k in per[i]})
        varying = [k for k in keys if len({per[i].get(k) for i in trained}) > 1]
        for i in idx:
            shown = varying if jobs[i].spec.train.epochs > 0 else [k for k in varying if _shown_untrained(jobs[i], k)]
            out[i] = ", ".join(f"{k.split('.', 1)[1]}={per[i][k]}" for k in shown if k in per[i])
    return out


@dataclass
class FolderState:
    """What a results folder holds for a plan (see the module docstring for the rules)."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)            # run_id -> reusable ok record
    changed: list[tuple[Job, Path, list[str]]] = field(default_factory=list)  # finished, no longer matching
    unchecked: list[str] = field(default_factory=list)                       # adapter version unknown
    unreadable: list[str] = field(default_factory=list)                      # messages naming the path
    foreign: int = 0                                                         # records of runs not planned
    history: list[dict[str, Any]] = field(default_factory=list)              # every ok record (ETA)

    def pending(self, jobs: Sequence[Job], on_changed: str) -> list[Job]:
        changed = {j.spec.run_id for j, _, _ in self.changed}
        return [j for j in jobs if j.spec.run_id not in self.done
                and (on_changed == "rerun" or j.spec.run_id not in changed)]


def _differences(job: Job, rec: Mapping[str, Any], now: dict[str, str] | None) -> tuple[list[str], bool]:
    """(what changed since ``rec`` was made, whether its adapter version is known)."""
    out = []
    was = rec.get("adapter") or {}
    cur = record.adapter_provenance(job.adapter)
    known = was.get("version") is not None
    if known and (was.get("distribution"), was.get("version")) != (cur["distribution"], cur["version"]):
        out.append(f"adapter {was.get('distribution')} {was.get('version')} -> "
                   f"{cur['distribution']} {cur['version']}")
    old = rec.get("data_checksums") or {}
    for key, value in sorted((now or {}).items()):
        if key in old and old[key] != value:
            out.append(f"data {key} {str(old[key])[:12]} -> {str(value)[:12]}")
    return out, known


def inspect_folder(folder: Path, jobs: Sequence[Job], data_root: str | os.PathLike | None) -> FolderState:
    """Read ``folder``'s records against ``jobs``; nothing is written."""
    state = FolderState()
    if not folder.is_dir():
        return state
    by_id = {rid: j for j in jobs for rid in reversed(j.record_ids)}   # its own id wins
    fingerprints: dict[str, dict[str, str] | None] = {}
    good, bad = record.scan(folder)
    for exc in bad:
        stem, msg = exc.path.stem, str(exc)
        if isinstance(exc, record.NewerRecord) and stem in by_id:
            state.done[by_id[stem].spec.run_id] = {}
            msg += "; its run is not repeated"
        elif stem in by_id:
            msg += (f". It is where the record of planned run {stem} ({by_id[stem].label}) goes: that run is "
                    "pending, and the file is moved to .superseded/ when the new record is written")
        state.unreadable.append(msg)
    from .data import resolve_data_root
    root = resolve_data_root(data_root)

    def own_first(item: tuple[Path, dict[str, Any]]) -> int:
        job = by_id.get(item[1].get("run_id"))
        return 0 if job is not None and job.spec.run_id == item[1].get("run_id") else 1

    for path, rec in sorted(good, key=own_first):
        if rec.get("status") == "ok":
            state.history.append(rec)
        job = by_id.get(rec.get("run_id"))
        if job is None:
            state.foreign += 1
            continue
        if rec.get("status") != "ok" or job.spec.run_id in state.done:
            continue
        spec = job.spec
        key = json.dumps([spec.modality, spec.dataset, dict(spec.options)], sort_keys=True, default=str)
        if key not in fingerprints:
            try:
                fingerprints[key] = job.adapter().data_fingerprint(root, spec.dataset, spec.options)
            except (HardnegError, OSError) as exc:      # data unreadable now: the record cannot be checked
                fingerprints[key] = None
                state.unreadable.append(f"data of {spec.modality}/{spec.dataset} cannot be checked: {exc}")
        diffs, known = _differences(job, rec, fingerprints[key])
        if diffs:
            state.changed.append((job, path, diffs))
            continue
        if not known:
            state.unchecked.append(rec["run_id"])
        state.done[job.spec.run_id] = rec
    return state


def changed_lines(state: FolderState, limit: int = 20) -> list[str]:
    """One line per changed record (path and what changed)."""
    out = [f"  {path}  {job.label}: {'; '.join(d)}" for job, path, d in state.changed[:limit]]
    if len(state.changed) > limit:
        out.append(f"  ... and {len(state.changed) - limit} more")
    return out


class ChangedRecordsError(ResultsError):
    """Finished records no longer match what a rerun would use (and on_changed is 'refuse')."""


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
    selection: str = ""          # the suite's --only / --set narrowing (Suite.selection), for the notes
    rerun_changed: int = 0
    unchecked: int = 0
    unreadable: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    interrupted: bool = False

    def lines(self) -> list[str]:
        out = [f"suite {self.suite}: {self.total} runs; {self.skipped} already done, {self.ok} ran ok, "
               f"{self.failed} failed; {self.wall_time_s:.1f}s; records in {self.results_dir}"]
        if self.removed_tmp:
            out.append(f"removed {self.removed_tmp} partial record file(s) left by an interrupted run")
        if self.rerun_changed:
            out.append(f"reran {self.rerun_changed} run(s) whose records no longer matched (old records in "
                       f"{self.results_dir / '.superseded'})")
        if self.unchecked:
            out.append(f"note: {self.unchecked} reused record(s) name no adapter version (written before records "
                       "named it, or by an adapter outside an installed package): reused without that check")
        for msg in self.unreadable:
            out.append(f"skipped: {msg}")
        if self.foreign_records:
            where = (f"outside this command's selection ({self.selection}): other seeds, data sets or settings "
                     "of the suite file, or runs it no longer holds" if self.selection
                     else "not part of this suite as configured now")
            out.append(f"note: {self.foreign_records} record(s) in the folder are {where}; the report includes them")
        for rid, label, err in self.failures:
            out.append(f"FAILED {rid} {label}: {err}")
        if self.failed:
            out.append("failed runs are retried the next time the suite runs")
        if self.interrupted:
            out.append("interrupted: run the same command again to resume")
        return out


def default_results_dir(suite_name: str, base: str | os.PathLike = "results") -> Path:
    """``results/<suite>``."""
    return Path(base) / suite_name


def run_suite(suite: Suite, *, results_dir: str | os.PathLike | None = None,
              data_root: str | os.PathLike | None = None, jobs: int = 1, log: Log | None = None,
              progress: bool | None = None, execute: Callable[..., record.Measured] | None = None,
              executor: Executor | None = None, on_changed: str = "refuse") -> SuiteSummary:
    """Run every spec of ``suite`` that has no reusable ok record in ``results_dir``; see the module doc.

    ``executor`` defaults to ``make_executor('local', jobs=jobs)``. ``execute`` replaces
    :func:`hardneg.train.run_spec` (sequential executor only; tests). ``on_changed``:
    'refuse' (default) or 'rerun' finished records that no longer match.
    """
    if on_changed not in ON_CHANGED:
        raise HardnegError(f"on_changed={on_changed!r} is not known; allowed: {', '.join(ON_CHANGED)}")
    executor = executor or make_executor("local", jobs=jobs)
    if execute is not None and executor.parallelism > 1:
        raise HardnegError("a custom execute function works only with jobs=1")
    folder = Path(results_dir) if results_dir is not None else default_results_dir(suite.name)
    t_start = time.perf_counter()
    job_list = plan(suite.specs)
    summary = SuiteSummary(suite=suite.name, results_dir=folder, total=len(job_list), selection=suite.selection)
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
        summary.removed_tmp = len(record.clean_stale(folder))
        record.probe_writable(folder)
        state = inspect_folder(folder, job_list, data_root)
        if state.changed and on_changed == "refuse":
            raise ChangedRecordsError(
                f"{len(state.changed)} finished record(s) in {folder} no longer match what a rerun would use:\n"
                + "\n".join(changed_lines(state))
                + "\nNothing was run. Pass --rerun-changed to rerun them (each old record is kept in "
                f"{folder / '.superseded'}), or point --data-root at the data they were made from.")
        todo = state.pending(job_list, on_changed)
        if on_changed == "rerun":       # records found under an older id are not replaced by the rerun's
            for job, path, _ in state.changed:
                if path.stem != job.spec.run_id and path.exists():
                    record.set_aside(path, "superseded")
        summary.skipped = len(job_list) - len(todo)
        summary.rerun_changed = len(state.changed) if on_changed == "rerun" else 0
        summary.unchecked, summary.unreadable = len(state.unchecked), state.unreadable
        summary.foreign_records = state.foreign
        eta = EtaModel()
        defaults = option_defaults(job_list)
        for rec in state.history:
            eta.add_record(rec, defaults)
        for msg in state.unreadable:
            say(f"skipped: {msg}")
        say(f"suite {suite.name}: {len(job_list)} runs, {summary.skipped} already done, {len(todo)} to run"
            + (f" with {executor.parallelism} parallel jobs" if executor.parallelism > 1 else "")
            + f"; records -> {folder}")
        if use_bar and todo:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc=suite.name, unit="run", dynamic_ncols=True, file=sys.stderr,
                       bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}{postfix}")
        task = RunTask(str(folder), None if data_root is None else str(data_root),
                       record.invocation_provenance(), progress=use_bar and executor.parallelism == 1,
                       execute=execute)
        finished_ids: set[str] = set()

        def started(job: Job) -> None:
            est = eta.estimate(job.spec)
            say(f"-> {job.spec.run_id} {job.label}" + (f" (expected ~{fmt_s(est.seconds)})" if est else ""))
            if bar is not None and executor.parallelism == 1:
                bar.set_description_str(f"{suite.name} [{job.label}]")

        def finished(job: Job, outcome: Outcome) -> None:
            finished_ids.add(job.spec.run_id)
            eta.add(job.spec, outcome.wall_time_s)
            if outcome.status == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                summary.failures.append((job.spec.run_id, job.label, outcome.error or "?"))
            pending = [j.spec for j in todo if j.spec.run_id not in finished_ids]
            rem = eta.remaining(pending)
            if rem is not None:
                rem /= min(executor.parallelism, max(1, len(pending)))
            line = (f"[{len(finished_ids)}/{len(todo)}] {outcome.status:6s} {job.spec.run_id} {job.label} "
                    f"{outcome.wall_time_s:.1f}s; ETA {fmt_s(rem)}")
            if outcome.status != "ok":
                line += f"; {outcome.error}"
            say(line)
            if bar is not None:
                bar.set_postfix_str(f"ok={summary.ok} failed={summary.failed} ETA {fmt_s(rem)}")
                bar.update(1)

        def log_for(job: Job) -> Log:
            return lambda msg: say(f"   [{job.label}] {msg}")

        try:
            if todo:
                executor.run(todo, task, started=started, finished=finished, log_for=log_for)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if bar is not None:
                bar.close()
    summary.wall_time_s = time.perf_counter() - t_start
    return summary
