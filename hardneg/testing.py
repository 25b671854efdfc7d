"""Conformance kit: checks any :class:`~hardneg.adapters.ModalityAdapter` against the contract.

A new modality runs the kit on itself in its own tests::

    from hardneg.testing import check_adapter

    def test_my_adapter_conforms(tmp_path):
        check_adapter("audio", dataset="tiny", options={"hidden": 8}, data_root=tmp_path)

Each check raises ``AssertionError`` with a message saying which rule of the contract
failed. The checks: declared options are valid and validated; unknown data sets and
options are rejected with the project's error type; ``score_batch`` returns well-formed
scores and masks; the loss is finite and trains the parameters; an overridden
``compute_loss`` (a fast path) agrees with the generic path through ``score_batch``; the
same seed gives the same loss; ``evaluate`` returns finite metrics with a stated protocol.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from . import adapters as registry
from .adapters import Metric, ModalityAdapter, Option, RunContext, ScoreBatch
from .data import cache_dir
from .errors import ConfigError, HardnegError
from .losses import Objective
from .spec import LossSpec, RunSpec, TrainSpec
from .train import seed_everything


def _context(adapter: ModalityAdapter, spec: RunSpec, data_root: Path) -> RunContext:
    options = adapter.resolve_options(spec.options)
    return RunContext(spec=spec, options=options, data_root=Path(data_root), cache_dir=cache_dir(spec.modality),
                      device=torch.device("cpu"), generator=seed_everything(spec.seed), log=lambda _m: None)


def _first_batch(adapter: ModalityAdapter, spec: RunSpec, data_root: Path):
    run = _context(adapter, spec, data_root)
    adapter.prepare(run)
    model = adapter.build_model(run)
    model.train()
    batch = next(iter(adapter.train_batches(run, 0)), None)
    assert batch is not None, f"{spec.modality}: train_batches yielded no batch for batch_size={spec.train.batch_size}"
    return run, model, batch


def check_score_batch(sb: Any, where: str = "") -> None:
    """The ScoreBatch rules: shapes, dtypes, disjoint masks, >= 1 positive and negative per anchor."""
    assert isinstance(sb, ScoreBatch), f"{where}score_batch must return a ScoreBatch, got {type(sb).__name__}"
    s = sb.scores
    assert s.dim() == 2, f"{where}scores must be (anchors x candidates), got shape {tuple(s.shape)}"
    assert s.is_floating_point(), f"{where}scores must be floating point, got {s.dtype}"
    assert torch.isfinite(s).all(), f"{where}scores contain NaN or inf"
    for name, m in (("pos_mask", sb.pos_mask), ("neg_mask", sb.neg_mask)):
        assert m.dtype == torch.bool, f"{where}{name} must be bool, got {m.dtype}"
        assert m.shape == s.shape, f"{where}{name} shape {tuple(m.shape)} != scores {tuple(s.shape)}"
    assert not (sb.pos_mask & sb.neg_mask).any(), f"{where}a candidate is both positive and negative"
    assert sb.pos_mask.any(1).all(), f"{where}an anchor has no positive"
    assert sb.neg_mask.any(1).all(), f"{where}an anchor has no negative"
    assert sb.score_kind in ("cosine", "raw"), f"{where}score_kind must be 'cosine' or 'raw', got {sb.score_kind!r}"
    if sb.score_kind == "cosine":
        assert s.abs().max() <= 1 + 1e-3, f"{where}score_kind='cosine' but |score| reaches {float(s.abs().max()):.3f}"
    assert s.requires_grad, f"{where}scores must carry gradients to the model"
    if sb.anchor_labels is not None:
        assert sb.anchor_labels.shape[0] == s.shape[0], f"{where}anchor_labels must have one label per anchor"
    if sb.candidate_labels is not None:
        assert sb.candidate_labels.shape[0] == s.shape[1], f"{where}candidate_labels must have one per candidate"


def check_adapter(name_or_cls: str | type[ModalityAdapter], *, dataset: str, options: Mapping[str, Any] | None = None,
                  data_root: str | os.PathLike, batch_size: int = 8, loss: LossSpec | None = None,
                  evaluate: bool = True, atol: float = 1e-4) -> dict[str, Any]:
    """Run the conformance checks on one adapter with one (small) data set and options.

    Returns a small report (first-batch loss, metric names) for the caller's own assertions.
    """
    cls = name_or_cls if isinstance(name_or_cls, type) else type(registry.get(name_or_cls))
    adapter = cls()
    name = adapter.name
    assert isinstance(name, str) and name, "adapter.name must be a non-empty string"
    where = f"{name}: "

    ds = adapter.datasets()
    assert isinstance(ds, list) and ds and all(isinstance(d, str) for d in ds), f"{where}datasets() must list names"
    for key, opt in adapter.options.items():
        assert isinstance(opt, Option), f"{where}options[{key!r}] must be an Option"
        opt.check(key, opt.default, where)
    assert adapter.resolve_options({}) == {k: o.default for k, o in adapter.options.items()}, \
        f"{where}resolve_options({{}}) must return the defaults"
    try:
        adapter.resolve_options({"__no_such_option__": 1})
    except ConfigError as exc:
        assert "__no_such_option__" in str(exc), f"{where}the unknown-option error must name the key"
    else:
        raise AssertionError(f"{where}resolve_options accepted an unknown key")
    try:
        adapter.check_dataset("__no_such_dataset__")
    except HardnegError as exc:
        assert "__no_such_dataset__" in str(exc), f"{where}the unknown-data-set error must name it"
    else:
        raise AssertionError(f"{where}check_dataset accepted an unknown data set")
    statuses = adapter.check_data(Path(data_root))
    assert isinstance(statuses, list), f"{where}check_data must return a list of DataStatus"

    base_loss = dict(adapter.default_loss)
    loss = loss or LossSpec(**{**dataclasses.asdict(LossSpec()), **base_loss, "beta": 1.0, "tau_plus": 0.1})
    spec = RunSpec(modality=name, dataset=dataset, seed=0, loss=loss,
                   train=TrainSpec(epochs=1, batch_size=batch_size, threads=0), options=dict(options or {}))
    objective = Objective(spec.loss)

    run, model, batch = _first_batch(adapter, spec, Path(data_root))
    params = [p for p in adapter.parameters(model) if p.requires_grad]
    assert params, f"{where}the model has no trainable parameters"

    torch.manual_seed(1)
    sb = adapter.score_batch(model, batch, run)
    check_score_batch(sb, where)
    generic = objective(sb)
    torch.manual_seed(1)
    out = adapter.compute_loss(model, batch, objective, run)
    assert torch.isfinite(out.loss), f"{where}the loss is not finite: {float(out.loss.detach())}"
    assert abs(float(out.loss.detach()) - float(generic.loss.detach())) <= atol * max(1.0, abs(float(generic.loss.detach()))), \
        f"{where}compute_loss ({float(out.loss.detach()):.6f}) disagrees with objective(score_batch) ({float(generic.loss.detach()):.6f})"
    out.loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, f"{where}no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), f"{where}a gradient is not finite"
    assert any(g.abs().sum() > 0 for g in grads), f"{where}all gradients are zero"
    torch.manual_seed(1)
    detailed = adapter.compute_loss(model, batch, objective, run, details=True)
    assert isinstance(detailed.diagnostics, dict) and "ess" in detailed.diagnostics, \
        f"{where}compute_loss(details=True) must return the core's diagnostics"
    counted = adapter.count_samples(batch)
    assert counted is None or (isinstance(counted, int) and counted > 0), f"{where}count_samples must be a positive int"

    # the same seed gives the same first-batch loss
    run2, model2, batch2 = _first_batch(cls(), spec, Path(data_root))
    torch.manual_seed(1)
    again = cls().compute_loss(model2, batch2, objective, run2)
    assert abs(float(again.loss.detach()) - float(out.loss.detach())) <= 1e-5 * max(1.0, abs(float(out.loss.detach()))), \
        f"{where}the same seed gave different losses ({float(out.loss.detach()):.6f} vs {float(again.loss.detach()):.6f})"

    report: dict[str, Any] = {"loss": float(out.loss.detach()), "metrics": []}
    if evaluate:
        model.eval()
        metrics = adapter.evaluate(model, run)
        assert isinstance(metrics, list) and metrics, f"{where}evaluate must return a non-empty list of Metric"
        for m in metrics:
            assert isinstance(m, Metric), f"{where}evaluate returned {type(m).__name__}, not Metric"
            assert math.isfinite(m.value), f"{where}metric {m.name} is not finite"
            assert m.protocol, f"{where}metric {m.name} does not state its protocol"
        report["metrics"] = [m.name for m in metrics]
    return report
