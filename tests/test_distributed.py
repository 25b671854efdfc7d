"""Negatives gathered across ranks (gloo on 127.0.0.1) equal the single-process global batch."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hardneg import hard_negative_loss

B_LOCAL, D, WORLD = 4, 6, 2


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
        loss = hard_negative_loss(a, b, beta=1.0, tau_plus=0.1, temperature=0.5, gather_distributed=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "g1": a.grad, "g2": b.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_gathered_negatives_match_global_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    z1, z2 = _data()
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = hard_negative_loss(a, b, beta=1.0, tau_plus=0.1, temperature=0.5)
    full.backward()
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    # the mean of the ranks' losses is the global loss
    torch.testing.assert_close(sum(p["loss"] for p in parts) / WORLD, full.detach(), rtol=1e-12, atol=0)
    # each rank's gradient is WORLD x its slice of the global gradient (DDP then averages)
    for r, p in enumerate(parts):
        sl = slice(r * B_LOCAL, (r + 1) * B_LOCAL)
        torch.testing.assert_close(p["g1"], WORLD * a.grad[sl], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(p["g2"], WORLD * b.grad[sl], rtol=1e-10, atol=1e-12)
