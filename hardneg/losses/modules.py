"""``nn.Module`` wrappers of the functional losses."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from .checks import Reduction, _check_choice, _check_hyper
from .chunked import check_chunk_size
from .infonce import contrastive_loss
from .two_view import hard_negative_loss


class HardNegativeLoss(nn.Module):
    """``nn.Module`` form of :func:`hard_negative_loss`; validates its arguments once.

    Call as ``loss(z1, z2)`` for two views, or ``loss.scores(scores, pos_mask, neg_mask)``
    for any score matrix. ``chunk_size=K`` makes the two-view call the exact blockwise form
    (no 2B x 2B matrix; see :mod:`hardneg.losses.chunked`); ``scores`` takes a matrix that
    already exists, so it is always dense.

    Example::

        criterion = HardNegativeLoss(beta=1.0, tau_plus=0.1, temperature=0.5)
        loss = criterion(head(encoder(view1)), head(encoder(view2)))
    """

    def __init__(self, beta: float = 1.0, tau_plus: float = 0.1, temperature: float = 0.5, *,
                 floor: bool = True, hardness: Literal["logit", "cosine"] = "logit",
                 multi_positive: Literal["softmax", "mean"] = "softmax", reduction: Reduction = "mean",
                 gather_distributed: bool = False, chunk_size: int | None = None) -> None:
        super().__init__()
        if chunk_size is not None:
            check_chunk_size(chunk_size)
        _check_hyper(beta, tau_plus, temperature)
        _check_choice("hardness", hardness, ("logit", "cosine"))
        _check_choice("multi_positive", multi_positive, ("softmax", "mean"))
        _check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.beta, self.tau_plus, self.temperature = float(beta), float(tau_plus), float(temperature)
        self.floor, self.hardness, self.multi_positive = floor, hardness, multi_positive
        self.reduction, self.gather_distributed = reduction, gather_distributed
        self.chunk_size = chunk_size

    def forward(self, z1: Tensor, z2: Tensor, extra_negatives: Tensor | None = None) -> Tensor:
        return hard_negative_loss(z1, z2, beta=self.beta, tau_plus=self.tau_plus,
                                  temperature=self.temperature, floor=self.floor, hardness=self.hardness,
                                  reduction=self.reduction, extra_negatives=extra_negatives,
                                  gather_distributed=self.gather_distributed, chunk_size=self.chunk_size)

    def scores(self, scores: Tensor, pos_mask: Tensor, neg_mask: Tensor, *,
               min_score: float | None = -1.0, extra_negatives: Tensor | None = None) -> Tensor:
        return contrastive_loss(scores, pos_mask, neg_mask, beta=self.beta, tau_plus=self.tau_plus,
                                temperature=self.temperature, floor=self.floor, min_score=min_score,
                                hardness=self.hardness, multi_positive=self.multi_positive,
                                reduction=self.reduction, extra_negatives=extra_negatives)

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, tau_plus={self.tau_plus}, temperature={self.temperature}, "
                f"floor={self.floor}, hardness={self.hardness!r}"
                + (f", chunk_size={self.chunk_size}" if self.chunk_size is not None else ""))
