"""``--executor ray`` on a real Ray cluster of this machine: a head node and a second node joining it.

The cluster is started with ``ray start`` in sessions of its own and torn down by killing the
processes of those sessions (their ids), so no other Ray on the machine is touched. Skips
without ray installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hardneg import config, executors, runner
from hardneg.errors import HardnegError

REPO = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'hardneg[ray]')")
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    here = Path(sys.executable).with_name("ray")
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


def _env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout (and the tests' adapters) first on the path."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def _session_pids(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:          # state ppid pgrp session ...
                out.append(int(entry.name))
    return out


def _kill_sessions(sids: list[int], timeout_s: float = 20.0) -> None:
    """SIGKILL every process of the sessions ``sids`` (the ray processes these tests started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p for sid in sids for p in _session_pids(sid)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    """``127.0.0.1:PORT`` of a Ray head (2 CPUs) with a second node (1 CPU) joined to it."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")           # short: Ray's socket paths must fit
    common = ["--node-ip-address=127.0.0.1", "--object-store-memory=80000000", "--disable-usage-stats"]
    sids: list[int] = []
    logs = Path(tmp) / "start.log"
    try:
        for args in (["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={tmp}"],
                     [f"--address=127.0.0.1:{port}", "--num-cpus=1"]):
            with open(logs, "a") as log:
                proc = subprocess.Popen([_ray_cli(), "start", *args, *common], env=_env(), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            sids.append(proc.pid)
            if proc.wait(timeout=START_TIMEOUT_S) != 0:
                pytest.fail(f"ray start {' '.join(args)} failed:\n{logs.read_text()[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        try:
            import ray
            ray.shutdown()
        finally:
            _kill_sessions(sids)
            shutil.rmtree(tmp, ignore_errors=True)


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def _quiet(msg: str) -> None:
    pass


@needs_ray
@pytest.mark.slow
def test_smoke_suite_through_ray_equals_the_local_executor(cluster, tmp_path, data_root):
    suite = config.load_suite(REPO / "benchmarks" / "smoke.toml")
    local = runner.run_suite(suite, results_dir=tmp_path / "local", data_root=data_root, progress=False, log=_quiet)
    ex = executors.make_executor("ray", address=cluster)
    assert ex.cluster["CPU"] == 3.0                           # both nodes joined
    lines: list[str] = []
    via_ray = runner.run_suite(suite, results_dir=tmp_path / "ray", data_root=data_root, progress=False,
                               log=lines.append, executor=ex)
    assert (local.ok, local.failed) == (via_ray.ok, via_ray.failed) == (len(suite.specs), 0)
    a, b = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert sorted(a) == sorted(b) == sorted(s.run_id for s in suite.specs)
    for rid in a:
        assert a[rid]["status"] == b[rid]["status"] == "ok"
        assert ([(m["metric"], m["split"], m["value"]) for m in a[rid]["metrics"]]
                == [(m["metric"], m["split"], m["value"]) for m in b[rid]["metrics"]]), rid
        assert a[rid]["curves"][-1:] == [] or a[rid]["curves"][-1]["loss"] == b[rid]["curves"][-1]["loss"]
    # progress and ETA lines as with the local executor
    assert sum("ETA" in line and line.startswith("[") for line in lines) == len(suite.specs)
    assert not list((tmp_path / "ray").glob(".*tmp*"))
    # resumable by either executor: the local one finds every Ray record done
    again = runner.run_suite(suite, results_dir=tmp_path / "ray", data_root=data_root, progress=False, log=_quiet)
    assert again.skipped == len(suite.specs) and again.ok == 0


FLAG_SUITE = """
[suite]
name = "flag"
[defaults.train]
epochs = 1
batch_size = 16
threads = 1
[grid]
beta = [0.0, 1.0]
tau_plus = [0.0, 0.1]
seed = [0]
[toyflag]
datasets = ["blobs4"]
[[toyflag.extra]]
options = {{ block = "{flag}" }}
"""


#: ``hardneg`` with the test adapters registered (the driver process must know ``toyflag``)
CLI = [sys.executable, "-c", "import sys, flag_toy; from hardneg.cli import main; sys.exit(main(sys.argv[1:]))"]


def _cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, env=env, capture_output=True, text=True,
                          timeout=timeout)


@needs_ray
@pytest.mark.slow
def test_a_worker_killed_mid_suite_loses_nothing_and_a_rerun_completes_the_set(cluster, tmp_path):
    flag = tmp_path / "flag"
    suite_file = tmp_path / "flag.toml"
    suite_file.write_text(FLAG_SUITE.format(flag=flag))
    results = tmp_path / "results"
    env = _env()
    cmd = ["run", str(suite_file), "--results", str(results), "--no-report", "--no-progress"]
    proc = subprocess.Popen([*CLI, *cmd, "--executor", "ray", "--address", cluster],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pid_file = Path(f"{flag}.pid")
        deadline = time.monotonic() + 180
        while not pid_file.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the blocking run never started"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert worker != proc.pid
        os.kill(worker, signal.SIGKILL)                        # the Ray worker process executing that run
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out                            # the suite finished; one run failed
    recs = _records(results / "flag")
    assert len(recs) == 5, out
    failed = [r for r in recs.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["options"]["block"] == str(flag), out
    assert "died" in failed[0]["error"]["message"] or "Crashed" in failed[0]["error"]["type"], failed[0]["error"]
    ok_before = {p.name: p.read_bytes() for p in (results / "flag").glob("*.json")
                 if json.loads(p.read_bytes())["status"] == "ok"}
    assert len(ok_before) == 4
    # the rerun (here by the local executor) runs the one that failed, and nothing else
    flag.write_text("go")
    again = _cli(cmd, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 already done, 1 ran ok, 0 failed" in again.stdout, again.stdout
    files = sorted((results / "flag").glob("*.json"))
    assert len(files) == 5 and all(json.loads(p.read_text())["status"] == "ok" for p in files)
    assert {p.name: p.read_bytes() for p in files if p.name in ok_before} == ok_before
    assert not (results / "flag" / ".superseded").exists()


@needs_ray
def test_an_address_where_nothing_answers_is_a_clear_error(tmp_path):
    import toy_adapter
    suite_file = toy_adapter.write_suite(tmp_path)
    port = _free_port()                                        # nothing listens there
    done = _cli(["run", str(suite_file), "--results", str(tmp_path / "r"), "--no-report", "--no-progress",
                 "--executor", "ray", "--address", f"127.0.0.1:{port}"], _env(), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in done.stderr, done.stderr
    assert f"ray start --head --port={port}" in done.stderr
    assert not (tmp_path / "r" / "toy").exists() or not list((tmp_path / "r" / "toy").glob("*.json"))


@needs_ray
@pytest.mark.parametrize("kwargs, message", [
    ({"address": "nohost"}, r"--address 'nohost' is invalid; allowed: HOST:PORT"),
    ({"address": "h:99999"}, r"--address 'h:99999' is invalid"),
    ({"jobs": 2, "address": "127.0.0.1:1"}, r"--jobs 2 applies to the local executor"),
])
def test_bad_ray_arguments_are_refused(kwargs, message):
    with pytest.raises(HardnegError, match=message):
        executors.make_executor("ray", **kwargs)


def test_an_address_needs_the_ray_executor():
    with pytest.raises(HardnegError, match=r"--address 127.0.0.1:6379 needs --executor ray"):
        executors.make_executor("local", address="127.0.0.1:6379")


def test_without_ray_the_executor_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)              # import ray -> ImportError
    with pytest.raises(HardnegError, match=r'pip install "hardneg\[ray\]"'):
        executors.make_executor("ray", address="127.0.0.1:6379")


def test_ray_resources_follow_the_train_settings():
    suite = config.load_suite(REPO / "benchmarks" / "smoke.toml", overrides=["graph.train.threads=2",
                                                                              "image.train.device='cuda'"])
    res = {s.modality: executors.ray_resources(s) for s in suite.specs}
    assert res["graph"] == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert res["image"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert res["sentence"] == {"num_cpus": 1.0, "num_gpus": 0.0}
