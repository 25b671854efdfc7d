"""The shared trainer and execute(): records, determinism, divergence, checkpoints, conformance."""

from __future__ import annotations

import math
import re

import pytest
import torch

import toy_adapter  # noqa: F401  (registers the 'toy' modality)
from hardneg.errors import ConfigError
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.testing import check_adapter
from hardneg.train import CheckpointMismatch, TrainingDiverged, execute


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


def test_a_resumed_run_counts_the_time_its_killed_process_spent(tmp_path):
    """The checkpoint holds the wall and CPU time spent up to it; the resumed run's record adds
    them to its own (timing and wall_time_s) and says so; a record that predates this, whose
    epochs' own seconds exceed its wall time, is read at those seconds (a lower bound)."""
    from hardneg.record import run_wall_s

    ck = tmp_path / "run.ckpt"
    first = execute(_spec(train=dict(epochs=2)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
    spent = torch.load(ck, weights_only=False)["spent"]
    assert spent["processes"] == 1 and 0 < spent["wall_s"] <= first["wall_time_s"]
    assert spent["wall_s"] >= sum(c["seconds"] for c in first["curves"])
    assert "resumed_at_epoch" not in first["timing"]
    resumed = execute(_spec(train=dict(epochs=4)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
    t = resumed["timing"]
    assert t["resumed_at_epoch"] == 2 and t["processes"] == 2 and t["earlier_basis"] == "checkpoint"
    assert t["earlier_wall_s"] == pytest.approx(spent["wall_s"]) and t["earlier_cpu_s"] == pytest.approx(spent["cpu_s"])
    assert t["wall_s"] > t["earlier_wall_s"] and resumed["wall_time_s"] > t["earlier_wall_s"]
    assert resumed["wall_time_s"] >= sum(c["seconds"] for c in resumed["curves"])
    assert run_wall_s(resumed) == resumed["wall_time_s"]
    old = dict(resumed, wall_time_s=0.001, timing={k: v for k, v in t.items() if k != "resumed_at_epoch"})
    assert run_wall_s(old) >= sum(c["seconds"] for c in resumed["curves"]) > 0.001


def test_a_checkpoint_of_another_processor_kind_or_commit_is_refused_and_kept(tmp_path):
    ck = tmp_path / "run.ckpt"
    execute(_spec(train=dict(epochs=2)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
    state = torch.load(ck, weights_only=False)
    assert state["made_on"]["device"].startswith("cpu:") and "git_commit" in state["made_on"]
    here = state["made_on"]["device"]
    for made, says in ((dict(state["made_on"], device="cpu:x86_64 Other CPU (AVX2) x1 threads"),
                        "made on cpu:x86_64 Other CPU (AVX2) x1 threads at commit"),
                       (dict(state["made_on"], git_commit="0" * 40), f"at commit {'0' * 40}"),
                       (None, "an unstated processor kind and commit")):
        torch.save(dict(state, made_on=made), ck)
        with pytest.raises(CheckpointMismatch, match=re.escape(says)) as err:
            execute(_spec(train=dict(epochs=4)), data_root=tmp_path, log=lambda m: None, checkpoint=ck)
        assert f"this run is on {here}" in str(err.value) and "delete it to start the run over" in str(err.value)
        assert ck.exists()


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


def _denormal_survives() -> bool:
    return (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() != 0.0      # 1e-40 is a float32 denormal


def test_cpu_training_flushes_denormals_and_restores_afterwards(tmp_path, monkeypatch):
    seen: list[bool] = []
    adapter_cls = type(__import__("hardneg.adapters", fromlist=["get"]).get("toy"))
    original = adapter_cls.train_batches

    def spying(self, run, epoch):
        seen.append(_denormal_survives())
        yield from original(self, run, epoch)

    monkeypatch.setattr(adapter_cls, "train_batches", spying)
    assert _denormal_survives()
    on = execute(_spec(train=dict(epochs=2)), data_root=tmp_path, log=lambda m: None)
    assert seen == [False, False] and _denormal_survives()      # flushed while training only
    seen.clear()
    off = execute(_spec(train=dict(epochs=2, flush_denormal=False)), data_root=tmp_path, log=lambda m: None)
    assert seen == [True, True]
    assert on["run_id"] == off["run_id"]                        # a rounding-level setting, like threads
    assert on["spec"]["train"]["flush_denormal"] is True and off["spec"]["train"]["flush_denormal"] is False


def test_settings_added_later_keep_the_ids_of_existing_records():
    # the spec of results/paper-graph-2026-11/c94341554d85.json, written before flush_denormal and eval_every existed
    old = {"dataset": "MUTAG", "modality": "graph", "seed": 0, "suite": "paper-graph",
           "loss": {"beta": 0.0, "floor": True, "hardness": "logit", "jsd_convention": "derived",
                    "multi_positive": "softmax", "objective": "jsd", "tau_plus": 0.0, "temperature": 1.0},
           "options": {"hidden": 32, "layers": 3, "masks": "vectorized", "node_features": "auto", "shuffle": "once",
                       "svc_inner_folds": 5, "svc_outer_folds": 10},
           "train": {"amp": "auto", "batch_size": 128, "device": "auto", "diagnostics_every": 1, "epochs": 200,
                     "grad_clip": 0.0, "lr": 0.001, "max_steps_per_epoch": 0, "optimizer": "adam", "threads": 1,
                     "weight_decay": 0.0}}
    spec = RunSpec.from_dict(old)
    assert spec.run_id == "c94341554d85"
    assert RunSpec.from_dict({**old, "train": {**old["train"], "eval_every": 10}}).run_id != spec.run_id


def test_eval_every_records_curves_and_a_labelled_best_epoch_without_changing_training(tmp_path, monkeypatch):
    import numpy as np
    from hardneg import adapters
    cls = type(adapters.get("toy"))
    original = cls.evaluate

    def evaluate_like_a_probe(self, model, run):        # a probe that draws randomness and counts things
        torch.rand(3), np.random.rand(), torch.rand(2, generator=run.generator)
        run.count("probe_calls")
        run.details["probe"] = {"calls": run.counters["probe_calls"]}
        return original(self, model, run)

    draws: list[tuple[float, float]] = []
    batches = cls.train_batches

    def batches_seeing_the_global_rngs(self, run, epoch):
        draws.append((torch.rand(1).item(), float(np.random.rand())))
        yield from batches(self, run, epoch)

    monkeypatch.setattr(cls, "evaluate", evaluate_like_a_probe)
    monkeypatch.setattr(cls, "train_batches", batches_seeing_the_global_rngs)
    plain = execute(_spec(train=dict(epochs=6)), data_root=tmp_path, log=lambda m: None)
    plain_draws = list(draws)
    draws.clear()
    rec = execute(_spec(train=dict(epochs=6, eval_every=2)), data_root=tmp_path, log=lambda m: None)
    assert draws == plain_draws
    assert rec["run_id"] != plain["run_id"]
    # the same weights: every loss and the last-epoch metric are the same numbers
    assert [c["loss"] for c in rec["curves"]] == [c["loss"] for c in plain["curves"]]
    assert rec["counters"] == plain["counters"]
    assert {k: v for k, v in rec["details"].items() if k != "best_epoch"} == plain["details"]
    last = {m["metric"]: m for m in rec["metrics"]}
    assert last["ncm_acc"] == {m["metric"]: m for m in plain["metrics"]}["ncm_acc"]
    evaluated = {c["epoch"] + 1: c["eval_ncm_acc"] for c in rec["curves"] if "eval_ncm_acc" in c}
    assert sorted(evaluated) == [2, 4]                       # the last epoch is the final evaluation
    evaluated[6] = last["ncm_acc"]["value"]
    best = last["ncm_acc_best"]
    assert best["selection"] == "selected-on-test" and best["split"] == last["ncm_acc"]["split"]
    assert best["value"] == max(evaluated.values())
    first_best = min(e for e, v in evaluated.items() if v == best["value"])
    assert rec["details"]["best_epoch"] == {"ncm_acc_best": first_best}
    assert "every 2 epoch(s)" in best["protocol"] and "chosen on the reported split" in best["protocol"]
    with pytest.raises(ConfigError, match="train.eval_every=-1"):
        execute(_spec(train=dict(eval_every=-1)), data_root=tmp_path)
