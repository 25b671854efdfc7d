"""Conformance kit: checks any :class:`~hardneg.adapters.ModalityAdapter` against the contract.

A new modality runs the kit on itself in its own tests::

    from hardneg.testing import check_adapter

    def test_my_adapter_conforms(tmp_path):
        check_adapter("audio", dataset="tiny", options={"hidden": 8}, data_root=tmp_path)

Each check raises ``AssertionError`` with a message saying which rule of the contract
failed. Every run the kit makes goes the trainer's way: one adapter instance per run,
:func:`hardneg.context.open_run`, ``prepare``, ``build_model``, then batches. The checks:

1. declarations: name, data sets, options (valid defaults, unknown keys and data sets
   rejected with the project's error type), ``default_loss`` keys are LossSpec fields;
2. the first batch: ``score_batch`` returns well-formed scores and masks; the loss is finite
   and trains the parameters; an overridden ``compute_loss`` agrees with the generic path;
   diagnostics come back with ``details=True``; ``count_samples`` counts the batch's items;
3. several batches and epochs through the trainer (``epochs`` epochs of >= 2 batches), then
   ``evaluate``: finite metrics with a stated protocol, trivial baselines named like metrics;
   ``data_fingerprint`` (when implemented) equal to what ``prepare`` recorded;
4. the same seed gives the same training losses;
5. held-out data: with ``run.scramble_test`` (``prepare`` replaces the held-out test rows of
   the data as loaded) the training losses are bit-identical, so pretraining never read the
   evaluation's test rows (for a ``transductive`` adapter, their labels), and the evaluation
   is not, so the scrambled rows are the ones evaluate reports on;
6. the untrained path (``epochs = 0``): evaluate on a freshly built model, no batch drawn;
7. the tail batch: epochs whose last batch would hold a single item (batch sizes chosen from
   the item count at the smallest batch size) never yield a one-item batch, and every batch
   gives each anchor a positive and a negative.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from . import adapters as registry
from .adapters import Metric, ModalityAdapter, Option, RunContext, ScoreBatch, open_run
from .errors import ConfigError, HardnegError
from .objective import Objective
from .spec import LossSpec, RunSpec, TrainSpec
from .train import train


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


class _Kit:
    """One adapter class, data set and options; each method is one kind of run."""

    def __init__(self, cls: type[ModalityAdapter], spec: RunSpec, data_root: Path, atol: float) -> None:
        self.cls, self.spec, self.data_root, self.atol = cls, spec, data_root, atol
        self.where = f"{cls.name}: "

    def open(self, spec: RunSpec | None = None, *, scramble: bool = False) -> tuple[ModalityAdapter, RunContext]:
        ad = self.cls()
        run = open_run(ad, spec or self.spec, data_root=self.data_root, log=lambda _m: None, device="cpu")
        run.scramble_test = scramble
        ad.prepare(run)
        return ad, run

    def first_batch(self) -> dict[str, Any]:
        w = self.where
        ad, run = self.open()
        model = ad.build_model(run).to(run.device)
        model.train()
        params = [p for p in ad.parameters(model) if p.requires_grad]
        assert params, f"{w}the model has no trainable parameters"
        batch = next(iter(ad.train_batches(run, 0)), None)
        assert batch is not None, f"{w}train_batches yielded no batch for batch_size={self.spec.train.batch_size}"
        objective = Objective(self.spec.loss)
        torch.manual_seed(1)
        sb = ad.score_batch(model, batch, run)
        check_score_batch(sb, w)
        generic = objective(sb)
        torch.manual_seed(1)
        out = ad.compute_loss(model, batch, objective, run)
        value, ref = float(out.loss.detach()), float(generic.loss.detach())
        assert math.isfinite(value), f"{w}the loss is not finite: {value}"
        assert abs(value - ref) <= self.atol * max(1.0, abs(ref)), \
            f"{w}compute_loss ({value:.6f}) disagrees with objective(score_batch) ({ref:.6f})"
        out.loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"{w}no parameter received a gradient"
        assert all(torch.isfinite(g).all() for g in grads), f"{w}a gradient is not finite"
        assert any(g.abs().sum() > 0 for g in grads), f"{w}all gradients are zero"
        torch.manual_seed(1)
        detailed = ad.compute_loss(model, batch, objective, run, details=True)
        assert isinstance(detailed.diagnostics, dict) and "ess" in detailed.diagnostics, \
            f"{w}compute_loss(details=True) must return the core's diagnostics"
        counted = ad.count_samples(batch)
        assert isinstance(counted, int) and not isinstance(counted, bool) and counted >= 2, \
            (f"{w}count_samples must return the number of data items in a batch (>= 2), got {counted!r}; "
             "the trainer's throughput and the kit's tail-batch check use it")
        fp = ad.data_fingerprint(run.data_root, self.spec.dataset, run.options)
        if fp is not None:
            recorded = {k: run.data_checksums.get(k) for k in fp}
            assert recorded == fp, (f"{w}data_fingerprint {fp} differs from the data_checksums prepare() recorded "
                                    f"{dict(run.data_checksums)}")
        return {"loss": value}

    def trained(self, *, epochs: int, scramble: bool = False, evaluate: bool = True
                ) -> tuple[list[float], list[Metric]]:
        """Train ``epochs`` epochs through the trainer, then evaluate; (losses, metrics)."""
        w = self.where
        ad, run = self.open(scramble=scramble)
        model = ad.build_model(run).to(run.device)
        trivial = ad.trivial_baselines(run)
        assert isinstance(trivial, list) and all(isinstance(m, Metric) for m in trivial), \
            f"{w}trivial_baselines must return a list of Metric"
        curves = train(ad, model, run, Objective(self.spec.loss))["curves"]
        assert len(curves) == epochs, f"{w}the trainer ran {len(curves)} of {epochs} epochs"
        for c in curves:
            assert c["steps"] >= 2, (f"{w}epoch {c['epoch']} had {c['steps']} batch(es); the kit needs a data set "
                                     f"with at least 2 batches of batch_size={self.spec.train.batch_size}")
        losses = [c["loss"] for c in curves]
        if not evaluate:
            return losses, []
        model.eval()
        try:
            metrics = ad.evaluate(model, run)
        except HardnegError:
            if scramble:  # evaluating scrambled rows may legitimately fail: it did reach them
                return losses, []
            raise
        if not scramble:
            self.check_metrics(metrics, trivial)
        return losses, metrics

    def check_metrics(self, metrics: Any, trivial: list[Metric] = ()) -> None:
        w = self.where
        assert isinstance(metrics, list) and metrics, f"{w}evaluate must return a non-empty list of Metric"
        for m in metrics:
            assert isinstance(m, Metric), f"{w}evaluate returned {type(m).__name__}, not Metric"
            assert math.isfinite(m.value), f"{w}metric {m.name} is not finite"
            assert m.protocol, f"{w}metric {m.name} does not state its protocol"
        names = {m.name for m in metrics}
        for t in trivial:
            assert t.name in names, f"{w}trivial baseline {t.name!r} is not named like any metric ({sorted(names)})"

    def untrained(self) -> list[str]:
        w = self.where
        spec = dataclasses.replace(self.spec, train=dataclasses.replace(self.spec.train, epochs=0))
        ad, run = self.open(spec)
        drawn: list[int] = []
        original = ad.train_batches
        ad.train_batches = lambda run, epoch: drawn.append(epoch) or original(run, epoch)  # type: ignore[method-assign]
        model = ad.build_model(run).to(run.device)
        assert train(ad, model, run, Objective(spec.loss))["curves"] == [], f"{w}epochs=0 must not train"
        assert not drawn, f"{w}the untrained path drew training batches"
        model.eval()
        metrics = ad.evaluate(model, run)
        self.check_metrics(metrics)
        return [m.name for m in metrics]

    def tail_batches(self) -> list[int]:
        """Batch sizes whose last batch would hold one item; each epoch checked batch by batch."""
        w = self.where
        first, items = None, 0
        for b in (2, 3, 4):
            try:
                sizes_b = self.epoch_items(b)
            except ConfigError:
                continue        # the adapter needs larger batches
            first, items = b, sum(sizes_b)
            break
        assert first is not None, f"{w}no batch size of 2 to 4 is accepted"
        # the data set holds between `items` and `items + first - 1` items (a tail may be dropped)
        tried = []
        for n in range(items, items + first):
            b = n - 1
            if b >= max(first, 2) and b not in tried:
                self.epoch_items(b)
                tried.append(b)
        return [first] + tried

    def epoch_items(self, b: int) -> list[int]:
        w = self.where
        spec = dataclasses.replace(self.spec, train=dataclasses.replace(self.spec.train, batch_size=b))
        ad, run = self.open(spec)
        model = ad.build_model(run).to(run.device)
        objective = Objective(spec.loss)
        counts = []
        for k, batch in enumerate(ad.train_batches(run, 0)):
            n = ad.count_samples(batch)
            assert isinstance(n, int) and n >= 2, \
                f"{w}batch {k} of an epoch at batch_size={b} holds {n} item(s); a batch needs at least 2"
            check_score_batch(ad.score_batch(model, batch, run), f"{w}batch {k} at batch_size={b}: ")
            out = ad.compute_loss(model, batch, objective, run)
            assert math.isfinite(float(out.loss.detach())), f"{w}batch {k} at batch_size={b}: the loss is not finite"
            counts.append(n)
        assert counts, f"{w}an epoch at batch_size={b} yielded no batch"
        return counts


def check_adapter(name_or_cls: str | type[ModalityAdapter], *, dataset: str, options: Mapping[str, Any] | None = None,
                  data_root: str | os.PathLike, batch_size: int = 8, loss: LossSpec | None = None,
                  evaluate: bool = True, epochs: int = 2, atol: float = 1e-4) -> dict[str, Any]:
    """Run the conformance checks (module docstring) on one adapter with one small data set.

    ``batch_size`` must give at least two batches per epoch. ``evaluate=False`` skips the
    checks that evaluate (3's metrics, 5, 6). Returns a small report (first-batch loss,
    metric names, the tail batch sizes tried) for the caller's own assertions.
    """
    cls = name_or_cls if isinstance(name_or_cls, type) else registry.adapter_class(name_or_cls)
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
    assert isinstance(adapter.check_data(Path(data_root)), list), f"{where}check_data must return a list of DataStatus"
    unknown = sorted(set(adapter.default_loss) - {f.name for f in dataclasses.fields(LossSpec)})
    assert not unknown, f"{where}default_loss has keys that are not LossSpec fields: {unknown}"

    loss = loss or LossSpec(**{**dataclasses.asdict(LossSpec()), **dict(adapter.default_loss),
                               "beta": 1.0, "tau_plus": 0.1})
    spec = RunSpec(modality=name, dataset=dataset, seed=0, loss=loss,
                   train=TrainSpec(epochs=epochs, batch_size=batch_size, threads=0), options=dict(options or {}))
    kit = _Kit(cls, spec, Path(data_root), atol)
    report: dict[str, Any] = kit.first_batch()
    losses, metrics = kit.trained(epochs=epochs, evaluate=evaluate)
    again, _ = kit.trained(epochs=epochs, evaluate=False)
    assert again == losses, f"{where}the same seed gave different training losses ({losses} vs {again})"
    if evaluate:
        scrambled, metrics_s = kit.trained(epochs=epochs, scramble=True)
        what = "labels" if cls.transductive else "rows"
        assert scrambled == losses, (f"{where}training changed when the evaluation's test {what} were scrambled "
                                     f"({losses} vs {scrambled}): pretraining reads the held-out test {what}")
        before = [(m.name, m.value, m.std) for m in metrics]
        assert [(m.name, m.value, m.std) for m in metrics_s] != before, \
            (f"{where}evaluate gave the same numbers with run.scramble_test ({before}): prepare does not replace "
             "the test rows evaluate reports on")
        report["untrained_metrics"] = kit.untrained()
    report["metrics"] = [m.name for m in metrics]
    report["tail_batch_sizes"] = kit.tail_batches()
    return report
