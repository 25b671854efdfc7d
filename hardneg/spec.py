"""Run specifications: the fully resolved settings of one training-and-evaluation run.

A :class:`RunSpec` is what a suite's grid expands into. Its :attr:`RunSpec.run_id` is a
hash of every resolved setting (not of the suite name), so the same settings always get
the same id and a finished run is recognised and skipped when a suite is run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError, check_range

OBJECTIVES = ("infonce", "jsd")
HARDNESS = ("logit", "cosine")
MULTI_POSITIVE = ("softmax", "mean")
JSD_CONVENTIONS = ("derived", "authors", "logit")
_NOT_IN_RUN_ID = ("device", "threads", "flush_denormal")
#: fields added after records existed: they enter the run id only when set away from this
#: default, so the ids of earlier records stay what they were
_ADDED_LATER = {"eval_every": 0}


@dataclass(frozen=True)
class LossSpec:
    """Settings of the shared loss core (see :mod:`hardneg.losses`)."""

    objective: str = "infonce"      # 'infonce' (SimCLR / quick-thought / node-graph NCE) or 'jsd' (InfoGraph)
    beta: float = 0.0               # hardness concentration, >= 0
    tau_plus: float = 0.0           # class prior for debiasing, in [0, 1)
    temperature: float = 0.5        # t > 0; logits are score / t
    floor: bool = True              # clamp the debiased negative term from below
    hardness: str = "logit"         # 'logit': w = exp(beta * s / t) (authors' code); 'cosine': w = exp(beta * s)
    multi_positive: str = "softmax"  # semantics for M > 1 positives, see hardneg.losses
    jsd_convention: str = "derived"  # 'derived' (w on 2 l / max|l|), 'logit' (w = exp(beta l)), 'authors' (parity)

    def validate(self) -> "LossSpec":
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"loss.objective={self.objective!r} is not known; allowed: {', '.join(OBJECTIVES)}")
        check_range("beta", self.beta, low=0.0)
        check_range("tau_plus", self.tau_plus, low=0.0, high=1.0, high_inclusive=False)
        check_range("temperature", self.temperature, low=0.0, low_inclusive=False)
        if self.hardness not in HARDNESS:
            raise ConfigError(f"loss.hardness={self.hardness!r} is not known; allowed: {', '.join(HARDNESS)}")
        if self.multi_positive not in MULTI_POSITIVE:
            raise ConfigError(f"loss.multi_positive={self.multi_positive!r} is not known; "
                              f"allowed: {', '.join(MULTI_POSITIVE)}")
        if self.jsd_convention not in JSD_CONVENTIONS:
            raise ConfigError(f"loss.jsd_convention={self.jsd_convention!r} is not known; "
                              f"allowed: {', '.join(JSD_CONVENTIONS)}")
        return self


@dataclass(frozen=True)
class TrainSpec:
    """Settings of the shared training loop (see :mod:`hardneg.train`)."""

    epochs: int = 1                 # 0 means: no pretraining (the random-initialisation floor)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adam"         # 'adam' or 'adamw'
    grad_clip: float = 0.0          # max gradient norm; 0 = off
    amp: str = "auto"               # 'auto' (bf16 autocast on CUDA), 'off', 'bf16'
    device: str = "auto"            # 'auto', 'cpu', 'cuda', 'cuda:N'
    threads: int = 0                # torch CPU threads; 0 = leave torch's default
    diagnostics_every: int = 1      # compute loss diagnostics on the first batch of every k-th epoch; 0 = off
    max_steps_per_epoch: int = 0    # cap on steps per epoch (0 = the whole data set); for smoke runs
    flush_denormal: bool = True     # CPU training flushes values below 1.2e-38 to zero (see hardneg.train)
    eval_every: int = 0             # also evaluate every k epochs: curves plus a labelled best-epoch metric; 0 = off

    def validate(self) -> "TrainSpec":
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"train.epochs={self.epochs!r} is invalid; allowed: an integer >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ConfigError(f"train.batch_size={self.batch_size!r} is invalid; allowed: an integer >= 2")
        check_range("train.lr", self.lr, low=0.0, low_inclusive=False)
        check_range("train.weight_decay", self.weight_decay, low=0.0)
        check_range("train.grad_clip", self.grad_clip, low=0.0)
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"train.optimizer={self.optimizer!r} is not known; allowed: adam, adamw")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ConfigError(f"train.eval_every={self.eval_every!r} is invalid; allowed: an integer >= 0 "
                              "(0 = evaluate only after the last epoch)")
        if self.amp not in ("auto", "off", "bf16"):
            raise ConfigError(f"train.amp={self.amp!r} is not known; allowed: auto, off, bf16")
        return self


@dataclass(frozen=True)
class RunSpec:
    """One run: modality, data set, seed, loss and training settings, adapter options."""

    modality: str
    dataset: str
    seed: int = 0
    loss: LossSpec = field(default_factory=LossSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    options: Mapping[str, Any] = field(default_factory=dict)  # adapter-specific, validated by the adapter
    suite: str = "adhoc"

    def to_dict(self) -> dict[str, Any]:
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
        d["train"] = {k: v for k, v in d["train"].items()
                      if k not in _NOT_IN_RUN_ID and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def method(self) -> str:
        """Human name of the method: random-init, infonce/jsd, debiased, hard (+ convention)."""
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
                              or (self.loss.jsd_convention == "logit" and name != "jsd")):
            # the authors' plain JSD is their float32 numerics, a baseline of its own
            name += f"-{self.loss.jsd_convention}"
        return name
