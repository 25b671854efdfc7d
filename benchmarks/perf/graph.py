"""Speed of InfoGraph training epochs: hardneg's step beside the authors' per-node mask loop.

One process times full training epochs (batch assembly, forward, node x graph scores,
masks, JSD loss, backward, Adam step) of four variants side by side, alternating them
epoch by epoch so that machine load hits all alike, and prints the median seconds per
epoch and the ratios to hardneg's epoch:

``hardneg``
    the trainer's step: tensor-op batch assembly (``gather_graphs``), masks by one indexed
    assignment, the derived JSD of ``hardneg.losses``, denormals flushed on CPU (what
    ``hardneg.train.train`` does, ``train.flush_denormal = true``).
``loop masks``
    the same step with the masks built by the authors' per-node loop (github.com/joshr17/HCL,
    ``graph/losses.py``; the issue's comparison)::

        for nodeidx, graphidx in enumerate(batch):
            pos_mask[nodeidx][graphidx] = 1.; neg_mask[nodeidx][graphidx] = 0.
``hardneg, denormals kept``
    hardneg's step with ``train.flush_denormal = false``, to show what that setting buys.
``authors' epoch``
    the reference implementation's structure: torch_geometric's ``DataLoader`` collating
    ``Data`` objects of a once-shuffled ``TUDataset``, the per-node loop, the JSD computed on
    mask-multiplied full matrices (``jsd_loss(convention='authors')``, equal to plain JSD at
    beta = 0), denormals kept (their code does not flush them).

All four use the same GIN and discriminators (hardneg's ``InfoGraphModel``). Also printed:
the mask construction alone (ms per epoch) and the share of hardneg's epoch spent on
masks. On a CPU the epoch is mostly the model's own dense compute (GIN and the local
discriminator on every node, the score matrix, their backward), which every variant pays,
so the loop-masks ratio can be no more than about ``(model epoch + loop time) / model epoch``;
the last column prints that estimate from the masks timed alone. On a GPU the loop issues two indexing kernels per node while the
model is a few large kernels, so the loop's share is far larger; ``--device cuda`` measures it.

Usage: OMP_NUM_THREADS=1 python benchmarks/perf/graph.py [--datasets PROTEINS NCI1] [--epochs 3]
       [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from hardneg.adapters import RunContext, ScoreBatch, open_run
from hardneg.data import resolve_data_root
from hardneg.losses import jsd_loss
from hardneg.objective import Objective
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.train import training_numerics
from modalities.graph import GraphAdapter, GraphBatch, build_tu_cache, node_graph_masks, tu_raw_dir


def node_graph_masks_loop(batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' construction (github.com/joshr17/HCL, graph/losses.py), one Python
    iteration per node: the reference the vectorised masks are timed against."""
    n = batch.numel()
    pos = torch.zeros((n, num_graphs), device=batch.device)
    neg = torch.ones((n, num_graphs), device=batch.device)
    for nodeidx, graphidx in enumerate(batch):
        pos[nodeidx][graphidx] = 1.
        neg[nodeidx][graphidx] = 0.
    return pos.bool(), neg.bool()


class LoopMaskAdapter(GraphAdapter):
    """The graph adapter with the per-node mask loop in its score_batch (benchmark only)."""

    def score_batch(self, model, batch, run):
        sb = super().score_batch(model, batch, run)
        sb.pos_mask, sb.neg_mask = node_graph_masks_loop(batch.batch, batch.num_graphs)
        return sb


def _context(dataset: str, masks: str, batch_size: int, device: torch.device,
             flush_denormal: bool = True) -> tuple[GraphAdapter, RunContext]:
    spec = RunSpec("graph", dataset, seed=0, loss=LossSpec(objective="jsd", temperature=1.0),
                   train=TrainSpec(epochs=1, batch_size=batch_size, lr=1e-3, weight_decay=0.0,
                                   flush_denormal=flush_denormal),
                   options={"shuffle": "once"})
    a = LoopMaskAdapter() if masks == "loop" else GraphAdapter()
    run = open_run(a, spec, cache_dir=Path("."), device=device, log=lambda s: None)
    a.prepare(run)
    return a, run


