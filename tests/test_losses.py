"""The loss core against independent transcriptions of the estimator (Robinson et al., ICLR 2021; Chuang et al., NeurIPS 2020) and limiting cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hardneg import HardNegativeLoss, HardnegError, contrastive_loss, hard_negative_loss, jsd_loss
from hardneg.losses import hardness_weights, two_view_masks
from hardneg.objective import Objective
from hardneg.spec import LossSpec


# ------------------------------------------------------------------------------------------
# oracles: loop-based float64 transcriptions, written without the core's log-space tricks
# ------------------------------------------------------------------------------------------
def oracle_infonce(scores, pos, neg, *, beta, tau, t, floor=True, min_score=-1.0, multi="softmax",
                   hardness="logit"):
    """The estimator (Robinson et al., 2021), direct form, one anchor at a time."""
    rows = []
    b = beta if hardness == "logit" else beta * t
    for i in range(scores.shape[0]):
        l = scores[i] / t
        ln, lp = l[neg[i]], l[pos[i]]
        n = ln.numel()
        w = torch.exp(b * ln)
        r = n * (w * torch.exp(ln)).sum() / w.sum()
        pos_mean = torch.exp(lp).mean()
        ng = r
        if tau > 0:
            ng = (r - tau * n * pos_mean) / (1 - tau)
            if floor:
                low = n * math.exp(min_score / t) if min_score is not None else n * torch.exp(ln.detach().min())
                ng = torch.maximum(ng, torch.as_tensor(low, dtype=l.dtype))
        if multi == "softmax":
            rows.append(-lp.mean() + torch.log(torch.exp(lp).sum() + ng))
        else:
            rows.append(-torch.log(pos_mean / (pos_mean + ng)))
    return torch.stack(rows)


def random_problem(a, c, m, gen, dtype=torch.float64):
    """Cosine scores, m positives per anchor, the rest (minus one excluded column) negatives."""
    x = F.normalize(torch.randn(a, 16, generator=gen, dtype=dtype), dim=1)
    y = F.normalize(torch.randn(c, 16, generator=gen, dtype=dtype), dim=1)
    scores = x @ y.T
    perm = torch.stack([torch.randperm(c, generator=gen) for _ in range(a)])
    pos = torch.zeros(a, c, dtype=torch.bool)
    pos.scatter_(1, perm[:, :m], True)
    neg = ~pos
    neg.scatter_(1, perm[:, m:m + 1], False)  # one candidate neither (like "self")
    return scores, pos, neg


# ------------------------------------------------------------------------------------------
# limiting cases
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [2, 7, 32])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_beta0_tau0_is_ntxent_cross_entropy(b, t):
    g = torch.Generator().manual_seed(b)
    z1, z2 = torch.randn(b, 8, generator=g), torch.randn(b, 8, generator=g)
    ours = hard_negative_loss(z1, z2, beta=0.0, tau_plus=0.0, temperature=t)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / t).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    ref = F.cross_entropy(logits, target)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)
    ours64 = hard_negative_loss(z1.double(), z2.double(), beta=0.0, tau_plus=0.0, temperature=t)
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    logits = (z @ z.T / t).fill_diagonal_(float("-inf"))
    assert torch.allclose(ours64, F.cross_entropy(logits, target), rtol=1e-12)


@pytest.mark.parametrize("tau", [0.01, 0.1, 0.3])
@pytest.mark.parametrize("t", [0.2, 0.5])
def test_beta0_tau_positive_is_debiased_formula(tau, t):
    """Chuang et al.'s debiased loss, written directly in float64."""
    g = torch.Generator().manual_seed(3)
    b = 12
    z1, z2 = torch.randn(b, 8, generator=g, dtype=torch.float64), torch.randn(b, 8, generator=g, dtype=torch.float64)
    ours = hard_negative_loss(z1, z2, beta=0.0, tau_plus=tau, temperature=t)
    o1, o2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    out = torch.cat([o1, o2])
    neg = torch.exp(out @ out.T / t)
    mask = ~torch.eye(2 * b, dtype=torch.bool)
    for i in range(b):
        mask[i, i + b] = mask[i + b, i] = False
    neg = neg.masked_select(mask).view(2 * b, -1)
    pos = torch.exp((o1 * o2).sum(-1) / t)
    pos = torch.cat([pos, pos])
    n = 2 * b - 2
    ng = (-tau * n * pos + neg.sum(-1)) / (1 - tau)
    ng = torch.clamp(ng, min=n * math.e ** (-1 / t))
    ref = (-torch.log(pos / (pos + ng))).mean()
    assert torch.allclose(ours, ref, rtol=1e-12)


