"""How long runs take: the runner's ETA model, calibration on this machine, the dry-run plan.

The model learns from finished records (and from runs as they finish):

1. same setting: records of the same kind (modality, data set, adapter options, the
   training settings except epochs / eval_every, the loss objective) with the same epochs
   and eval_every: their mean wall time.
2. scaled by epochs: records of the same kind with another epoch count (or eval_every):
   ``fixed + epochs * s_per_epoch + mid_evals * s_per_eval``, where ``s_per_epoch`` is the
   mean of the record's per-epoch ``curves[].seconds``, ``fixed`` the rest of its wall time
   (preparing the data, the final evaluation, overhead) and ``s_per_eval`` its mid-training
   evaluations' mean (else its final evaluation's time). A floor (``epochs = 0``) is scaled
   from trained records as their ``fixed`` part.
3. calibrated (``hardneg run --dry-run --calibrate``): for settings with no history,
   :func:`calibrate` times a few real training steps and one evaluation of each distinct
   configuration (modality, data set, options, batch) on this machine and extrapolates the
   same way.

CPU time is wall time times the run's torch threads (``train.threads``; 0 = every core).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from . import record
from .executors import Job
from .spec import RunSpec

_SCALING = ("epochs", "eval_every")
_NOT_TIMING = ("device", "flush_denormal", "diagnostics_every")


@dataclass(frozen=True)
class Estimate:
    """Estimated wall seconds of one run and how they were obtained."""

    seconds: float
    basis: str


def kind(spec: RunSpec) -> str:
    """What a run's time depends on, other than epochs and eval_every (and seed, beta, tau+)."""
    train = {k: v for k, v in spec.to_dict()["train"].items() if k not in _SCALING + _NOT_TIMING}
    return json.dumps([spec.modality, spec.dataset, spec.loss.objective, dict(sorted(spec.options.items())), train],
                      sort_keys=True, default=str)


def calibration_key(spec: RunSpec) -> str:
    """The configuration a calibration measures: modality, data set, options, batch (and threads, steps cap)."""
    t = spec.train
    return json.dumps([spec.modality, spec.dataset, dict(sorted(spec.options.items())), t.batch_size,
                       t.max_steps_per_epoch, t.threads, spec.loss.objective], sort_keys=True, default=str)


def mid_evaluations(epochs: int, every: int) -> int:
    """Evaluations during training: after every ``every``-th epoch except the last one."""
    return (epochs - 1) // every if every and epochs > 0 else 0


def cpu_seconds(spec: RunSpec, wall_s: float) -> float:
    """Wall seconds times the threads the run computes with."""
    return wall_s * (spec.train.threads or os.cpu_count() or 1)


@dataclass(frozen=True)
class _Sample:
    epochs: int
    every: int
    wall_s: float
    fixed_s: float | None          # wall minus training and mid-training evaluation
    per_epoch_s: float | None
    per_eval_s: float | None


@dataclass(frozen=True)
class Calibration:
    """One configuration timed on this machine (see :func:`calibrate`)."""

    prepare_s: float
    steps_per_epoch: int
    step_s: float
    eval_s: float
    measured: str                   # what was measured, for the user

    def estimate(self, spec: RunSpec) -> float:
        t = spec.train
        return (self.prepare_s + t.epochs * self.steps_per_epoch * self.step_s
                + (mid_evaluations(t.epochs, t.eval_every) + 1) * self.eval_s)


