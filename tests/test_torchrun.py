"""Multi-process training (torchrun; gloo on CPU, 2 ranks on 127.0.0.1) against one process on the whole batch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import ddp_toy
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hardneg import executors, runner
from hardneg.context import open_run
from hardneg.errors import HardnegError
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.train import CheckpointMismatch, train

from hardneg.objective import Objective

REPO = Path(__file__).resolve().parents[1]
WORLD, B, STEPS = 2, 16, 3
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(bn: bool, sync: bool, epochs: int = STEPS, **train) -> RunSpec:
    t = dict(epochs=epochs, batch_size=B, max_steps_per_epoch=1, threads=1, lr=0.05, diagnostics_every=0,
             sync_batchnorm=sync, device="cpu", **train)
    return RunSpec("toyddp", "blobs4", seed=0, loss=LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5),
                   train=TrainSpec(**t), options={"bn": bn, "hidden": 16, "n": 64})


def _train(bn: bool, sync: bool, epochs: int = STEPS, checkpoint: Path | None = None) -> dict:
    """``epochs`` optimiser steps of the toy (one an epoch): per-step global loss, the last step's
    gradients, the weights."""
    spec = _spec(bn, sync, epochs)
    ad = ddp_toy.DDPToyAdapter()
    run = open_run(ad, spec, log=lambda m: None)
    ad.prepare(run)
    model = ad.build_model(run)
    out = train(ad, model, run, Objective(spec.loss), checkpoint=checkpoint)
    return {"loss": torch.tensor([c["loss"] for c in out["curves"]], dtype=torch.float64),
            "seconds": [c["seconds"] for c in out["curves"]],
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _rank(rank: int, port: int, bn: bool, sync: bool, out: str, epochs: int = STEPS, ckpt: str | None = None,
          tag: str = "rank") -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from hardneg.distributed import init_from_env
    assert init_from_env(timeout_s=60) == (rank, WORLD)
    try:
        torch.save(_train(bn, sync, epochs, None if ckpt is None else Path(ckpt)), f"{out}/{tag}{rank}.pt")
    finally:
        dist.destroy_process_group()


def _max_err(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("bn, sync", [(False, False), (True, True), (True, False)],
                         ids=["no-batchnorm", "synced-batchnorm", "per-rank-batchnorm"])
def test_two_ranks_of_half_the_batch_equal_one_process_of_the_whole(tmp_path, bn, sync, capsys):
    """Equal to 1e-6 without BatchNorm and with it synced; per-rank BatchNorm (the control) differs."""
    mp.start_processes(_rank, args=(_free_port(), bn, sync, str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="spawn")
    one = _train(bn, sync)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for r in ranks:               # every rank holds the same parameters (and, synced, the same BatchNorm statistics)
        same = {k: v for k, v in r["weights"].items() if sync or "running" not in k}
        assert _max_err(same, ranks[0]["weights"]) == 0.0
    errs = {"loss": float((ranks[0]["loss"] - one["loss"]).abs().max()),
            "grads": _max_err(ranks[0]["grads"], one["grads"]),
            "weights": _max_err(ranks[0]["weights"], one["weights"])}
    with capsys.disabled():
        what = "BatchNorm synced" if sync else "BatchNorm per rank" if bn else "no BatchNorm"
        print(f"\n2 ranks x B/2 vs 1 process x B ({what}), "
              f"float64, {STEPS} steps: max abs error " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    if bn and not sync:                                         # the statistics of half the batch
        assert errs["grads"] > 1e-3 and errs["weights"] > 1e-3, errs
        return
    assert all(v <= 1e-6 for v in errs.values()), errs
    assert one["loss"].unique().numel() == STEPS                   # it trained: three different losses
    moved = _max_err(one["weights"], {k: v for k, v in _initial(bn).items()})
    assert moved > 1e-3


def test_two_ranks_resume_their_checkpoint_where_they_left_off(tmp_path):
    """2 ranks for 2 steps with a checkpoint, then 2 ranks resuming it for the 3rd: one process's 3 steps."""
    ckpt = tmp_path / "run.pt"
    for epochs, tag in ((STEPS - 1, "first"), (STEPS, "resumed")):
        mp.start_processes(_rank, args=(_free_port(), False, False, str(tmp_path), epochs, str(ckpt), tag),
                           nprocs=WORLD, join=True, start_method="spawn")
    assert torch.load(ckpt, weights_only=False)["world_size"] == WORLD
    resumed = torch.load(tmp_path / "resumed0.pt")
    first = torch.load(tmp_path / "first0.pt")
    assert resumed["loss"].numel() == STEPS
    assert resumed["seconds"][:-1] == first["seconds"]          # its first two steps are the checkpoint's
    one = _train(False, False)
    assert _max_err(resumed["weights"], one["weights"]) <= 1e-6
    assert float((resumed["loss"] - one["loss"]).abs().max()) <= 1e-6


