"""The exact two-view loss beyond memory: the tilted log-sum streamed over blocks of the logits.

The dense two-view path holds the 2B x 2B logit matrix and its exponentials (about three
matrices of 4 (2B)^2 bytes in float32 at the peak), which bounds B near 14k in 8 GB. Only
three numbers per anchor row are needed, though: the shift m_i, and

    sx_i = sum_j exp(beta (l_ij - m_i)),   sy_i = sum_j exp((beta + 1)(l_ij - m_i))

over the row's negatives, so that ``log R_i = log N + m_i + log sy_i - log sx_i``
(``beta = 0``: ``log R_i = m_i + log sum_j exp(l_ij - m_i)``). The forward streams them
over K x K blocks of the logit matrix; the backward recomputes each block's logits from
the saved embeddings and forms

    dlogR_i / dl_ij = exp(beta d_ij) ((beta + 1) exp(d_ij) / sy_i - beta / sx_i),  d = l - m,

then ``dA += G C / t`` and ``dC += G^T A / t`` block by block. Nothing of size (2B)^2 is
ever held: the peak is a few K x K blocks plus the embeddings and their gradients. The
debiasing, the floor and the final softplus are the dense path's own code
(:func:`~hardneg.losses.kernels._debias_and_finish`) applied to log R, so the result is the
same loss and gradient, to rounding (tests: float64 to 1e-10).

The shift is the largest possible logit 1/t when ``(beta + 1) 2 / t`` is below the float32
safe exponent range (no pass for the row maximum; as the dense path); otherwise a running
row maximum with rescaled sums (online log-sum-exp), which costs nothing extra.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import HardnegError
from .kernels import _SAFE_EXP_RANGE


def check_chunk_size(chunk_size: object) -> int:
    """``chunk_size`` as an int >= 1, or a :class:`HardnegError` naming the value."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise HardnegError(f"chunk_size={chunk_size!r} is not allowed; allowed: an integer >= 1 (rows and "
                           "columns of the logit matrix per block), or None for the dense form")
    return chunk_size


def _mask_excluded(d: Tensor, excluded: Tensor, c0: int, c1: int) -> None:
    """Set the block's entries of each row's excluded columns (self, partner) to -inf, in place."""
    for q in range(excluded.shape[1]):
        col = excluded[:, q]
        rows = ((col >= c0) & (col < c1)).nonzero().squeeze(1)
        if rows.numel():
            d[rows, col[rows] - c0] = float("-inf")


class _ChunkedTiltedLogSum(torch.autograd.Function):
    """log R_i of anchors against candidates, over all columns but each row's excluded ones."""

    @staticmethod
    def forward(ctx, anchors: Tensor, candidates: Tensor, excluded: Tensor,  # type: ignore[override]
                inv_t: float, beta: float, chunk: int) -> Tensor:
        n_a, n_c = anchors.shape[0], candidates.shape[0]
        fixed = (beta + 1.0) * 2.0 * inv_t < _SAFE_EXP_RANGE
        a_s = anchors * inv_t
        opts = {"dtype": anchors.dtype, "device": anchors.device}
        m = torch.full((n_a,), inv_t if fixed else float("-inf"), **opts)
        sx = torch.zeros(n_a, **opts)
        sy = torch.zeros(n_a, **opts)
        neg_shift = torch.full((1,), -inv_t, **opts)
        for r0 in range(0, n_a, chunk):
            r1 = min(r0 + chunk, n_a)
            ar, ex, mr = a_s[r0:r1], excluded[r0:r1], m[r0:r1]
            for c0 in range(0, n_c, chunk):
                c1 = min(c0 + chunk, n_c)
                cc = candidates[c0:c1]
                d = torch.addmm(neg_shift, ar, cc.T) if fixed else torch.mm(ar, cc.T)
                _mask_excluded(d, ex, c0, c1)
                if not fixed:
                    new = torch.maximum(mr, d.amax(1))
                    safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
                    delta = mr - safe                       # -inf where nothing was seen yet
                    if beta != 0.0:
                        sx[r0:r1].mul_(torch.exp(beta * delta))
                    sy[r0:r1].mul_(torch.exp((beta + 1.0) * delta))
                    mr.copy_(new)
                    d.sub_(safe.unsqueeze(1))
                _accumulate(d, beta, sx[r0:r1], sy[r0:r1])
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        if beta == 0.0:
            log_r = m + sy.log()                            # uniform weights: R = sum_j exp(l_ij)
        else:
            n = float(n_c - excluded.shape[1])
            log_r = math.log(n) + m + sy.log() - sx.log()
        ctx.save_for_backward(anchors, candidates, excluded, m, sx, sy)
        ctx.inv_t, ctx.beta, ctx.chunk, ctx.fixed = inv_t, beta, chunk, fixed
        return log_r

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        anchors, candidates, excluded, m, sx, sy = ctx.saved_tensors
        inv_t, beta, chunk = ctx.inv_t, ctx.beta, ctx.chunk
        n_a, n_c = anchors.shape[0], candidates.shape[0]
        a_s = anchors * inv_t
        want_a, want_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_a = torch.zeros_like(anchors) if want_a else None
        grad_c = torch.zeros_like(candidates) if want_c else None
        cy = (g * (beta + 1.0) / sy).unsqueeze(1)           # beta = 0: g / sum_j exp(d_ij)
        cx = (g * beta / sx).unsqueeze(1) if beta != 0.0 else None
        for r0 in range(0, n_a, chunk):
            r1 = min(r0 + chunk, n_a)
            ar, ex = a_s[r0:r1], excluded[r0:r1]
            shift = -m[r0:r1].unsqueeze(1)
            for c0 in range(0, n_c, chunk):
                c1 = min(c0 + chunk, n_c)
                cc = candidates[c0:c1]
                d = torch.addmm(shift, ar, cc.T)            # l - m
                _mask_excluded(d, ex, c0, c1)
                if beta == 0.0:
                    grad_l = d.exp_().mul_(cy[r0:r1])
                else:
                    x = d.mul(beta).exp_() if beta != 1.0 else None
                    e = d.exp_()
                    grad_l = e.mul(cy[r0:r1]).sub_(cx[r0:r1]).mul_(e if x is None else x)
                if grad_a is not None:
                    grad_a[r0:r1].addmm_(grad_l, cc, alpha=inv_t)
                if grad_c is not None:
                    grad_c[c0:c1].addmm_(grad_l.T, ar)
        return grad_a, grad_c, None, None, None, None


