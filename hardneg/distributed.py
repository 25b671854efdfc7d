"""Multi-process training: the autograd-aware all-gather, and the rank helpers the trainer uses.

``torch.distributed.all_gather`` returns tensors without a gradient path. The function
here gathers every rank's tensor and routes the gradient of each slice back to the rank
that produced it (each rank sums the incoming gradients of its own slice across ranks),
so a loss that treats other ranks' projections as negatives trains all encoders correctly.

Gradient scale: with world size W and per-rank loss L_k = the mean over rank k's anchors,
the global-batch loss is L = (1/W) sum_k L_k. Rank r's gathered slice receives
sum_k dL_k/dz_r, so its parameter gradient is W dL/dθ restricted to its own rows, and
DistributedDataParallel's average over ranks, (1/W) sum_r, gives exactly dL/dθ: the
gradient of one process on the whole batch (tests/test_torchrun.py checks it to 1e-6).

The rest serves :mod:`hardneg.train` under ``torchrun``: :func:`launch_env` (RANK,
WORLD_SIZE, LOCAL_RANK), :func:`init_from_env` (gloo on CPU, nccl on CUDA, a bounded
timeout), :func:`shard_batch` (each rank's B/W rows of the global batch),
:func:`sync_batchnorm` (global-batch BatchNorm statistics; on CPU :class:`GlobalBatchNorm`,
since torch's SyncBatchNorm runs on GPUs only) and :class:`GatheringObjective`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import HardnegError

#: seconds a collective may wait for the other ranks before the run fails (HARDNEG_DIST_TIMEOUT_S);
#: long enough for rank 0's evaluation, which the others wait out at a barrier
DEFAULT_TIMEOUT_S = 1800.0


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


# ---- ranks under torchrun --------------------------------------------------------------------

class CollectiveFailed(HardnegError):
    """A collective of a training step failed: another rank died, or did not answer in time."""


def is_collective_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from a collective whose peers are gone (gloo / nccl errors, timeouts)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(k in text for k in ("gloo", "NCCL", "Connection", "timed out")))


def launch_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun sets them (RANK, WORLD_SIZE, LOCAL_RANK); (0, 1, 0) outside it."""
    raw = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if raw["WORLD_SIZE"] is None:
        return 0, 1, 0
    try:
        rank, size, local = int(raw["RANK"] or 0), int(raw["WORLD_SIZE"]), int(raw["LOCAL_RANK"] or 0)
    except ValueError:
        raise HardnegError(f"RANK / WORLD_SIZE / LOCAL_RANK = {raw} are not integers; allowed: what torchrun "
                           "sets (start the command with torchrun --nproc-per-node N)") from None
    if size < 1 or not 0 <= rank < size:
        raise HardnegError(f"RANK={rank}, WORLD_SIZE={size} are inconsistent; allowed: 0 <= RANK < WORLD_SIZE")
    return rank, size, local


def init_from_env(timeout_s: float | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes (``env://``): nccl when CUDA is available (each
    rank on ``cuda:LOCAL_RANK``), else gloo. Returns (rank, world_size); a no-op outside torchrun.
    ``timeout_s`` (default $HARDNEG_DIST_TIMEOUT_S, else :data:`DEFAULT_TIMEOUT_S`) bounds every
    collective, so a rank that hangs makes the others fail instead of waiting forever."""
    _, size, local = launch_env()
    if size == 1 or dist.is_initialized():
        return world()
    if timeout_s is None:
        timeout_s = float(os.environ.get("HARDNEG_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return world()


def mean_over_ranks(x: Tensor) -> Tensor:
    """The mean of ``x`` over ranks (``x`` itself in one process); no gradient."""
    _, size = world()
    if size == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / size


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself in one process)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> bool:
    """Wait for every rank; False when a rank is gone (the collective failed or timed out)."""
    if world()[1] == 1:
        return True
    try:
        dist.barrier()
    except (RuntimeError, dist.DistError):
        return False
    return True


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel (gradients averaged over ranks after backward)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids)


def shard_batch(batch: Any, rank: int, size: int) -> Any:
    """Rank ``rank``'s B/size rows of a global batch: a tensor, or a tuple / list of tensors
    sharing their first dimension B. B not divisible by ``size`` is a :class:`HardnegError`."""
    if size == 1:
        return batch
    items = list(batch) if isinstance(batch, (tuple, list)) else [batch]
    if not items or not all(isinstance(x, Tensor) and x.dim() > 0 for x in items):
        raise HardnegError(f"a training batch of type {type(batch).__name__} cannot be split across {size} ranks; "
                           "allowed: a tensor or a tuple / list of tensors sharing their first dimension, or an "
                           "adapter method shard_batch(batch, rank, world_size)")
    n = items[0].shape[0]
    if any(x.shape[0] != n for x in items) or n % size:
        sizes = sorted({int(x.shape[0]) for x in items})
        raise HardnegError(f"a batch of {'/'.join(map(str, sizes))} rows cannot be split over world size {size}; "
                           f"allowed: a batch size that is a multiple of {size} (train.batch_size and "
                           "torchrun --nproc-per-node)")
    b = n // size
    parts = [x[rank * b:(rank + 1) * b] for x in items]
    if isinstance(batch, Tensor):
        return parts[0]
    return type(batch)(parts) if isinstance(batch, list) else tuple(parts)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are the global batch's (every rank's rows).

    The ranks' inputs are gathered with :func:`all_gather_with_grad`, so the gradient through
    the mean and variance reaches every rank (the same scale argument as the loss's gather).
    Running statistics: the global mean and the unbiased global variance, as
    ``nn.BatchNorm`` of one process on the whole batch. In eval mode, or in one process, it
    is ordinary BatchNorm.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input (N, C, ...), got {x.dim()}-d")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and world()[1] > 1):
            return super().forward(x)
        self._check_input_dim(x)
        g = all_gather_with_grad(x)
        dims = [0, *range(2, x.dim())]
        mean, var = g.mean(dims), g.var(dims, unbiased=False)
        if self.track_running_stats and self.running_mean is not None:
            n = g.numel() // g.shape[1]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _to_global_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _to_global_bn(child))
    return out


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer normalising by global-batch statistics, its parameters
    and buffers the same objects (an optimizer made before stays valid): torch's SyncBatchNorm
    on CUDA, :class:`GlobalBatchNorm` elsewhere. Converted in place unless ``model`` is itself one."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_global_bn(model)


class GatheringObjective:
    """A run's objective whose two-view loss takes its negatives from every rank's batch.

    Adapters whose loss goes through ``objective.two_view(z1, z2)`` (image) train on the
    global batch; one that hands the objective a score matrix it made from its own rows
    cannot, and is refused with a message naming the modality.
    """

    def __init__(self, objective: Any, modality: str) -> None:
        self.objective, self.modality = objective, modality

    def two_view(self, z1: Tensor, z2: Tensor, **kwargs: Any) -> Any:
        return self.objective.two_view(z1, z2, gather_distributed=True, **kwargs)

    def __call__(self, score_batch: Any, **kwargs: Any) -> Any:
        raise HardnegError(f"the {self.modality} adapter computes its score matrix from its own rows "
                           "(score_batch), so its negatives cannot be gathered across ranks; allowed under "
                           "torchrun: adapters whose loss is objective.two_view(z1, z2) (image)")
