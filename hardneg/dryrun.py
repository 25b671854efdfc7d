"""``hardneg run SUITE --dry-run``: the pending runs, their estimated times, the budget check.

Nothing is written to the results folder (no lock is taken either). Each pending run gets
the ETA model's estimate (:mod:`hardneg.estimate`: finished records of the same setting,
else scaled by epochs from records of the same kind, else, with ``--calibrate``, a timing
of the configuration on this machine), in wall time and CPU-hours (wall x threads). The
suite's ``[suite] budget_cpu_hours`` (the whole suite: finished runs' measured time plus the
pending runs' estimate) and ``budget_cpu_minutes_per_run`` are checked; every run and total
over budget is named with its estimated time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import record
from .config import Suite
from .estimate import EtaModel, calibrate as calibrate_job, calibration_key, cpu_seconds, fmt_s, option_defaults
from .runner import changed_lines, inspect_folder, plan
from .spec import RunSpec


def _cpu_h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} CPU-h"


def dry_run(suite: Suite, folder: Path, *, data_root: str | os.PathLike | None = None, calibrate: bool = False,
            on_changed: str = "refuse", log: Callable[[str], None] = print) -> list[str]:
    """The dry-run report as lines (see the module docstring); ``log`` gets calibration progress."""
    jobs = plan(suite.specs)
    state = inspect_folder(Path(folder), jobs, data_root)
    todo = state.pending(jobs, on_changed)
    eta = EtaModel()
    defaults = option_defaults(jobs)
    for rec in state.history:
        eta.add_record(rec, defaults)
    out = [f"suite {suite.name}: {len(jobs)} runs, {len(jobs) - len(todo)} done, {len(todo)} pending; "
           f"records in {folder} (a dry run writes nothing)"]
    for msg in state.unreadable:
        out.append(f"skipped: {msg}")
    if state.changed:
        verb = "rerun (--rerun-changed)" if on_changed == "rerun" else "refused: `hardneg run` would not start"
        out.append(f"{len(state.changed)} finished record(s) no longer match what a rerun would use; {verb}:")
        out.extend(changed_lines(state))
    if state.unchecked:
        out.append(f"note: {len(state.unchecked)} finished record(s) name no adapter version; reused unchecked")
    if calibrate:
        seen: set[str] = set()
        for job in todo:
            key = calibration_key(job.spec)
            if eta.estimate(job.spec) is None and key not in seen:
                seen.add(key)
                eta.add_calibration(job.spec, calibrate_job(job, data_root=None if data_root is None
                                                            else str(data_root), log=log))
    budget_h, per_run_min = suite.budget_cpu_hours, suite.budget_cpu_minutes_per_run
    if budget_h or per_run_min:
        out.append("budget: " + "; ".join(
            ([f"{budget_h:g} CPU-hours for the suite"] if budget_h else [])
            + ([f"{per_run_min:g} CPU-minutes per run"] if per_run_min else [])))
    else:
        out.append("budget: none stated ([suite] budget_cpu_hours, budget_cpu_minutes_per_run)")
    pending_cpu, unknown, over = 0.0, 0, 0
    if todo:
        out.append("pending runs (estimated wall time, CPU time, basis):")
    for job in todo:
        est = eta.estimate(job.spec)
        line = f"  {job.spec.run_id}  {job.label:44s}"
        if est is None:
            unknown += 1
            out.append(f"{line} ?  no finished run of this setting"
                       + ("" if calibrate else "; --calibrate times it on this machine"))
            continue
        cpu = cpu_seconds(job.spec, est.seconds)
        pending_cpu += cpu
        line += f" {fmt_s(est.seconds):>7s}  {_cpu_h(cpu)}  {est.basis}"
        if per_run_min and cpu / 60 > per_run_min:
            over += 1
            line += f"  OVER the per-run budget: {cpu / 60:.3g} CPU-min > {per_run_min:g}"
        out.append(line)
    done_cpu = sum(cpu_seconds(RunSpec.from_dict(r["spec"]), wall)
                   for r in state.done.values() if r and (wall := record.run_wall_s(r)) is not None)
    total = done_cpu + pending_cpu
    summary = (f"total: {_cpu_h(done_cpu)} measured in {len(state.done)} finished run(s) + {_cpu_h(pending_cpu)} "
               f"estimated for {len(todo) - unknown} pending run(s)"
               + (f" ({unknown} without an estimate)" if unknown else "") + f" = {_cpu_h(total)}")
    if budget_h:
        if total / 3600 > budget_h:
            summary += f": OVER the suite's budget of {budget_h:g} CPU-hours by {(total / 3600 - budget_h):.2f}"
        elif unknown:
            summary += (f"; whether the suite fits its budget of {budget_h:g} CPU-hours is unknown until the "
                        f"{unknown} run(s) without an estimate have one (--calibrate)")
        else:
            summary += f": within the suite's budget of {budget_h:g} CPU-hours"
    out.append(summary)
    if over:
        out.append(f"{over} pending run(s) exceed the per-run budget of {per_run_min:g} CPU-minutes")
    return out
