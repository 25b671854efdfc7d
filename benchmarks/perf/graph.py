"""Speed of InfoGraph training: vectorised masks vs the authors' per-node Python loop.

For each data set (default PROTEINS and NCI1) one process times full training epochs
(batch assembly, forward, score matrix, masks, JSD loss through the shared core, backward,
Adam step; the same step as ``hardneg.train.train``) with the two mask constructions side
by side, alternating them epoch by epoch so machine load hits both alike, and prints the
median seconds per epoch and the ratio. Also the mask construction alone (ms per epoch).

The authors' construction (github.com/joshr17/HCL, graph/losses.py) is::

    for nodeidx, graphidx in enumerate(batch):
        pos_mask[nodeidx][graphidx] = 1.; neg_mask[nodeidx][graphidx] = 0.

Target (issue 3): the vectorised epoch at least 5x faster. The last column is the share of
the vectorised epoch still spent building masks, i.e. all that any mask construction could
still save: the rest is the GIN, the discriminators, the score matrix, the loss and Adam,
dense compute that the loop version pays too. So on a CPU the epoch ratio is bounded by
``loop epoch / (vectorised epoch - its mask time)``, essentially the ratio printed. On a GPU
the loop issues two indexing kernels per node while the model is a few large kernels, so
the loop's share should be much larger; that has not been measured here.

Usage: OMP_NUM_THREADS=1 python benchmarks/perf/graph.py [--datasets PROTEINS NCI1] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hardneg.adapters import RunContext
from hardneg.data import resolve_data_root
from hardneg.losses import Objective
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from modalities.graph import GraphAdapter, node_graph_masks, node_graph_masks_loop


def _context(dataset: str, masks: str, batch_size: int) -> tuple[GraphAdapter, RunContext]:
    spec = RunSpec("graph", dataset, seed=0, loss=LossSpec(objective="jsd", temperature=1.0),
                   train=TrainSpec(epochs=1, batch_size=batch_size, lr=1e-3, weight_decay=0.0),
                   options={"masks": masks})
    a = GraphAdapter()
    run = RunContext(spec=spec, options=a.resolve_options(spec.options), data_root=resolve_data_root(),
                     cache_dir=Path("."), device=torch.device("cpu"),
                     generator=torch.Generator().manual_seed(0), log=lambda s: None)
    a.prepare(run)
    return a, run


def _epoch(a: GraphAdapter, run: RunContext, model, opt, objective, epoch: int) -> float:
    model.train()
    tic = time.perf_counter()
    for batch in a.train_batches(run, epoch):
        out = a.compute_loss(model, batch, objective, run)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["PROTEINS", "NCI1"])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the suites use 1 per run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}, batch={args.batch_size}, epochs timed per variant={args.epochs} (+1 warm-up), "
          f"torch {torch.__version__}")
    print(f"{'data set':<10} {'graphs':>6} {'nodes':>7} | {'vectorised s/ep':>15} {'loop s/ep':>10} "
          f"{'ratio':>6} | {'masks vec ms/ep':>15} {'masks loop ms/ep':>16} {'ratio':>7} | {'masks % of vec epoch':>20}")
    for ds in args.datasets:
        variants = {}
        for masks in ("vectorized", "loop"):
            a, run = _context(ds, masks, args.batch_size)
            torch.manual_seed(0)
            model = a.build_model(run)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            variants[masks] = (a, run, model, opt, Objective(run.spec.loss))
        times: dict[str, list[float]] = {"vectorized": [], "loop": []}
        for ep in range(args.epochs + 1):
            for masks, (a, run, model, opt, obj) in variants.items():
                t = _epoch(a, run, model, opt, obj, ep)
                if ep > 0:
                    times[masks].append(t)
        # the mask construction alone, over one epoch's batches
        a, run = variants["vectorized"][:2]
        batches = list(a.train_batches(run, 0))
        mask_ms = {}
        for name, fn in (("vectorized", node_graph_masks), ("loop", node_graph_masks_loop)):
            tic = time.perf_counter()
            for b in batches:
                fn(b.batch, b.num_graphs)
            mask_ms[name] = 1000 * (time.perf_counter() - tic)
        v, lp = statistics.median(times["vectorized"]), statistics.median(times["loop"])
        g = run.details["graph"]
        share = 100 * mask_ms["vectorized"] / 1000 / v
        print(f"{ds:<10} {g['graphs']:>6} {g['nodes']:>7} | {v:>15.3f} {lp:>10.3f} {lp / v:>5.1f}x | "
              f"{mask_ms['vectorized']:>15.1f} {mask_ms['loop']:>16.1f} {mask_ms['loop'] / mask_ms['vectorized']:>6.0f}x"
              f" | {share:>19.2f}%")


if __name__ == "__main__":
    main()
