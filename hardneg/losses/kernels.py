"""Log-space kernels: softplus, the tilted negative log-sum and the debias / floor / finish step.

The finish is written as ``softplus(log Ng - log pos)``, i.e. ``-log(pos / (pos + Ng))``
without the cancellation of ``logaddexp(l+, log Ng) - l+`` where the loss is tiny.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG2 = math.log(2.0)
#: softplus is log1p(exp(x)) below this and x above it: exact to float64 rounding
#: (exp(-50) ~ 2e-22) and still far from float32 overflow (exp(50) ~ 5e21)
_SOFTPLUS_LINEAR_ABOVE = 50.0


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` accurate in float32 and float64 (torch's default switches to x above 20)."""
    return F.softplus(x, threshold=_SOFTPLUS_LINEAR_ABOVE)



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