def test_tau0_never_floors_and_softmax_multi_positive_is_quickthought_softmax():
    g = torch.Generator().manual_seed(0)
    scores, pos, neg = random_problem(9, 12, 2, g)
    out = contrastive_loss(scores, pos, neg, beta=0.0, tau_plus=0.0, temperature=0.3, return_details=True)
    assert out.diagnostics["floor_rate"] == 0.0
    # quick-thought: softmax over all non-excluded candidates, uniform targets over positives
    logits = (scores / 0.3).masked_fill(~(pos | neg), float("-inf"))
    target = pos.double() / pos.sum(1, keepdim=True)
    ref = -(target * torch.log_softmax(logits, 1).masked_fill(~(pos | neg), 0)).sum(1).mean()
    assert torch.allclose(out.loss, ref, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# the general case against the oracle, values and gradients
# ------------------------------------------------------------------------------------------
CASES = [
    # (anchors, candidates, positives, beta, tau, t, multi, hardness, floor, min_score)
    (4, 6, 1, 1.0, 0.1, 0.5, "softmax", "logit", True, -1.0),
    (8, 15, 1, 0.5, 0.05, 0.2, "softmax", "logit", True, -1.0),
    (8, 15, 2, 2.0, 0.1, 0.5, "softmax", "logit", True, -1.0),
    (8, 15, 2, 2.0, 0.1, 0.5, "mean", "logit", True, -1.0),
    (16, 40, 3, 6.0, 0.2, 1.0, "softmax", "cosine", True, -1.0),
    (5, 9, 1, 1.0, 0.5, 0.1, "mean", "logit", True, -1.0),
    (7, 30, 1, 0.0, 0.1, 0.07, "softmax", "logit", True, -1.0),
    (7, 30, 2, 1.0, 0.3, 1.0, "softmax", "logit", True, None),
    (6, 11, 1, 20.0, 0.1, 0.05, "softmax", "logit", True, -1.0),
    (6, 11, 1, 3.0, 0.0, 0.05, "softmax", "logit", True, -1.0),
]


@pytest.mark.parametrize("case", CASES)
def test_general_case_matches_float64_transcription(case):
    a, c, m, beta, tau, t, multi, hardness, floor, min_score = case
    g = torch.Generator().manual_seed(a * 100 + c)
    scores, pos, neg = random_problem(a, c, m, g)
    s1 = scores.clone().requires_grad_(True)
    s2 = scores.clone().requires_grad_(True)
    ours = contrastive_loss(s1, pos, neg, beta=beta, tau_plus=tau, temperature=t, floor=floor,
                            min_score=min_score, multi_positive=multi, hardness=hardness, reduction="none")
    ref = oracle_infonce(s2, pos, neg, beta=beta, tau=tau, t=t, floor=floor, min_score=min_score,
                         multi=multi, hardness=hardness)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    w = torch.linspace(0.5, 1.5, a, dtype=torch.float64)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-6, atol=1e-9)


