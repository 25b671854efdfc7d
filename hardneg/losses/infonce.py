"""The InfoNCE-family core over any score matrix: InfoNCE, debiased and hard-negative."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..diagnostics import representation_diagnostics
from ..diagnostics import weight_diagnostics as _weight_diagnostics
from ..errors import HardnegError
from .checks import (
    LossOutput,
    Reduction,
    _check_choice,
    _check_hyper,
    _check_masks,
    _compute_dtype,
    _reduce,
)
from .kernels import _debias_and_finish, _tilted_log_sum


def hardness_weights(scores: Tensor, neg_mask: Tensor, *, beta: float, temperature: float = 1.0,
                     hardness: Literal["logit", "cosine"] = "logit") -> Tensor:
    """Self-normalised hardness weights ``w_ij / sum_j w_ij`` over each anchor's negatives.

    ``w_ij = exp(beta * s_ij / t)`` ('logit') or ``exp(beta * s_ij)`` ('cosine'); zero
    off the negative mask. These are the weights :func:`contrastive_loss` uses in R_i.
    """
    _check_hyper(beta, 0.0, temperature)
    _check_choice("hardness", hardness, ("logit", "cosine"))
    b = beta / temperature if hardness == "logit" else beta
    s = scores.to(_compute_dtype(scores))
    return torch.softmax((b * s).masked_fill(~neg_mask, float("-inf")), dim=1)


def _infonce_core(l: Tensor, neg_mask: Tensor, log_spos: Tensor, mean_lpos: Tensor, log_m: Tensor,
                  *, beta: float, tau_plus: float, temperature: float, floor: bool,
                  min_score: float | None, multi_positive: str) -> tuple[Tensor, Tensor]:
    """Per-anchor loss and a boolean 'floor active' vector, from logits and positive statistics.

    l: (A, C) logits; log_spos: log sum_m exp(l_im); mean_lpos: mean_m l_im; log_m: log M_i.
    """
    log_r = _tilted_log_sum(l, neg_mask, beta)
    log_n = neg_mask.sum(1).to(l.dtype).log()
    if floor and min_score is None and tau_plus > 0.0:
        log_low = l.detach().masked_fill(~neg_mask, float("inf")).amin(1)
    else:
        log_low = None
    return _debias_and_finish(log_r, log_n, log_spos, mean_lpos, log_m, tau_plus=tau_plus,
                              temperature=temperature, floor=floor, min_score=min_score,
                              multi_positive=multi_positive, log_low=log_low)


def contrastive_loss(
    scores: Tensor,
    pos_mask: Tensor,
    neg_mask: Tensor,
    *,
    beta: float = 1.0,
    tau_plus: float = 0.1,
    temperature: float = 0.5,
    floor: bool = True,
    min_score: float | None = -1.0,
    hardness: Literal["logit", "cosine"] = "logit",
    multi_positive: Literal["softmax", "mean"] = "softmax",
    reduction: Reduction = "mean",
    extra_negatives: Tensor | None = None,
    return_details: bool = False,
    anchor_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
) -> Tensor | LossOutput:
    """Hard-negative / debiased / InfoNCE loss over a score matrix (see the module docstring).

    Args:
        scores: (A, C) similarities of A anchors to C candidates (cosine, or raw with
            ``min_score=None``). Any float dtype; computed in float32 (float64 kept).
        pos_mask, neg_mask: (A, C) bool, disjoint; every anchor needs >= 1 of each.
        beta: hardness concentration, >= 0 (0 = uniform weights).
        tau_plus: class prior for debiasing, in [0, 1) (0 = no debiasing, floor unused).
        temperature: t > 0; logits are ``scores / t``.
        floor: clamp the debiased negative term at ``N exp(min_score / t)``.
        min_score: smallest possible score (-1 for cosine); None = unbounded (data-driven floor).
        hardness: 'logit' (w = exp(beta s/t), the authors' code) or 'cosine' (w = exp(beta s)).
        multi_positive: 'softmax' or 'mean' (identical when each anchor has one positive).
        reduction: 'mean' over anchors, 'sum', or 'none' (per-anchor vector).
        extra_negatives: (A, K) scores of every anchor to K further negatives (queue, other
            devices); they join the pool, so N and the weight normalisation cover them.
        return_details: return a :class:`LossOutput` with per-anchor loss and diagnostics.
        anchor_labels, candidate_labels: class labels for the false-negative diagnostics
            only (never used by the loss).
    """
    _check_hyper(beta, tau_plus, temperature)
    _check_choice("hardness", hardness, ("logit", "cosine"))
    _check_choice("multi_positive", multi_positive, ("softmax", "mean"))
    _check_choice("reduction", reduction, ("mean", "sum", "none"))
    _check_masks(scores, pos_mask, neg_mask)
    dtype = _compute_dtype(scores)
    if extra_negatives is not None:
        if extra_negatives.dim() != 2 or extra_negatives.shape[0] != scores.shape[0]:
            raise HardnegError(f"extra_negatives has shape {tuple(extra_negatives.shape)}; allowed: "
                               f"({scores.shape[0]}, K), one row per anchor")
        k = extra_negatives.shape[1]
        scores = torch.cat([scores.to(dtype), extra_negatives.to(dtype)], dim=1)
        pos_mask = torch.cat([pos_mask, pos_mask.new_zeros(pos_mask.shape[0], k)], dim=1)
        neg_mask = torch.cat([neg_mask, neg_mask.new_ones(neg_mask.shape[0], k)], dim=1)
        if candidate_labels is not None:
            candidate_labels = torch.cat([candidate_labels, candidate_labels.new_full((k,), -1)])
    l = scores.to(dtype) / temperature
    beta_eff = float(beta) * (temperature if hardness == "cosine" else 1.0)
    pos_l = l.masked_fill(~pos_mask, float("-inf"))
    log_spos = pos_l.logsumexp(1)
    m_count = pos_mask.sum(1).to(dtype)
    mean_lpos = l.masked_fill(~pos_mask, 0.0).sum(1) / m_count
    per_anchor, floored = _infonce_core(
        l, neg_mask, log_spos, mean_lpos, m_count.log(), beta=beta_eff, tau_plus=float(tau_plus),
        temperature=float(temperature), floor=floor, min_score=min_score, multi_positive=multi_positive)
    loss = _reduce(per_anchor, reduction)
    if not return_details:
        return loss
    with torch.no_grad():
        diag = _weight_diagnostics(beta_eff * l.detach(), neg_mask, anchor_labels, candidate_labels)
        diag["floor_rate"] = float(floored.float().mean())
        diag["pos_logit"] = float(mean_lpos.detach().mean())
        diag["neg_logit"] = float((l.detach().masked_fill(~neg_mask, 0).sum(1) / neg_mask.sum(1)).mean())
        if min_score == -1.0:
            diag.update(representation_diagnostics(l.detach() * temperature, pos_mask, neg_mask))
    return LossOutput(loss, per_anchor, diag)
