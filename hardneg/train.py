"""The one training loop every modality shares, and :func:`run_spec` for a whole run.

:func:`run_spec` turns a :class:`~hardneg.spec.RunSpec` into what the run measured
(:class:`hardneg.record.Measured`; :func:`execute` wraps it into a whole record)::

    run = open_run(adapter, spec)            # validated, seeded context (hardneg.context)
    adapter.prepare(run)                     # data from the (read-only) data root
    model = adapter.build_model(run)
    train(adapter, model, run, objective)   # optimizer, AMP, diagnostics, curves, checkpoints
    metrics = adapter.evaluate(model, run)   # frozen-encoder protocol of the modality

The loop owns what is common: seeding (a run is bit-reproducible on the same kind of CPU;
see :func:`hardneg.record.processor_kind`), the optimizer
(Adam/AdamW with the spec's lr and weight decay), bf16 autocast on CUDA, gradient
clipping, a non-finite-loss guard, per-epoch loss curves with the loss core's diagnostics,
wall time and peak memory, optional per-epoch checkpoints so that a killed run resumes,
and (``train.eval_every = k``) the adapter's evaluation every k epochs as well, which adds
curves of the downstream metrics and a best-epoch metric labelled as selected on the
evaluation split itself (:func:`best_epoch_metrics`).

Denormals: on CPU, training runs with flush-to-zero (``train.flush_denormal = true``, the
default). Softplus, sigmoid and exp of the large negative scores of InfoGraph's JSD
produce values below 1.2e-38, and x86 arithmetic on those is tens of times slower (the
softplus of a 5k x 128 score matrix: 8 ms instead of 1.2 ms on one core). Flushing them
changes nothing above 1.2e-38; like the thread count, it changes results only at rounding,
so it is not part of the run id. It is switched off again after training, so evaluation
and the caller's own code run with the default.

Under ``torchrun --nproc-per-node N`` (RANK / WORLD_SIZE set; the process group is joined by
:func:`hardneg.distributed.init_from_env`), :func:`train` runs the same loop on every rank:
the model under DistributedDataParallel (``train.sync_batchnorm``: BatchNorm over the global
batch), every rank draws the same seeded global batch of B and keeps its B/N rows
(:func:`hardneg.distributed.shard_batch`; N not dividing B is an error naming both), the
two-view loss takes its negatives from every rank (:class:`~hardneg.distributed.GatheringObjective`),
and the loss a curve or the non-finite guard sees is the global batch's (the mean over
ranks). Rank 0 alone evaluates, writes checkpoints (they name the world size, the processor
kind and the commit; resuming under another is a :class:`CheckpointMismatch`) and returns
what the run measured; the other ranks' :func:`run_spec` returns None.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import distributed, record
from .adapters import Metric, ModalityAdapter, RunContext, adapter_class, open_run
from .errors import HardnegError
from .spec import RunSpec, TrainSpec

if TYPE_CHECKING:  # pragma: no cover
    from .objective import Objective


class TrainingDiverged(HardnegError):
    """The loss became NaN or infinite; the run is recorded as failed."""


class CheckpointMismatch(HardnegError):
    """A checkpoint made under another world size, processor kind or commit; the runner keeps it
    (see :class:`hardneg.executors.RunTask`)."""


def _made_on(device: torch.device) -> dict[str, Any]:
    """What a checkpoint must share with the run resuming it: a record states one processor kind
    and one commit (:mod:`hardneg.record.provenance`), and epochs of another kind round
    differently, so a run resumed elsewhere would claim a provenance it does not have."""
    from .record.provenance import git_info, processor_kind
    return {"device": processor_kind(device), **git_info()}


def _describe(made: Mapping[str, Any] | None) -> str:
    if not made:
        return "an unstated processor kind and commit (a checkpoint of an older hardneg)"
    dirty = " (dirty tree)" if made.get("git_dirty") else ""
    return f"{made.get('device')} at commit {made.get('git_commit')}{dirty}"


def _autocast(device: torch.device, amp: str):
    """bf16 autocast for the loss's forward when ``train.amp`` is 'bf16', or 'auto' on CUDA."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(params, spec: RunSpec) -> torch.optim.Optimizer:
    """Adam or AdamW (``train.optimizer``) with the spec's lr and weight decay."""
    t = spec.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from .atomic import atomic_write
    with atomic_write(path, binary=True) as fh:
        torch.save(state, fh)