def test_float32_is_close_to_float64():
    g = torch.Generator().manual_seed(11)
    scores, pos, neg = random_problem(32, 70, 2, g)
    a = contrastive_loss(scores.float(), pos, neg, beta=2.0, tau_plus=0.1, temperature=0.2)
    b = contrastive_loss(scores, pos, neg, beta=2.0, tau_plus=0.1, temperature=0.2)
    assert a.dtype == torch.float32
    assert abs(float(a) - float(b)) / float(b) < 1e-5


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(5)
    scores, pos, neg = random_problem(5, 8, 2, g)
    s = scores.clone().requires_grad_(True)
    for beta, tau in [(0.0, 0.0), (1.0, 0.1), (2.5, 0.0), (0.7, 0.3)]:
        assert torch.autograd.gradcheck(
            lambda x: contrastive_loss(x, pos, neg, beta=beta, tau_plus=tau, temperature=0.5, reduction="none"),
            (s,))
    z1 = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: hard_negative_loss(a, b, beta=1.0, tau_plus=0.1), (z1, z2))
    assert torch.autograd.gradcheck(
        lambda x: jsd_loss(3 * x, pos, neg, beta=2.0, tau_plus=0.2, reduction="none"), (s,))
    assert torch.autograd.gradcheck(
        lambda x: jsd_loss(3 * x, pos, neg, beta=2.0, tau_plus=0.5, convention="authors", reduction="none"), (s,))


@pytest.mark.parametrize("beta,tau,t", [(1.5, 0.2, 0.3), (0.0, 0.1, 0.5), (1.0, 0.1, 0.5), (1.0, 0.0, 0.2),
                                        (20.0, 0.1, 0.05), (0.0, 0.0, 0.05), (3.0, 0.5, 0.1)])
def test_two_view_fast_path_equals_general_form(beta, tau, t):
    g = torch.Generator().manual_seed(2)
    b = 10
    z1 = torch.randn(b, 12, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(b, 12, generator=g, dtype=torch.float64, requires_grad=True)
    fast = hard_negative_loss(z1, z2, beta=beta, tau_plus=tau, temperature=t)
    gf = torch.autograd.grad(fast, (z1, z2))
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    pos, neg = two_view_masks(b)
    slow = contrastive_loss(z @ z.T, pos, neg, beta=beta, tau_plus=tau, temperature=t)
    gs = torch.autograd.grad(slow, (z1, z2))
    torch.testing.assert_close(fast, slow, rtol=1e-11, atol=0)
    for a, c in zip(gf, gs):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    assert int(neg.sum(1)[0]) == 2 * b - 2


def test_extra_negatives_join_the_pool():
    g = torch.Generator().manual_seed(9)
    scores, pos, neg = random_problem(6, 10, 1, g)
    extra = F.normalize(torch.randn(6, 16, generator=g, dtype=torch.float64), dim=1) @ \
        F.normalize(torch.randn(4, 16, generator=g, dtype=torch.float64), dim=1).T
    pooled = contrastive_loss(scores, pos, neg, beta=1.0, tau_plus=0.1, extra_negatives=extra, reduction="none")
    full = torch.cat([scores, extra], 1)
    pos2 = torch.cat([pos, torch.zeros(6, 4, dtype=torch.bool)], 1)
    neg2 = torch.cat([neg, torch.ones(6, 4, dtype=torch.bool)], 1)
    ref = oracle_infonce(full, pos2, neg2, beta=1.0, tau=0.1, t=0.5)
    torch.testing.assert_close(pooled, ref, rtol=1e-10, atol=0)
    # two-view queue form: the same pool through the structured path
    z1, z2 = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(5, 8, generator=g, dtype=torch.float64)
    q = torch.randn(7, 8, generator=g, dtype=torch.float64)
    fast = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, extra_negatives=q)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    p, n = two_view_masks(5)
    slow = contrastive_loss(z @ z.T, p, n, beta=1.0, tau_plus=0.1, extra_negatives=z @ F.normalize(q, dim=1).T)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------
# structural properties
# ------------------------------------------------------------------------------------------
def test_invariant_to_permuting_negatives():
    g = torch.Generator().manual_seed(4)
    scores, pos, neg = random_problem(8, 20, 2, g)
    base = contrastive_loss(scores, pos, neg, beta=2.0, tau_plus=0.1, reduction="none")
    perm = torch.randperm(20, generator=g)
    moved = contrastive_loss(scores[:, perm], pos[:, perm], neg[:, perm], beta=2.0, tau_plus=0.1, reduction="none")
    torch.testing.assert_close(base, moved, rtol=1e-12, atol=0)


