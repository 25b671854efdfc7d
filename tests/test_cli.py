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
    assert "10 already done, 0 ran ok" in capsys.readouterr().out


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


def test_list_and_data_check(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    toy_adapter.write_suite(tmp_path / "benchmarks", name="mine.toml")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "blobs4, blobs8" in out and "mine" in out and "10 runs over toy" in out
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
