"""The estimator family: InfoNCE, debiased and hard-negative contrastive losses.

One log-space core serves every modality. It takes a score matrix between A anchors and
C candidates plus a positive and a negative mask, so SimCLR's 2B x 2B views, InfoGraph's
nodes x graphs and quick-thought's sentences with two positives all use the same code.

Per anchor i, with logits ``l = s / t`` (``s`` a similarity, ``t`` the temperature), the
N_i negatives j and the M_i positives m::

    w_ij   = exp(beta * l_ij)                         # hardness weights (not detached)
    R_i    = N_i * sum_j w_ij exp(l_ij) / sum_j w_ij  # hardness-tilted negative sum
    pos_i  = (1 / M_i) * sum_m exp(l_im)              # positive expectation estimate
    Ng_i   = (R_i - tau_plus * N_i * pos_i) / (1 - tau_plus)
    Ng_i   = max(Ng_i, N_i * exp(min_score / t))      # the floor (only when tau_plus > 0)

and the per-anchor loss for ``multi_positive='softmax'`` (default)::

    loss_i = -(1 / M_i) * sum_m l_im + log( sum_m exp(l_im) + Ng_i )

that is, each positive in turn is the target of a softmax whose denominator holds every
positive of the anchor and the (debiased, hardness-tilted) negative term. For M = 1 this is
``-log(pos / (pos + Ng))``, exactly the authors' image loss (github.com/joshr17/HCL); for
beta = 0, tau_plus = 0 it is NT-Xent with the positive in the denominator and, for M = 2,
quick-thought's softmax over the batch with both neighbours as targets.
``multi_positive='mean'`` instead uses one term per anchor,
``loss_i = -log( pos_i / (pos_i + Ng_i) )`` with ``pos_i`` the mean above. Both coincide at M = 1.

Conventions, stated because the literature varies:

- ``hardness='logit'`` (default): beta multiplies the logit ``s / t``, as the authors' code
  does. ``hardness='cosine'``: ``w = exp(beta * s)``, the paper's
  ``q_beta ~ exp(beta f(x)^T f(x-))``; it equals the logit convention with beta * t.
- Everything is computed in log space (``log R = log N + LSE((beta+1) l) - LSE(beta l)``;
  the debias subtraction as ``log R + log1p(-exp(log c - log R))`` where it is positive,
  the floor otherwise), in float32 whatever the input dtype (float64 stays float64).
- ``min_score`` is the smallest possible score (-1 for cosine). For unbounded scores pass
  ``min_score=None``: the floor is then ``N_i * exp(min_j l_ij)`` (detached), the
  smallest sum the observed negatives could have. ``floor=False`` removes the floor; a
  non-positive debiased estimate is then clamped at the dtype's smallest normal number.
- "Debiased" here is Chuang et al. (NeurIPS 2020), not "decoupled" contrastive learning.
- Negatives from elsewhere (a queue, other devices) join through ``extra_negatives``:
  N_i and the weight normalisation are then taken over the whole pool.

The Jensen-Shannon form used by InfoGraph is :func:`jsd_loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .diagnostics import representation_diagnostics, weight_diagnostics as _weight_diagnostics
from .errors import HardnegError, check_range

__all__ = [
    "LossOutput", "contrastive_loss", "hard_negative_loss", "jsd_loss", "HardNegativeLoss",
    "Objective", "two_view_masks", "hardness_weights",
]

Reduction = Literal["mean", "sum", "none"]
LOG2 = math.log(2.0)
#: softplus is log1p(exp(x)) below this and x above it: exact to float64 rounding
#: (exp(-50) ~ 2e-22) and still far from float32 overflow (exp(50) ~ 5e21)
_SOFTPLUS_LINEAR_ABOVE = 50.0


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` accurate in float32 and float64 (torch's default switches to x above 20)."""
    return F.softplus(x, threshold=_SOFTPLUS_LINEAR_ABOVE)


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


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# the tilted negative pool, with a hand-written backward
# ---------------------------------------------------------------------------------------
class _TiltedLogSum(torch.autograd.Function):
    """log R_i = log N_i + LSE_j((beta+1) l_ij) - LSE_j(beta l_ij) over each row's negatives.

    The backward is d log R_i / d l_ij = (beta+1) softmax((beta+1) l)_ij - beta softmax(beta l)_ij,
    computed from the exponentials saved in the forward: no second pass of exp, which keeps
    the hard loss within a small factor of plain cross-entropy.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, neg_mask: Tensor, beta: float) -> Tensor:  # type: ignore[override]
        d = logits.masked_fill(~neg_mask, float("-inf"))
        m = d.amax(dim=1, keepdim=True)
        d.sub_(m)                                   # <= 0 on negatives, -inf elsewhere
        if beta == 0.0:
            y = d.exp_()                            # exp(l - m)
            sy = y.sum(1)
            log_r = m.squeeze(1) + sy.log()         # uniform weights: R = sum_j exp(l_ij)
            ctx.save_for_backward(y, sy)
            ctx.beta = 0.0
            return log_r
        if beta == 1.0:
            x = d.exp_()                            # exp(l - m) == exp(beta (l - m))
            y = x * x
        else:
            x = torch.exp(d * beta)
            y = d.exp_().mul_(x)                    # exp((beta+1)(l - m))
        sx, sy = x.sum(1), y.sum(1)
        n = neg_mask.sum(1).to(logits.dtype)
        log_r = n.log() + m.squeeze(1) + sy.log() - sx.log()
        ctx.save_for_backward(x, y, sx, sy)
        ctx.beta = beta
        return log_r

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        beta = ctx.beta
        if beta == 0.0:
            y, sy = ctx.saved_tensors
            return y * (g / sy).unsqueeze(1), None, None
        x, y, sx, sy = ctx.saved_tensors
        grad = y * (g * (beta + 1.0) / sy).unsqueeze(1)
        grad.addcmul_(x, (-g * beta / sx).unsqueeze(1))
        return grad, None, None


def _tilted_log_sum(logits: Tensor, neg_mask: Tensor, beta: float) -> Tensor:
    return _TiltedLogSum.apply(logits, neg_mask, float(beta))


# exponent range below which a fixed shift (the largest possible logit) is safe from underflow
_SAFE_EXP_RANGE = 80.0


class _TwoViewTiltedLogSum(torch.autograd.Function):
    """log R_i for a SimCLR batch straight from the normalised views z = [z1; z2] (2B x d).

    Same quantity as :class:`_TiltedLogSum` with the two-view masks, but fused: the
    similarity matmul writes the shifted logits directly, the excluded entries (self and
    partner) are zeroed on two diagonals instead of masking the whole matrix, and when
    (beta + 1) * 2 / t is small the shift is the largest possible logit 1/t, so no row max
    is needed. The backward forms dL/dl from saved exponentials and returns
    dL/dz = (G + G^T) z / t.
    """

    @staticmethod
    def forward(ctx, z: Tensor, temperature: float, beta: float) -> Tensor:  # type: ignore[override]
        n2 = z.shape[0]
        b = n2 // 2
        inv_t = 1.0 / temperature
        if (beta + 1.0) * 2.0 * inv_t < _SAFE_EXP_RANGE:
            m = torch.full((n2,), inv_t, dtype=z.dtype, device=z.device)
            d = torch.addmm(m.new_full((1,), -inv_t), z, z.T, alpha=inv_t)   # l - 1/t <= 0
            masked = False
        else:
            d = torch.mm(z, z.T).mul_(inv_t)
            for off in (0, b, -b):
                d.diagonal(off).fill_(float("-inf"))
            m = d.amax(1)
            d.sub_(m.unsqueeze(1))
            masked = True
        if beta == 0.0:
            x = None
            e = d.exp_()
        elif beta == 1.0:
            e = d.exp_()
            x = e
        else:
            x = torch.mul(d, beta).exp_()
            e = d.exp_()
        if not masked:
            for off in (0, b, -b):
                e.diagonal(off).zero_()
                if x is not None and x is not e:
                    x.diagonal(off).zero_()
        n = float(n2 - 2)
        if x is None:
            se = e.sum(1)
            log_r = m + se.log()
            ctx.save_for_backward(z, e, se)
        else:
            sx = x.sum(1)
            sy = torch.linalg.vector_norm(e, dim=1).square() if x is e else \
                torch.bmm(x.unsqueeze(1), e.unsqueeze(2)).view(-1)
            log_r = math.log(n) + m + sy.log() - sx.log()
            ctx.save_for_backward(z, e, sx, sy, *(() if x is e else (x,)))
        ctx.beta, ctx.inv_t = beta, inv_t
        return log_r

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        beta, inv_t = ctx.beta, ctx.inv_t
        if beta == 0.0:
            z, e, se = ctx.saved_tensors
            grad_l = e * (g / se).unsqueeze(1)
        else:
            z, e, sx, sy, *rest = ctx.saved_tensors
            x = rest[0] if rest else e
            # dlogR/dl = (beta+1) x e / sy - beta x / sx = x * ((beta+1) e / sy - beta / sx)
            grad_l = e * (g * (beta + 1.0) / sy).unsqueeze(1)
            grad_l.sub_((g * beta / sx).unsqueeze(1))
            grad_l.mul_(x)
        grad_z = torch.mm(grad_l, z)
        grad_z.addmm_(grad_l.T, z)
        return grad_z.mul_(inv_t), None, None


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


# ---------------------------------------------------------------------------------------
# the InfoNCE-family core
# ---------------------------------------------------------------------------------------
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


def _debias_and_finish(log_r: Tensor, log_n: Tensor, log_spos: Tensor, mean_lpos: Tensor, log_m: Tensor,
                       *, tau_plus: float, temperature: float, floor: bool, min_score: float | None,
                       multi_positive: str, log_low: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """From log R_i to the per-anchor loss: debiasing, floor and the positive term, in log space."""
    log_pos = log_spos - log_m                                    # log of the mean positive
    if tau_plus == 0.0:
        log_ng = log_r
        floored = torch.zeros_like(log_r, dtype=torch.bool)
    else:
        if not floor:
            log_f = torch.full_like(log_r, math.log(torch.finfo(log_r.dtype).tiny))
        elif min_score is not None:
            log_f = log_n + min_score / temperature
        else:
            assert log_low is not None
            log_f = log_n + log_low
        log_c = math.log(tau_plus) + log_n + log_pos              # log(tau+ N pos)
        # the debiased estimate exceeds the floor iff R > c + (1 - tau+) F
        active = log_r > torch.logaddexp(log_c, math.log1p(-tau_plus) + log_f)
        d = torch.where(active, log_c - log_r, torch.full_like(log_r, -1.0))
        log_deb = log_r + torch.log1p(-torch.exp(d)) - math.log1p(-tau_plus)
        log_ng = torch.where(active, log_deb, log_f)
        floored = ~active
    # -log(pos / (pos + Ng)) = softplus(log Ng - log pos): exact where the loss is tiny, where
    # logaddexp(l+, log Ng) - l+ cancels to rounding; for M > 1 ('softmax') the extra term
    # log sum_m exp(l_m) - mean_m l_m is zero at M = 1
    if multi_positive == "softmax":
        per_anchor = softplus(log_ng - log_spos) + (log_spos - mean_lpos)
    else:
        per_anchor = softplus(log_ng - log_pos)
    return per_anchor, floored


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


_MASK_CACHE: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}


def two_view_masks(batch_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(pos_mask, neg_mask) of a 2B x 2B SimCLR batch ordered [view1; view2].

    Anchor i's positive is its partner i +- B; its negatives are all views but itself and
    the partner (N = 2B - 2).
    """
    key = (batch_size, str(device))
    if key not in _MASK_CACHE:
        n = 2 * batch_size
        idx = torch.arange(n, device=device)
        partner = (idx + batch_size) % n
        pos = torch.zeros(n, n, dtype=torch.bool, device=device)
        pos[idx, partner] = True
        neg = ~pos
        neg.fill_diagonal_(False)
        if len(_MASK_CACHE) > 16:
            _MASK_CACHE.clear()
        _MASK_CACHE[key] = (pos, neg)
    return _MASK_CACHE[key]