def test_weights_are_monotone_in_similarity_and_are_the_ones_used():
    g = torch.Generator().manual_seed(6)
    scores, pos, neg = random_problem(5, 30, 1, g)
    for beta in (0.5, 1.0, 6.0):
        w = hardness_weights(scores, neg, beta=beta, temperature=0.5)
        for i in range(5):
            s, ww = scores[i][neg[i]], w[i][neg[i]]
            order = s.argsort()
            assert torch.all(ww[order][1:] > ww[order][:-1])
            torch.testing.assert_close(w[i].sum(), torch.tensor(1.0, dtype=w.dtype))
        # R_i = N * sum_j w_ij exp(l_ij): the loss at tau+ = 0 must equal -l+ + log(e^l+ + R)
        l = scores / 0.5
        r = neg.sum(1) * (w * torch.exp(l)).sum(1)
        lp = l[pos]
        expect = -lp + torch.log(torch.exp(lp) + r)
        got = contrastive_loss(scores, pos, neg, beta=beta, tau_plus=0.0, reduction="none")
        torch.testing.assert_close(got, expect, rtol=1e-12, atol=0)
    uniform = hardness_weights(scores, neg, beta=0.0)
    assert torch.allclose(uniform[neg], torch.full_like(uniform[neg], 1.0 / 28))


def test_cosine_hardness_is_logit_with_beta_times_t():
    g = torch.Generator().manual_seed(8)
    scores, pos, neg = random_problem(6, 14, 1, g)
    a = contrastive_loss(scores, pos, neg, beta=2.0, tau_plus=0.1, temperature=0.25, hardness="cosine")
    b = contrastive_loss(scores, pos, neg, beta=0.5, tau_plus=0.1, temperature=0.25, hardness="logit")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_floor_activates_when_tau_plus_is_large():
    g = torch.Generator().manual_seed(1)
    b, t = 16, 0.5
    z1 = torch.randn(b, 8, generator=g, dtype=torch.float64)
    z2 = z1 + 0.05 * torch.randn(b, 8, generator=g, dtype=torch.float64)  # strong positives
    out = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.9, temperature=t, return_details=True)
    assert out.diagnostics["floor_rate"] > 0.5
    n = 2 * b - 2
    zz = F.normalize(torch.cat([z1, z2]), dim=1)
    lp = (zz[:b] * zz[b:]).sum(1) / t
    lp = torch.cat([lp, lp])
    floored_value = -lp + torch.log(torch.exp(lp) + n * math.exp(-1 / t))
    assert torch.isclose(out.per_anchor, floored_value, rtol=1e-12).float().mean() == out.diagnostics["floor_rate"]
    none = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.0, temperature=t, return_details=True)
    assert none.diagnostics["floor_rate"] == 0.0


# ------------------------------------------------------------------------------------------
# numerical stability
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("beta,tau,t", [(20.0, 0.1, 0.05), (20.0, 0.0, 0.05), (0.0, 0.5, 0.05), (6.0, 0.1, 1.0)])
def test_finite_at_extremes(dtype, beta, tau, t):
    g = torch.Generator().manual_seed(12)
    z1 = torch.randn(64, 32, generator=g).to(dtype).requires_grad_(True)
    z2 = (z1.detach().float() + 0.1 * torch.randn(64, 32, generator=g)).to(dtype).requires_grad_(True)
    loss = hard_negative_loss(z1, z2, beta=beta, tau_plus=tau, temperature=t)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(z1.grad.float()).all() and torch.isfinite(z2.grad.float()).all()
    # the direct form overflows here in low precision; ours matches float64 closely
    ref = hard_negative_loss(z1.detach().double(), z2.detach().double(), beta=beta, tau_plus=tau, temperature=t)
    assert abs(loss.item() - ref.item()) <= 1e-4 * max(1.0, abs(ref.item()))


