"""The runner: resume, failure records, interruption, the folder lock, parallel jobs, kill safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import toy_adapter
from hardneg import atomic, config, record, results, runner
from hardneg.errors import ConfigError, HardnegError
from hardneg.results import ResultsError
from hardneg.spec import RunSpec
from hardneg.record.lock import FolderLock, ResultsLockedError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REQUIRED = ("schema_version", "suite", "run_id", "status", "method", "spec", "metrics", "curves", "error",
            "started_at", "finished_at", "wall_time_s", "git_commit", "host", "versions", "device")


def suite(tmp_path: Path, text: str = toy_adapter.SUITE, **kw) -> config.Suite:
    return config.load_suite(toy_adapter.write_suite(tmp_path, text), **kw)


def records(folder: Path) -> dict[str, dict]:
    return {r["run_id"]: r for r in results.load_records(folder)}


def record_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json") if not p.name.startswith("."))


def metric_values(folder: Path) -> dict[str, float]:
    return {rid: r["metrics"][0]["value"] for rid, r in records(folder).items() if r["status"] == "ok"}


def test_run_writes_complete_records_and_resumes(tmp_path):
    s = suite(tmp_path)
    out = tmp_path / "res"
    summary = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (10, 10, 0, 0)
    recs = records(out)
    assert set(recs) == {sp.run_id for sp in s.specs}
    for r in recs.values():
        for key in REQUIRED:
            assert key in r, key
        assert r["status"] == "ok" and r["suite"] == "toy" and r["schema_version"] == results.SCHEMA_VERSION
        assert r["started_at"].endswith("Z") and r["metrics"][0]["metric"] == "ncm_acc"
    assert sum(r["method"] == "random-init" for r in recs.values()) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{rid}.json" for rid in recs)  # no lock/tmp left
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    again = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 10)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # finished work untouched


def test_resume_after_kill_runs_only_missing_and_cleans_tmp(tmp_path):
    s = suite(tmp_path)
    out = tmp_path / "res"
    runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    full = metric_values(out)
    # what a kill leaves: some records missing, a half-written temporary file
    gone = sorted(full)[:3]
    for rid in gone:
        (out / f"{rid}.json").unlink()
    (out / f".tmp-{gone[0]}-x.part").write_text('{"run_id": "' + gone[0] + '", "stat')
    summary = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    assert (summary.ok, summary.skipped, summary.removed_tmp) == (3, 7, 1)
    assert metric_values(out) == full  # same records as the uninterrupted run (CPU runs are reproducible)
    assert not list(out.glob(".tmp-*"))


def test_exception_and_nan_loss_become_failure_records_and_are_retried(tmp_path):
    text = toy_adapter.SUITE.replace("random_init = true", "random_init = false") + \
        '[toy.grid]\nbeta = [0.0]\ntau_plus = [0.0]\n"options.fail" = ["none", "raise", "nan"]\n'
    s = suite(tmp_path, text)
    out = tmp_path / "res"
    summary = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    assert (summary.ok, summary.failed) == (2, 4)  # the suite went on after each failure
    recs = records(out)
    failed = [r for r in recs.values() if r["status"] == "failed"]
    by_kind = {r["spec"]["options"]["fail"]: r for r in failed}
    assert by_kind["raise"]["error"]["type"] == "RuntimeError"
    assert "fail='raise'" in by_kind["raise"]["error"]["message"]
    assert "Traceback" in by_kind["raise"]["error"]["traceback"]
    assert by_kind["nan"]["error"]["type"] == "TrainingDiverged"
    assert "nan" in by_kind["nan"]["error"]["message"]
    assert all(r["metrics"] == [] and r["finished_at"] for r in failed)
    assert any("FAILED" in line for line in summary.lines())
    # failed runs are retried on the next invocation; ok ones are not
    again = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None)
    assert (again.skipped, again.ok + again.failed) == (2, 4)


def test_interrupt_leaves_no_record_for_the_interrupted_run(tmp_path):
    from hardneg import train

    s = suite(tmp_path)
    out = tmp_path / "res"
    calls = []

    def execute(spec, *, data_root=None, log=print):
        calls.append(spec.run_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return train.run_spec(spec, data_root=data_root, log=log)

    summary = runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None, execute=execute)
    assert summary.interrupted and summary.ok == 2
    assert set(records(out)) == set(calls[:2])


def test_unwritable_store_stops_the_suite_and_keeps_records(tmp_path, monkeypatch):
    from hardneg import train

    s = suite(tmp_path)
    out = tmp_path / "res"
    n = []

    def execute(spec, *, data_root=None, log=print):
        n.append(1)
        if len(n) == 3:  # the disk fills up while the third run trains
            def full(fd):
                raise OSError(28, "No space left on device")
            monkeypatch.setattr(os, "fsync", full)
        return train.run_spec(spec, data_root=data_root, log=log)

    with pytest.raises(ResultsError, match="disk is full"):
        runner.run_suite(s, results_dir=out, progress=False, log=lambda m: None, execute=execute)
    monkeypatch.undo()
    assert len(records(out)) == 2 and not list(out.glob(".tmp-*"))


def test_unwritable_results_folder_fails_before_training(tmp_path, monkeypatch):
    s = suite(tmp_path)

    def mkstemp(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    ran = []
    with pytest.raises(ResultsError, match="read-only"):
        runner.run_suite(s, results_dir=tmp_path / "res", progress=False, log=lambda m: None,
                         execute=lambda spec, **kw: ran.append(spec) or {})
    assert ran == []


def test_two_runners_on_one_folder(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    code = ("import sys, time; from pathlib import Path; from hardneg.record.lock import FolderLock\n"
            "lock = FolderLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsLockedError) as info:
            runner.run_suite(suite(tmp_path), results_dir=out, progress=False, log=lambda m: None)
        msg = str(info.value)
        assert "in use by another hardneg runner" in msg and f"pid {holder.pid}" in msg and "--results" in msg
        assert record_names(out) == []
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, no stale lock remains
        holder.wait()
    with FolderLock(out):
        pass


def test_lock_is_exclusive_within_one_process(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(ResultsLockedError):
            FolderLock(tmp_path).acquire()
    FolderLock(tmp_path).acquire().release()


def test_parallel_jobs_match_sequential(tmp_path):
    s = suite(tmp_path, toy_adapter.SUITE.replace("seed = [0, 1]", "seed = [0]"))
    seq, par = tmp_path / "seq", tmp_path / "par"
    runner.run_suite(s, results_dir=seq, progress=False, log=lambda m: None)
    summary = runner.run_suite(s, results_dir=par, jobs=2, progress=False, log=lambda m: None)
    assert (summary.ok, summary.failed) == (5, 0)
    assert metric_values(par) == metric_values(seq)
    assert sorted(p.name for p in par.iterdir()) == sorted(p.name for p in seq.iterdir())


def test_sigkill_mid_suite_then_resume_equals_uninterrupted(tmp_path):
    """Kill a real `hardneg run` process (SIGKILL) mid-suite, rerun: same records, none partial."""
    text = toy_adapter.SUITE.replace("[toy]", "[toy]\noptions = { delay = 0.15 }")
    path = toy_adapter.write_suite(tmp_path, text)
    killed = tmp_path / "killed"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import toy_adapter; from hardneg.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(TESTS), "run", str(path), "--results", str(killed),
                             "--no-report", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = killed / "toy"
    deadline = time.time() + 120
    while time.time() < deadline and len(record_names(folder)) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(record_names(folder))
    assert 4 <= n_before < 10, "the kill must land mid-suite"
    for name in record_names(folder):
        json.loads((folder / name).read_text())  # every record on disk is whole
    s = config.load_suite(path)
    summary = runner.run_suite(s, results_dir=folder, progress=False, log=lambda m: None)
    assert summary.skipped == n_before and summary.ok == 10 - n_before
    clean = tmp_path / "clean"
    runner.run_suite(s, results_dir=clean, progress=False, log=lambda m: None)
    assert metric_values(folder) == metric_values(clean)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in clean.iterdir())


# ---- honest reuse ---------------------------------------------------------------------------------

SMALL = toy_adapter.SUITE.replace("seed = [0, 1]", "seed = [0]")


def quiet(**kw):
    return dict(progress=False, log=lambda m: None, **kw)


def test_changed_data_is_refused_and_rerun_only_with_the_flag(tmp_path):
    s = suite(tmp_path, SMALL)
    out, data = tmp_path / "res", tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    (data / "toy" / "blobs4.version").write_text("v1")
    runner.run_suite(s, results_dir=out, data_root=data, **quiet())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {r["data_checksums"]["blobs4"] for r in records(out).values()} == {"v1"}
    (data / "toy" / "blobs4.version").write_text("v2")        # the data root now holds other data
    with pytest.raises(runner.ChangedRecordsError) as info:
        runner.run_suite(s, results_dir=out, data_root=data, **quiet())
    msg = str(info.value)
    assert "5 finished record(s)" in msg and "data blobs4 v1 -> v2" in msg and "--rerun-changed" in msg
    assert str(out / next(iter(before))) in msg or str(out) in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before       # nothing touched
    summary = runner.run_suite(s, results_dir=out, data_root=data, on_changed="rerun", **quiet())
    assert (summary.ok, summary.skipped, summary.rerun_changed) == (5, 0, 5)
    assert {r["data_checksums"]["blobs4"] for r in records(out).values()} == {"v2"}
    kept = sorted((out / ".superseded").iterdir())
    assert len(kept) == 5 and all(".superseded." in p.name for p in kept)
    assert {json.loads(p.read_text())["data_checksums"]["blobs4"] for p in kept} == {"v1"}   # nothing lost
    assert records(out).keys() == {p.name.split(".")[0] for p in kept}


def test_changed_adapter_version_is_refused(tmp_path, monkeypatch):
    s = suite(tmp_path, SMALL)
    out = tmp_path / "res"
    real = record.adapter_provenance

    def versioned(version):
        return lambda cls: {**real(cls), "distribution": "toy-plugin", "version": version}

    monkeypatch.setattr(record, "adapter_provenance", versioned("1.0"))
    runner.run_suite(s, results_dir=out, **quiet())
    assert {r["adapter"]["version"] for r in records(out).values()} == {"1.0"}
    monkeypatch.setattr(record, "adapter_provenance", versioned("1.1"))
    with pytest.raises(runner.ChangedRecordsError, match=r"adapter toy-plugin 1.0 -> toy-plugin 1.1"):
        runner.run_suite(s, results_dir=out, **quiet())
    summary = runner.run_suite(s, results_dir=out, on_changed="rerun", **quiet())
    assert summary.ok == 5 and {r["adapter"]["version"] for r in records(out).values()} == {"1.1"}


def test_records_without_an_adapter_version_are_reused_and_said(tmp_path):
    s = suite(tmp_path, SMALL)
    out = tmp_path / "res"
    runner.run_suite(s, results_dir=out, **quiet())      # the toy adapter is in no installed distribution
    again = runner.run_suite(s, results_dir=out, **quiet())
    assert again.skipped == 5 and again.unchecked == 5
    assert any("name no adapter version" in line for line in again.lines())


def test_a_corrupt_record_is_named_skipped_and_kept(tmp_path):
    s = suite(tmp_path, SMALL)
    out = tmp_path / "res"
    runner.run_suite(s, results_dir=out, **quiet())
    victim = sorted(records(out))[0]
    (out / f"{victim}.json").write_text('{"run_id": "' + victim + '", "stat')   # damaged by hand
    (out / "notes.json").write_text('{"my": "notes"}')                          # not a record at all
    lines: list[str] = []
    summary = runner.run_suite(s, results_dir=out, progress=False, log=lines.append)
    assert (summary.ok, summary.skipped) == (1, 4)
    msgs = [m for m in summary.unreadable]
    assert any(f"{victim}.json is not valid JSON" in m and "pending" in m for m in msgs)
    notes = next(m for m in msgs if "notes.json" in m)
    assert "not a run record" in notes and "delete" not in notes.lower() and "that run" not in notes
    assert any(line.startswith("skipped:") for line in lines)
    assert (out / "notes.json").exists()                                        # left where it was
    assert [p.name.split(".")[-2] for p in (out / ".superseded").iterdir()] == ["unreadable"]
    assert json.loads((out / f"{victim}.json").read_text())["status"] == "ok"


def test_a_corrupt_record_does_not_block_other_commands(tmp_path, capsys, monkeypatch):
    from hardneg import cli
    monkeypatch.chdir(tmp_path)
    path = toy_adapter.write_suite(tmp_path, SMALL.replace('datasets = ["blobs4"]', 'datasets = ["blobs4", "blobs8"]'))
    assert cli.main(["run", str(path), "--no-progress", "--no-report", "--only", "toy/blobs8"]) == 0
    folder = tmp_path / "results" / "toy"
    victim = sorted(folder.glob("*.json"))[0]
    victim.write_text("{oops")
    capsys.readouterr()
    assert cli.main(["run", str(path), "--no-progress", "--no-report", "--only", "toy/blobs4"]) == 0
    out = capsys.readouterr().out
    assert f"skipped: results/toy/{victim.name} is not valid JSON" in out and "5 ran ok" in out
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert f"skipped: results/toy/{victim.name}" in capsys.readouterr().out


def test_a_non_finite_spec_is_refused_before_anything_runs(tmp_path):
    s = suite(tmp_path, SMALL)
    out = tmp_path / "res"
    runner.run_suite(s, results_dir=out, **quiet())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import dataclasses
    bad = dataclasses.replace(s.specs[-1], loss=dataclasses.replace(s.specs[-1].loss, temperature=float("inf")))
    s.specs.append(bad)
    with pytest.raises(ConfigError, match=r"temperature=inf is not allowed; allowed: a finite number"):
        runner.run_suite(s, results_dir=out, **quiet())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_executor_is_one_class(tmp_path):
    from hardneg import executors

    class Reversed(executors.Executor):
        """A stand-in for another backend: runs the jobs in reverse order, through the same task."""
        name = "reversed"

        def run(self, jobs, task, *, started, finished, log_for):
            for job in reversed(list(jobs)):
                started(job)
                finished(job, task(job, log_for(job)))

    s = suite(tmp_path, SMALL)
    runner.run_suite(s, results_dir=tmp_path / "a", **quiet())
    summary = runner.run_suite(s, results_dir=tmp_path / "b", executor=Reversed(), **quiet())
    assert summary.ok == 5 and metric_values(tmp_path / "b") == metric_values(tmp_path / "a")
    with pytest.raises(HardnegError, match=r"--executor 'slurm' is not known; allowed: local, ray"):
        executors.make_executor("slurm")


@pytest.mark.skipif(not (REPO / "results" / "paper-graph-2026-11").is_dir(), reason="no committed records")
def test_committed_reference_records_are_reused_not_invalidated(data_root):
    """The schema-1 reference records (built-in adapters, no adapter field) match this hardneg and
    the shared data: planned again from their own specs, every one is done, none changed."""
    for name in ("quick", "paper-graph-2026-11", "sentence-cpu-2026-11"):
        folder = REPO / "results" / name
        specs = [RunSpec.from_dict(r["spec"]) for r in results.load_records(folder)]
        state = runner.inspect_folder(folder, runner.plan(specs), data_root)
        assert state.changed == [] and state.unreadable == [] and state.unchecked == [], name
        ok = [r for r in results.load_records(folder) if r["status"] == "ok"]
        assert len(state.done) == len(ok) > 0 and state.foreign == 0, name
        assert all(r["adapter"]["inferred"] and r["adapter"]["version"] for r in state.done.values())


@pytest.mark.skipif(not (REPO / "results" / "paper-graph-2026-11").is_dir(), reason="no committed records")
def test_records_made_before_an_option_existed_are_recognised_by_todays_suites(data_root):
    """The graph option `scores` (added_later) entered the resolved options after these records were
    written and `masks` (retired) left them, so today's specs have other ids; the records are still
    found and reused, not rerun."""
    for name, done in (("quick", 38), ("paper-graph-2026-11", 385)):
        s = config.load_suite(REPO / "benchmarks" / f"{name}.toml")
        jobs = runner.plan(s.specs)
        graph = [j for j in jobs if j.spec.modality == "graph"]
        assert graph and all(len(j.record_ids) == 4 and j.record_ids[0] == j.spec.run_id for j in graph)
        state = runner.inspect_folder(REPO / "results" / name, jobs, data_root)
        assert len(state.done) == done and state.changed == [], name


def test_labels_name_what_tells_a_run_from_its_data_sets_others(tmp_path):
    """A swept option and loss setting appear in the label of every trained run; the untrained
    runs show options only, and not training-only ones; a suite with nothing else varying keeps
    the bare label."""
    text = toy_adapter.SUITE.replace("[toy]\n", '[toy]\ngrid = {"options.hidden" = [8, 16], "options.jitter" = [0.3, 0.5], '
                                                 'temperature = [0.5, 1.0]}\n')
    jobs = runner.plan(suite(tmp_path, text).specs)
    trained = [j.label for j in jobs if j.spec.train.epochs > 0]
    assert "toy/blobs4 hard-infonce b=1 t+=0.1 s0 [temperature=1.0, hidden=8, jitter=0.5]" in trained
    floors = {j.label for j in jobs if j.spec.train.epochs == 0}
    assert floors == {"toy/blobs4 random-init s0 [hidden=8]", "toy/blobs4 random-init s0 [hidden=16]",
                      "toy/blobs4 random-init s1 [hidden=8]", "toy/blobs4 random-init s1 [hidden=16]"}
    (tmp_path / "plain").mkdir()
    assert {j.detail for j in runner.plan(suite(tmp_path / "plain").specs)} == {""}
