"""Hardness and representation diagnostics, computed from the scores the loss already has.

Hardness (from the normalised weights ``p_ij = softmax_j(beta * l_ij)`` over negatives):
``ess`` (effective sample size ``1 / sum p^2`` as a fraction of N: 1 = uniform),
``weight_entropy`` (normalised by log N), ``top1pct_share`` (mass on the top 1% of
negatives); with class labels, for analysis only, ``fn_weight_share`` (the weight mass on
negatives that share the anchor's class, ``sum_j p_ij [y_j = y_i]``: how much of the tilted
negative term comes from false negatives) and ``true_class_prior`` (the share of negatives
that do, ``fn_weight_share`` at uniform weights: the tau_plus the data actually has). The
two are equal when the weights are uniform; a tilt that favours false negatives lifts the
first above the second.

Representation (Wang & Isola, ICML 2020), from cosine scores of unit vectors, where
``||u - v||^2 = 2 - 2 s``: ``alignment`` = mean over positive pairs of ``2 - 2 s`` (lower is
better aligned), ``uniformity`` = log mean over negative pairs of ``exp(-2 (2 - 2 s))``
(lower is more uniform).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.no_grad()
def weight_diagnostics(log_w: Tensor, neg_mask: Tensor, anchor_labels: Tensor | None,
                        candidate_labels: Tensor | None) -> dict[str, float]:
    """ESS, entropy and top-1% share of the normalised weights ``softmax(log_w)`` over negatives."""
    log_w = log_w.masked_fill(~neg_mask, float("-inf"))
    log_p = torch.log_softmax(log_w, dim=1)
    p = log_p.exp()
    n = neg_mask.sum(1).to(p.dtype)
    ess = 1.0 / (p * p).sum(1) / n
    ent = -(p * log_p.masked_fill(~neg_mask, 0.0)).sum(1)
    ent = torch.where(n > 1, ent / n.log().clamp_min(1e-12), torch.ones_like(ent))
    k = max(1, math.ceil(0.01 * int(n.max())))
    top_p = p.topk(k, dim=1).values
    out = {
        "ess": float(ess.mean()),
        "weight_entropy": float(ent.mean()),
        "top1pct_share": float(top_p.sum(1).mean()),
    }
    if anchor_labels is not None and candidate_labels is not None:
        same = (anchor_labels.view(-1, 1).to(candidate_labels.device) == candidate_labels.view(1, -1)) & neg_mask
        out["fn_weight_share"] = float((p * same).sum(1).mean())
        out["true_class_prior"] = float((same.sum(1) / n).mean())
    return out


@torch.no_grad()
def representation_diagnostics(cos: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> dict[str, float]:
    """Alignment and uniformity from cosine scores (see the module docstring)."""
    sq = (2.0 - 2.0 * cos).clamp_min(0.0)
    align = float(sq[pos_mask].mean())
    uni = torch.logsumexp((-2.0 * sq).masked_fill(~neg_mask, float("-inf")).flatten(), 0) - math.log(
        int(neg_mask.sum()))
    return {"alignment": align, "uniformity": float(uni)}
