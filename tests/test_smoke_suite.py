"""The smoke suite end to end through the command line: all three modalities on real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_smoke_suite_runs_every_modality_and_reports(tmp_path, data_root):
    env = dict(os.environ, HARDNEG_DATA=str(data_root))
    cmd = [sys.executable, "-m", "hardneg.cli", "run", str(REPO / "benchmarks" / "smoke.toml"),
           "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports"), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "smoke").glob("*.json")]
    assert {r["modality"] for r in records} == {"image", "graph", "sentence"}
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert all(r["metrics"] for r in records)
    assert (tmp_path / "reports" / "smoke" / "report.md").is_file()
    # a second invocation finds every run done and trains nothing
    again = subprocess.run(cmd + ["--no-report"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"{len(records)} already done" in again.stdout + again.stderr