@contextlib.contextmanager
def training_numerics(t: TrainSpec, device: torch.device) -> Iterator[None]:
    """Flush denormals to zero on CPU while the block runs (``t.flush_denormal``), then turn it off."""
    ftz = t.flush_denormal and device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if ftz:
            torch.set_flush_denormal(False)


def train_step(adapter: ModalityAdapter, model: nn.Module, batch: Any, objective: "Objective",
               optimizer: torch.optim.Optimizer, run: RunContext, *, details: bool = False,
               where: str = "") -> tuple[Any, float]:
    """One optimizer step on ``batch``: the loss under autocast (``train.amp``), the
    non-finite guard, backward, gradient clipping, the step. Returns (LossOutput, loss value)."""
    t = run.spec.train
    with _autocast(run.device, t.amp):
        out = adapter.compute_loss(model, batch, objective, run, details=details)
    loss = out.loss
    # one host sync per step, used for the guard and the curve; under torchrun the global batch's
    # loss (every rank sees the same value, so a non-finite loss stops all of them at once)
    value = float(distributed.mean_over_ranks(loss.detach()))
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} at {where or 'a step'} "
                               f"(beta={run.spec.loss.beta}, tau_plus={run.spec.loss.tau_plus}, "
                               f"temperature={run.spec.loss.temperature})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    optimizer.step()
    return out, value


