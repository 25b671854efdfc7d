"""The modality-adapter contract and the registry.

A modality is one class that subclasses :class:`ModalityAdapter` and registers a name,
either with :func:`register` (built-ins and tests) or through the entry-point group
``hardneg.modalities`` (third-party packages)::

    [project.entry-points."hardneg.modalities"]
    audio = "my_package.audio:AudioAdapter"

The adapter owns everything modality-specific; the shared trainer owns the rest.

Contract (one adapter instance serves one run; methods are called in this order):

1. ``prepare(run)``        load data from ``run.data_root`` (read-only), caches under ``run.cache_dir``.
2. ``build_model(run)``    the encoder (and heads) as one ``nn.Module``, already on ``run.device``.
3. ``train_batches(run, epoch)``  an iterable of batches for one epoch, randomness from ``run.generator``.
4. ``score_batch(model, batch, run)`` -> :class:`ScoreBatch`: scores (anchors x candidates),
   a positive mask and a negative mask, for the loss core. ``compute_loss`` calls it; an
   adapter may override ``compute_loss`` for a faster path with the same result.
5. ``evaluate(model, run)`` -> list of :class:`Metric`: the downstream protocol, frozen encoder.

Options: ``options`` maps each adapter-specific setting to an :class:`Option` (default,
type, allowed values or range, help). Suites set them; :meth:`ModalityAdapter.resolve_options`
fills defaults and rejects unknown keys and bad values with a message naming both.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import ConfigError, DataError, HardnegError
from .spec import RunSpec

ENTRY_POINT_GROUP = "hardneg.modalities"


@dataclass(frozen=True)
class Option:
    """Schema of one adapter option: default, type, allowed choices or numeric range."""

    default: Any
    help: str = ""
    choices: Sequence[Any] | None = None
    low: float | None = None
    high: float | None = None
    type: type | tuple[type, ...] | None = None  # inferred from the default when None

    def check(self, key: str, value: Any, where: str = "") -> Any:
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
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}{key}={value!r} is not allowed; allowed: "
                              + ", ".join(repr(c) for c in self.choices))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                lo = "-inf" if self.low is None else f"{self.low:g}"
                hi = "inf" if self.high is None else f"{self.high:g}"
                raise ConfigError(f"{where}{key}={value!r} is out of range; allowed: {lo} <= {key} <= {hi}")
        return value


@dataclass
class ScoreBatch:
    """What the loss core consumes: similarities plus masks.

    scores:   (A, C) similarities between A anchors and C candidates (cosine or raw inner product).
    pos_mask: (A, C) bool, True where the candidate is a positive of the anchor (>= 1 per row).
    neg_mask: (A, C) bool, True where it is a negative (>= 1 per row); disjoint from pos_mask.
    score_kind: 'cosine' (bounded in [-1, 1], the floor uses -1/t) or 'raw' (unbounded).
    anchor_labels / candidate_labels: optional class labels, for diagnostics only (never training).
    num_samples: how many data items the batch holds (for throughput accounting).
    """

    scores: torch.Tensor
    pos_mask: torch.Tensor
    neg_mask: torch.Tensor
    score_kind: str = "cosine"
    anchor_labels: torch.Tensor | None = None
    candidate_labels: torch.Tensor | None = None
    num_samples: int = 0


@dataclass(frozen=True)
class Metric:
    """One evaluation number with the protocol that produced it.

    name: e.g. 'linear_top1', 'svc_acc', 'MR_acc'. split: 'test', 'cv', 'val'.
    protocol: a short human statement ('RBF SVC, outer stratified 10-fold, inner 5-fold grid C').
    selection: 'last-epoch' unless stated (a best-epoch number says 'selected-on-test').
    higher_is_better: which way ``train.eval_every`` picks the best epoch (not recorded).
    """

    name: str
    value: float
    split: str = "test"
    protocol: str = ""
    selection: str = "last-epoch"
    std: float | None = None  # spread within this run (e.g. across CV folds), if any
    higher_is_better: bool = True

    def to_dict(self) -> dict[str, Any]:
        v = float(self.value)
        return {"metric": self.name, "value": v if math.isfinite(v) else None, "split": self.split,
                "protocol": self.protocol, "selection": self.selection, "std": self.std}


@dataclass
class RunContext:
    """Everything an adapter may use during one run."""

    spec: RunSpec
    options: Mapping[str, Any]          # the adapter's resolved options (defaults filled)
    data_root: Path
    cache_dir: Path
    device: torch.device
    generator: torch.Generator          # CPU generator seeded from spec.seed
    log: Callable[[str], None] = print
    counters: dict[str, float] = field(default_factory=dict)   # adapter-reported counts (e.g. truncated)
    data_checksums: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)        # free space for the adapter (not recorded)
    details: dict[str, Any] = field(default_factory=dict)      # JSON-able facts kept in the record

    def count(self, key: str, n: float = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


@dataclass
class DataStatus:
    """Presence of one data set under the data root, for ``hardneg data check``."""

    dataset: str
    present: bool
    path: str
    detail: str = ""   # what is missing and how to get it


class ModalityAdapter(abc.ABC):
    """Base class of a modality. Subclasses set ``name``, ``options`` and implement the methods."""

    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    #: default loss settings for this modality (merged under the suite's [loss] table)
    default_loss: ClassVar[Mapping[str, Any]] = {}
    #: the metrics a report's verdict is about (empty: the first metric a run reports)
    headline_metrics: ClassVar[tuple[str, ...]] = ()

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
        known = self.datasets()
        if dataset not in known and not self.accepts_custom_dataset(dataset):
            raise ConfigError(f"unknown {self.name} data set {dataset!r}; allowed: {', '.join(known)}")

    def accepts_custom_dataset(self, dataset: str) -> bool:
        """Override to accept names outside :meth:`datasets` (e.g. 'folder:PATH')."""
        return False

    # ---- the run ---------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, run: RunContext) -> None:
        """Load data for ``run.spec.dataset``; fill ``run.data_checksums``."""

    @abc.abstractmethod
    def build_model(self, run: RunContext) -> nn.Module:
        """Build the encoder and heads, on ``run.device``, initialised from the seeded RNG."""

    @abc.abstractmethod
    def train_batches(self, run: RunContext, epoch: int) -> Iterable[Any]:
        """Batches of one training epoch."""

    @abc.abstractmethod
    def score_batch(self, model: nn.Module, batch: Any, run: RunContext) -> ScoreBatch:
        """Forward one batch into scores and masks for the loss core."""

    def compute_loss(self, model: nn.Module, batch: Any, objective: "Objective", run: RunContext,
                     *, details: bool = False):
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
        """Data items in ``batch`` for throughput (None: count the loss's anchors)."""
        return None

    def parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """Parameters the optimizer trains (default: all)."""
        return model.parameters()

    def method_name(self, spec: RunSpec) -> str:
        """The method label of a run in records and reports (default :attr:`RunSpec.method`,
        'random-init' for ``epochs = 0``). Adapters whose untrained runs are something else
        (a pretrained model, a frozen bag of random vectors) say so here."""
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


def get(name: str) -> ModalityAdapter:
    """A fresh adapter instance for modality ``name``."""
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
    return target()


from .losses import Objective  # noqa: E402  (type used in signatures above)