def _accumulate(d: Tensor, beta: float, sx: Tensor, sy: Tensor) -> None:
    """Add one block's sums of exp(beta d) to sx and of exp((beta + 1) d) to sy; d is consumed."""
    if beta == 0.0:
        sy.add_(d.exp_().sum(1))
    elif beta == 1.0:
        e = d.exp_()
        sx.add_(e.sum(1))
        sy.add_(torch.linalg.vector_norm(e, dim=1).square())
    else:
        x = d.mul(beta).exp_()
        e = d.exp_()
        sx.add_(x.sum(1))
        sy.add_(torch.bmm(x.unsqueeze(1), e.unsqueeze(2)).view(-1))


def chunked_log_r(anchors: Tensor, candidates: Tensor, excluded: Tensor, *, temperature: float,
                  beta: float, chunk_size: int) -> Tensor:
    """log R_i of each anchor over every candidate but its ``excluded`` columns, in blocks.

    anchors (A, d) and candidates (C, d) L2-normalised (cosine logits, ``|l| <= 1/t``);
    excluded (A, k) long: the k distinct columns of each row outside its negative pool (for
    two views: itself and its partner); N = C - k. A chunk_size above A or C means one
    block on that side (clamped).
    """
    return _ChunkedTiltedLogSum.apply(anchors, candidates, excluded, 1.0 / float(temperature), float(beta),
                                      int(chunk_size))


def two_view_blocks(z1n: Tensor, z2n: Tensor, extra: Tensor | None, gather: bool
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """(anchors, candidates, excluded) of a two-view batch, local or gathered across ranks.

    Local: anchors = candidates' first 2B rows = [z1; z2]. Gathered: candidates are every
    rank's [Z1; Z2] (through the autograd all-gather, so other ranks' columns carry
    gradients back to them), the anchors this rank's views. Extra negatives are more
    columns, excluded from no row.
    """
    b = z1n.shape[0]
    k = torch.arange(b, device=z1n.device)
    z = torch.cat([z1n, z2n], dim=0)
    if gather:
        from ..distributed import all_gather_with_grad, world
        rank, size = world()
        total = b * size
        cand = torch.cat([all_gather_with_grad(z1n), all_gather_with_grad(z2n)], dim=0)
        own1, own2 = rank * b + k, total + rank * b + k
    else:
        cand, own1, own2 = z, k, b + k
    self_idx = torch.cat([own1, own2])
    partner = torch.cat([own2, own1])
    if extra is not None:
        cand = torch.cat([cand, extra], dim=0)
    return z, cand, torch.stack([self_idx, partner], dim=1)
