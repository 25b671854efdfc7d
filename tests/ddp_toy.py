"""The toy modality in float64 with the two-view loss, for multi-process training tests.

Registered as ``toyddp``. Its loss is ``objective.two_view(z1, z2)`` on one forward of
[view1; view2] (so under torchrun the negatives come from every rank); option ``bn`` puts a
BatchNorm layer in the MLP; option ``die_at_step = k`` makes rank 1 leave with ``os._exit``
in the middle of its k-th step (after the forward, before the loss's collectives).
"""

from __future__ import annotations

import os
from typing import ClassVar

import torch
from torch import nn
from toy_adapter import ToyAdapter

from hardneg import adapters
from hardneg.adapters import Option
from hardneg.distributed import world


class DDPToyAdapter(ToyAdapter):
    name = "toyddp"
    options: ClassVar[dict[str, Option]] = {
        **ToyAdapter.options,
        "bn": Option(False, "a BatchNorm1d layer after the first linear layer"),
        "die_at_step": Option(0, "rank 1 exits in the middle of this step (1-based; 0 = never)", low=0, high=10000),
    }

    def prepare(self, run) -> None:
        super().prepare(run)
        for split in ("train", "test"):
            x, y = run.extra[split]
            run.extra[split] = (x.double(), y)

    def build_model(self, run) -> nn.Module:
        torch.manual_seed(run.spec.seed)
        h = run.options["hidden"]
        layers = [nn.Linear(16, h)] + ([nn.BatchNorm1d(h)] if run.options["bn"] else []) + [nn.ReLU(), nn.Linear(h, 8)]
        return nn.Sequential(*layers).double().to(run.device)

    def compute_loss(self, model, batch, objective, run, *, details: bool = False):
        v1, v2 = batch
        z1, z2 = model(torch.cat([v1, v2])).chunk(2)
        run.extra["steps"] = run.extra.get("steps", 0) + 1
        if world()[0] == 1 and run.extra["steps"] == run.options["die_at_step"]:
            os._exit(3)
        return objective.two_view(z1, z2, details=details)


adapters.register("toyddp", DDPToyAdapter, replace=True)
