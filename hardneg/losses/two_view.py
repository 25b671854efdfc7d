"""The two-view (SimCLR) entry point and its fused, dense path from the normalised views."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diagnostics import representation_diagnostics
from ..diagnostics import weight_diagnostics as _weight_diagnostics
from ..errors import HardnegError
from .checks import (
    LossOutput,
    Reduction,
    _check_choice,
    _check_hyper,
    _compute_dtype,
    _reduce,
)
from .chunked import check_chunk_size, chunked_log_r, two_view_blocks
from .infonce import _infonce_core, contrastive_loss
from .kernels import _SAFE_EXP_RANGE, _debias_and_finish


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
    chunk_size: int | None = None,
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
    chunk_size: K >= 1 computes the same loss and gradient (exact, not an approximation)
    without the 2B x 2B matrix: K x K blocks of the logits are streamed in the forward and
    recomputed in the backward (:mod:`hardneg.losses.chunked`), so memory is O(K^2 + B d)
    instead of O(B^2), for about one extra pass of the similarity matmul. K larger than the
    matrix is clamped to it (one block). Works with ``extra_negatives`` and
    ``gather_distributed``. With ``return_details`` only the diagnostics that need no
    matrix are given: floor_rate, pos_logit, neg_logit.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise HardnegError(f"z1 and z2 must both have shape (B, d); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    if b < 2:
        raise HardnegError(f"batch size B={b} is too small; allowed: B >= 2 (each anchor needs a negative)")
    _check_hyper(beta, tau_plus, temperature)
    _check_choice("hardness", hardness, ("logit", "cosine"))
    _check_choice("reduction", reduction, ("mean", "sum", "none"))
    if chunk_size is not None:
        check_chunk_size(chunk_size)
    if extra_negatives is not None and (extra_negatives.dim() != 2 or extra_negatives.shape[1] != z1.shape[1]):
        raise HardnegError(f"extra_negatives has shape {tuple(extra_negatives.shape)}; "
                           f"allowed: (K, {z1.shape[1]})")
    dtype = _compute_dtype(z1)
    z1n = F.normalize(z1.to(dtype), dim=1)
    z2n = F.normalize(z2.to(dtype), dim=1)
    if chunk_size is not None:
        return _chunked(z1n, z2n, extra_negatives, beta=beta, tau_plus=tau_plus, temperature=temperature,
                        floor=floor, hardness=hardness, reduction=reduction, return_details=return_details,
                        gather=gather_distributed, chunk_size=chunk_size)
    if gather_distributed:
        from ..distributed import gather_two_view
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


def _chunked(z1n: Tensor, z2n: Tensor, extra_negatives: Tensor | None, *, beta: float, tau_plus: float,
             temperature: float, floor: bool, hardness: str, reduction: str, return_details: bool,
             gather: bool, chunk_size: int) -> Tensor | LossOutput:
    """The two-view loss through :func:`chunked_log_r`; the rest is the dense path's finish."""
    extra = None if extra_negatives is None else F.normalize(extra_negatives.to(z1n.dtype), dim=1)
    anchors, cand, excluded = two_view_blocks(z1n, z2n, extra, gather)
    beta_eff = float(beta) * (temperature if hardness == "cosine" else 1.0)
    l_pos = (z1n * z2n).sum(1) / temperature
    l_pos = torch.cat([l_pos, l_pos])
    log_r = chunked_log_r(anchors, cand, excluded, temperature=temperature, beta=beta_eff,
                          chunk_size=chunk_size)
    n = cand.shape[0] - excluded.shape[1]
    per_anchor, floored = _debias_and_finish(
        log_r, torch.full_like(log_r, math.log(n)), l_pos, l_pos, torch.zeros_like(l_pos),
        tau_plus=float(tau_plus), temperature=float(temperature), floor=floor, min_score=-1.0,
        multi_positive="softmax")
    loss = _reduce(per_anchor, reduction)
    if not return_details:
        return loss
    with torch.no_grad():                    # the mean negative logit from the column sum, O(B d)
        a, c = anchors.detach(), cand.detach()
        row_sum = a @ c.sum(0) - (a * c[excluded[:, 0]]).sum(1) - (a * c[excluded[:, 1]]).sum(1)
        diag = {"floor_rate": float(floored.float().mean()), "pos_logit": float(l_pos.detach().mean()),
                "neg_logit": float((row_sum / (n * temperature)).mean())}
    return LossOutput(loss, per_anchor, diag)
