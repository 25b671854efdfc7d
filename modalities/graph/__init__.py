"""Graph modality: InfoGraph (Sun et al., ICLR 2020) on TU data sets, through the shared core.

Data (:mod:`modalities.graph.data`)
    TU data sets under ``<data root>/tudataset/<NAME>/raw/`` (read-only; downloaded when
    allowed), checked, processed by torch_geometric into the writable cache, packed into flat
    tensors; batches are collated with tensor ops. Node features: one-hot node labels, else
    one-hot degree (normalised degree above 1000).

Model (:mod:`modalities.graph.models`)
    GIN encoder with ``layers`` (3) layers of width ``hidden`` (32); each layer is
    ``GINConv(MLP: Linear-ReLU-Linear) -> ReLU -> BatchNorm``. Graph embedding = sum pooling
    of every layer's node states, concatenated (96-d); node embedding = the concatenated
    node states (96-d). Local and global discriminators: ``3 x (Linear+ReLU)`` plus a linear
    shortcut. All Linear layers Xavier-uniform with zero bias, as in the authors' code.

Scores and masks
    ``scores[n, g] = local(node n) . global(graph g)`` (option ``scores='raw'``: the raw dot
    product, InfoGraph's score) or the cosine of the two L2-normalised codes
    (``scores='cosine'``, bounded in [-1, 1]; the loss divides by ``loss.temperature``).
    Positive: ``(n, graph of n)``; negatives: ``(n, every other graph of the batch)``.
    Masks are built with one indexed assignment (``pos[arange(N), batch] = True``);
    benchmarks/perf/graph.py times the authors' per-node loop beside it.

Objective
    Chosen by the run's LossSpec through :class:`hardneg.objective.Objective`: ``'jsd'``
    (InfoGraph's Jensen-Shannon estimator; ``beta``/``tau_plus`` give the hard/debiased
    variants; ``jsd_convention`` 'derived', 'authors', 'logit' or 'standardised', see
    :func:`hardneg.losses.jsd_loss`) or ``'infonce'`` on the same scores (option ``scores``:
    raw dot products or cosines). Diagnostic labels: a node carries its graph's class.

Evaluation
    Graph embeddings (encoder output, eval mode) of the whole data set, then the nested-CV
    RBF-SVC probe :func:`hardneg.evaluation.svc.svc_nested_cv` seeded by the run seed;
    metric ``svc_acc`` in percent (mean over outer folds), ``std`` over outer folds,
    at the last epoch. ``epochs=0`` gives the random-init floor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hardneg.adapters import DataStatus, Metric, ModalityAdapter, Option, RunContext, ScoreBatch
from hardneg.data import fingerprint_files
from hardneg.errors import ConfigError, DataError

from .data import (CUSTOM_PREFIX, KNOWN_DATASETS, TU_URL, _NAME_RE, GraphBatch, PackedGraphs, _missing_required,
                   build_tu_cache, fetch_tu, gather_graphs, load_tu, tu_name, tu_raw_dir, tu_raw_files,
                   validate_tu_raw)
from .models import Discriminator, GINEncoder, InfoGraphModel

__all__ = ["GraphAdapter", "InfoGraphModel", "GINEncoder", "Discriminator", "PackedGraphs", "GraphBatch",
           "gather_graphs", "node_graph_masks", "validate_tu_raw", "load_tu", "build_tu_cache", "fetch_tu",
           "tu_raw_dir", "KNOWN_DATASETS"]


def node_graph_masks(batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive mask ``pos[n, batch[n]] = True`` and negative mask ``~pos``, (n, num_graphs) bool."""
    n = batch.numel()
    pos = torch.zeros(n, num_graphs, dtype=torch.bool, device=batch.device)
    pos[torch.arange(n, device=batch.device), batch] = True
    return pos, ~pos



