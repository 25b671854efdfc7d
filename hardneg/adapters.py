"""The modality-adapter contract, the registry, and the plugin API in one import.

A modality is one class that subclasses :class:`ModalityAdapter` and registers a name,
either with :func:`register` (built-ins and tests) or through the entry-point group
``hardneg.modalities`` (third-party packages)::

    [project.entry-points."hardneg.modalities"]
    audio = "my_package.audio:AudioAdapter"

Everything a plugin needs is importable from here: :class:`ModalityAdapter`, :class:`Option`,
:class:`ScoreBatch`, :class:`Metric`, :class:`DataStatus`, :class:`RunContext`, and the
settings it reads, :class:`RunSpec` / :class:`TrainSpec` / :class:`LossSpec`.

Contract (one adapter instance serves one run; the trainer calls, in this order):

1. ``prepare(run)``        load data from ``run.data_root`` (read-only), caches under ``run.cache_dir``;
   fill ``run.data_checksums``.
2. ``trivial_baselines(run)`` (optional) numbers that need no representation.
3. ``build_model(run)``    the encoder (and heads) as one ``nn.Module``, initialised from the seeded RNG.
4. ``train_batches(run, epoch)``  an iterable of batches for one epoch, randomness from ``run.generator``;
   not called when ``train.epochs = 0`` (the untrained floor).
5. ``compute_loss(model, batch, objective, run)`` per batch; the default calls
   ``score_batch(model, batch, run)`` -> :class:`ScoreBatch` (scores, positive and negative
   masks) and the loss core. An adapter may override ``compute_loss`` with a faster path
   that gives the same value.
6. ``evaluate(model, run)`` -> list of :class:`Metric`: the downstream protocol on the frozen
   model (in eval mode); also every ``train.eval_every`` epochs when set.

Device: the trainer moves the model (``build_model(run).to(run.device)``), nothing else. The
adapter puts its batches on ``run.device`` (in ``train_batches`` or ``score_batch``) and its
evaluation data too.

Autocast: the trainer runs ``compute_loss`` inside ``torch.autocast(run.device.type,
torch.bfloat16)`` when ``train.amp`` is 'bf16', or 'auto' on CUDA; elsewhere in float32. The
loss core casts the scores it is given to float32 (the fused two-view form still runs its own
matmul in bf16 under autocast, a known issue of the loss core). ``evaluate`` runs outside
autocast: an adapter that wants bf16 evaluation enters it itself (as the image adapter does
on CUDA unless ``amp = 'off'``).

Batches: every anchor of a batch needs at least one positive and one negative, so a batch of
one item is never valid. ``train.batch_size >= 2`` is enforced; ``train_batches`` must not
yield a one-item tail: drop it (image, sentence) or fold it into the previous batch (graph).
An adapter that needs more (quick-thought: 3) refuses smaller batch sizes in ``prepare`` with
a :class:`~hardneg.errors.ConfigError`.

Held-out data: the evaluation's test rows never reach pretraining. An adapter whose protocol
pretrains on the evaluated inputs themselves (InfoGraph: every graph, labels unseen) sets
``transductive = True``; then the test labels must not reach the loss. The conformance kit
(:func:`hardneg.testing.check_adapter`) tests this with ``run.scramble_test``: when it is True,
``prepare`` replaces the held-out test rows (inputs and labels; a transductive adapter: the
labels) by other values in the data as loaded, before anything is derived from it (pretraining
sets, vocabularies, statistics). Training must then be bit-identical and evaluation not.

Options: ``options`` maps each adapter-specific setting to an :class:`Option` (default,
type, allowed values or range, help, whether it matters only to training). Suites set them;
:meth:`ModalityAdapter.resolve_options` fills defaults and rejects unknown keys and bad
values with a message naming both.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from .context import RunContext, open_run
from .errors import ConfigError, DataError, HardnegError, interval_text
from .spec import LossSpec, RunSpec, TrainSpec

if TYPE_CHECKING:  # pragma: no cover
    from .losses import LossOutput
    from .objective import Objective

__all__ = ["ModalityAdapter", "Option", "ScoreBatch", "Metric", "DataStatus", "RunContext", "RunSpec",
           "TrainSpec", "LossSpec", "open_run", "register", "available", "get", "adapter_class"]

ENTRY_POINT_GROUP = "hardneg.modalities"


@dataclass(frozen=True)
class Option:
    """Schema of one adapter option.

    default: the value when a suite does not set it (its type is the option's type unless
        ``type`` says otherwise; an int default accepts ints only, a float default ints too).
    help: one line for ``hardneg list`` and error messages.
    choices: the allowed values, if a closed set.
    low, high: numeric bounds; inclusive unless ``low_inclusive`` / ``high_inclusive`` is False.
    type: a type or tuple of types, when the default's type is not the right one.
    training_only: the option matters only while training (a view pipeline, a training-only
        score form): a suite's ``random_init`` floor is then made once, with the option's
        un-swept value, instead of once per swept value.
    added_later: the option was added after records existed. A run id hashes the resolved
        options, so adding one changes every id; a finished record written before it existed
        (without the key) is then recognised as the run with the option at its default.

    NaN and inf are refused for every numeric option.
    """

    default: Any
    help: str = ""
    choices: Sequence[Any] | None = None
    low: float | None = None
    high: float | None = None
    type: type | tuple[type, ...] | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    training_only: bool = False
    added_later: bool = False

    def check(self, key: str, value: Any, where: str = "") -> Any:
        """``value`` if allowed (an int widened to float for a float option), else ConfigError."""
        expected = self.type or (type(self.default) if self.default is not None else None)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and value is not None:
            ok_types = expected if isinstance(expected, tuple) else (expected,)
            if isinstance(value, bool) and bool not in ok_types:
                ok = False
            else:
                ok = isinstance(value, ok_types)
            if not ok:
                names = "/".join(t.__name__ for t in ok_types)
                raise ConfigError(f"{where}{key}={value!r} has the wrong type; allowed: {names}"
                                  + (f" ({self.help})" if self.help else ""))
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}{key}={value} is not allowed; allowed: a finite number")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}{key}={value!r} is not allowed; allowed: "
                              + ", ".join(repr(c) for c in self.choices))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            too_low = self.low is not None and (value < self.low if self.low_inclusive else value <= self.low)
            too_high = self.high is not None and (value > self.high if self.high_inclusive else value >= self.high)
            if too_low or too_high:
                raise ConfigError(f"{where}{key}={value!r} is out of range; allowed: "
                                  + interval_text(key, self.low, self.high, self.low_inclusive, self.high_inclusive))
        return value


@dataclass
class ScoreBatch:
    """What the loss core consumes: similarities plus masks.

    scores:   (A, C) similarities between A anchors and C candidates (cosine or raw inner product).
    pos_mask: (A, C) bool, True where the candidate is a positive of the anchor (>= 1 per row).
    neg_mask: (A, C) bool, True where it is a negative (>= 1 per row); disjoint from pos_mask.
    score_kind: 'cosine' (bounded in [-1, 1], the floor uses -1/t) or 'raw' (unbounded).
    anchor_labels / candidate_labels: optional class labels, for diagnostics only (never training).
    """

    scores: torch.Tensor
    pos_mask: torch.Tensor
    neg_mask: torch.Tensor
    score_kind: str = "cosine"
    anchor_labels: torch.Tensor | None = None
    candidate_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class Metric:
    """One evaluation number with the protocol that produced it.

    name: e.g. 'linear_top1', 'svc_acc', 'MR_acc'. split: 'test', 'cv', 'val'.
    protocol: a short human statement ('RBF SVC, outer stratified 10-fold, inner 5-fold grid C').
    selection: 'last-epoch' unless stated (a best-epoch number says 'selected-on-test';
        a trivial baseline 'trivial').
    std: spread within this run (e.g. across CV folds), if any.
    higher_is_better: which way ``train.eval_every`` picks the best epoch (not recorded).
    """

    name: str
    value: float
    split: str = "test"
    protocol: str = ""
    selection: str = "last-epoch"
    std: float | None = None
    higher_is_better: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The record's form: ``{metric, value, split, protocol, selection, std}`` (NaN -> null)."""
        v = float(self.value)
        return {"metric": self.name, "value": v if math.isfinite(v) else None, "split": self.split,
                "protocol": self.protocol, "selection": self.selection, "std": self.std}


