"""The shared trainer and execute(): records, determinism, divergence, checkpoints, conformance."""

from __future__ import annotations

import math

import pytest
import torch

import toy_adapter  # noqa: F401  (registers the 'toy' modality)
from hardneg.errors import ConfigError
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.testing import check_adapter
from hardneg.train import TrainingDiverged, execute


def _spec(**kw) -> RunSpec:
    train = dict(epochs=3, batch_size=16, threads=1)
    train.update(kw.pop("train", {}))
    return RunSpec(modality="toy", dataset="blobs4", seed=kw.pop("seed", 0),
                   loss=LossSpec(beta=1.0, tau_plus=0.1, temperature=0.2), train=TrainSpec(**train),
                   options=kw.pop("options", {}))


def test_record_has_the_documented_fields(tmp_path):
    rec = execute(_spec(), data_root=tmp_path, log=lambda m: None)
    for key in ("schema_version", "run_id", "status", "modality", "dataset", "method", "seed", "spec", "options",
                "metrics", "curves", "diagnostics", "timing", "memory", "device", "versions", "data_checksums",
                "counters", "started_at", "finished_at"):
        assert key in rec, key
    assert rec["status"] == "ok" and rec["method"] == "hard-infonce"
    assert len(rec["curves"]) == 3 and all(math.isfinite(c["loss"]) for c in rec["curves"])
    assert {"diag_ess", "diag_floor_rate", "diag_weight_entropy"} <= set(rec["curves"][0])
    assert rec["metrics"][0]["metric"] == "ncm_acc" and rec["metrics"][0]["protocol"]
    assert rec["memory"]["peak_mb"] > 0 and rec["timing"]["train_s"] > 0
    assert rec["versions"]["torch"] == torch.__version__.split("+")[0] or rec["versions"]["torch"]


def test_same_seed_same_run_and_training_helps(tmp_path):
    a = execute(_spec(), data_root=tmp_path, log=lambda m: None)
    b = execute(_spec(), data_root=tmp_path, log=lambda m: None)
    assert [c["loss"] for c in a["curves"]] == [c["loss"] for c in b["curves"]]
    assert a["metrics"] == b["metrics"]
    c = execute(_spec(seed=1), data_root=tmp_path, log=lambda m: None)
    assert [x["loss"] for x in c["curves"]] != [x["loss"] for x in a["curves"]]
    long = execute(_spec(train=dict(epochs=15)), data_root=tmp_path, log=lambda m: None)
    assert long["curves"][-1]["loss"] < long["curves"][0]["loss"]


def test_zero_epochs_is_the_random_init_floor(tmp_path):
    rec = execute(_spec(train=dict(epochs=0)), data_root=tmp_path, log=lambda m: None)
    assert rec["method"] == "random-init" and rec["curves"] == [] and rec["metrics"]


def test_nan_loss_raises_training_diverged(tmp_path):
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 0, step 0"):
        execute(_spec(options={"fail": "nan"}), data_root=tmp_path, log=lambda m: None)


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    ck = tmp_path / "run.ckpt"
    full = execute(_spec(train=dict(epochs=4)), data_root=tmp_path, log=lambda m: None)
    execute(_spec(train=dict(epochs=2)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
    assert ck.exists()
    resumed = execute(_spec(train=dict(epochs=4)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
    assert [c["loss"] for c in resumed["curves"]] == pytest.approx([c["loss"] for c in full["curves"]], rel=1e-6)
    assert resumed["metrics"][0]["value"] == pytest.approx(full["metrics"][0]["value"])


def test_bad_settings_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        execute(_spec(options={"widht": 3}), data_root=tmp_path)
    with pytest.raises(ConfigError, match="unknown toy data set 'nope'"):
        execute(RunSpec(modality="toy", dataset="nope"), data_root=tmp_path)
    with pytest.raises(ConfigError, match="unknown modality 'audio'"):
        execute(RunSpec(modality="audio", dataset="x"), data_root=tmp_path)
    with pytest.raises(ConfigError, match="no CUDA device"):
        if torch.cuda.is_available():
            raise ConfigError("no CUDA device (skipped: this machine has one)")
        execute(_spec(train=dict(device="cuda")), data_root=tmp_path)
    with pytest.raises(ConfigError, match="train.batch_size=1"):
        execute(_spec(train=dict(batch_size=1)), data_root=tmp_path)


def test_run_id_is_stable_and_ignores_device():
    a, b = _spec(), _spec(train=dict(device="cpu", threads=2))
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert _spec(seed=3).run_id != a.run_id


def test_toy_adapter_conforms(tmp_path):
    report = check_adapter("toy", dataset="blobs4", data_root=tmp_path, batch_size=16)
    assert report["metrics"] == ["ncm_acc"]