class EtaModel:
    """Remaining-time estimates from finished runs (see the module docstring)."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[_Sample]] = {}
        self._calibrated: dict[str, Calibration] = {}

    def add(self, spec: RunSpec, wall_s: float, rec: Mapping[str, Any] | None = None) -> None:
        """Learn from a finished run (``rec``: its record, for the per-epoch split)."""
        timing = (rec or {}).get("timing") or {}
        curves = [c for c in (rec or {}).get("curves") or [] if isinstance(c.get("seconds"), (int, float))]
        per_epoch = sum(c["seconds"] for c in curves) / len(curves) if curves else None
        mid = [c["eval_seconds"] for c in curves if isinstance(c.get("eval_seconds"), (int, float))]
        per_eval = (sum(mid) / len(mid)) if mid else timing.get("eval_s")
        fixed = None
        if rec is not None and (per_epoch is not None or spec.train.epochs == 0):
            fixed = wall_s - sum(c["seconds"] for c in curves) - sum(mid)
        self._by_kind.setdefault(kind(spec), []).append(
            _Sample(spec.train.epochs, spec.train.eval_every, wall_s, fixed, per_epoch, per_eval))

    def add_record(self, rec: Mapping[str, Any], option_defaults: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> None:
        """Learn from a finished record read from disk (ok records with a wall time only).

        ``option_defaults`` (modality -> option -> default) fills options a record predates,
        so that it counts as the same kind as a run of today's suite with those defaults."""
        wall = record.run_wall_s(rec)
        if rec.get("status") != "ok" or wall is None:
            return
        try:
            spec = RunSpec.from_dict(rec["spec"])
        except (KeyError, TypeError):
            return
        defaults = (option_defaults or {}).get(spec.modality)
        if defaults is not None:   # today's options only, those a record predates at their default
            spec = dataclasses.replace(spec, options={**defaults, **{k: v for k, v in spec.options.items()
                                                                     if k in defaults}})
        self.add(spec, wall, rec)

    def add_calibration(self, spec: RunSpec, cal: Calibration) -> None:
        self._calibrated[calibration_key(spec)] = cal

    def estimate(self, spec: RunSpec) -> Estimate | None:
        """Wall seconds of ``spec`` with the basis, or None when nothing like it is known."""
        samples = self._by_kind.get(kind(spec), [])
        e, k = spec.train.epochs, spec.train.eval_every
        same = [s.wall_s for s in samples if (s.epochs, s.every) == (e, k)]
        if same:
            return Estimate(sum(same) / len(same), f"same setting, {len(same)} finished run(s)")
        scaled, from_epochs = [], set()
        for s in samples:
            if s.fixed_s is None or (e > 0 and s.per_epoch_s is None):
                continue
            evals = mid_evaluations(e, k) * (s.per_eval_s or 0.0)
            scaled.append(s.fixed_s + e * (s.per_epoch_s or 0.0) + evals)
            from_epochs.add(s.epochs)
        if scaled:
            from_epochs = sorted(from_epochs)
            return Estimate(sum(scaled) / len(scaled),
                            f"scaled to {e} epochs from {len(scaled)} run(s) of "
                            f"{'/'.join(map(str, from_epochs))} epochs")
        cal = self._calibrated.get(calibration_key(spec))
        if cal is not None:
            fixed = [s for s in samples if s.fixed_s is not None]
            if fixed:   # finished runs of this kind (floors) measured preparing and evaluating for real
                fixed_s = sum(s.fixed_s for s in fixed) / len(fixed)
                evals = [s.per_eval_s for s in fixed if s.per_eval_s is not None]
                per_eval = sum(evals) / len(evals) if evals else cal.eval_s
                seconds = fixed_s + e * cal.steps_per_epoch * cal.step_s + mid_evaluations(e, k) * per_eval
                return Estimate(seconds, f"training steps calibrated on this machine; preparation and "
                                         f"evaluation from {len(fixed)} finished run(s)")
            return Estimate(cal.estimate(spec), "calibrated on this machine")
        return None

    def remaining(self, specs: Sequence[RunSpec]) -> float | None:
        """Total wall seconds of ``specs``; unknown ones count as the mean of the known (progress lines)."""
        if not specs:
            return 0.0
        est = [self.estimate(s) for s in specs]
        known = [e.seconds for e in est if e is not None]
        if not known:
            return None
        fill = sum(known) / len(known)
        return sum(fill if e is None else e.seconds for e in est)


def option_defaults(jobs: Sequence[Job]) -> dict[str, dict[str, Any]]:
    """modality -> the adapter's option defaults, for :meth:`EtaModel.add_record`."""
    return {j.spec.modality: {k: o.default for k, o in j.adapter.options.items()} for j in jobs}


def fmt_s(seconds: float | None) -> str:
    """``4.2s``, ``35s``, ``3m05s``, ``2h07m``; '?' for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


# ---- calibration ------------------------------------------------------------------------------

def calibrate(job: Job, *, data_root: str | None = None, steps: int = 3, log: Callable[[str], None] = print
              ) -> Calibration:
    """Time ``job``'s configuration on this machine: prepare the data, count the batches of one
    epoch, time ``steps`` training steps (forward, backward, optimizer; after one warm-up step)
    and one evaluation of the model. Nothing is written to any results folder; the adapter's
    cache goes to a temporary folder (so no cache keyed by the run id is left behind), except
    the shared decoded-data caches of :func:`hardneg.data.cache_dir`."""
    import torch

    from .context import open_run
    from .objective import Objective
    from .train import make_optimizer, train_step, training_numerics

    spec = job.spec
    tmp = tempfile.mkdtemp(prefix="hardneg-calibrate-")
    try:
        ad = job.adapter()
        run = open_run(ad, spec, data_root=data_root, log=lambda m: None, cache_dir=tmp)
        t0 = time.perf_counter()
        ad.prepare(run)
        prepare_s = time.perf_counter() - t0
        model = ad.build_model(run).to(run.device)
        cap = spec.train.max_steps_per_epoch
        n_batches = 0
        for _ in ad.train_batches(run, 0):
            n_batches += 1
            if cap and n_batches >= cap:
                break
        timed, step_s = 0, 0.0
        if n_batches:
            objective = Objective(spec.loss)
            optimizer = make_optimizer(ad.parameters(model), spec)
            model.train()
            with training_numerics(spec.train, run.device):
                for i, batch in enumerate(ad.train_batches(run, 1)):
                    if i > steps:
                        break
                    tic = time.perf_counter()
                    train_step(ad, model, batch, objective, optimizer, run)
                    if i > 0:                       # the first step pays one-off costs
                        step_s += time.perf_counter() - tic
                        timed += 1
            step_s = step_s / timed if timed else 0.0
        model.eval()
        t0 = time.perf_counter()
        ad.evaluate(model, run)
        eval_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    threads = spec.train.threads or torch.get_num_threads()
    try:
        load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        load = ""
    measured = (f"prepare {fmt_s(prepare_s)}, {n_batches} steps/epoch, {step_s:.3f}s/step "
                f"({timed} steps after 1 warm-up), one evaluation {fmt_s(eval_s)}; {threads} thread(s){load}")
    log(f"calibrated {spec.modality}/{spec.dataset} B={spec.train.batch_size} "
        f"({job.spec.run_id} and the runs sharing its configuration): {measured}")
    return Calibration(prepare_s, n_batches, step_s, eval_s, measured)