def hard_negative_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    beta: float = 1.0,
    tau_plus: float = 0.1,
    temperature: float = 0.5,
    floor: bool = True,
    hardness: Literal["logit", "cosine"] = "logit",
    reduction: Reduction = "mean",
    extra_negatives: Tensor | None = None,
    return_details: bool = False,
    labels: Tensor | None = None,
    gather_distributed: bool = False,
) -> Tensor | LossOutput:
    """The two-view (SimCLR) hard-negative loss, mean over the 2B anchors.

    z1, z2: (B, d) projections of the two views of the same B items; they are L2-normalised
    here and compared by cosine similarity. Each of the 2B views is an anchor whose
    positive is the other view of its item and whose N = 2B - 2 negatives are all other
    views. With beta = 0 and tau_plus = 0 this is NT-Xent; with beta = 0, the debiased loss.

    extra_negatives: (K, d) further negative projections shared by all anchors (a queue).
    gather_distributed: under torch.distributed, gather the other ranks' projections (with
    gradients) so that every anchor sees the global batch's 2BW - 2 negatives.
    labels: (B,) class labels for diagnostics only.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise HardnegError(f"z1 and z2 must both have shape (B, d); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    if b < 2:
        raise HardnegError(f"batch size B={b} is too small; allowed: B >= 2 (each anchor needs a negative)")
    _check_hyper(beta, tau_plus, temperature)
    _check_choice("hardness", hardness, ("logit", "cosine"))
    _check_choice("reduction", reduction, ("mean", "sum", "none"))
    dtype = _compute_dtype(z1)
    z1n = F.normalize(z1.to(dtype), dim=1)
    z2n = F.normalize(z2.to(dtype), dim=1)
    if gather_distributed:
        from .distributed import gather_two_view
        scores, pos_mask, neg_mask, lab_a, lab_c = gather_two_view(z1n, z2n, labels)
        extra = None if extra_negatives is None else torch.cat([z1n, z2n]) @ F.normalize(
            extra_negatives.to(dtype), dim=1).T
        return contrastive_loss(scores, pos_mask, neg_mask, beta=beta, tau_plus=tau_plus,
                                temperature=temperature, floor=floor, hardness=hardness,
                                reduction=reduction, extra_negatives=extra, return_details=return_details,
                                anchor_labels=lab_a, candidate_labels=lab_c)
    z = torch.cat([z1n, z2n], dim=0)
    scale = 1.0 / temperature
    beta_eff = float(beta) * (temperature if hardness == "cosine" else 1.0)
    l_pos = (z1n * z2n).sum(1) * scale
    l_pos = torch.cat([l_pos, l_pos])
    _, neg_mask = two_view_masks(b, z.device)
    if extra_negatives is None:
        log_r = _TwoViewTiltedLogSum.apply(z, float(temperature), beta_eff)
        log_n = torch.full_like(log_r, math.log(2 * b - 2))
        per_anchor, floored = _debias_and_finish(
            log_r, log_n, l_pos, l_pos, torch.zeros_like(l_pos), tau_plus=float(tau_plus),
            temperature=float(temperature), floor=floor, min_score=-1.0, multi_positive="softmax")
        l = None
    else:
        if extra_negatives.dim() != 2 or extra_negatives.shape[1] != z1.shape[1]:
            raise HardnegError(f"extra_negatives has shape {tuple(extra_negatives.shape)}; "
                               f"allowed: (K, {z1.shape[1]})")
        e = F.normalize(extra_negatives.to(dtype), dim=1)
        zs = z * scale
        l = torch.cat([zs @ z.T, zs @ e.T], dim=1)
        neg_mask = torch.cat([neg_mask, neg_mask.new_ones(2 * b, e.shape[0])], dim=1)
        per_anchor, floored = _infonce_core(
            l, neg_mask, l_pos, l_pos, torch.zeros_like(l_pos), beta=beta_eff, tau_plus=float(tau_plus),
            temperature=float(temperature), floor=floor, min_score=-1.0, multi_positive="softmax")
    loss = _reduce(per_anchor, reduction)
    if not return_details:
        return loss
    with torch.no_grad():
        if l is None:
            l = (z.detach() @ z.detach().T) * scale
        lab = None if labels is None else torch.cat([labels, labels])
        cand = lab
        if lab is not None and extra_negatives is not None:
            cand = torch.cat([lab, lab.new_full((extra_negatives.shape[0],), -1)])
        diag = _weight_diagnostics(beta_eff * l.detach(), neg_mask, lab, cand)
        diag["floor_rate"] = float(floored.float().mean())
        diag["pos_logit"] = float(l_pos.detach().mean())
        diag["neg_logit"] = float((l.detach().masked_fill(~neg_mask, 0).sum(1) / neg_mask.sum(1)).mean())
        pos_mask = two_view_masks(b, z.device)[0]
        if extra_negatives is not None:
            pos_mask = torch.cat([pos_mask, pos_mask.new_zeros(2 * b, extra_negatives.shape[0])], dim=1)
        diag.update(representation_diagnostics(l.detach() * temperature, pos_mask, neg_mask))
    return LossOutput(loss, per_anchor, diag)


# ---------------------------------------------------------------------------------------
# the Jensen-Shannon form (InfoGraph)
# ---------------------------------------------------------------------------------------
def jsd_loss(
    scores: Tensor,
    pos_mask: Tensor,
    neg_mask: Tensor,
    *,
    beta: float = 0.0,
    tau_plus: float = 0.0,
    convention: Literal["derived", "authors", "logit"] = "derived",
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

    Three conventions for the hard and debiased variants (identical at beta = tau_plus = 0):

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

    ``convention='authors'`` reproduces github.com/joshr17/HCL ``JSD_hard`` term for term
    (parity): masks multiply the score matrix (masked entries enter as zeros), the weight
    is ``exp(-2 beta q / max|q|)`` (favouring *easy* negatives), normalised by the row mean
    over all columns, the positive term carries ``-tau_plus/(1-tau_plus) softplus(p)`` (the
    opposite sign of the debiasing identity), no floor; their code fixes tau_plus = 0.5 and t = 1.
    It also keeps their float32 expressions: ``softplus(q)`` is computed as
    ``softplus(-q) + q``, whose gradient is exactly zero for q below about -17, so at
    beta = tau_plus = 0 it is InfoGraph's JSD as their code trains it, which differs from
    the exact-gradient JSD of the other two conventions (the parity baseline).

    In 'derived' and 'logit' both terms have exact gradients: the positive term is
    ``softplus(-l)`` evaluated directly (written as ``softplus(l) - l`` its gradient is
    exactly zero in float32 once l exceeds about 17, where the true one is ``-exp(-l)``,
    which Adam's normalisation can still act on) and the negative term ``softplus(l)``.
    Scores that are not finite raise :class:`HardnegError`, naming the count.
    """
    check_range("beta", beta, low=0.0)
    check_range("tau_plus", tau_plus, low=0.0, high=1.0, high_inclusive=False)
    check_range("temperature", temperature, low=0.0, low_inclusive=False)
    _check_choice("convention", convention, ("derived", "authors", "logit"))
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
        a_cnt, c_cnt = q.shape
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
            else:
                scale = q.masked_fill(~neg_mask, 0.0).abs().max().clamp_min(torch.finfo(q.dtype).tiny)
                sign = 2.0 if hardness_sign == "hard" else -2.0
                log_w = beta * sign * q / scale
            p_w = torch.softmax(log_w.masked_fill(~neg_mask, float("-inf")), dim=1)
            e_neg = (p_w * sp_q).sum(1)                       # p_w is zero off the negatives
        if tau > 0.0:
            e_neg = (e_neg - tau * sp_pos_neg) / (1.0 - tau)
            if floor:
                if convention == "logit" and min_score is not None:
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


