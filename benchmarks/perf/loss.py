"""Forward+backward time and peak memory: hard-negative loss vs plain NT-Xent, side by side.

NT-Xent is ``F.cross_entropy`` on the same 2B x 2B logits (self masked), the usual
implementation. Both include the normalisation and the similarity matmul. Timings are
medians over interleaved repetitions in one process; peak memory is measured in a fresh
subprocess per configuration (CPU: peak RSS above the inputs during one fwd+bwd, read from /proc;
CUDA: torch.cuda.max_memory_allocated above the inputs).

    python benchmarks/perf/loss.py [--sizes 256 1024 4096] [--dim 128] [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from hardneg import hard_negative_loss


def ntxent(z1, z2, t=0.5):
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / t
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, target)


def hard(z1, z2):
    return hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5)


def hard_beta2(z1, z2):
    return hard_negative_loss(z1, z2, beta=2.0, tau_plus=0.1, temperature=0.5)


METHODS = {"ntxent": ntxent, "hard(beta=1)": hard, "hard(beta=2)": hard_beta2}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(fn, z1, z2):
    z1.grad = z2.grad = None
    loss = fn(z1, z2)
    loss.backward()
    return loss


def measure_memory(method: str, b: int, d: int, device: str) -> float:
    """Run in a child: peak memory (MB) of one fwd+bwd beyond the inputs."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(b, d, generator=g).to(dev).requires_grad_(True)
    z2 = torch.randn(b, d, generator=g).to(dev).requires_grad_(True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(METHODS[method], z1, z2)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # reset the kernel's peak-RSS counter (Linux >= 4.0), then read VmHWM after one step
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kb("VmRSS")
    step(METHODS[method], z1, z2)
    return (_status_kb("VmHWM") - base) / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "B", "D"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure_memory(args.child[0], int(args.child[1]), int(args.child[2]), args.device)))
        return
    dev = torch.device(args.device)
    print(f"device={dev} threads={torch.get_num_threads()} d={args.dim} torch={torch.__version__}")
    print(f"{'B':>6} {'method':>14} {'median ms':>10} {'ratio':>7} {'peak MB':>9} {'mem ratio':>9}")
    for b in args.sizes:
        g = torch.Generator().manual_seed(b)
        z1 = torch.randn(b, args.dim, generator=g).to(dev).requires_grad_(True)
        z2 = torch.randn(b, args.dim, generator=g).to(dev).requires_grad_(True)
        times = {m: [] for m in METHODS}
        for m in METHODS:  # warm-up
            step(METHODS[m], z1, z2)
        reps = args.repeats if b < 4096 or dev.type == "cuda" else max(3, args.repeats // 2)
        for _ in range(reps):
            for m, fn in METHODS.items():
                _sync(dev)
                tic = time.perf_counter()
                step(fn, z1, z2)
                _sync(dev)
                times[m].append(time.perf_counter() - tic)
        mem = {}
        for m in METHODS:
            cmd = [sys.executable, __file__, "--device", args.device, "--child", m, str(b), str(args.dim)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            mem[m] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        base_t = statistics.median(times["ntxent"])
        for m in METHODS:
            med = statistics.median(times[m])
            print(f"{b:>6} {m:>14} {med * 1e3:>10.2f} {med / base_t:>7.2f} {mem[m]:>9.1f} "
                  f"{mem[m] / mem['ntxent'] if mem['ntxent'] > 0 else float('nan'):>9.2f}")


if __name__ == "__main__":
    main()