def train(adapter: ModalityAdapter, model: nn.Module, run: RunContext, objective: Objective, *,
          progress: bool = False, checkpoint: Path | None = None,
          clock: tuple[float, float] | None = None) -> dict[str, Any]:
    """Train ``model`` for ``run.spec.train.epochs`` epochs; return curves and timings.

    Each curve entry: epoch, loss (mean over the epoch's batches), steps, samples,
    seconds, samples_per_s, and the loss core's diagnostics of the epoch's first batch
    (every ``diagnostics_every`` epochs); with ``eval_every = k``, every k-th epoch's entry
    (the last epoch's excepted: that is the final evaluation) also holds ``eval_<metric>``,
    ``eval_<metric>_std`` and ``eval_seconds``. A non-finite loss raises :class:`TrainingDiverged`.
    With ``checkpoint`` the model, optimizer, RNG and curves are saved after every epoch
    and a run started again resumes from the last saved epoch, only under the world size,
    processor kind and commit that made the checkpoint (else :class:`CheckpointMismatch`).
    Each checkpoint also holds the wall and CPU time the run's processes had spent up to it
    (``clock`` = this process's ``perf_counter()`` and ``process_time()`` when the run began;
    default: when training began); a resumed run returns them as ``earlier`` (wall_s, cpu_s,
    resumed_at_epoch, processes, basis), so that its record counts what the killed processes spent
    up to their last checkpoint (basis 'checkpoint'; 'curves' for a checkpoint of an older
    hardneg, which held no times: its epochs' own seconds, a lower bound).
    """
    spec = run.spec
    t = spec.train
    if t.epochs == 0:          # the random-initialisation floor: nothing to optimise
        return {"curves": [], "train_s": 0.0}
    rank, size = distributed.world()
    if size > 1 and t.batch_size % size:
        raise HardnegError(f"train.batch_size={t.batch_size} cannot be split over world size {size} "
                           f"(torchrun --nproc-per-node); allowed: a batch size that is a multiple of {size}")
    if size > 1 and t.sync_batchnorm and distributed.sync_batchnorm(model, run.device) is not model:
        raise HardnegError("train.sync_batchnorm: the model is itself a BatchNorm layer; allowed: a model "
                           "that contains its BatchNorm layers")
    optimizer = make_optimizer(adapter.parameters(model), spec)
    curves: list[dict[str, Any]] = []
    start_epoch = 0
    earlier = {"wall_s": 0.0, "cpu_s": 0.0, "resumed_at_epoch": 0, "processes": 0}
    state = None
    made_on = _made_on(run.device) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists() and rank == 0:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = distributed.broadcast_object(state)           # every rank resumes from rank 0's checkpoint
    if state is not None:
        made = state.get("world_size", 1)
        if made != size:
            raise CheckpointMismatch(f"checkpoint {checkpoint} was made under world size {made}, this run has "
                                     f"world size {size}; allowed: resume it under {made} process(es) "
                                     f"(torchrun --nproc-per-node {made}; 1 = plain hardneg run), or delete "
                                     "it to start the run over")
        if state.get("made_on") != made_on:
            raise CheckpointMismatch(f"checkpoint {checkpoint} was made on {_describe(state.get('made_on'))}, this "
                                     f"run is on {_describe(made_on)}; a record states one processor kind and one "
                                     "commit; allowed: resume it where it was made, or delete it to start the "
                                     "run over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        curves = state["curves"]
        start_epoch = state["epoch"] + 1
        spent = state.get("spent")
        if spent is None:     # a checkpoint of an older hardneg: its epochs' own seconds, a lower bound
            secs = record.curves_seconds(curves)
            spent = {"wall_s": secs, "cpu_s": secs, "processes": 1, "basis": "curves"}
        earlier = {"wall_s": float(spent["wall_s"]), "cpu_s": float(spent["cpu_s"]), "resumed_at_epoch": start_epoch,
                   "processes": int(spent["processes"]), "basis": spent.get("basis", "checkpoint")}
        run.log(f"resumed from checkpoint at epoch {start_epoch}")
    with training_numerics(t, run.device):
        out = _train_epochs(adapter, model, run, objective, optimizer, curves, start_epoch,
                            progress=progress, checkpoint=checkpoint, made_on=made_on,
                            clock=clock or (time.perf_counter(), time.process_time()), earlier=earlier)
    if earlier["processes"]:
        out["earlier"] = earlier
    return out


def _train_epochs(adapter: ModalityAdapter, model: nn.Module, run: RunContext, objective: Objective,
                  optimizer: torch.optim.Optimizer, curves: list[dict[str, Any]], start_epoch: int, *,
                  progress: bool, checkpoint: Path | None, made_on: Mapping[str, Any] | None,
                  clock: tuple[float, float], earlier: Mapping[str, Any]) -> dict[str, Any]:
    spec = run.spec
    t = spec.train
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=t.epochs, initial=start_epoch, desc=f"{spec.modality}/{spec.dataset}", unit="ep",
                   leave=False, dynamic_ncols=True)
    rank, size = distributed.world()
    net = model if size == 1 else distributed.data_parallel(model, run.device)
    if size > 1:
        objective = distributed.GatheringObjective(objective, spec.modality)
    for epoch in range(start_epoch, t.epochs):
        model.train()
        tic = time.perf_counter()
        total, steps, samples = 0.0, 0, 0
        diag: dict[str, float] = {}
        want_diag = t.diagnostics_every > 0 and epoch % t.diagnostics_every == 0
        for step, batch in enumerate(adapter.train_batches(run, epoch)):
            if t.max_steps_per_epoch and step >= t.max_steps_per_epoch:
                break
            if size > 1:
                shard = getattr(adapter, "shard_batch", None)
                batch = shard(batch, rank, size) if shard else distributed.shard_batch(batch, rank, size)
            try:
                out, value = train_step(adapter, net, batch, objective, optimizer, run,
                                        details=want_diag and step == 0, where=f"epoch {epoch}, step {step}")
            except RuntimeError as exc:
                if size == 1 or not distributed.is_collective_error(exc):
                    raise
                raise distributed.CollectiveFailed(
                    f"rank {rank} of {size}: a collective failed at epoch {epoch}, step {step}; another rank died "
                    f"or did not answer within the process-group timeout ({type(exc).__name__}: {exc})") from exc
            if want_diag and step == 0:
                diag = dict(out.diagnostics)
            total += value
            steps += 1
            counted = adapter.count_samples(batch)
            samples += size * (int(out.per_anchor.shape[0]) if counted is None else int(counted))
        if steps == 0:
            raise HardnegError(f"epoch {epoch} produced no training batch for {spec.modality}/{spec.dataset}; "
                               f"allowed: a data set with at least one batch of train.batch_size={t.batch_size}")
        secs = time.perf_counter() - tic
        entry = {"epoch": epoch, "loss": total / steps, "steps": steps, "samples": samples,
                 "seconds": secs, "samples_per_s": samples / secs if secs > 0 else math.nan}
        entry.update({f"diag_{k}": v for k, v in diag.items()})
        if t.eval_every and (epoch + 1) % t.eval_every == 0 and epoch + 1 < t.epochs and rank == 0:
            entry.update(_evaluate_mid_training(adapter, model, run))
        curves.append(entry)
        if bar is not None:
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
            bar.update(1)
        if checkpoint is not None and rank == 0:
            _save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "generator": run.generator.get_state(),
                                          "torch_rng": torch.get_rng_state(), "curves": curves, "epoch": epoch,
                                          "world_size": size, "made_on": made_on,
                                          "spent": {"wall_s": earlier["wall_s"] + time.perf_counter() - clock[0],
                                                    "cpu_s": earlier["cpu_s"] + time.process_time() - clock[1],
                                                    "processes": earlier["processes"] + 1}})
    if bar is not None:
        bar.close()
    return {"curves": curves, "train_s": sum(c["seconds"] for c in curves)}


