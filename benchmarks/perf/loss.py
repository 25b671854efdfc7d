"""Forward+backward time and peak memory: hard-negative loss vs plain NT-Xent, side by side.

NT-Xent is ``F.cross_entropy`` on the same 2B x 2B logits (self masked), the usual
implementation. Both include the normalisation and the similarity matmul. Timings are
medians over interleaved repetitions in one process; peak memory is measured in a fresh
subprocess per configuration (CPU: peak RSS above the inputs during one fwd+bwd, read from /proc;
CUDA: torch.cuda.max_memory_allocated above the inputs).

    python benchmarks/perf/loss.py [--sizes 256 1024 4096] [--dim 128] [--repeats 7] [--device cpu]

``--large`` compares the dense two-view loss with the exact blockwise form
(``chunk_size``) at batches beyond memory: B = 4,096, 16,384, 65,536 by default, d = 128,
float32, beta = 1, tau+ = 0.1, t = 0.5, on the CPU. Every (B, method) runs in its own child
process, which reports the median forward+backward time of its repetitions and its peak
resident memory (VmHWM = getrusage's ru_maxrss: the whole process, torch and inputs
included) and the peak above its inputs. Dense runs only where its estimated peak fits
``--budget-gb`` (default 8): the estimate is the dense peak measured at the largest B that
ran, scaled by (B / B0)^2, else three float32 (2B)^2 matrices; otherwise it prints
"skipped (needs X GB)". Batches up to 4,096 run ``--rounds`` rounds of the two children
alternately (a shared machine drifts); larger ones one child each, one repetition.

    python benchmarks/perf/loss.py --large [--sizes 4096 16384 65536] [--chunk 1024] [--budget-gb 8]
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


def large_child(method: str, b: int, d: int, chunk: int, reps: int) -> dict:
    """In a child: median fwd+bwd seconds over ``reps`` (after a warm-up when reps > 1) and peak RSS."""
    g = torch.Generator().manual_seed(b)
    z1 = torch.randn(b, d, generator=g).requires_grad_(True)
    z2 = torch.randn(b, d, generator=g).requires_grad_(True)
    base = _status_kb("VmRSS")
    k = None if method == "dense" else chunk

    def fn(a, c):
        return hard_negative_loss(a, c, beta=1.0, tau_plus=0.1, temperature=0.5, chunk_size=k)

    if reps > 1:
        step(fn, z1, z2)
    times = []
    for _ in range(reps):
        tic = time.perf_counter()
        loss = step(fn, z1, z2)
        times.append(time.perf_counter() - tic)
    return {"s": statistics.median(times), "times": times, "loss": float(loss.detach()),
            "peak_gb": _status_kb("VmHWM") / 2**20, "above_inputs_gb": (_status_kb("VmHWM") - base) / 2**20}


def main_large(args) -> None:
    sizes = args.sizes if args.sizes_given else [4096, 16384, 65536]
    print(f"two-view loss, beta=1 tau+=0.1 t=0.5, float32, d={args.dim}, cpu, threads={torch.get_num_threads()}, "
          f"chunk_size={args.chunk}, dense budget {args.budget_gb:g} GB, torch={torch.__version__}", flush=True)
    print(f"{'B':>7} {'method':>8} {'time s':>9} {'vs dense':>9} {'peak RSS GB':>12} {'above inputs GB':>16}  loss",
          flush=True)
    dense_ref = None                                  # (B, peak above inputs) of the largest dense run
    for b in sizes:
        matrix_gb = 4 * (2 * b) ** 2 / 2**30
        need = dense_ref[1] * (b / dense_ref[0]) ** 2 if dense_ref else 3 * matrix_gb
        methods = ["dense", "chunked"] if need <= args.budget_gb else ["chunked"]
        rounds, reps = (args.rounds, 3) if b <= 4096 else (1, 1)
        res: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(rounds):
            for m in methods:
                cmd = [sys.executable, __file__, "--large-child", m, str(b), str(args.dim), str(args.chunk),
                       str(reps)] + (["--threads", str(args.threads)] if args.threads else [])
                out = subprocess.run(cmd, check=False, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"child {m} B={b} failed ({out.returncode}): {out.stderr[-2000:]}")
                res[m].append(json.loads(out.stdout))
        summary = {m: {"s": statistics.median(t for r in rs for t in r["times"]),
                       "peak_gb": max(r["peak_gb"] for r in rs),
                       "above_inputs_gb": max(r["above_inputs_gb"] for r in rs), "loss": rs[0]["loss"]}
                   for m, rs in res.items()}
        if "dense" in summary:
            dense_ref = (b, summary["dense"]["above_inputs_gb"])
        else:
            print(f"{b:>7} {'dense':>8}  skipped (needs {need:.1f} GB: "
                  + (f"the measured dense peak at B={dense_ref[0]} scaled by (B/{dense_ref[0]})^2)"
                     if dense_ref else "three float32 (2B)^2 matrices)"), flush=True)
        for m, s in summary.items():
            ratio = f"{s['s'] / summary['dense']['s']:.2f}" if "dense" in summary else "-"
            print(f"{b:>7} {m:>8} {s['s']:>9.2f} {ratio:>9} {s['peak_gb']:>12.2f} {s['above_inputs_gb']:>16.2f}"
                  f"  {s['loss']:.6f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "B", "D"), help=argparse.SUPPRESS)
    ap.add_argument("--large", action="store_true", help="dense vs chunked beyond memory (CPU, children)")
    ap.add_argument("--chunk", type=int, default=1024, help="--large: chunk_size of the blockwise form")
    ap.add_argument("--budget-gb", type=float, default=8.0, help="--large: skip dense beyond this estimate")
    ap.add_argument("--rounds", type=int, default=3, help="--large: alternating child rounds for B <= 4096")
    ap.add_argument("--large-child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.sizes_given = any(a.startswith("--sizes") for a in sys.argv[1:])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.large_child:
        m, b, d, k, r = args.large_child
        print(json.dumps(large_child(m, int(b), int(d), int(k), int(r))))
        return
    if args.large:
        main_large(args)
        return
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
        for fn in METHODS.values():  # warm-up
            step(fn, z1, z2)
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
