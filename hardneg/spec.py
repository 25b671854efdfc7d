"""Run specifications: the fully resolved settings of one training-and-evaluation run.

A :class:`RunSpec` is what a suite's grid expands into. Its :attr:`RunSpec.run_id` is a
hash of every resolved setting (not of the suite name), so the same settings always get
the same id and a finished run is recognised and skipped when a suite is run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError, HardnegError, check_range, non_finite

OBJECTIVES = ("infonce", "jsd")
HARDNESS = ("logit", "cosine")
MULTI_POSITIVE = ("softmax", "mean")
JSD_CONVENTIONS = ("derived", "authors", "logit", "standardised")
#: loss settings an objective never reads (:class:`hardneg.objective.Objective`): JSD has no
#: hardness variant or multi-positive semantics, InfoNCE no JSD convention. A record still holds
#: their defaults; the report leaves them out of such a run's setting string.
INERT_FOR_OBJECTIVE = {"infonce": ("jsd_convention",), "jsd": ("hardness", "multi_positive")}
_NOT_IN_RUN_ID = ("device", "threads", "flush_denormal")
#: fields added after records existed: they enter the run id only when set away from this
#: default, so the ids of earlier records stay what they were
_ADDED_LATER = {"eval_every": 0, "sync_batchnorm": False}


#: the range in which the loss core is documented to stay finite (bf16 included); settings
#: outside it are accepted with a warning (:meth:`LossSpec.stability_warnings`)
STABLE_TEMPERATURE_MIN = 0.05
STABLE_BETA_MAX = 20.0
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass(frozen=True)
class LossSpec:
    """Settings of the shared loss core (:mod:`hardneg.losses`); a suite's ``[MODALITY.loss]`` table.

    Attributes (these are also the keys an adapter's ``default_loss`` may set):
        objective: 'infonce' (SimCLR, quick-thought, node-graph NCE) or 'jsd' (InfoGraph's
            Jensen-Shannon estimator).
        beta: hardness concentration, >= 0 (0 = no tilt). Finite; above 20 a warning.
        tau_plus: class prior for debiasing, in [0, 1) (0 = no debiasing).
        temperature: t > 0, finite; logits are score / t. Below 0.05 a warning.
        floor: clamp the debiased negative term from below (Chuang et al., 2020, eq. 10).
        hardness: 'logit' (w = exp(beta s / t), the authors' code) or 'cosine' (w = exp(beta s)).
        multi_positive: 'softmax' or 'mean', the semantics for M > 1 positives per anchor.
        jsd_convention: 'derived', 'authors' (parity with the authors' code), 'logit' or
            'standardised' (:func:`hardneg.losses.jsd_loss`).
        chunk_size: 0 (the dense 2B x 2B score matrix) or K >= 1: the two-view InfoNCE loss
            streamed over K x K blocks, exact in value and gradient (``hard_negative_loss``'s
            ``chunk_size``), for batches whose score matrix does not fit in memory. It changes
            results only at float rounding, so it is not in the run id.

    Raises (from :meth:`validate`): :class:`~hardneg.errors.ConfigError` naming the field,
    the value and what is allowed; NaN and inf are refused for every number.
    """

    objective: str = "infonce"
    beta: float = 0.0
    tau_plus: float = 0.0
    temperature: float = 0.5
    floor: bool = True
    hardness: str = "logit"
    multi_positive: str = "softmax"
    jsd_convention: str = "derived"
    chunk_size: int = 0

    def validate(self) -> "LossSpec":
        """Check every field; return self (so ``LossSpec(...).validate()`` chains)."""
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"loss.objective={self.objective!r} is not known; allowed: {', '.join(OBJECTIVES)}")
        _range("beta", self.beta, low=0.0)
        _range("tau_plus", self.tau_plus, low=0.0, high=1.0, high_inclusive=False)
        _range("temperature", self.temperature, low=0.0, low_inclusive=False)
        if not isinstance(self.floor, bool):
            raise ConfigError(f"loss.floor={self.floor!r} is invalid; allowed: true or false")
        if self.hardness not in HARDNESS:
            raise ConfigError(f"loss.hardness={self.hardness!r} is not known; allowed: {', '.join(HARDNESS)}")
        if self.multi_positive not in MULTI_POSITIVE:
            raise ConfigError(f"loss.multi_positive={self.multi_positive!r} is not known; "
                              f"allowed: {', '.join(MULTI_POSITIVE)}")
        if self.jsd_convention not in JSD_CONVENTIONS:
            raise ConfigError(f"loss.jsd_convention={self.jsd_convention!r} is not known; "
                              f"allowed: {', '.join(JSD_CONVENTIONS)}")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 0:
            raise ConfigError(f"loss.chunk_size={self.chunk_size!r} is invalid; allowed: 0 (dense) or an "
                              "integer K >= 1 (exact loss streamed over K x K blocks)")
        return self

    def stability_warnings(self) -> list[str]:
        """Messages for settings outside the documented stable range (temperature >= 0.05,
        beta <= 20): accepted, since the trainer turns a non-finite loss into a failure record,
        but the loss is not known to stay finite there."""
        out = []
        if self.temperature < STABLE_TEMPERATURE_MIN:
            out.append(f"loss.temperature={self.temperature:g} is below {STABLE_TEMPERATURE_MIN:g}, outside the "
                       "range where the loss is known to stay finite (temperature >= 0.05, beta <= 20); "
                       "a non-finite loss fails the run")
        if self.beta > STABLE_BETA_MAX:
            out.append(f"loss.beta={self.beta:g} is above {STABLE_BETA_MAX:g}, outside the range where the loss "
                       "is known to stay finite (temperature >= 0.05, beta <= 20); a non-finite loss fails the run")
        return out


@dataclass(frozen=True)
class TrainSpec:
    """Settings of the shared training loop (:mod:`hardneg.train`); a suite's ``[MODALITY.train]`` table.

    Attributes:
        epochs: integer >= 0; 0 = no pretraining (the random-initialisation floor).
        batch_size: integer >= 2, what ``train_batches`` should yield per step.
        lr, weight_decay: Adam/AdamW settings (lr > 0, weight_decay >= 0, finite).
        optimizer: 'adam' or 'adamw'.
        grad_clip: max gradient norm, >= 0 (0 = off).
        amp: 'auto' (bf16 autocast on CUDA), 'off', 'bf16' (autocast on any device).
        device: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'. Not in the run id.
        threads: torch CPU threads, >= 0 (0 = torch's default). Not in the run id.
        diagnostics_every: loss diagnostics on the first batch of every k-th epoch (0 = off).
        max_steps_per_epoch: cap on steps per epoch (0 = the whole data set); for smoke runs.
        flush_denormal: CPU training flushes values below 1.2e-38 to zero. Not in the run id.
        eval_every: also evaluate every k epochs (curves and a labelled best-epoch metric); 0 = off.
        sync_batchnorm: under torchrun (world size > 1), BatchNorm layers normalise with the
            statistics of the global batch (every rank's rows) instead of their rank's share.
    """

    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adam"
    grad_clip: float = 0.0
    amp: str = "auto"
    device: str = "auto"
    threads: int = 0
    diagnostics_every: int = 1
    max_steps_per_epoch: int = 0
    flush_denormal: bool = True
    eval_every: int = 0
    sync_batchnorm: bool = False

    def validate(self) -> "TrainSpec":
        """Check every field; return self."""
        if not _is_int(self.epochs) or self.epochs < 0:
            raise ConfigError(f"train.epochs={self.epochs!r} is invalid; allowed: an integer >= 0")
        if not _is_int(self.batch_size) or self.batch_size < 2:
            raise ConfigError(f"train.batch_size={self.batch_size!r} is invalid; allowed: an integer >= 2 "
                              "(an anchor needs at least one negative)")
        _range("train.lr", self.lr, low=0.0, low_inclusive=False)
        _range("train.weight_decay", self.weight_decay, low=0.0)
        _range("train.grad_clip", self.grad_clip, low=0.0)
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"train.optimizer={self.optimizer!r} is not known; allowed: adam, adamw")
        if self.amp not in ("auto", "off", "bf16"):
            raise ConfigError(f"train.amp={self.amp!r} is not known; allowed: auto, off, bf16")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ConfigError(f"train.device={self.device!r} is not known; allowed: auto, cpu, cuda, cuda:N, mps")
        for name in ("threads", "diagnostics_every", "max_steps_per_epoch"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ConfigError(f"train.{name}={v!r} is out of range; allowed: an integer >= 0")
        if not _is_int(self.eval_every) or self.eval_every < 0:
            raise ConfigError(f"train.eval_every={self.eval_every!r} is invalid; allowed: an integer >= 0 "
                              "(0 = evaluate only after the last epoch)")
        if not isinstance(self.flush_denormal, bool):
            raise ConfigError(f"train.flush_denormal={self.flush_denormal!r} is invalid; allowed: true or false")
        if not isinstance(self.sync_batchnorm, bool):
            raise ConfigError(f"train.sync_batchnorm={self.sync_batchnorm!r} is invalid; allowed: true or false")
        return self


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _range(name: str, value: float, **kw: Any) -> float:
    try:
        return check_range(name, value, **kw)
    except ConfigError:
        raise
    except HardnegError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class RunSpec:
    """One run: modality, data set, seed, loss and training settings, adapter options.

    Attributes:
        modality, dataset: the adapter's registered name and one of its data sets.
        seed: integer >= 0; every random stream of the run derives from it (a suite's
            ``grid.seed`` list gives one run per value).
        loss, train: :class:`LossSpec`, :class:`TrainSpec`.
        options: the adapter's options, resolved (defaults filled) by the suite loader.
        suite: the suite's name (not part of the run id).
    """

    modality: str
    dataset: str
    seed: int = 0
    loss: LossSpec = field(default_factory=LossSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    options: Mapping[str, Any] = field(default_factory=dict)  # adapter-specific, validated by the adapter
    suite: str = "adhoc"

    def validate(self) -> "RunSpec":
        """Loss and training settings checked, the seed an integer >= 0, no NaN or inf in the options."""
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is not valid; allowed: an integer >= 0")
        self.loss.validate()
        self.train.validate()
        bad = list(non_finite(dict(self.options), "options"))
        if bad:
            raise ConfigError(f"{self.modality} {', '.join(bad)} is not allowed; allowed: finite numbers")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as JSON-able dicts (what records store under ``spec``)."""
        return {
            "modality": self.modality,
            "dataset": self.dataset,
            "seed": self.seed,
            "loss": dataclasses.asdict(self.loss),
            "train": dataclasses.asdict(self.train),
            "options": dict(sorted(self.options.items())),
            "suite": self.suite,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        """Inverse of :meth:`to_dict` (records written before a field existed get its default)."""
        return cls(modality=d["modality"], dataset=d["dataset"], seed=int(d.get("seed", 0)),
                   loss=LossSpec(**d.get("loss", {})), train=TrainSpec(**d.get("train", {})),
                   options=dict(d.get("options", {})), suite=d.get("suite", "adhoc"))

    @property
    def run_id(self) -> str:
        """12 hex digits of SHA-256 over the resolved settings (suite name excluded).

        Settings that change results only at float rounding (device, threads,
        flush_denormal) are excluded too, so a suite resumed on another machine
        recognises its finished runs.
        """
        d = self.to_dict()
        d.pop("suite")
        d["loss"].pop("chunk_size", None)  # exact: changes results only at float rounding
        d["train"] = {k: v for k, v in d["train"].items()
                      if k not in _NOT_IN_RUN_ID and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def method(self) -> str:
        """The default method label: random-init, infonce/jsd, debiased-*, hard-* (+ JSD convention).

        Records and reports use :meth:`hardneg.adapters.ModalityAdapter.method_name`, which
        returns this unless an adapter names its untrained runs otherwise."""
        if self.train.epochs == 0:
            return "random-init"
        base = self.loss.objective
        if self.loss.beta == 0 and self.loss.tau_plus == 0:
            name = base
        elif self.loss.beta == 0:
            name = f"debiased-{base}"
        else:
            name = f"hard-{base}"
        if base == "jsd" and (self.loss.jsd_convention == "authors"
                              or (self.loss.jsd_convention in ("logit", "standardised") and name != "jsd")):
            # the authors' plain JSD is their float32 numerics, a baseline of its own
            name += f"-{self.loss.jsd_convention}"
        return name