def _initial(bn: bool) -> dict:
    spec = _spec(bn, False)
    ad = ddp_toy.DDPToyAdapter()
    run = open_run(ad, spec, log=lambda m: None)
    return ad.build_model(run).state_dict()


def _torchrun(tmp_path: Path, suite: str, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    launcher = tmp_path / "launch.py"
    launcher.write_text("import sys, ddp_toy\nfrom hardneg.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    (tmp_path / "s.toml").write_text(suite)
    exe = Path(sys.executable).with_name("torchrun")
    cmd = [str(exe) if exe.exists() else shutil.which("torchrun") or "torchrun", f"--nproc-per-node={WORLD}",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}", str(launcher), "run", str(tmp_path / "s.toml"),
           "--results", str(tmp_path / "results"), "--no-report", "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARDNEG_DIST_TIMEOUT_S": "60",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


SUITE = """
[suite]
name = "ddp"
[defaults.train]
epochs = 2
batch_size = {batch}
threads = 1
device = "cpu"
[grid]
beta = [0.0, 1.0]
seed = [0]
[toyddp]
datasets = ["blobs4"]
[toyddp.options]
die_at_step = {die}
"""


def _records(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "ddp").glob("*.json"))]


def test_a_suite_under_torchrun_writes_one_record_per_run_from_rank_0(tmp_path):
    done = _torchrun(tmp_path, SUITE.format(batch=B, die=0))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recs = _records(tmp_path)
    assert len(recs) == 2 and all(r["status"] == "ok" and r["details"]["world_size"] == WORLD for r in recs)
    assert done.stdout.count("suite ddp: 2 runs;") == 1          # one summary: rank 0's


def test_a_rank_that_dies_fails_the_run_with_a_record_not_a_hang(tmp_path):
    done = _torchrun(tmp_path, SUITE.format(batch=B, die=3))      # rank 1 leaves in its 3rd step
    assert done.returncode != 0, done.stdout[-3000:] + done.stderr[-3000:]
    recs = _records(tmp_path)
    assert len(recs) == 1 and recs[0]["status"] == "failed", done.stdout[-3000:] + done.stderr[-3000:]
    assert recs[0]["error"]["type"] == "CollectiveFailed", recs[0]["error"]
    assert "rank 0 of 2: a collective failed at epoch 0, step 2; another rank died" in recs[0]["error"]["message"]
    assert "was lost" in done.stderr, done.stderr[-3000:]


def test_a_world_size_that_does_not_divide_the_batch_is_a_clear_error(tmp_path):
    done = _torchrun(tmp_path, SUITE.format(batch=15, die=0))
    recs = _records(tmp_path)
    assert done.returncode == 1 and len(recs) == 2 and all(r["status"] == "failed" for r in recs), done.stderr
    msg = recs[0]["error"]["message"]
    assert "train.batch_size=15 cannot be split over world size 2" in msg and "multiple of 2" in msg


def test_resuming_a_checkpoint_of_another_world_size_is_a_clear_error_and_keeps_it(tmp_path):
    spec = _spec(False, False)
    ad = ddp_toy.DDPToyAdapter()
    run = open_run(ad, spec, log=lambda m: None)
    ad.prepare(run)
    model = ad.build_model(run)
    ckpt = tmp_path / "run.pt"
    train(ad, model, run, Objective(spec.loss), checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    assert state["world_size"] == 1
    state["world_size"] = 2
    torch.save(state, ckpt)
    with pytest.raises(CheckpointMismatch, match=r"made under world size 2, this run has world size 1; allowed: "
                                                 r"resume it under 2 process\(es\)"):
        train(ad, ad.build_model(run), run, Objective(spec.loss), checkpoint=ckpt)
    # through the runner: a failure record, and the checkpoint stays for a resume under 2 ranks
    job = runner.plan([spec])[0]
    task = executors.RunTask(str(tmp_path / "results"))
    task.checkpoint(spec.run_id).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, task.checkpoint(spec.run_id))
    outcome = task(job, lambda m: None)
    assert outcome.status == "failed" and "CheckpointMismatch" in outcome.error
    assert task.checkpoint(spec.run_id).exists()
    task.checkpoint(spec.run_id).unlink()


def test_batches_that_cannot_be_split_are_refused():
    from hardneg.distributed import shard_batch
    with pytest.raises(HardnegError, match=r"a batch of 15 rows cannot be split over world size 2"):
        shard_batch((torch.zeros(15, 2), torch.zeros(15, 2)), 0, 2)
    with pytest.raises(HardnegError, match=r"a training batch of type dict cannot be split across 2 ranks"):
        shard_batch({"x": torch.zeros(4)}, 0, 2)
    a, b = torch.arange(8).view(4, 2), torch.arange(4)
    assert [t.tolist() for t in shard_batch((a, b), 1, 2)] == [[[4, 5], [6, 7]], [2, 3]]
