"""The blockwise (chunk_size) two-view loss equals the dense form, in value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hardneg import HardNegativeLoss, HardnegError, hard_negative_loss
from hardneg.losses.chunked import chunked_log_r
from test_distributed import _free_port


def _views(b, d, seed, dtype=torch.float64, same=False):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=dtype)
    z2 = z1 + 0.3 * torch.randn(b, d, generator=g, dtype=dtype) if not same else z1.clone()
    return z1.requires_grad_(True), z2.requires_grad_(True)


def _value_and_grads(z1, z2, **kw):
    loss = hard_negative_loss(z1, z2, **kw)
    return (loss, *torch.autograd.grad(loss.sum(), (z1, z2)))


def _max_abs_diff(a, b):
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b))


# B = 13: 26 rows and columns, blocks of 4 leave a ragged last block of 2; (beta + 1) 2 / t
# above 80 (beta = 5, t = 0.1) takes the running-maximum path, the rest the fixed shift
@pytest.mark.parametrize("beta", [0.0, 1.0, 5.0])
@pytest.mark.parametrize("tau", [0.0, 0.1])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_equals_dense_in_value_and_gradient(beta, tau, t):
    z1, z2 = _views(13, 6, seed=int(beta * 10 + tau * 100 + t * 1000))
    dense = _value_and_grads(z1, z2, beta=beta, tau_plus=tau, temperature=t, reduction="none")
    for k in (4, 5, 26):
        chunked = _value_and_grads(z1, z2, beta=beta, tau_plus=tau, temperature=t, reduction="none",
                                   chunk_size=k)
        assert _max_abs_diff(dense, chunked) < 1e-10, (k, _max_abs_diff(dense, chunked))


def test_floor_active_is_the_same_floor():
    # z2 = z1: every positive is exp(1/t), so tau+ = 0.7 drives the debiased estimate below
    # N exp(-1/t) and the floor binds for every anchor
    z1, z2 = _views(9, 5, seed=4, same=True)
    kw = {"beta": 1.0, "tau_plus": 0.7, "temperature": 0.5}
    dense = hard_negative_loss(z1, z2, return_details=True, **kw)
    chunked = hard_negative_loss(z1, z2, return_details=True, chunk_size=4, **kw)
    assert dense.diagnostics["floor_rate"] == chunked.diagnostics["floor_rate"] == 1.0
    gd = torch.autograd.grad(dense.loss, (z1, z2))
    gc = torch.autograd.grad(chunked.loss, (z1, z2))
    assert _max_abs_diff((dense.loss, *gd), (chunked.loss, *gc)) < 1e-10
    for key in ("pos_logit", "neg_logit"):
        assert abs(dense.diagnostics[key] - chunked.diagnostics[key]) < 1e-12, key


def test_partly_floored_batch():
    # half the items have identical views (floored at tau+ = 0.4), half do not
    z1, z2 = _views(10, 4, seed=8)
    with torch.no_grad():
        z2[:5] = z1[:5]
    kw = {"beta": 2.0, "tau_plus": 0.4, "temperature": 0.5}
    rate = hard_negative_loss(z1, z2, return_details=True, **kw).diagnostics["floor_rate"]
    assert 0.0 < rate < 1.0
    dense = _value_and_grads(z1, z2, reduction="none", **kw)
    chunked = _value_and_grads(z1, z2, reduction="none", chunk_size=3, **kw)
    assert _max_abs_diff(dense, chunked) < 1e-10


@pytest.mark.parametrize("hardness", ["logit", "cosine"])
def test_extra_negatives_are_more_columns(hardness):
    z1, z2 = _views(7, 5, seed=2)
    g = torch.Generator().manual_seed(3)
    queue = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kw = {"beta": 1.5, "tau_plus": 0.1, "temperature": 0.3, "hardness": hardness, "extra_negatives": queue}
    dense = hard_negative_loss(z1, z2, **kw)
    chunked = hard_negative_loss(z1, z2, chunk_size=4, **kw)
    gd = torch.autograd.grad(dense, (z1, z2, queue))
    gc = torch.autograd.grad(chunked, (z1, z2, queue))
    assert _max_abs_diff((dense, *gd), (chunked, *gc)) < 1e-10


def test_gradcheck_tiny():
    for beta, tau, t in [(1.0, 0.1, 0.5), (0.0, 0.0, 0.5), (5.0, 0.1, 0.1), (2.5, 0.3, 0.4)]:
        z1, z2 = _views(3, 4, seed=1)
        assert torch.autograd.gradcheck(
            lambda a, b, beta=beta, tau=tau, t=t: hard_negative_loss(
                a, b, beta=beta, tau_plus=tau, temperature=t, reduction="none", chunk_size=2), (z1, z2))


def test_log_r_kernel_against_direct_sum():
    g = torch.Generator().manual_seed(6)
    a = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    c = torch.nn.functional.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    excluded = torch.tensor([[0, 1], [2, 7], [3, 4], [7, 6], [5, 0]])
    for beta in (0.0, 1.0, 3.0):
        log_r = chunked_log_r(a, c, excluded, temperature=0.5, beta=beta, chunk_size=3)
        for i in range(5):
            keep = torch.ones(8, dtype=torch.bool)
            keep[excluded[i]] = False
            l = (a[i] @ c.T / 0.5)[keep]
            w = torch.exp(beta * l)
            r = (torch.exp(l).sum() if beta == 0.0 else keep.sum() * (w * torch.exp(l)).sum() / w.sum())
            assert abs(float(log_r[i]) - float(torch.log(r))) < 1e-12


def test_float32_matches_float64():
    z1, z2 = _views(40, 16, seed=9)
    ref = hard_negative_loss(z1, z2, beta=2.0, tau_plus=0.1, temperature=0.2)
    out = hard_negative_loss(z1.float(), z2.float(), beta=2.0, tau_plus=0.1, temperature=0.2, chunk_size=16)
    assert out.dtype == torch.float32
    assert abs(float(out.detach()) - float(ref.detach())) / float(ref.detach()) < 1e-5


def test_finite_at_extremes():
    z1, z2 = _views(20, 8, seed=5, dtype=torch.float32)
    loss = hard_negative_loss(z1, z2, beta=20.0, tau_plus=0.1, temperature=0.05, chunk_size=7)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_chunk_larger_than_the_matrix_is_one_block():
    z1, z2 = _views(6, 4, seed=7)
    dense = _value_and_grads(z1, z2, beta=1.0, tau_plus=0.1)
    assert _max_abs_diff(dense, _value_and_grads(z1, z2, beta=1.0, tau_plus=0.1, chunk_size=10**6)) < 1e-12


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_bad_chunk_size(bad):
    z1, z2 = _views(4, 3, seed=0)
    with pytest.raises(HardnegError, match=f"chunk_size={bad!r} is not allowed; allowed: an integer >= 1"):
        hard_negative_loss(z1, z2, chunk_size=bad)
    with pytest.raises(HardnegError, match="chunk_size="):
        HardNegativeLoss(chunk_size=bad)


def test_module_wrapper_passes_chunk_size():
    z1, z2 = _views(8, 4, seed=3)
    crit = HardNegativeLoss(beta=1.0, tau_plus=0.1, temperature=0.5, chunk_size=5)
    assert "chunk_size=5" in repr(crit)
    dense = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5)
    assert abs(float(crit(z1, z2).detach()) - float(dense.detach())) < 1e-12


# ------------------------------------------------------------------------------------------
# gathered negatives: 2 ranks (gloo on 127.0.0.1), chunked, equal the dense global batch
# ------------------------------------------------------------------------------------------
B_LOCAL, D, WORLD = 5, 4, 2


def _data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(WORLD * B_LOCAL, D, generator=g, dtype=torch.float64),
            torch.randn(WORLD * B_LOCAL, D, generator=g, dtype=torch.float64))


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        z1, z2 = _data()
        sl = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        a = z1[sl].clone().requires_grad_(True)
        b = z2[sl].clone().requires_grad_(True)
        loss = hard_negative_loss(a, b, beta=2.0, tau_plus=0.1, temperature=0.3, gather_distributed=True,
                                  chunk_size=3)
        loss.backward()
        torch.save({"loss": loss.detach(), "g1": a.grad, "g2": b.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_gathered_chunked_matches_dense_global_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    z1, z2 = _data()
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = hard_negative_loss(a, b, beta=2.0, tau_plus=0.1, temperature=0.3)
    full.backward()
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert abs(float(sum(p["loss"] for p in parts) / WORLD) - float(full.detach())) < 1e-12
    for r, p in enumerate(parts):
        sl = slice(r * B_LOCAL, (r + 1) * B_LOCAL)
        assert float((p["g1"] - WORLD * a.grad[sl]).abs().max()) < 1e-10
        assert float((p["g2"] - WORLD * b.grad[sl]).abs().max()) < 1e-10


def test_suites_set_chunk_size_without_changing_the_run_id():
    from hardneg.errors import ConfigError
    from hardneg.objective import Objective
    from hardneg.spec import LossSpec, RunSpec, TrainSpec

    dense = RunSpec(modality="image", dataset="cifar10", loss=LossSpec(beta=1.0, tau_plus=0.1), train=TrainSpec())
    chunked = RunSpec(modality="image", dataset="cifar10",
                      loss=LossSpec(beta=1.0, tau_plus=0.1, chunk_size=5).validate(), train=TrainSpec())
    assert chunked.run_id == dense.run_id
    z1, z2 = _views(13, 6, seed=3)
    a = Objective(dense.loss).two_view(z1, z2).per_anchor
    b = Objective(chunked.loss).two_view(z1, z2).per_anchor
    assert float((a - b).detach().abs().max()) < 1e-10
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match=f"loss.chunk_size={bad!r} is invalid; allowed: 0"):
            LossSpec(chunk_size=bad).validate()