def test_direct_form_would_overflow_but_core_does_not():
    s = torch.tensor([[0.99, 0.98, 0.97, -0.5]], dtype=torch.float32)
    pos = torch.tensor([[True, False, False, False]])
    neg = ~pos
    direct = torch.exp((20 + 1) * s / 0.05)  # the authors' direct exponentials
    assert not torch.isfinite(direct).all()
    out = contrastive_loss(s, pos, neg, beta=20.0, tau_plus=0.1, temperature=0.05)
    assert torch.isfinite(out)


# ------------------------------------------------------------------------------------------
# JSD form
# ------------------------------------------------------------------------------------------
def _graph_problem(gen, nodes=30, graphs=6):
    batch = torch.randint(0, graphs, (nodes,), generator=gen)
    batch[:graphs] = torch.arange(graphs)
    scores = 3 * torch.randn(nodes, graphs, generator=gen, dtype=torch.float64)
    pos = torch.zeros(nodes, graphs, dtype=torch.bool)
    pos[torch.arange(nodes), batch] = True
    return scores, pos, ~pos


def test_jsd_plain_is_infograph():
    g = torch.Generator().manual_seed(0)
    scores, pos, neg = _graph_problem(g)
    nodes, graphs = scores.shape
    e_pos = (math.log(2) - F.softplus(-scores[pos])).sum() / nodes
    e_neg = (F.softplus(-scores[neg]) + scores[neg] - math.log(2)).sum() / (nodes * (graphs - 1))
    ref = e_neg - e_pos
    for conv in ("derived", "authors"):
        torch.testing.assert_close(jsd_loss(scores, pos, neg, convention=conv), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta,tau,exclude", [(2.0, 0.2, False), (0.0, 0.2, False), (0.0, 0.0, True),
                                              (1.0, 0.3, True)])
def test_jsd_derived_matches_debiasing_identity_loop(beta, tau, exclude):
    g = torch.Generator().manual_seed(1)
    scores, pos, neg = _graph_problem(g)
    if exclude:  # some candidates are neither positive nor negative
        neg[::3, 0] = False
        neg[torch.arange(scores.shape[0]), (pos.float().argmax(1) + 1) % scores.shape[1]] = False
    scale = scores[neg].abs().max()
    rows = []
    for i in range(scores.shape[0]):
        p, q = scores[i][pos[i]], scores[i][neg[i]]
        w = torch.exp(beta * 2 * q / scale)
        e_neg = (w * F.softplus(q)).sum() / w.sum()
        if tau > 0:
            e_neg = (e_neg - tau * F.softplus(p).mean()) / (1 - tau)
            e_neg = torch.maximum(e_neg, F.softplus(q).min())
        rows.append(F.softplus(-p).mean() + e_neg - 2 * math.log(2))
    ref = torch.stack(rows)
    torch.testing.assert_close(jsd_loss(scores, pos, neg, beta=beta, tau_plus=tau, reduction="none"), ref,
                               rtol=1e-12, atol=1e-12)


def test_jsd_authors_parity_transcription():
    """The authors' JSD_hard, elementwise over the masked matrices (zeros where masked)."""
    g = torch.Generator().manual_seed(2)
    scores, pos, neg = _graph_problem(g)
    nodes, graphs = scores.shape
    beta, tau = 1.0, 0.5
    pm, qm = scores * pos, scores * neg
    ep = math.log(2) - F.softplus(-pm) - (tau / (1 - tau)) * (F.softplus(-pm) + pm)
    eq = F.softplus(-qm) + qm
    rw = torch.exp(beta * (-2 * qm / max(qm.max(), qm.min().abs())))
    rw = rw / rw.mean(1, keepdim=True)
    eq = rw * eq / (1 - tau) - math.log(2)
    ref = eq.sum() / (nodes * (graphs - 1)) - ep.sum() / nodes
    torch.testing.assert_close(jsd_loss(scores, pos, neg, beta=beta, tau_plus=tau, convention="authors"), ref,
                               rtol=1e-12, atol=1e-12)
    # their sign favours easy negatives: weight decreases with the score
    w_hard = hardness_weights(scores, neg, beta=1.0)
    assert (w_hard[neg].view(-1) > 0).all()


