"""The generic probes: weighted kNN monitor and linear probe on frozen features."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hardneg.errors import HardnegError
from hardneg.evaluation.knn import knn_accuracy, knn_scores
from hardneg.evaluation.linear import linear_probe


def _knn_loop(mem, lab, q, num_classes, k, t):
    """Oracle: one query at a time, plain Python."""
    out = torch.zeros(q.shape[0], num_classes, dtype=torch.float64)
    mem = mem / mem.norm(dim=1, keepdim=True)
    for i, qi in enumerate(q):
        qi = qi / qi.norm()
        sims = [(float(qi @ m), int(y)) for m, y in zip(mem, lab)]
        sims.sort(key=lambda s: -s[0])
        for s, y in sims[:k]:
            out[i, y] += math.exp(s / t)
    return out


def test_knn_matches_loop_oracle():
    g = torch.Generator().manual_seed(0)
    mem = torch.randn(60, 8, generator=g, dtype=torch.float64)
    lab = torch.randint(0, 4, (60,), generator=g)
    q = torch.randn(9, 8, generator=g, dtype=torch.float64)
    got = knn_scores(mem, lab, q, num_classes=4, k=7, temperature=0.5, chunk=4)
    want = _knn_loop(mem, lab, q, 4, 7, 0.5)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_knn_accuracy_on_clusters_and_k_clamped():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 16, generator=g) * 5
    y = torch.arange(200) % 5
    x = centres[y] + 0.1 * torch.randn(200, 16, generator=g)
    yq = torch.arange(50) % 5
    q = centres[yq] + 0.1 * torch.randn(50, 16, generator=g)
    acc = knn_accuracy(x, y, q, yq, num_classes=5, k=500, topk=(1, 5))  # k > memory: clamped
    assert acc[1] == 1.0 and acc[5] == 1.0
    # shuffled labels: chance level, far from perfect
    bad = knn_accuracy(x, y[torch.randperm(200, generator=g)], q, yq, num_classes=5, k=20)
    assert bad[1] < 0.6


def test_knn_rejects_bad_input():
    with pytest.raises(HardnegError, match="same d"):
        knn_scores(torch.randn(4, 3), torch.zeros(4), torch.randn(2, 5), num_classes=2)
    with pytest.raises(HardnegError, match="k=0"):
        knn_scores(torch.randn(4, 3), torch.zeros(4), torch.randn(2, 3), num_classes=2, k=0)


def _blobs(n, classes, dim, seed, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.arange(n) % classes
    return centres[y] + spread * torch.randn(n, dim, generator=g), y


def test_linear_probe_on_features_learns_and_reports_top5_only_above_10_classes():
    xtr, ytr = _blobs(400, 4, 10, 0)
    xte, yte = _blobs(200, 4, 10, 1)
    res = linear_probe(xtr, ytr, xte, yte, num_classes=4, epochs=60, batch_size=64,
                       generator=torch.Generator().manual_seed(0))
    assert res.top1 > 0.95 and res.top5 is None and res.epochs == 60
    xtr, ytr = _blobs(600, 12, 16, 0)
    xte, yte = _blobs(240, 12, 16, 1)
    res = linear_probe(xtr, ytr, xte, yte, num_classes=12, epochs=40, batch_size=64,
                       generator=torch.Generator().manual_seed(0))
    assert res.top5 is not None and res.top5 >= res.top1 > 0.8
    # labels shuffled: the probe cannot generalise
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(3))
    res = linear_probe(xtr, ytr[perm], xte, yte, num_classes=12, epochs=10, batch_size=64,
                       generator=torch.Generator().manual_seed(0))
    assert res.top1 < 0.3


def test_linear_probe_is_deterministic_under_a_seed():
    xtr, ytr = _blobs(200, 3, 6, 0, spread=2.0)
    xte, yte = _blobs(100, 3, 6, 1, spread=2.0)
    a = linear_probe(xtr, ytr, xte, yte, num_classes=3, epochs=5, batch_size=32, generator=torch.Generator().manual_seed(5))
    b = linear_probe(xtr, ytr, xte, yte, num_classes=3, epochs=5, batch_size=32, generator=torch.Generator().manual_seed(5))
    assert (a.top1, a.train_loss) == (b.top1, b.train_loss)


class _BNEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        return torch.relu(self.bn(self.lin(x)))


def test_encoder_modes_eval_keeps_and_train_parity_restores_bn_buffers():
    torch.manual_seed(0)
    enc = _BNEncoder()
    enc.train()
    xtr, ytr = _blobs(256, 3, 6, 0)
    xtr = xtr * 4 + 7  # far from the initial running mean 0 / var 1: parity mode must move them
    xte, yte = _blobs(90, 3, 6, 1)
    xte = xte * 4 + 7
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    seen = {}

    def spy(mod, inp, out):
        seen.setdefault("modes", set()).add(mod.training)

    h = enc.bn.register_forward_hook(spy)
    linear_probe(xtr, ytr, xte, yte, num_classes=3, encoder=enc, epochs=2, batch_size=64)
    assert seen["modes"] == {False}
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k
    seen.clear()
    res = linear_probe(xtr, ytr, xte, yte, num_classes=3, encoder=enc, epochs=2, batch_size=64, encoder_mode="train")
    h.remove()
    assert seen["modes"] == {True, False}  # train mode while fitting, eval for the test pass
    assert "parity" in res.protocol
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k  # restored afterwards
    assert enc.training  # the caller's mode is restored too


def test_linear_probe_with_train_transform_uses_it():
    calls = []

    def tf(x, gen):
        calls.append(x.shape[0])
        return x + 0.01 * torch.randn(x.shape, generator=gen)

    xtr, ytr = _blobs(100, 2, 4, 0)
    xte, yte = _blobs(40, 2, 4, 1)
    enc = nn.Identity()
    res = linear_probe(xtr, ytr, xte, yte, num_classes=2, encoder=enc, epochs=3, batch_size=50, train_transform=tf)
    assert sum(calls) == 300 and "augmented" in res.protocol


def test_linear_probe_rejects_bad_arguments():
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(HardnegError, match="encoder_mode='bn'"):
        linear_probe(x, y, x, y, num_classes=2, encoder_mode="bn")
    with pytest.raises(HardnegError, match="differ in length"):
        linear_probe(x, y[:3], x, y, num_classes=2)