# ---------------------------------------------------------------------------------------
# module wrapper and the trainer-facing objective
# ---------------------------------------------------------------------------------------
class HardNegativeLoss(nn.Module):
    """``nn.Module`` form of :func:`hard_negative_loss`; validates its arguments once.

    Call as ``loss(z1, z2)`` for two views, or ``loss.scores(scores, pos_mask, neg_mask)``
    for any score matrix.

    Example::

        criterion = HardNegativeLoss(beta=1.0, tau_plus=0.1, temperature=0.5)
        loss = criterion(head(encoder(view1)), head(encoder(view2)))
    """

    def __init__(self, beta: float = 1.0, tau_plus: float = 0.1, temperature: float = 0.5, *,
                 floor: bool = True, hardness: Literal["logit", "cosine"] = "logit",
                 multi_positive: Literal["softmax", "mean"] = "softmax", reduction: Reduction = "mean",
                 gather_distributed: bool = False) -> None:
        super().__init__()
        _check_hyper(beta, tau_plus, temperature)
        _check_choice("hardness", hardness, ("logit", "cosine"))
        _check_choice("multi_positive", multi_positive, ("softmax", "mean"))
        _check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.beta, self.tau_plus, self.temperature = float(beta), float(tau_plus), float(temperature)
        self.floor, self.hardness, self.multi_positive = floor, hardness, multi_positive
        self.reduction, self.gather_distributed = reduction, gather_distributed

    def forward(self, z1: Tensor, z2: Tensor, extra_negatives: Tensor | None = None) -> Tensor:
        return hard_negative_loss(z1, z2, beta=self.beta, tau_plus=self.tau_plus,
                                  temperature=self.temperature, floor=self.floor, hardness=self.hardness,
                                  reduction=self.reduction, extra_negatives=extra_negatives,
                                  gather_distributed=self.gather_distributed)

    def scores(self, scores: Tensor, pos_mask: Tensor, neg_mask: Tensor, *,
               min_score: float | None = -1.0, extra_negatives: Tensor | None = None) -> Tensor:
        return contrastive_loss(scores, pos_mask, neg_mask, beta=self.beta, tau_plus=self.tau_plus,
                                temperature=self.temperature, floor=self.floor, min_score=min_score,
                                hardness=self.hardness, multi_positive=self.multi_positive,
                                reduction=self.reduction, extra_negatives=extra_negatives)

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, tau_plus={self.tau_plus}, temperature={self.temperature}, "
                f"floor={self.floor}, hardness={self.hardness!r}")


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
            kw = dict(beta=s.beta, tau_plus=s.tau_plus, convention=s.jsd_convention, floor=s.floor,
                      temperature=s.temperature, min_score=-1.0 if sb.score_kind == "cosine" else None)
            if details:
                return jsd_loss(sb.scores, sb.pos_mask, sb.neg_mask, return_details=True,
                                anchor_labels=sb.anchor_labels, candidate_labels=sb.candidate_labels, **kw)
            per = jsd_loss(sb.scores, sb.pos_mask, sb.neg_mask, reduction="none", **kw)
            return LossOutput(per.mean(), per)
        min_score = -1.0 if sb.score_kind == "cosine" else None
        kwargs = dict(beta=s.beta, tau_plus=s.tau_plus, temperature=s.temperature, floor=s.floor,
                      min_score=min_score, hardness=s.hardness, multi_positive=s.multi_positive)
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
        kwargs = dict(beta=s.beta, tau_plus=s.tau_plus, temperature=s.temperature, floor=s.floor,
                      hardness=s.hardness, gather_distributed=gather_distributed)
        if details:
            return hard_negative_loss(z1, z2, return_details=True, labels=labels, **kwargs)
        per = hard_negative_loss(z1, z2, reduction="none", **kwargs)
        return LossOutput(per.mean(), per)