def test_objective_dispatch():
    g = torch.Generator().manual_seed(3)
    scores, pos, neg = _graph_problem(g)
    from hardneg.adapters import ScoreBatch
    sb = ScoreBatch(scores, pos, neg, score_kind="raw")
    o = Objective(LossSpec(objective="jsd", beta=1.0, tau_plus=0.1))
    torch.testing.assert_close(o(sb).loss, jsd_loss(scores, pos, neg, beta=1.0, tau_plus=0.1, temperature=0.5))
    o = Objective(LossSpec(objective="infonce", beta=1.0, tau_plus=0.1, temperature=1.0))
    ref = contrastive_loss(scores, pos, neg, beta=1.0, tau_plus=0.1, temperature=1.0, min_score=None)
    out = o(sb, details=True)
    torch.testing.assert_close(out.loss, ref)
    assert {"ess", "weight_entropy", "top1pct_share", "floor_rate"} <= set(out.diagnostics)


# ------------------------------------------------------------------------------------------
# diagnostics
# ------------------------------------------------------------------------------------------
def test_diagnostics_with_labels():
    g = torch.Generator().manual_seed(7)
    b = 40
    labels = torch.arange(b) % 4
    z1 = F.one_hot(labels, 8).double() + 0.3 * torch.randn(b, 8, generator=g, dtype=torch.float64)
    z2 = F.one_hot(labels, 8).double() + 0.3 * torch.randn(b, 8, generator=g, dtype=torch.float64)
    out = hard_negative_loss(z1, z2, beta=6.0, tau_plus=0.1, labels=labels, return_details=True)
    d = out.diagnostics
    # 9 of the other 39 items share a class, each with 2 views: 18 of 78 negatives
    assert d["true_class_prior"] == pytest.approx(18 / 78)
    assert d["fn_weight_share"] > 0.85     # the tilt puts its mass on the same-class negatives (prior 0.23)
    assert 0 < d["ess"] < 1 and 0 < d["weight_entropy"] < 1
    flat = hard_negative_loss(z1, z2, beta=0.0, tau_plus=0.1, labels=labels, return_details=True).diagnostics
    assert flat["ess"] == pytest.approx(1.0) and flat["weight_entropy"] == pytest.approx(1.0)
    # uniform weights: the weight mass on false negatives is exactly their share (no tie-breaking)
    assert flat["fn_weight_share"] == pytest.approx(18 / 78)
    assert out.per_anchor.shape == (2 * b,)


# ------------------------------------------------------------------------------------------
# bad arguments
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    (dict(beta=-0.5), "beta=-0.5 is out of range; allowed: 0 <= beta"),
    (dict(tau_plus=1.0), "tau_plus=1.0 is out of range; allowed: 0 <= tau_plus < 1"),
    (dict(tau_plus=-0.1), "tau_plus=-0.1"),
    (dict(temperature=0.0), "temperature=0.0 is out of range; allowed: 0 < temperature"),
    (dict(temperature=-1), "temperature=-1"),
    (dict(hardness="cos"), "hardness='cos' is not known; allowed: logit, cosine"),
    (dict(reduction="avg"), "reduction='avg'"),
])
def test_bad_hyperparameters(kwargs, needle):
    z = torch.randn(4, 3)
    with pytest.raises(HardnegError) as e:
        hard_negative_loss(z, z, **kwargs)
    assert needle in str(e.value)
    args = {k: v for k, v in kwargs.items() if k not in ("hardness", "reduction")}
    if args:
        with pytest.raises(HardnegError):
            HardNegativeLoss(**args)


