"""What the trainer calls: a run's loss settings (:class:`~hardneg.spec.LossSpec`) applied to a ScoreBatch."""

from __future__ import annotations

from torch import Tensor

from .errors import HardnegError
from .losses import LossOutput, contrastive_loss, hard_negative_loss, jsd_loss


class Objective:
    """The loss a run's :class:`~hardneg.spec.LossSpec` asks for, applied to adapter output.

    ``objective(score_batch)`` dispatches on ``spec.objective``: 'infonce' ->
    :func:`contrastive_loss` (the floor uses -1/t for cosine scores, the data-driven floor
    for raw ones), 'jsd' -> :func:`jsd_loss`. ``objective.two_view(z1, z2)`` is the SimCLR
    fast path. Both return a :class:`LossOutput`.
    """

    def __init__(self, spec) -> None:
        self.spec = spec.validate()

    def __call__(self, sb, *, details: bool = False) -> LossOutput:
        s = self.spec
        if s.objective == "jsd":
            kw = {"beta": s.beta, "tau_plus": s.tau_plus, "convention": s.jsd_convention, "floor": s.floor,
                  "temperature": s.temperature, "min_score": -1.0 if sb.score_kind == "cosine" else None}
            if details:
                return jsd_loss(sb.scores, sb.pos_mask, sb.neg_mask, return_details=True,
                                anchor_labels=sb.anchor_labels, candidate_labels=sb.candidate_labels, **kw)
            per = jsd_loss(sb.scores, sb.pos_mask, sb.neg_mask, reduction="none", **kw)
            return LossOutput(per.mean(), per)
        min_score = -1.0 if sb.score_kind == "cosine" else None
        kwargs = {"beta": s.beta, "tau_plus": s.tau_plus, "temperature": s.temperature, "floor": s.floor,
                  "min_score": min_score, "hardness": s.hardness, "multi_positive": s.multi_positive}
        if details:
            return contrastive_loss(sb.scores, sb.pos_mask, sb.neg_mask, return_details=True,
                                    anchor_labels=sb.anchor_labels, candidate_labels=sb.candidate_labels,
                                    **kwargs)
        per = contrastive_loss(sb.scores, sb.pos_mask, sb.neg_mask, reduction="none", **kwargs)
        return LossOutput(per.mean(), per)

    def two_view(self, z1: Tensor, z2: Tensor, *, details: bool = False, labels: Tensor | None = None,
                 gather_distributed: bool = False) -> LossOutput:
        s = self.spec
        if s.objective != "infonce":
            raise HardnegError(f"loss.objective={s.objective!r} has no two-view form; allowed: infonce")
        kwargs = {"beta": s.beta, "tau_plus": s.tau_plus, "temperature": s.temperature, "floor": s.floor,
                  "hardness": s.hardness, "gather_distributed": gather_distributed,
                  "chunk_size": s.chunk_size or None}
        if details:
            return hard_negative_loss(z1, z2, return_details=True, labels=labels, **kwargs)
        per = hard_negative_loss(z1, z2, reduction="none", **kwargs)
        return LossOutput(per.mean(), per)