@dataclass
class DataStatus:
    """Presence of one data set under the data root, for ``hardneg data check``."""

    dataset: str
    present: bool
    path: str
    detail: str = ""   # what is missing and how to get it


class ModalityAdapter(abc.ABC):
    """Base class of a modality. Subclasses set ``name``, ``options`` and implement the methods.

    Class attributes:
        name: the registered modality name (a suite's ``[NAME]`` table).
        options: option name -> :class:`Option`.
        default_loss: :class:`LossSpec` fields this modality defaults to (any of objective,
            beta, tau_plus, temperature, floor, hardness, multi_positive, jsd_convention), merged
            under the suite's ``[loss]`` tables.
        headline_metrics: the metrics a report's verdict is about (empty: the first metric).
        transductive: the protocol pretrains on the evaluated inputs (labels unseen); see the
            module docstring.
        retired_options: options the adapter no longer has, with the value records made while it
            had them carry: such a record still counts as today's run (run ids hash the options).
    """

    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    default_loss: ClassVar[Mapping[str, Any]] = {}
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    transductive: ClassVar[bool] = False
    retired_options: ClassVar[Mapping[str, Any]] = {}

    # ---- discovery -------------------------------------------------------------------
    @abc.abstractmethod
    def datasets(self) -> list[str]:
        """Names of the data sets this adapter can load."""

    def check_data(self, data_root: Path) -> list[DataStatus]:
        """Which of :meth:`datasets` are present under ``data_root``; override to be precise."""
        return [DataStatus(d, False, str(data_root), "no check implemented") for d in self.datasets()]

    def fetch_data(self, data_root: Path, dataset: str, options: Mapping[str, Any] | None = None, *,
                   allow: bool | None = True, log: Callable[[str], None] = print) -> None:
        """Download what a run on ``dataset`` (with resolved ``options``, None = defaults) reads
        into ``data_root``, unless present (``hardneg data fetch``, ``hardneg run --download``).

        ``allow`` None defers to ``HARDNEG_ALLOW_DOWNLOAD``. Raises :class:`DataError` naming
        the URL and file on failure, leaving ``data_root`` without half-written files.
        """
        raise DataError(f"modality {self.name!r} cannot download {dataset!r}; place it under {data_root} by hand "
                        "(hardneg data check shows where)")

    def data_fingerprint(self, data_root: Path, dataset: str, options: Mapping[str, Any]) -> dict[str, str] | None:
        """The ``data_checksums`` a run on ``dataset`` would record now, computed without
        loading the data (cheap: it is asked for every finished record a suite reuses), or
        None when that cannot be known before ``prepare``. The runner compares it with
        finished records and reruns or refuses those whose data changed. Default: None."""
        return None

    def resolve_options(self, given: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Defaults filled, unknown keys and bad values rejected (message names key and allowed)."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ConfigError(f"{where}unknown option(s) {', '.join(unknown)} for modality {self.name!r}; "
                              f"allowed: {', '.join(sorted(self.options))}")
        out = {}
        for key, opt in self.options.items():
            out[key] = opt.check(key, given[key], where) if key in given else opt.default
        return out

    def check_dataset(self, dataset: str) -> None:
        """ConfigError unless ``dataset`` is known or accepted as custom."""
        known = self.datasets()
        if dataset not in known and not self.accepts_custom_dataset(dataset):
            raise ConfigError(f"unknown {self.name} data set {dataset!r}; allowed: {', '.join(known)}")

    def accepts_custom_dataset(self, dataset: str) -> bool:
        """Override to accept names outside :meth:`datasets` (e.g. 'folder:PATH')."""
        return False

    # ---- the run ---------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, run: RunContext) -> None:
        """Load data for ``run.spec.dataset``; fill ``run.data_checksums``. With ``run.scramble_test``
        (the conformance kit), replace the held-out test rows as loaded (module docstring)."""

    @abc.abstractmethod
    def build_model(self, run: RunContext) -> nn.Module:
        """Build the encoder and heads, initialised from the seeded RNG (the trainer moves it to the device)."""

    @abc.abstractmethod
    def train_batches(self, run: RunContext, epoch: int) -> Iterable[Any]:
        """Batches of one training epoch, on ``run.device``, none of one item (see the module docstring)."""

    @abc.abstractmethod
    def score_batch(self, model: nn.Module, batch: Any, run: RunContext) -> ScoreBatch:
        """Forward one batch into scores and masks for the loss core."""

    def compute_loss(self, model: nn.Module, batch: Any, objective: "Objective", run: RunContext,
                     *, details: bool = False) -> "LossOutput":
        """Loss of one batch. Default: ``objective(self.score_batch(...))``."""
        return objective(self.score_batch(model, batch, run), details=details)

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, run: RunContext) -> list[Metric]:
        """The downstream protocol on the frozen model."""

    def trivial_baselines(self, run: RunContext) -> list[Metric]:
        """Numbers that need no representation at all, on the run's own evaluation data and
        protocol (majority-class accuracy, always answering 'paraphrase' on MRPC, ...), named
        like the metrics they stand beside. Called after :meth:`prepare`; the record keeps
        them and the report sets them beside every table. Default: none."""
        return []

    def count_samples(self, batch: Any) -> int | None:
        """Data items in ``batch`` (throughput; the kit's tail-batch check needs it). None:
        the trainer counts the loss's anchors."""
        return None

    def parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """Parameters the optimizer trains (default: all)."""
        return model.parameters()

    def method_name(self, spec: RunSpec) -> str:
        """The method label of a run in records, logs and reports: the one place it is
        decided (default :attr:`RunSpec.method`, 'random-init' for ``epochs = 0``). Adapters
        whose untrained runs are something else (a pretrained model, a frozen bag of random
        vectors) say so here."""
        return spec.method