def _evaluate_mid_training(adapter: ModalityAdapter, model: nn.Module, run: RunContext) -> dict[str, Any]:
    """The adapter's evaluation after an epoch, leaving training exactly as it would have gone.

    Every random state, the run's counters and details, the train/eval mode and the
    denormal setting are put back, so a run with ``eval_every`` trains the same weights as
    one without (same machine) and its last-epoch metrics are the same numbers.
    """
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(), run.generator.get_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    counters, details = dict(run.counters), copy.deepcopy(run.details)
    ftz = run.spec.train.flush_denormal and run.device.type == "cpu"
    tic = time.perf_counter()
    try:
        if ftz:
            torch.set_flush_denormal(False)        # evaluate as after the last epoch
        model.eval()
        metrics = adapter.evaluate(model, run)
    finally:
        model.train()
        if ftz:
            torch.set_flush_denormal(True)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        run.generator.set_state(states[3])
        if states[4] is not None:
            torch.cuda.set_rng_state_all(states[4])
        run.counters.clear()
        run.counters.update(counters)
        run.details.clear()
        run.details.update(details)
    out: dict[str, Any] = {"eval_seconds": time.perf_counter() - tic}
    for m in metrics:
        out[f"eval_{m.name}"] = float(m.value)
        if m.std is not None:
            out[f"eval_{m.name}_std"] = float(m.std)
    return out


def best_epoch_metrics(final: list[Metric], curves: list[dict[str, Any]], epochs: int, every: int
                       ) -> tuple[list[Metric], dict[str, int]]:
    """``<name>_best`` for every final metric: the best over the evaluated epochs and the last one.

    The best epoch is chosen on the very split the number is reported on (for the graph
    probe, the outer test folds), so it is optimistic by construction; it is labelled
    ``selection='selected-on-test'`` and its protocol names the schedule. Ties go to the
    earliest epoch. Returns the metrics and ``{name_best: epoch}`` (1-based).
    """
    out, at = [], {}
    for m in final:
        points = [(int(e["epoch"]) + 1, e[f"eval_{m.name}"], e.get(f"eval_{m.name}_std")) for e in curves
                  if isinstance(e.get(f"eval_{m.name}"), (int, float))]
        points.append((epochs, float(m.value), m.std))
        finite = [p for p in points if math.isfinite(p[1])]
        if not finite:
            continue
        sign = 1.0 if m.higher_is_better else -1.0
        ep, value, std = max(finite, key=lambda p: (sign * p[1], -p[0]))
        out.append(Metric(f"{m.name}_best", value, split=m.split, std=std, selection="selected-on-test",
                          higher_is_better=m.higher_is_better,
                          protocol=(f"{m.protocol}; the best of the evaluations every {every} epoch(s) and after "
                                    "the last, chosen on the reported split itself")))
        at[f"{m.name}_best"] = ep
    return out, at


