"""The command line: run (with report), report, list, data check, exit codes and messages."""

from __future__ import annotations

import pytest

import toy_adapter
from hardneg import cli, results


def test_run_then_report_then_rerun(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = toy_adapter.write_suite(tmp_path)
    assert cli.main(["run", str(suite), "--no-progress", "--set", "toy.epochs=1", "--only", "toy/blobs4"]) == 0
    out = capsys.readouterr().out
    assert "10 ran ok" in out and "report: reports/toy/report.md" in out
    df = results.load(tmp_path / "results" / "toy")
    assert len(df) == 10 and set(df.loc[df["method"] != "random-init", "epochs"]) == {1}
    page = (tmp_path / "reports" / "toy" / "report.md").read_bytes()
    assert cli.main(["report", "results/toy"]) == 0
    assert (tmp_path / "reports" / "toy" / "report.md").read_bytes() == page
    assert cli.main(["run", str(suite), "--no-progress", "--set", "toy.epochs=1", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "10 already done, 0 ran ok" in out and "record(s) in the folder" not in out
    assert cli.main(["run", str(suite), "--no-progress", "--set", "toy.epochs=1", "--no-report",
                     "--set", "grid.seed=[0]"]) == 0
    out = capsys.readouterr().out
    assert ("record(s) in the folder are outside this command's selection "
            "(--set toy.epochs=1 --set grid.seed=[0]): other seeds") in out


def test_failed_runs_give_exit_status_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = toy_adapter.write_suite(tmp_path)
    code = cli.main(["run", str(suite), "--no-progress", "--no-report", "--set", "toy.options.fail='raise'",
                     "--set", "grid.seed=[0]", "--set", "toy.random_init=false", "--set", "grid.beta=[0.0]"])
    assert code == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["--set", "toy.train.epochz=1"], "toy.train.epochz: unknown key"),
    (["--set", "grid.beta=[]"], "zero runs"),
    (["--only", "toy/nothing"], "matches no run"),
    (["--jobs", "0"], "--jobs 0"),
])
def test_bad_input_gives_exit_status_2_and_one_line(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    suite = toy_adapter.write_suite(tmp_path)
    assert cli.main(["run", str(suite), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardneg: error:") and needle in err and "Traceback" not in err


def test_missing_suite_and_report_of_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "no-such-suite"]) == 2
    assert "no suite named 'no-such-suite'" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["report", "res", "--companion", "comp", "--no-companions"]) == 2
    assert "--no-companions and --companion comp contradict each other" in capsys.readouterr().err
    (tmp_path / "res").mkdir()
    results.write_record(tmp_path / "res", {
        "schema_version": results.SCHEMA_VERSION, "suite": "s", "run_id": "000000000000", "status": "ok",
        "spec": {"modality": "toy", "dataset": "d", "seed": 0, "loss": {}, "train": {"epochs": 0}},
        "metrics": [], "curves": []})
    assert cli.main(["report", "res", "--companion", "comp"]) == 2
    assert "companion folder comp does not exist" in capsys.readouterr().err


def test_list_and_data_check(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    toy_adapter.write_suite(tmp_path / "benchmarks", name="mine.toml")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "blobs4, blobs8" in out and "mine" in out and "10 runs over toy" in out
    assert "jitter*" in out and "(* training only)" in out
    assert cli.main(["data", "check", "--modality", "toy", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "present  blobs4" in out and "MISSING  absent" in out and "never present" in out and "1 missing" in out


def test_download_flag_allows_downloads_for_the_runs(tmp_path, monkeypatch):
    import os
    from hardneg import data, runner
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDNEG_ALLOW_DOWNLOAD", raising=False)
    suite = toy_adapter.write_suite(tmp_path)
    seen = []

    def fake_run_suite(*args, **kwargs):
        seen.append(data.downloads_allowed())
        raise SystemExit(0)
    monkeypatch.setattr(runner, "run_suite", fake_run_suite)
    for flag in ([], ["--download"]):
        with pytest.raises(SystemExit):
            cli.main(["run", str(suite), "--no-progress", *flag])
    assert seen == [False, True] and os.environ["HARDNEG_ALLOW_DOWNLOAD"] == "1"


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_dry_run_estimates_checks_the_budget_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = toy_adapter.SUITE.replace('name = "toy"', 'name = "toy"\nbudget_cpu_hours = 0.5\n'
                                     'budget_cpu_minutes_per_run = 1e-6')
    suite = toy_adapter.write_suite(tmp_path, text)
    assert cli.main(["run", str(suite), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "10 pending" in out and "--calibrate times it" in out and not (tmp_path / "results").exists()
    assert cli.main(["run", str(suite), "--no-progress", "--no-report", "--set", "grid.seed=[0]"]) == 0
    folder = tmp_path / "results" / "toy"
    before = _snapshot(folder)
    capsys.readouterr()
    assert cli.main(["run", str(suite), "--dry-run", "--set", "toy.epochs=6"]) == 0
    out = capsys.readouterr().out
    assert _snapshot(folder) == before                      # not a byte, not a lock file
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    floor = next(line for line in lines if "random-init s1" in line)
    assert "same setting, 1 finished run(s)" in floor
    trained = [line for line in lines if "infonce" in line]
    assert len(trained) == 8 and all("scaled to 6 epochs from 4 run(s) of 2 epochs" in line for line in trained)
    assert all("OVER the per-run budget" in line and "CPU-min > 1e-06" in line for line in lines)
    assert "9 pending run(s) exceed the per-run budget of 1e-06 CPU-minutes" in out
    assert "within the suite's budget of 0.5 CPU-hours" in out and "measured in 1 finished run(s)" in out


def test_dry_run_calibrates_settings_without_history(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = toy_adapter.write_suite(tmp_path, toy_adapter.SUITE.replace('name = "toy"',
                                                                        'name = "toy"\nbudget_cpu_hours = 1e-9'))
    assert cli.main(["run", str(suite), "--dry-run", "--calibrate"]) == 0
    cap = capsys.readouterr()
    assert cap.err.count("calibrated toy/blobs4 B=16") == 1                   # one configuration
    assert "steps/epoch" in cap.err and "s/step (3 steps after 1 warm-up)" in cap.err and "one evaluation" in cap.err
    assert cap.out.count("calibrated on this machine") == 10
    assert "OVER the suite's budget of 1e-09 CPU-hours" in cap.out
    assert not (tmp_path / "results").exists()
    assert cli.main(["run", str(suite), "--calibrate"]) == 2
    assert "--calibrate works with --dry-run only" in capsys.readouterr().err


def test_settings_outside_the_stable_range_warn_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = toy_adapter.write_suite(tmp_path)
    assert cli.main(["run", str(suite), "--dry-run", "--set", "toy.loss.temperature=0.01"]) == 0
    err = capsys.readouterr().err
    assert "hardneg: warning:" in err and "temperature=0.01 is below 0.05" in err
    assert cli.main(["run", str(suite), "--dry-run", "--set", "toy.loss.temperature=inf"]) == 2
    assert "temperature=inf is not allowed; allowed: a finite number" in capsys.readouterr().err
