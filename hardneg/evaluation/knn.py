"""Weighted k-nearest-neighbour monitor (the SimCLR / InstDisc kNN protocol).

For a query feature q and a memory bank of labelled features m_j (both L2-normalised):

    s_j      = q . m_j                                   (cosine similarity)
    N_k(q)   = the k memory items with the largest s_j   (k = 200)
    score_c  = sum_{j in N_k(q)} exp(s_j / T) [y_j = c]  (T = 0.5)
    predict  = argmax_c score_c                          (top-5: the five largest scores)

Generic: any (features, labels) pair works, so other modalities can reuse it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import HardnegError

PROTOCOL = "weighted kNN on frozen features: cosine similarity, k={k}, vote weight exp(sim/{t}), memory = {memory}"


@torch.no_grad()
def knn_scores(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor, *, num_classes: int,
               k: int = 200, temperature: float = 0.5, chunk: int = 1024) -> torch.Tensor:
    """(Q, num_classes) weighted votes of each query's k nearest memory items (see module doc)."""
    if memory.dim() != 2 or queries.dim() != 2 or memory.shape[1] != queries.shape[1]:
        raise HardnegError(f"kNN needs (M, d) memory and (Q, d) queries with the same d; got "
                           f"{tuple(memory.shape)} and {tuple(queries.shape)}")
    if memory.shape[0] != memory_labels.shape[0]:
        raise HardnegError(f"kNN memory has {memory.shape[0]} features but {memory_labels.shape[0]} labels")
    if k < 1:
        raise HardnegError(f"kNN k={k} is invalid; allowed: k >= 1")
    if temperature <= 0:
        raise HardnegError(f"kNN temperature={temperature} is invalid; allowed: > 0")
    k = min(k, memory.shape[0])
    mem = F.normalize(memory.float(), dim=1)
    lab = memory_labels.to(mem.device).long()
    out = []
    for q in queries.float().split(chunk):
        q = F.normalize(q.to(mem.device), dim=1)
        sim, idx = (q @ mem.T).topk(k, dim=1)
        w = torch.exp(sim / temperature)
        votes = torch.zeros(q.shape[0], num_classes, device=mem.device, dtype=w.dtype)
        votes.scatter_add_(1, lab[idx], w)
        out.append(votes)
    return torch.cat(out)


@torch.no_grad()
def knn_accuracy(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, *, num_classes: int, k: int = 200, temperature: float = 0.5,
                 topk: tuple[int, ...] = (1,)) -> dict[int, float]:
    """Top-k accuracies (fractions in [0, 1]) of the weighted kNN classifier, keyed by k of top-k."""
    scores = knn_scores(memory, memory_labels, queries, num_classes=num_classes, k=k, temperature=temperature)
    y = query_labels.to(scores.device).long()
    out = {}
    for t in topk:
        t_eff = min(t, num_classes)
        hit = (scores.topk(t_eff, dim=1).indices == y[:, None]).any(dim=1)
        out[t] = float(hit.float().mean())
    return out