def _authors_batches(dataset: str, batch_size: int, device: torch.device) -> Callable[[], Iterator[GraphBatch]]:
    """Batches the way the reference code makes them: PyG's DataLoader over TUDataset.shuffle()."""
    from torch_geometric.datasets import TUDataset
    from torch_geometric.loader import DataLoader
    entry = build_tu_cache(tu_raw_dir(resolve_data_root(), dataset), dataset, log=lambda s: None)
    torch.manual_seed(0)
    ds = TUDataset(str(entry), dataset, use_node_attr=False).shuffle()
    loader = DataLoader(ds, batch_size=batch_size)

    def epoch() -> Iterator[GraphBatch]:
        for data in loader:
            data = data.to(device)
            yield GraphBatch(data.x, data.edge_index, data.batch, data.y, int(data.num_graphs))
    return epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["PROTEINS", "NCI1"])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the suites use 1 per run)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device}, threads={args.threads}, batch={args.batch_size}, epochs timed per variant="
          f"{args.epochs} (+1 warm-up), torch {torch.__version__}")
    names = ("hardneg", "loop masks", "hardneg, denormals kept", "authors' epoch")
    print(f"{'data set':<9} {'graphs':>6} {'nodes':>7} | " + " ".join(f"{n + ' s/ep':>15}" for n in names)
          + f" | {'loop/hardneg':>12} {'authors/hardneg':>15} | {'masks ms/ep vec':>15} {'loop':>8}"
          + f" {'masks % of ep':>13} {'loop ratio from masks alone':>27}")
    for ds in args.datasets:
        variants = {}
        for name, masks, ftz in (("hardneg", "vectorized", True), ("loop masks", "loop", True),
                                 ("hardneg, denormals kept", "vectorized", False),
                                 ("authors' epoch", "loop", False)):
            a, run = _context(ds, masks, args.batch_size, device, flush_denormal=ftz)
            torch.manual_seed(0)
            model = a.build_model(run)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            if name == "authors' epoch":
                batches = _authors_batches(ds, args.batch_size, device)
                loss_of = lambda sb: jsd_loss(sb.scores, sb.pos_mask, sb.neg_mask, convention="authors")
            else:
                batches = (lambda a=a, run=run: a.train_batches(run, 0))
                objective = Objective(run.spec.loss)
                loss_of = lambda sb, objective=objective: objective(sb).loss
            variants[name] = (a, run, model, opt, batches, loss_of)
        times: dict[str, list[float]] = {n: [] for n in names}
        for ep in range(args.epochs + 1):
            for name, (a, run, model, opt, batches, loss_of) in variants.items():
                model.train()
                with training_numerics(run.spec.train, device):
                    _sync(device)
                    tic = time.perf_counter()
                    for batch in batches():
                        sb: ScoreBatch = a.score_batch(model, batch, run)
                        loss = loss_of(sb)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    _sync(device)
                    if ep > 0:
                        times[name].append(time.perf_counter() - tic)
        # the mask construction alone, over one epoch's batches
        a, run = variants["hardneg"][:2]
        batches = list(a.train_batches(run, 0))
        mask_ms = {}
        for name, fn in (("vectorized", node_graph_masks), ("loop", node_graph_masks_loop)):
            _sync(device)
            tic = time.perf_counter()
            for b in batches:
                fn(b.batch, b.num_graphs)
            _sync(device)
            mask_ms[name] = 1000 * (time.perf_counter() - tic)
        med = {n: statistics.median(times[n]) for n in names}
        v = med["hardneg"]
        g = run.details["graph"]
        share = 100 * mask_ms["vectorized"] / 1000 / v
        model_s = v - mask_ms["vectorized"] / 1000
        bound = (model_s + mask_ms["loop"] / 1000) / model_s
        r_loop, r_authors = med["loop masks"] / v, med["authors' epoch"] / v
        print(f"{ds:<9} {g['graphs']:>6} {g['nodes']:>7} | " + " ".join(f"{med[n]:>15.3f}" for n in names)
              + f" | {r_loop:>11.2f}x {r_authors:>14.2f}x"
              + f" | {mask_ms['vectorized']:>15.1f} {mask_ms['loop']:>8.1f} {share:>12.2f}% {bound:>26.2f}x")


if __name__ == "__main__":
    main()