# ---------------------------------------------------------------------------------------
# adapter
# ---------------------------------------------------------------------------------------
class GraphAdapter(ModalityAdapter):
    """InfoGraph on TU data sets; see the module docstring for the full contract."""

    name = "graph"
    options = {
        "hidden": Option(32, "GIN hidden width per layer", low=1, high=4096),
        "layers": Option(3, "number of GIN layers (embedding = hidden * layers)", low=1, high=16),
        "node_features": Option("auto", "'auto': one-hot node labels, else degree (Robinson et al. 2021); "
                                "'constant': a constant 1 per node (original InfoGraph code)",
                                choices=("auto", "constant")),
        "shuffle": Option("epoch", "'epoch': reshuffle graphs every epoch; 'once': one seeded shuffle, "
                          "then the same batches every epoch (the authors' DataLoader)",
                          choices=("epoch", "once"), training_only=True),
        "scores": Option("raw", "node-graph scores: 'raw' dot products of the discriminator codes (InfoGraph) "
                         "or 'cosine' of the L2-normalised codes, bounded in [-1, 1] (the loss divides by "
                         "loss.temperature), so that hardness weights exp(beta * s / t) can tilt",
                         choices=("raw", "cosine"), training_only=True, added_later=True),
        "svc_outer_folds": Option(10, "outer stratified folds of the SVC probe", low=2, high=50),
        "svc_inner_folds": Option(5, "inner folds choosing C of the SVC probe", low=2, high=20),
    }
    default_loss = {"objective": "jsd", "temperature": 1.0, "tau_plus": 0.0, "beta": 0.0}
    headline_metrics = ("svc_acc",)
    #: options records made before their removal carry, at the one value they could take then
    retired_options = {"masks": "vectorized"}
    #: InfoGraph's protocol pretrains on every graph (labels unseen) and the SVC's folds split them
    transductive = True

    def __init__(self) -> None:
        self.data: PackedGraphs | None = None
        self._order: torch.Tensor | None = None

    # ---- discovery ---------------------------------------------------------------------
    def datasets(self) -> list[str]:
        return list(KNOWN_DATASETS)

    def accepts_custom_dataset(self, dataset: str) -> bool:
        return dataset.startswith(CUSTOM_PREFIX) and bool(_NAME_RE.match(dataset[len(CUSTOM_PREFIX):]))

    def check_data(self, data_root: Path) -> list[DataStatus]:
        out = []
        for name in self.datasets():
            raw = tu_raw_dir(data_root, name)
            missing = _missing_required(raw, name)
            detail = "" if not missing else f"missing {', '.join(missing)} (from {TU_URL.format(name=name)})"
            out.append(DataStatus(name, not missing, str(raw), detail))
        return out

    def fetch_data(self, data_root: Path, dataset: str, options=None, *, allow: bool | None = True,
                   log=print) -> None:
        """The TU zip of ``dataset`` unpacked into its raw folder, unless its files are there."""
        self.check_dataset(dataset)
        name = tu_name(dataset)
        if _missing_required(tu_raw_dir(Path(data_root), name), name):
            fetch_tu(Path(data_root), name, allow=allow, log=log)

    def data_fingerprint(self, data_root: Path, dataset: str, options) -> dict[str, str] | None:
        """``{'tudataset/NAME': SHA-256 of the raw files}``, as :meth:`prepare` records it (None if absent)."""
        name = tu_name(dataset)
        raw = tu_raw_dir(data_root, name)
        if _missing_required(raw, name):
            return None
        return {f"tudataset/{name}": fingerprint_files(tu_raw_files(raw, name), root=raw)}

    # ---- the run -----------------------------------------------------------------------
    def prepare(self, run: RunContext) -> None:
        self.check_dataset(run.spec.dataset)
        data, digest = load_tu(run.data_root, run.spec.dataset, node_features=run.options["node_features"],
                               log=run.log)
        if run.scramble_test:   # the conformance kit; transductive: every graph is a test row, labels shuffled
            perm = torch.randperm(data.num_graphs, generator=torch.Generator().manual_seed(12345))
            data = dataclasses.replace(data, y=data.y[perm])
        if int(data.y.max()) < 1:
            raise DataError(f"TU data set {run.spec.dataset!r} has a single graph class; the SVC probe "
                            "needs at least two")
        bs = run.spec.train.batch_size
        if run.spec.train.epochs > 0 and bs > data.num_graphs:
            raise ConfigError(f"train.batch_size={bs} is larger than the {data.num_graphs} graphs of "
                              f"{run.spec.dataset!r}; allowed: batch_size <= {data.num_graphs}")
        self.data = data.to(run.device)
        run.data_checksums[f"tudataset/{tu_name(run.spec.dataset)}"] = digest
        run.details["graph"] = {"graphs": data.num_graphs, "nodes": int(data.node_ptr[-1]),
                              "edges": int(data.edge_index.size(1)), "features": data.feature_kind,
                              "feature_dim": int(data.x.size(1)), "classes": int(data.y.max()) + 1}
        run.log(f"graph: {run.spec.dataset}: {run.details['graph']}")
        if run.options["shuffle"] == "once":
            self._order = torch.randperm(data.num_graphs, generator=run.generator)

    def build_model(self, run: RunContext) -> nn.Module:
        assert self.data is not None, "prepare() must run before build_model()"
        model = InfoGraphModel(int(self.data.x.size(1)), run.options["hidden"], run.options["layers"],
                               generator=run.generator)
        return model.to(run.device)

    def train_batches(self, run: RunContext, epoch: int) -> Iterator[GraphBatch]:
        assert self.data is not None, "prepare() must run before train_batches()"
        G, bs = self.data.num_graphs, run.spec.train.batch_size
        order = self._order if self._order is not None else torch.randperm(G, generator=run.generator)
        chunks = list(torch.split(order, bs))
        if len(chunks) > 1 and len(chunks[-1]) < 2:
            # a one-graph batch has no negatives; fold it into the previous batch
            last = chunks.pop()
            chunks[-1] = torch.cat([chunks[-1], last])
            run.count("merged_single_graph_batches")
        cap = run.spec.train.max_steps_per_epoch
        for k, ids in enumerate(chunks):
            if cap and k >= cap:
                break
            yield gather_graphs(self.data, ids)

    def score_batch(self, model: nn.Module, batch: GraphBatch, run: RunContext) -> ScoreBatch:
        local, glob = model(batch)
        cosine = run.options["scores"] == "cosine"
        if cosine:
            local, glob = F.normalize(local, dim=1), F.normalize(glob, dim=1)
        scores = local @ glob.t()                      # (nodes, graphs): inner products or cosines
        pos, neg = node_graph_masks(batch.batch, batch.num_graphs)
        return ScoreBatch(scores=scores, pos_mask=pos, neg_mask=neg, score_kind="cosine" if cosine else "raw",
                          anchor_labels=batch.y[batch.batch], candidate_labels=batch.y)

    def count_samples(self, batch: GraphBatch) -> int:
        """Throughput counts graphs, not nodes (the anchors of the loss)."""
        return batch.num_graphs

    def embed_all(self, model: nn.Module, run: RunContext, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Graph embeddings (eval mode) and labels of the whole data set, in file order."""
        assert self.data is not None
        was_training = model.training
        model.eval()
        try:
            ids = torch.arange(self.data.num_graphs, device=self.data.y.device)
            embs = [model.embed(gather_graphs(self.data, chunk)).float().cpu() for chunk in torch.split(ids, batch_size)]
        finally:
            model.train(was_training)
        return torch.cat(embs).numpy(), self.data.y.cpu().numpy()

    def trivial_baselines(self, run: RunContext) -> list[Metric]:
        """Majority-class accuracy on the same seeded outer folds as the SVC probe."""
        from hardneg.evaluation.svc import majority_baseline
        assert self.data is not None
        acc = majority_baseline(self.data.y.cpu().numpy(), seed=run.spec.seed,
                                outer_folds=run.options["svc_outer_folds"])
        return [Metric("svc_acc", 100.0 * acc, split="cv", selection="trivial",
                       protocol="majority class of each outer training part, on the SVC probe's outer folds")]

    def evaluate(self, model: nn.Module, run: RunContext) -> list[Metric]:
        from hardneg.evaluation.svc import svc_nested_cv
        X, y = self.embed_all(model, run)
        res = svc_nested_cv(X, y, seed=run.spec.seed, outer_folds=run.options["svc_outer_folds"],
                            inner_folds=run.options["svc_inner_folds"])
        run.details["svc"] = {"fold_accuracies": res.fold_accuracies, "chosen_C": res.chosen_C}
        protocol = res.protocol() + "; accuracy in percent; std over outer folds"
        return [Metric("svc_acc", 100.0 * res.mean, split="cv", protocol=protocol,
                       selection="last-epoch", std=100.0 * res.std)]