def test_bad_masks():
    s = torch.randn(3, 4)
    pos = torch.zeros(3, 4, dtype=torch.bool)
    pos[:, 0] = True
    neg = ~pos
    with pytest.raises(HardnegError, match=r"pos_mask has shape \(3, 3\); allowed: the shape of scores, \(3, 4\)"):
        contrastive_loss(s, pos[:, :3], neg)
    with pytest.raises(HardnegError, match="dtype"):
        contrastive_loss(s, pos.float(), neg)
    p2 = pos.clone()
    p2[1, 0] = False
    n2 = neg.clone()
    n2[1, 0] = False
    with pytest.raises(HardnegError, match="anchor 1 has no positive"):
        contrastive_loss(s, p2, n2)
    n3 = torch.zeros_like(neg)
    n3[0, 1] = n3[1, 1] = True
    with pytest.raises(HardnegError, match="anchor 2 has no negative"):
        contrastive_loss(s, pos, n3)
    with pytest.raises(HardnegError, match="both positive and negative"):
        contrastive_loss(s, pos, torch.ones_like(neg))
    with pytest.raises(HardnegError, match="B=1 is too small"):
        hard_negative_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(HardnegError, match="shape"):
        hard_negative_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(HardnegError, match="convention='paper'"):
        jsd_loss(s, pos, neg, convention="paper")


def test_module_wrapper():
    crit = HardNegativeLoss(beta=1.0, tau_plus=0.1, temperature=0.5)
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    assert torch.equal(crit(z1, z2), hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5))
    assert "beta=1.0" in repr(crit)


def test_representation_diagnostics_alignment_and_uniformity():
    g = torch.Generator().manual_seed(13)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    d = hard_negative_loss(z, z.clone(), beta=1.0, tau_plus=0.1, return_details=True).diagnostics
    assert d["alignment"] == pytest.approx(0.0, abs=1e-12)      # identical views are perfectly aligned
    zz = F.normalize(torch.cat([z, z]), dim=1)
    pos, neg = two_view_masks(6)
    sq = torch.cdist(zz, zz).pow(2)
    expect = torch.log(torch.exp(-2 * sq[neg]).mean())
    assert d["uniformity"] == pytest.approx(float(expect), rel=1e-9)


@pytest.mark.parametrize("neg_score", [-0.2, -0.5, -0.9])
def test_tiny_losses_keep_full_relative_precision(neg_score):
    # loss_i = log(1 + sum_j exp(l_ij - l+_i)): the final step is softplus(log Ng - l+), so a
    # loss of 1e-10 .. 1e-40 keeps float64's relative precision; logaddexp(l+, log Ng) - l+
    # would round it to a multiple of eps * l+ ~ 4e-15 (shown below, so the test can fail)
    a, c, t = 6, 9, 0.05
    g = torch.Generator().manual_seed(3)
    scores = neg_score + 0.05 * torch.rand(a, c, generator=g, dtype=torch.float64)
    pos = torch.zeros(a, c, dtype=torch.bool)
    pos[torch.arange(a), torch.arange(a)] = True
    scores[pos] = 1.0
    neg = ~pos
    ours = contrastive_loss(scores, pos, neg, beta=0.0, tau_plus=0.0, temperature=t, reduction="none")
    l = scores / t
    ratio = torch.exp(l - l[pos].unsqueeze(1)).masked_fill(~neg, 0.0).sum(1)
    ref = torch.log1p(ratio)                                   # no cancellation: exact to rounding
    assert float(ref.max()) < 1e-9
    rel = ((ours - ref).abs() / ref).max()
    assert rel < 1e-13, float(rel)
    naive = torch.logaddexp(l[pos], l.masked_fill(~neg, float("-inf")).logsumexp(1)) - l[pos]
    assert ((naive - ref).abs() / ref).max() > 1e-6
    # the two-view path ends in the same step
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    per = hard_negative_loss(z1, z1.clone(), beta=0.0, tau_plus=0.0, temperature=t, reduction="none")
    exact = math.log1p(2 * math.exp(-2.0 / t))                # negatives: the other item's two views
    assert torch.allclose(per, torch.full_like(per, exact), rtol=1e-13, atol=0), (per, exact)
