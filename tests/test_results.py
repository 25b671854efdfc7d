"""The results store: atomic records, schema checks, clear disk errors, the tidy DataFrame."""

from __future__ import annotations

import errno
import json
import math
import os

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


def test_write_is_atomic_and_readable(tmp_path):
    path = results.write_record(tmp_path, record())
    assert path == tmp_path / "abc123def456.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc123def456.json"]  # no temporary left
    assert results.read_record(path)["metrics"][0]["value"] == 91.5
    # canonical text: writing the same record twice gives the same bytes
    before = path.read_bytes()
    results.write_record(tmp_path, record())
    assert path.read_bytes() == before


def test_non_finite_numbers_become_null(tmp_path):
    rec = record()
    rec["curves"] = [{"epoch": 0, "loss": float("nan")}, {"epoch": 1, "loss": float("inf")}]
    path = results.write_record(tmp_path, rec)
    json.loads(path.read_text())  # strict JSON
    assert [c["loss"] for c in results.read_record(path)["curves"]] == [None, None]


def test_stale_temporary_files_are_ignored_and_cleaned(tmp_path):
    results.write_record(tmp_path, record())
    stale = tmp_path / ".tmp-ffff00001111-xyz.part"
    stale.write_text('{"run_id": "ffff00001111", "status": "ok", "metri')  # a killed writer's half file
    assert [r["run_id"] for r in results.load_records(tmp_path)] == ["abc123def456"]
    assert results.clean_stale(tmp_path) == [stale]
    assert not stale.exists()


@pytest.mark.parametrize("version,needle", [(None, "older"), (0, "older"), (results.SCHEMA_VERSION + 1, "newer")])
def test_schema_mismatch_is_a_clear_error(tmp_path, version, needle):
    rec = record()
    if version is None:
        rec.pop("schema_version")
    else:
        rec["schema_version"] = version
    (tmp_path / "abc123def456.json").write_text(json.dumps(rec))
    with pytest.raises(ResultsError) as info:
        results.load(tmp_path)
    msg = str(info.value)
    assert needle in msg and "abc123def456.json" in msg and f"schema {results.SCHEMA_VERSION}" in msg


def test_corrupt_record_is_a_clear_error(tmp_path):
    (tmp_path / "abc123def456.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        results.load(tmp_path)


@pytest.mark.parametrize("code,needle", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
def test_disk_errors_are_clear_and_keep_the_old_record(tmp_path, monkeypatch, code, needle):
    path = results.write_record(tmp_path, record(value=80.0))
    before = path.read_bytes()
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ResultsError) as info:
        results.write_record(tmp_path, record(value=99.0))
    monkeypatch.setattr(os, "fsync", real_fsync)
    msg = str(info.value)
    assert needle in msg and str(tmp_path) in msg and "intact" in msg
    assert path.read_bytes() == before                        # the old record is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # and no half-written file


def test_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch):
    def mkstemp(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(results.tempfile, "mkstemp", mkstemp)
    with pytest.raises(ResultsError, match="read-only"):
        results.probe_writable(tmp_path / "sub")


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
