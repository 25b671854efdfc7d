"""The Jensen-Shannon (softplus) form used by InfoGraph, with hardness and debiasing."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diagnostics import weight_diagnostics as _weight_diagnostics
from ..errors import HardnegError, check_range
from .checks import (
    LossOutput,
    Reduction,
    _check_choice,
    _check_masks,
    _compute_dtype,
    _reduce,
)
from .kernels import LOG2, softplus


def jsd_loss(
    scores: Tensor,
    pos_mask: Tensor,
    neg_mask: Tensor,
    *,
    beta: float = 0.0,
    tau_plus: float = 0.0,
    convention: Literal["derived", "authors", "logit", "standardised"] = "derived",
    temperature: float = 1.0,
    min_score: float | None = None,
    floor: bool = True,
    hardness_sign: Literal["hard", "easy"] = "hard",
    reduction: Reduction = "mean",
    return_details: bool = False,
    anchor_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
) -> Tensor | LossOutput:
    """InfoGraph's Jensen-Shannon (softplus) objective with hardness and debiasing.

    Plain JSD (beta = 0, tau_plus = 0), per anchor i (a node) with logits ``l = q / t``
    (``q`` the scores, ``t`` the temperature; InfoGraph: raw dot products and t = 1)::

        loss_i = mean_m softplus(-l_im) + mean_j softplus(l_ij) - 2 log 2

    Four conventions for the hard and debiased variants (identical at beta = tau_plus = 0):

    ``convention='derived'`` (default) applies the estimator of the InfoNCE core to the
    negative expectation: weights ``w_ij = exp(beta * a_ij)`` with ``a = 2 l / max|l|``
    (max over the batch's negative logits, so beta is scale-free; ``hardness_sign='easy'``
    flips a), normalised over the anchor's negatives, and the debiasing identity
    ``E_neg = (E_w[softplus(l)] - tau_plus * mean_m softplus(l_im)) / (1 - tau_plus)``,
    floored (``floor=True``) at the smallest observed ``softplus(l_ij)`` of the anchor. On
    unbounded scores a few large entries set ``max|l|``, so the weights stay nearly uniform.

    ``convention='logit'`` tilts on the logits themselves, as the InfoNCE core does:
    ``w_ij = exp(beta * l_ij)``, the same debiasing identity, and the floor at the smallest
    possible value ``softplus(min_score / t)`` (``min_score=-1`` for cosine scores; with
    ``min_score=None`` the smallest observed ``softplus(l_ij)``). Meant for bounded scores
    (cosine similarities with a temperature), where beta sets a concentration that the
    score scale cannot undo.

    ``convention='standardised'`` tilts on each anchor's standardised logits:
    ``w_ij = exp(beta * (l_ij - mu_i) / sigma_i)`` with ``mu_i`` and ``sigma_i`` the mean and
    standard deviation of anchor i's negative logits (detached, so they rescale the tilt but are
    not trained through; ``mu_i`` cancels in the normalisation). The tilt is then invariant to
    the scale of the scores: for normally distributed logits the ESS is about ``exp(-beta**2)``
    however the encoder scales their spread, where the 'logit' tilt weakens when the encoder
    shrinks the spread of the cosines. Not to their shape: on unbounded raw scores an encoder
    can grow a few outlying negatives that inflate ``sigma_i``
    (benchmarks/graph-standardised-study.toml), so it is meant for cosines. Debiasing and the
    floor as in 'logit'.

    ``convention='authors'`` reproduces github.com/joshr17/HCL ``JSD_hard`` term for term
    (parity): masks multiply the score matrix (masked entries enter as zeros), the weight
    is ``exp(-2 beta q / max|q|)`` (favouring *easy* negatives), normalised by the row mean
    over all columns, the positive term carries ``-tau_plus/(1-tau_plus) softplus(p)`` (the
    opposite sign of the debiasing identity), no floor; their code fixes tau_plus = 0.5 and t = 1.
    It also keeps their float32 expressions: ``softplus(q)`` is computed as
    ``softplus(-q) + q``, whose gradient is exactly zero for q below about -17, so at
    beta = tau_plus = 0 it is InfoGraph's JSD as their code trains it, which differs from
    the exact-gradient JSD of the other conventions (the parity baseline).

    In 'derived', 'logit' and 'standardised' both terms have exact gradients: the positive term is
    ``softplus(-l)`` evaluated directly (written as ``softplus(l) - l`` its gradient is
    exactly zero in float32 once l exceeds about 17, where the true one is ``-exp(-l)``,
    which Adam's normalisation can still act on) and the negative term ``softplus(l)``.
    Scores that are not finite raise :class:`HardnegError`, naming the count.
    """
    check_range("beta", beta, low=0.0)
    check_range("tau_plus", tau_plus, low=0.0, high=1.0, high_inclusive=False)
    check_range("temperature", temperature, low=0.0, low_inclusive=False)
    _check_choice("convention", convention, ("derived", "authors", "logit", "standardised"))
    _check_choice("hardness_sign", hardness_sign, ("hard", "easy"))
    _check_choice("reduction", reduction, ("mean", "sum", "none"))
    _check_masks(scores, pos_mask, neg_mask)
    q = scores.to(_compute_dtype(scores))
    if not bool(torch.isfinite(q.detach()).all()):
        bad = int((~torch.isfinite(q.detach())).sum())
        raise HardnegError(f"{bad} score(s) are NaN or infinite (beta={beta}, tau_plus={tau_plus}, "
                           f"temperature={temperature}); allowed: finite scores (the encoder diverged, or "
                           "the scores overflow: use bounded scores such as cosine with a temperature)")
    if temperature != 1.0:
        q = q / temperature
    tau = float(tau_plus)
    diag: dict[str, float] = {}
    if convention == "authors":
        # their float32 expressions, not only their mathematics: softplus(x) is written
        # softplus(-x) + x, whose gradient 1 - sigmoid(-x) is exactly 0 below x ~ -17, so
        # negatives scored below -17 stop being pushed (Adam would still act on exp(x))
        c_cnt = q.shape[1]
        p_mat = q * pos_mask.to(q.dtype)
        q_mat = q * neg_mask.to(q.dtype)
        sp_neg = F.softplus(-q_mat) + q_mat
        e_pos = LOG2 - F.softplus(-p_mat)
        if beta == 0.0 and tau == 0.0:
            e_neg = sp_neg - LOG2
            log_w = torch.zeros_like(q)
        else:
            e_pos = e_pos - (tau / (1.0 - tau)) * (F.softplus(-p_mat) + p_mat)
            if beta == 0.0:
                e_neg = (sp_neg - LOG2) / (1.0 - tau)
                log_w = torch.zeros_like(q)
            else:
                scale = torch.maximum(q_mat.max(), q_mat.min().abs())
                log_w = beta * (-2.0 * q_mat / scale)
                w = log_w.exp()
                w = w / w.mean(dim=1, keepdim=True)
                e_neg = w * sp_neg / (1.0 - tau) - LOG2
        per_anchor = e_neg.sum(1) / (c_cnt - 1) - e_pos.sum(1)
    else:
        sp_q = softplus(q)                                    # the one full-matrix softplus
        m_cnt = pos_mask.sum(1).to(q.dtype)
        n_cnt = neg_mask.sum(1).to(q.dtype)
        pi, pj = pos_mask.nonzero(as_tuple=True)              # only the M_i positive entries
        sp_p = sp_q[pi, pj]
        sp_pos_neg = torch.zeros_like(m_cnt).index_add_(0, pi, sp_p) / m_cnt          # mean_m softplus(l+)
        pos_term = torch.zeros_like(m_cnt).index_add_(0, pi, softplus(-q[pi, pj])) / m_cnt
        if beta == 0.0:
            log_w = torch.zeros_like(q)
            if bool((m_cnt + n_cnt == q.shape[1]).all()):    # every candidate is a positive or a negative
                e_neg = (sp_q.sum(1) - sp_pos_neg * m_cnt) / n_cnt
            else:
                e_neg = sp_q.masked_fill(~neg_mask, 0.0).sum(1) / n_cnt
        else:
            if convention == "logit":
                log_w = beta * q
            elif convention == "standardised":
                log_w = beta * q / _negative_sd(q.detach(), neg_mask, n_cnt)
            else:
                scale = q.masked_fill(~neg_mask, 0.0).abs().max().clamp_min(torch.finfo(q.dtype).tiny)
                sign = 2.0 if hardness_sign == "hard" else -2.0
                log_w = beta * sign * q / scale
            p_w = torch.softmax(log_w.masked_fill(~neg_mask, float("-inf")), dim=1)
            e_neg = (p_w * sp_q).sum(1)                       # p_w is zero off the negatives
        if tau > 0.0:
            e_neg = (e_neg - tau * sp_pos_neg) / (1.0 - tau)
            if floor:
                if convention in ("logit", "standardised") and min_score is not None:
                    low = softplus(torch.full_like(e_neg, min_score / temperature))
                else:
                    low = sp_q.detach().masked_fill(~neg_mask, float("inf")).amin(1)
                diag["floor_rate"] = float((e_neg.detach() < low).float().mean())
                e_neg = torch.maximum(e_neg, low)
        per_anchor = pos_term + e_neg - 2.0 * LOG2
    loss = _reduce(per_anchor, reduction)
    if not return_details:
        return loss
    diag.setdefault("floor_rate", 0.0)
    diag.update(_weight_diagnostics(log_w.detach(), neg_mask, anchor_labels, candidate_labels))
    with torch.no_grad():
        diag["pos_score"] = float(scores.detach().masked_fill(~pos_mask, 0).sum() / pos_mask.sum())
        diag["neg_score"] = float(scores.detach().masked_fill(~neg_mask, 0).sum() / neg_mask.sum())
    return LossOutput(loss, per_anchor, diag)


def _negative_sd(q: Tensor, neg_mask: Tensor, n_cnt: Tensor) -> Tensor:
    """Per-anchor standard deviation of the negative logits, as a column; an anchor whose
    negatives are all equal gets the dtype's smallest normal number (its weights stay uniform)."""
    mean = q.masked_fill(~neg_mask, 0.0).sum(1) / n_cnt
    var = (q - mean[:, None]).masked_fill(~neg_mask, 0.0).square().sum(1) / n_cnt
    return var.sqrt().clamp_min(torch.finfo(q.dtype).tiny)[:, None]
