"""Loading run records into one tidy pandas frame (one row per run and metric).

The record itself (fields, reading, writing) is :mod:`hardneg.record`'s; this module only
turns records into a table.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from .record import (ResultsError, SCHEMA_VERSION, atomic_write_text, iter_records,  # noqa: F401
                     load_records, read_record, record_files, write_record)
# (the store names above are re-exported for hardneg.report, which imports them from here)


# ---- the tidy table -----------------------------------------------------------------------

#: columns taken from spec.loss / spec.train (the resolved settings)
LOSS_COLUMNS = ("objective", "beta", "tau_plus", "temperature", "floor", "hardness", "multi_positive",
                "jsd_convention")
TRAIN_COLUMNS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "grad_clip",
                 "max_steps_per_epoch", "amp", "eval_every")
#: values of settings that records written before the setting existed ran with
_TRAIN_DEFAULTS_OF_OLD_RECORDS = {"eval_every": 0}
BASE_COLUMNS = ("suite", "run_id", "modality", "dataset", "method", "beta", "tau_plus", "temperature",
                "seed", "metric", "value", "status", "std", "split", "protocol", "selection")


def record_rows(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows of one record: one per metric, or one row with metric=None for a run without metrics."""
    spec = rec.get("spec") or {}
    loss = spec.get("loss") or {}
    train = spec.get("train") or {}
    opts = spec.get("options") or {}
    base: dict[str, Any] = {
        "suite": rec.get("suite", spec.get("suite")),
        "run_id": rec.get("run_id"),
        "modality": spec.get("modality"),
        "dataset": spec.get("dataset"),
        "method": rec.get("method"),
        "seed": spec.get("seed"),
        "status": rec.get("status"),
    }
    for k in LOSS_COLUMNS:
        base[k] = loss.get(k)
    for k in TRAIN_COLUMNS:
        base[k] = train.get(k, _TRAIN_DEFAULTS_OF_OLD_RECORDS.get(k))
    for k, v in sorted(opts.items()):
        base[f"opt.{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    base["device"] = rec.get("device")
    base["wall_time_s"] = rec.get("wall_time_s")
    base["peak_memory_mb"] = (rec.get("memory") or {}).get("peak_mb")
    base["git_commit"] = rec.get("git_commit")
    base["finished_at"] = rec.get("finished_at")
    err = rec.get("error") or {}
    base["error"] = (f"{err.get('type')}: {err.get('message')}" if err else None)
    metrics = rec.get("metrics") or []
    if not metrics:
        return [{**base, "metric": None, "value": float("nan"), "std": None, "split": None,
                 "protocol": None, "selection": None}]
    rows = []
    for m in metrics:
        v = m.get("value")
        rows.append({**base, "metric": m.get("metric"), "value": float("nan") if v is None else float(v),
                     "std": m.get("std"), "split": m.get("split"), "protocol": m.get("protocol"),
                     "selection": m.get("selection")})
    return rows


def to_frame(records: Iterable[Mapping[str, Any]]):
    """Tidy DataFrame (one row per run and metric) from record dicts."""
    import pandas as pd

    rows = [row for rec in records for row in record_rows(rec)]
    extra = sorted({k for r in rows for k in r} - set(BASE_COLUMNS))
    cols = list(BASE_COLUMNS) + extra
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        df = df.sort_values(["suite", "modality", "dataset", "run_id", "metric"], na_position="last",
                            kind="mergesort").reset_index(drop=True)
    return df


def load(path: str | os.PathLike):
    """All records under ``path`` as a tidy pandas DataFrame, one row per (run, metric).

    Columns: suite, run_id, modality, dataset, method, beta, tau_plus, temperature, seed,
    metric, value, status, std, split, protocol, selection, then the other resolved loss and
    training settings, the adapter options as ``opt.NAME``, device, wall_time_s,
    peak_memory_mb, git_commit, finished_at and error. A failed run contributes one row with
    metric None and value NaN, so failures stay visible.
    """
    return to_frame(load_records(path))
