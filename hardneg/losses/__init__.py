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

Where things live: ``checks`` (argument checks, :class:`LossOutput`), ``kernels`` (softplus,
the tilted log-sum, the debias / floor / finish step), ``infonce`` (:func:`contrastive_loss`
over any score matrix), ``two_view`` (:func:`hard_negative_loss`, the fused SimCLR path),
``chunked`` (its exact blockwise form, ``chunk_size=K``, for batches beyond memory), ``jsd``
and ``modules`` (:class:`HardNegativeLoss`). The trainer's :class:`Objective` lives in
:mod:`hardneg.objective` and is importable from here too.
"""

# the private helpers stay importable from here, as they were from the one-file module (F401)
from .checks import (  # noqa: F401
    LossOutput,
    Reduction,
    _check_choice,
    _check_hyper,
    _check_masks,
    _compute_dtype,
    _reduce,
)
from .infonce import _infonce_core, contrastive_loss, hardness_weights  # noqa: F401
from .jsd import jsd_loss
from .kernels import (  # noqa: F401
    _SAFE_EXP_RANGE,
    _SOFTPLUS_LINEAR_ABOVE,
    LOG2,
    _debias_and_finish,
    _tilted_log_sum,
    _TiltedLogSum,
    softplus,
)
from .modules import HardNegativeLoss
from .two_view import (  # noqa: F401
    _MASK_CACHE,
    _TwoViewTiltedLogSum,
    hard_negative_loss,
    two_view_masks,
)

__all__ = [
    "LOG2",
    "HardNegativeLoss",
    "LossOutput",
    "Objective",
    "Reduction",
    "contrastive_loss",
    "hard_negative_loss",
    "hardness_weights",
    "jsd_loss",
    "softplus",
    "two_view_masks",
]

