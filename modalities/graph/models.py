"""InfoGraph's networks (Sun et al., ICLR 2020): a GIN encoder with sum pooling of every layer,
and the local (node) and global (graph) discriminators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import GraphBatch

__all__ = ["GINEncoder", "Discriminator", "InfoGraphModel"]


class GINEncoder(nn.Module):
    """``layers`` x [GINConv(Linear-ReLU-Linear) -> ReLU -> BatchNorm]; sum-pool every layer.

    forward -> (graph embedding (b, layers*hidden), node embedding (n, layers*hidden)).
    """

    def __init__(self, in_dim: int, hidden: int = 32, layers: int = 3) -> None:
        super().__init__()
        from torch_geometric.nn import GINConv
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(layers):
            mlp = nn.Sequential(nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(),
                                nn.Linear(hidden, hidden))
            self.convs.append(GINConv(mlp))
            self.bns.append(nn.BatchNorm1d(hidden))
        self.out_dim = hidden * layers

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor, num_graphs: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        from torch_geometric.nn import global_add_pool
        states = []
        for conv, bn in zip(self.convs, self.bns):
            x = bn(F.relu(conv(x, edge_index)))
            states.append(x)
        node = torch.cat(states, 1)
        return global_add_pool(node, batch, size=num_graphs), node


class Discriminator(nn.Module):
    """``3 x (Linear+ReLU)`` plus a linear shortcut: ``f(h) = block(h) + W h``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                                   nn.Linear(dim, dim), nn.ReLU())
        self.shortcut = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block(h) + self.shortcut(h)


class InfoGraphModel(nn.Module):
    """GIN encoder plus local (node) and global (graph) discriminators."""

    def __init__(self, in_dim: int, hidden: int = 32, layers: int = 3,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.encoder = GINEncoder(in_dim, hidden, layers)
        self.local_d = Discriminator(self.encoder.out_dim)
        self.global_d = Discriminator(self.encoder.out_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(local node codes (n, D), global graph codes (b, D))."""
        g, node = self.encoder(b.x, b.edge_index, b.batch, b.num_graphs)
        return self.local_d(node), self.global_d(g)

    @torch.no_grad()
    def embed(self, b: GraphBatch) -> torch.Tensor:
        """Graph embeddings used downstream: the encoder's pooled output (not the discriminator)."""
        return self.encoder(b.x, b.edge_index, b.batch, b.num_graphs)[0]
