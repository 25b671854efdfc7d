"""The tidy DataFrame of records (the record itself is tested in test_record.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hardneg import results
from hardneg.results import ResultsError


def record(run_id: str = "abc123def456", status: str = "ok", value: float | None = 91.5, **spec_kw) -> dict:
    spec = {"modality": "graph", "dataset": "MUTAG", "seed": 0, "suite": "s",
            "loss": {"objective": "jsd", "beta": 1.0, "tau_plus": 0.1, "temperature": 1.0, "floor": True,
                     "hardness": "logit", "multi_positive": "softmax", "jsd_convention": "derived"},
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.001}, "options": {"hidden": 32}}
    spec.update(spec_kw)
    metrics = [] if value is None else [
        {"metric": "svc_acc", "value": value, "split": "cv", "protocol": "RBF SVC 10-fold",
         "selection": "last-epoch", "std": 1.2}]
    return {"schema_version": results.SCHEMA_VERSION, "suite": "s", "run_id": run_id, "status": status,
            "method": "hard-jsd", "spec": spec, "metrics": metrics, "curves": [{"epoch": 0, "loss": 0.5}],
            "error": None if status == "ok" else {"type": "RuntimeError", "message": "boom", "traceback": "tb"}}


def test_load_columns_and_rows(tmp_path):
    results.write_record(tmp_path, record("aaaaaaaaaaaa", value=90.0))
    results.write_record(tmp_path, record("bbbbbbbbbbbb", seed=1, value=92.0))
    results.write_record(tmp_path, record("cccccccccccc", status="failed", value=None))
    df = results.load(tmp_path)
    required = ["suite", "run_id", "modality", "dataset", "method", "beta", "tau_plus", "temperature", "seed",
                "metric", "value", "status"]
    assert list(df.columns[:len(required)]) == required
    for col in ("protocol", "split", "selection", "std", "objective", "epochs", "opt.hidden", "error"):
        assert col in df.columns
    assert len(df) == 3
    ok = df[df["status"] == "ok"].sort_values("seed")
    assert list(ok["value"]) == [90.0, 92.0] and list(ok["seed"]) == [0, 1]
    assert set(ok["metric"]) == {"svc_acc"} and set(ok["protocol"]) == {"RBF SVC 10-fold"}
    assert (ok["beta"] == 1.0).all() and (ok["tau_plus"] == 0.1).all() and (ok["opt.hidden"] == 32).all()
    failed = df[df["status"] == "failed"].iloc[0]
    assert pd.isna(failed["metric"]) and math.isnan(failed["value"]) and "boom" in failed["error"]


def test_load_accepts_parent_folder_and_single_file(tmp_path):
    results.write_record(tmp_path / "s", record())
    assert len(results.load(tmp_path)) == 1
    assert len(results.load(tmp_path / "s" / "abc123def456.json")) == 1
    with pytest.raises(ResultsError, match="does not exist"):
        results.load(tmp_path / "missing")
