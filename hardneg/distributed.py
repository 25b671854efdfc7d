"""Autograd-aware all-gather, so negatives from every rank join each anchor's pool.

``torch.distributed.all_gather`` returns tensors without a gradient path. The function
here gathers every rank's tensor and routes the gradient of each slice back to the rank
that produced it (each rank sums the incoming gradients of its own slice across ranks),
so a loss that treats other ranks' projections as negatives trains all encoders correctly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        rank, size = world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous()
        # every rank computed gradients for every slice: sum them where the slice was made
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, with gradients flowing to every rank."""
    _, size = world()
    if size == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_two_view(z1: Tensor, z2: Tensor, labels: Tensor | None = None):
    """Scores and masks of local anchors [z1; z2] against the global batch [Z1; Z2].

    Returns (scores (2b, 2bW), pos_mask, neg_mask, anchor_labels, candidate_labels); every
    anchor's negatives are the 2bW - 2 views other than itself and its partner.
    """
    rank, size = world()
    b = z1.shape[0]
    g1, g2 = all_gather_with_grad(z1), all_gather_with_grad(z2)
    cand = torch.cat([g1, g2], dim=0)
    anchors = torch.cat([z1, z2], dim=0)
    scores = anchors @ cand.T
    total = b * size
    k = torch.arange(b, device=z1.device)
    self_idx = torch.cat([rank * b + k, total + rank * b + k])
    partner = torch.cat([total + rank * b + k, rank * b + k])
    rows = torch.arange(2 * b, device=z1.device)
    pos = torch.zeros_like(scores, dtype=torch.bool)
    pos[rows, partner] = True
    neg = ~pos
    neg[rows, self_idx] = False
    lab_a = lab_c = None
    if labels is not None:
        lab_a = torch.cat([labels, labels])
        if size > 1:
            parts = [torch.empty_like(labels) for _ in range(size)]
            dist.all_gather(parts, labels.contiguous())
            gl = torch.cat(parts)
        else:
            gl = labels
        lab_c = torch.cat([gl, gl])
    return scores, pos, neg, lab_a, lab_c