# ---- registry ------------------------------------------------------------------------
_REGISTRY: dict[str, type[ModalityAdapter] | str] = {}
_ENTRY_POINTS_LOADED = False


def register(name: str, adapter: type[ModalityAdapter] | str, *, replace: bool = False) -> None:
    """Register an adapter class (or a lazy 'module:Class' path) under ``name``."""
    if not replace and name in _REGISTRY and _REGISTRY[name] is not adapter:
        raise HardnegError(f"modality {name!r} is already registered; pass replace=True to override it")
    _REGISTRY[name] = adapter


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)


BUILTIN = {
    "image": "modalities.image:ImageAdapter",
    "graph": "modalities.graph:GraphAdapter",
    "sentence": "modalities.sentence:SentenceAdapter",
}
for _n, _p in BUILTIN.items():
    _REGISTRY.setdefault(_n, _p)


def available() -> list[str]:
    """Registered modality names (built-ins and entry points)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def adapter_class(name: str) -> type[ModalityAdapter]:
    """The adapter class registered as ``name`` (imported on first use)."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown modality {name!r}; allowed: {', '.join(available())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        import importlib
        module, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise HardnegError(f"modality {name!r} is registered as {target!r}, which cannot be loaded: {exc}") from exc
        _REGISTRY[name] = target
    return target


def get(name: str) -> ModalityAdapter:
    """A fresh adapter instance for modality ``name``."""
    return adapter_class(name)()
