"""The GPU check (benchmarks/gpu_check.sh) on a machine without a GPU: its CPU smoke runs every
section's code (the CUDA tests on the CPU, the training paths, the runner's epoch) so that the
script cannot rot between GPU runs; its budget, import check, data packing and table are
checked directly; and the CPU throughput table of benchmarks/perf/image.py runs at a tiny size."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gc = _load("gpu_check", REPO / "benchmarks" / "gpu_check.py")


def _env(tmp_path: Path, data_root: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, HARDNEG_CACHE=str(tmp_path / "cache"), GPU_CHECK_HARD_LIMIT="1200")
    env.pop("OUT", None)
    if data_root is not None:
        env["HARDNEG_DATA"] = str(data_root)
    return env


def test_cpu_smoke_runs_every_section_and_prints_one_table(tmp_path, data_root):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", str(out),
                           "--budget", "1000"], env=_env(tmp_path, data_root), capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    sec = summary["sections"]
    assert summary["overall"] == "PASS" and all(sec[n]["verdict"] == "ok" for n in sec), sec
    c = sec["tests"]["counts"]
    assert c["passed"] >= 20 and c["failed"] == c["errors"] == 0        # the CUDA tests, run on the CPU
    rows = {r["path"]: r for r in sec["bench"]["rows"]}
    assert set(rows) == {"authors", "fast", "fast-1pass", "fast-cudnn", "fast-compile"}
    assert all(rows[p]["status"] == "ok" and rows[p]["steps_per_s"] > 0 for p in rows if p != "fast-compile")
    assert rows["fast-compile"]["status"] == "skipped"
    ev = sec["epoch"]["result"]
    assert ev["ok"] and len(ev["losses"]) == 3 and ev["losses"][-1] < ev["losses"][0] and ev["steps"] == [8, 8, 8]
    record = json.loads((out / "epoch-record.json").read_text())
    assert record["status"] == "ok" and record["spec"]["options"]["encoder"] == "resnet10"
    table = (out / "table.md").read_text()
    assert table.strip() in done.stdout                                  # printed, and written
    for label in ("preflight", "(a) tests", "(b) authors", "(b) fast ", "(c) epoch", "overall"):
        assert label in table
    assert "(b) target" not in table                                     # the target is a GPU number
    assert {p.name for p in out.iterdir()} <= {"table.md", "summary.json", "preflight.log", "tests.log",
                                               "bench.log", "epoch.log", "epoch-record.json"}   # <= 8 files


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_gpu_check_stops_and_says_so(tmp_path, data_root):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)],
                          env=_env(tmp_path, data_root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    assert "CUDA is not available" in done.stderr and "--cpu-smoke" in done.stderr
    assert "FAIL (no CUDA)" in (out / "table.md").read_text()


def test_missing_modules_are_named_with_what_imported_them(tmp_path, monkeypatch):
    (tmp_path / "needs_absent.py").write_text("import hardneg_absent_dependency\n")
    monkeypatch.setattr(gc, "REQUIRED", gc.REQUIRED + (
        ("hardneg_absent_top", "a test", ("tests", "bench", "epoch")),
        ("needs_absent", "a test too", ("tests", "bench", "epoch"))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(tmp_path)]))
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    assert gc.main(["--cpu-smoke", str(tmp_path / "out")]) == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    facts = summary["facts"]
    assert facts["torch"] == torch.__version__
    missing = {m["module"]: m["wanted_by"] for m in facts["missing"]}
    assert missing == {"hardneg_absent_top": "hardneg_absent_top", "hardneg_absent_dependency": "needs_absent"}
    msg = gc.missing_message(facts)
    assert "'hardneg_absent_dependency' (imported by needs_absent" in msg and "'hardneg_absent_top'" in msg
    # the sections that need a missing module are skipped, and the table says why
    table = (tmp_path / "out" / "table.md").read_text()
    assert "hardneg_absent_dependency" in table and "FAIL (missing modules)" in table
    assert all(summary["sections"][n]["verdict"].startswith("FAIL: skipped") for n in ("tests", "bench", "epoch"))


def test_a_section_past_its_limit_is_killed_with_its_children(tmp_path):
    child = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(child)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(120)")
    tic = time.monotonic()
    r = gc.run_section("slow", [sys.executable, "-c", code], 3.0, tmp_path / "slow.log", dict(os.environ))
    assert r["status"] == "timeout" and r["rc"] is None and time.monotonic() - tic < 30
    log = (tmp_path / "slow.log").read_text()
    assert "started" in log and "killed after its limit of 3 s" in log
    pid = int(child.read_text())
    for _ in range(50):                       # the grandchild went with the group
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {pid} of the killed section is still alive")
    ok = gc.run_section("quick", [sys.executable, "-c", "print('hi')"], 60.0, tmp_path / "q.log", dict(os.environ))
    assert ok["status"] == "ok" and ok["rc"] == 0


def test_pack_data_copies_a_balanced_subset_byte_for_byte(tmp_path, data_root, monkeypatch):
    from modalities.image.data import load_dataset

    size = gc.pack_data(tmp_path / "pack", data_root, 23, 10)
    tree = tmp_path / "pack" / "cifar10"
    train = sorted(tree.glob("train/*/*.jpg"))
    assert len(train) == 23 and len(list(tree.glob("test/*/*.jpg"))) == 10
    per_class = sorted(len(list(d.iterdir())) for d in (tree / "train").iterdir())
    assert per_class == [2] * 7 + [3] * 3
    assert all(f.read_bytes() == (data_root / "cifar10" / f.relative_to(tree)).read_bytes() for f in train)
    assert size == sum(f.stat().st_size for f in tree.rglob("*.jpg"))
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    s = load_dataset("cifar10", tmp_path / "pack", log=lambda m: None)
    assert len(s.pretrain) == 23 and len(s.test) == 10 and s.num_classes == 10
    with pytest.raises(SystemExit, match="asked for 5001"):
        gc.pack_data(tmp_path / "big", data_root, 50010, 0)


def test_epoch_checks_name_what_went_wrong(tmp_path):
    folder = tmp_path / "gpu-check"
    folder.mkdir()
    rec = {"status": "ok", "device": "cpu:x86_64", "curves": [{"loss": 6.0, "steps": 20}, {"loss": 6.1, "steps": 20}],
           "metrics": [{"metric": "knn_top1", "value": 20.0}], "timing": {"train_samples_per_s": 512.0},
           "memory": {"peak_mb": 100.0}, "spec": {"train": {"batch_size": 256}}}
    (folder / "a.json").write_text(json.dumps(rec))
    ev = gc.epoch_result(tmp_path, smoke=False)
    assert not ev["ok"] and "did not fall" in ev["why"] and "not CUDA" in ev["why"] and ev["steps_per_s"] == 2.0
    rec.update(device="cuda:NVIDIA H200", curves=[{"loss": 6.0, "steps": 20}, {"loss": 5.5, "steps": 20}])
    (folder / "a.json").write_text(json.dumps(rec))
    assert gc.epoch_result(tmp_path, smoke=False)["ok"]
    (folder / "a.json").write_text(json.dumps({"status": "failed", "error": {"type": "DataError", "message": "x"}}))
    assert "run failed: DataError: x" in gc.epoch_result(tmp_path, smoke=False)["why"]


def test_table_of_a_gpu_run():
    """The GPU-only parts of the table (target row, ratios, memory, an errored path) from a summary."""
    def row(path: str, sps: float) -> dict:
        return {"path": path, "label": path, "status": "ok", "steps_per_s": sps, "img_s": 256 * sps,
                "epoch_s": 195 / sps, "peak_mb": 9000.0}

    summary = {"smoke": False, "bench_setting": "resnet50", "epoch_setting": "resnet50, B=256", "overall": "PASS",
               "facts": {"python": "3.12.3", "torch": "2.11.0", "torch_cuda": "13.0", "cuda": True,
                         "gpu": "NVIDIA H200", "gpu_mib": 143771, "capability": "9.0", "bf16": True, "triton": "3.6.0",
                         "data": {"root": "/x", "cifar10": True, "files": {"train": 5120, "test": 1000}}},
               "sections": {"preflight": {"verdict": "ok"},
                            "tests": {"verdict": "ok", "seconds": 40, "counts": {"passed": 35, "failed": 0, "errors": 0,
                                                                                  "skipped": 0, "xfailed": 1}},
                            "bench": {"verdict": "ok", "best_fast": 40.0, "best_fast_path": "fast-compile",
                                      "target": "met", "rows": [row("authors", 12.5), row("fast", 32.0),
                                                                row("fast-compile", 40.0),
                                                                {"path": "fast-cudnn", "label": "fast-cudnn",
                                                                 "status": "error", "error": "RuntimeError: boom"}]},
                            "epoch": {"verdict": "ok", "result": {"losses": [6.1, 5.8, 5.6],
                                                                  "metrics": {"knn_top1": 30.0}, "steps_per_s": 25.0,
                                                                  "img_s": 6400.0, "peak_mb": 9100.0}}}}
    table = gc.render_table(summary)
    lines = table.splitlines()
    assert len({len(x) for x in lines}) == 1                     # aligned columns
    assert "NVIDIA H200" in table and "35 passed, 0 failed, 0 skipped, 1 xfailed" in table
    fast = next(x for x in lines if x.startswith("| (b) fast "))
    assert "32.00" in fast and "x2.56 of authors" in fast and "9000" in fast
    assert "error: RuntimeError: boom" in table
    assert "met (best: fast-compile)" in next(x for x in lines if "(b) target" in x)
    assert "loss 6.100 -> 5.800 -> 5.600" in table


def test_cpu_throughput_table_runs(tmp_path, data_root):
    env = dict(os.environ, PYTHONPATH=str(REPO), HARDNEG_DATA=str(data_root), HARDNEG_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "perf" / "image.py"), "--table", "--settings",
                           "resnet10x0.0625", "--batch", "32", "--images", "64", "--table-steps", "1", "--warmup", "1",
                           "--minutes", "10"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("resnet10 x 0.0625"))
    _, _, _, features, img_s, img_cpu_s, per_epoch, epochs, wall_per_cpu = line.split()
    assert features == "32" and float(img_s) > 0 and float(wall_per_cpu) > 0.5
    assert float(per_epoch) == pytest.approx(50_000 / float(img_cpu_s), rel=0.01, abs=1)
    assert abs(int(epochs) - 600 // (50_000 / float(img_cpu_s))) <= 1
    assert "epochs in 10 CPU-min" in done.stdout and "B = 32" in done.stdout
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "perf" / "image.py"), "--table", "--settings",
                          "resnet10"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "ENCODERxWIDTH" in bad.stderr
