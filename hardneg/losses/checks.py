"""Argument checks, the reduction and the result type shared by every loss of the family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ..errors import HardnegError, check_range

Reduction = Literal["mean", "sum", "none"]


@dataclass
class LossOutput:
    """A loss value with its per-anchor terms and (optionally) diagnostics.

    diagnostics (when asked for): ``ess`` effective sample size of the hardness weights as a
    fraction of N, ``weight_entropy`` normalised by log N, ``top1pct_share`` weight mass of
    the top 1% of negatives, ``floor_rate`` fraction of anchors where the floor is active,
    ``pos_logit``/``neg_logit`` means; with labels, ``fn_weight_share`` the weight mass on
    negatives that share the anchor's label and ``true_class_prior`` the share of all
    negatives that do (to set beside tau_plus; see :mod:`hardneg.diagnostics`).
    """

    loss: Tensor
    per_anchor: Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)



def _check_hyper(beta: float, tau_plus: float, temperature: float) -> None:
    check_range("beta", beta, low=0.0)
    check_range("tau_plus", tau_plus, low=0.0, high=1.0, high_inclusive=False)
    check_range("temperature", temperature, low=0.0, low_inclusive=False)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HardnegError(f"{name}={value!r} is not known; allowed: {', '.join(allowed)}")


def _check_masks(scores: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> None:
    if scores.dim() != 2:
        raise HardnegError(f"scores must be a 2-d (anchors x candidates) matrix; got shape {tuple(scores.shape)}")
    for name, m in (("pos_mask", pos_mask), ("neg_mask", neg_mask)):
        if m.shape != scores.shape:
            raise HardnegError(f"{name} has shape {tuple(m.shape)}; allowed: the shape of scores, "
                               f"{tuple(scores.shape)}")
        if m.dtype != torch.bool:
            raise HardnegError(f"{name} has dtype {m.dtype}; allowed: torch.bool")
    if (pos_mask & neg_mask).any():
        i = int((pos_mask & neg_mask).any(1).nonzero()[0])
        raise HardnegError(f"anchor {i} has a candidate marked both positive and negative; "
                           "allowed: disjoint pos_mask and neg_mask")
    no_pos = ~pos_mask.any(1)
    if no_pos.any():
        i = int(no_pos.nonzero()[0])
        raise HardnegError(f"anchor {i} has no positive; allowed: at least one positive per anchor")
    no_neg = ~neg_mask.any(1)
    if no_neg.any():
        i = int(no_neg.nonzero()[0])
        raise HardnegError(f"anchor {i} has no negative; allowed: at least one negative per anchor")


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _reduce(per_anchor: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    if reduction == "none":
        return per_anchor
    raise HardnegError(f"reduction={reduction!r} is not known; allowed: mean, sum, none")