def run_spec(spec: RunSpec, *, adapter: type[ModalityAdapter] | None = None,
             data_root: str | os.PathLike | None = None, log: Callable[[str], None] = print,
             progress: bool = False, checkpoint: Path | None = None) -> record.Measured | None:
    """Run one spec end to end with one adapter instance; return what it measured (under
    torchrun: on rank 0; the other ranks train with it, skip the evaluation and return None).

    ``adapter`` is the adapter class (default: the registry's for ``spec.modality``). Errors
    propagate (the runner turns them into failure records). ``epochs = 0`` skips training:
    the run then measures the randomly initialised encoder (the floor).
    """
    from .objective import Objective

    tic, cpu0 = time.perf_counter(), time.process_time()
    cls = adapter or adapter_class(spec.modality)
    ad = cls()
    run = open_run(ad, spec, data_root=data_root, log=log)
    objective = Objective(spec.loss)
    for warning in spec.loss.stability_warnings():
        log(f"warning: {warning}")
    t0 = time.perf_counter()
    ad.prepare(run)
    trivial = [m.to_dict() for m in ad.trivial_baselines(run)]
    prepare_s = time.perf_counter() - t0
    model = ad.build_model(run).to(run.device)
    trained = train(ad, model, run, objective, progress=progress, checkpoint=checkpoint, clock=(tic, cpu0))
    rank, size = distributed.world()
    if rank != 0:
        return None
    if size > 1:
        run.details["world_size"] = size
    t0 = time.perf_counter()
    model.eval()
    metrics = ad.evaluate(model, run)
    if spec.train.eval_every and trained["curves"]:
        best, at = best_epoch_metrics(list(metrics), trained["curves"], spec.train.epochs, spec.train.eval_every)
        metrics = list(metrics) + best
        run.details["best_epoch"] = at
    eval_s = time.perf_counter() - t0
    curves = trained["curves"]
    samples = sum(c["samples"] for c in curves)
    earlier = trained.get("earlier")
    resumed = ({"resumed_at_epoch": earlier["resumed_at_epoch"], "earlier_wall_s": earlier["wall_s"],
                "earlier_cpu_s": earlier["cpu_s"], "earlier_basis": earlier["basis"],
                "processes": earlier["processes"] + 1} if earlier else {})
    return record.Measured(
        method=ad.method_name(spec), adapter=record.adapter_provenance(cls), options=dict(run.options),
        metrics=[m.to_dict() for m in metrics], trivial_baselines=trivial,
        headline_metrics=list(ad.headline_metrics), curves=curves,
        timing={"wall_s": time.perf_counter() - tic + resumed.get("earlier_wall_s", 0.0),
                "cpu_s": time.process_time() - cpu0 + resumed.get("earlier_cpu_s", 0.0),
                "prepare_s": prepare_s, "train_s": trained["train_s"],
                "eval_s": eval_s, "epochs": len(curves),
                "mid_training_eval_s": sum(c.get("eval_seconds", 0.0) for c in curves),
                "train_samples_per_s": samples / trained["train_s"] if trained["train_s"] > 0 else None,
                **resumed},
        memory=record.peak_memory(run.device), device=record.processor_kind(run.device),
        data_checksums=dict(run.data_checksums), counters=dict(run.counters), details=dict(run.details))


def execute(spec: RunSpec, *, data_root: str | os.PathLike | None = None, log: Callable[[str], None] = print,
            progress: bool = False, checkpoint: Path | None = None) -> dict[str, Any]:
    """:func:`run_spec` wrapped into its whole record (status 'ok'; errors propagate)."""
    started, tic = record.utc_now(), time.perf_counter()
    measured = run_spec(spec, data_root=data_root, log=log, progress=progress, checkpoint=checkpoint)
    return record.build(spec, measured, started_at=started, finished_at=record.utc_now(),
                        wall_time_s=time.perf_counter() - tic)
