"""SentEval results as :class:`hardneg.adapters.Metric` rows, with the headline average."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .protocols import TaskResult

#: the five tasks whose average is the headline "transfer" score
CORE_TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "TREC")


def trivial_metrics(results: Sequence[TaskResult]) -> list:
    """:func:`to_metrics` of :func:`.protocols.trivial_baselines`, each labelled ``selection='trivial'``."""
    from ...adapters import Metric
    return [Metric(m.name, m.value, m.split, m.protocol, "trivial", m.std) for m in to_metrics(results)]


def to_metrics(results: Sequence[TaskResult]) -> list:
    """Flatten task results into :class:`hardneg.adapters.Metric` rows named 'MR_acc',
    'MRPC_f1', 'STSB_spearman', ..., plus 'core5_avg_acc' (mean of MR, CR, SUBJ, MPQA, TREC
    accuracy) when all five were evaluated."""
    from ...adapters import Metric
    out = []
    for r in results:
        for k, v in r.metrics.items():
            out.append(Metric(f"{r.task}_{k}", float(v), split=r.split, protocol=r.protocol,
                              std=r.std.get(k)))
    core = {r.task: r.metrics["acc"] for r in results if r.task in CORE_TASKS}
    if len(core) == len(CORE_TASKS):
        out.append(Metric("core5_avg_acc", float(np.mean(list(core.values()))), split="mixed",
                          protocol="mean of MR, CR, SUBJ, MPQA, TREC accuracies"))
    return out
