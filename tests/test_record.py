"""The run record: layout, provenance, reading every schema, atomic writes, clear errors."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest

import toy_adapter
from hardneg import atomic, record
import hardneg.record.provenance  # noqa: F401  (record.provenance below)
from hardneg.errors import ConfigError
from hardneg.record import ResultsError, UnreadableRecord
from hardneg.spec import LossSpec, RunSpec, TrainSpec

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in REPO.glob("results/*/*.json") if not p.name.startswith("."))  # .runner.json: a live lock


def spec(**loss) -> RunSpec:
    return RunSpec("toy", "blobs4", 0, LossSpec(**{"temperature": 0.2, **loss}), TrainSpec(epochs=1, batch_size=16))


def built(status: str = "ok", value: float = 91.5, **loss) -> dict:
    s = spec(**loss)
    if status == "ok":
        m = record.Measured(method="infonce", adapter=record.adapter_provenance(toy_adapter.ToyAdapter),
                            options=dict(s.options), metrics=[{"metric": "ncm_acc", "value": value}],
                            trivial_baselines=[], headline_metrics=[], curves=[{"epoch": 0, "loss": 0.5}],
                            timing={"wall_s": 1.0}, memory={"peak_mb": 1.0, "kind": "x"}, device="cpu:test")
        outcome: record.Measured | BaseException = m
    else:
        outcome = RuntimeError("boom")
    return record.build(s, outcome, started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:01Z",
                        wall_time_s=1.0, provenance={"git_commit": "abc", "git_dirty": False, "host": "h"},
                        method="infonce", adapter=record.adapter_provenance(toy_adapter.ToyAdapter))


def test_ok_and_failed_records_have_exactly_the_documented_fields():
    for rec in (built(), built("failed")):
        assert tuple(rec) == record.FIELDS
        for key in record.FIELDS:
            assert f"    {key}" in record.__doc__ or f", {key}" in record.__doc__, f"{key} is not in the layout doc"
    failed = built("failed")
    assert failed["status"] == "failed" and failed["metrics"] == [] and failed["curves"] == []
    assert failed["error"]["type"] == "RuntimeError" and "boom" in failed["error"]["message"]
    assert failed["method"] == "infonce" and failed["adapter"]["class"].endswith("ToyAdapter")
    assert built()["started_at"].endswith("Z") and built()["schema_version"] == record.SCHEMA_VERSION


def test_write_is_atomic_canonical_and_readable(tmp_path):
    rec = built()
    path = record.write_record(tmp_path, rec)
    assert path == tmp_path / f"{rec['run_id']}.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    assert record.read_record(path)["metrics"][0]["value"] == 91.5
    before = path.read_bytes()
    record.write_record(tmp_path, rec)
    assert path.read_bytes() == before


def test_non_finite_results_become_null_but_a_non_finite_spec_is_never_written(tmp_path):
    rec = built()
    rec["curves"] = [{"epoch": 0, "loss": float("nan")}, {"epoch": 1, "loss": float("inf")}]
    path = record.write_record(tmp_path, rec)
    assert [c["loss"] for c in record.read_record(path)["curves"]] == [None, None]
    bad = built()
    bad["spec"]["loss"]["temperature"] = float("inf")
    with pytest.raises(ConfigError, match=r"spec.loss.temperature=inf.*allowed: finite numbers"):
        record.write_record(tmp_path / "other", bad)
    assert not (tmp_path / "other" / f"{bad['run_id']}.json").exists()


def test_stale_temporary_files_are_ignored_and_cleaned(tmp_path):
    record.write_record(tmp_path, built())
    stale = tmp_path / ".tmp-ffff00001111-123-xyz.part"
    stale.write_text('{"run_id": "ffff00001111", "status": "ok", "metri')  # a killed writer's half file
    assert len(record.load_records(tmp_path)) == 1
    assert record.clean_stale(tmp_path) == [stale] and not stale.exists()


def test_schema_1_records_are_read_and_upgraded(tmp_path):
    rec = json.loads(COMMITTED[0].read_text()) if COMMITTED else None
    if rec is None:
        pytest.skip("no committed records")
    assert rec["schema_version"] == 1 and "adapter" not in rec
    (tmp_path / "a.json").write_text(json.dumps(rec))
    got = record.read_record(tmp_path / "a.json")
    assert got["schema_version"] == 1
    assert got["adapter"]["distribution"] == "hardneg" and got["adapter"]["version"] == rec["versions"]["hardneg"]
    assert "schema 1" in got["adapter"]["inferred"]
    third = dict(rec, modality="audio", spec={**rec["spec"], "modality": "audio"})
    (tmp_path / "b.json").write_text(json.dumps(third))
    assert record.read_record(tmp_path / "b.json")["adapter"]["version"] is None
    failed = dict(rec, status="failed", curves={})
    (tmp_path / "c.json").write_text(json.dumps(failed))
    assert record.read_record(tmp_path / "c.json")["curves"] == []


@pytest.mark.parametrize("version,needle,cls", [(None, "unknown results schema", UnreadableRecord),
                                                (0, "unknown results schema", UnreadableRecord),
                                                (record.SCHEMA_VERSION + 1, "newer", record.NewerRecord)])
def test_unreadable_schema_is_named(tmp_path, version, needle, cls):
    rec = built()
    rec.pop("schema_version")
    if version is not None:
        rec["schema_version"] = version
    (tmp_path / "abc123def456.json").write_text(json.dumps(rec))
    with pytest.raises(cls) as info:
        record.load_records(tmp_path)
    msg = str(info.value)
    assert needle in msg and "abc123def456.json" in msg and "schemas 1, 2" in msg


def test_corrupt_and_foreign_files_are_named_and_can_be_skipped(tmp_path):
    record.write_record(tmp_path, built())
    (tmp_path / "abc123def456.json").write_text("{not json")
    (tmp_path / "notes.json").write_text('{"comment": "my notes"}')
    with pytest.raises(UnreadableRecord, match="not valid JSON"):
        record.load_records(tmp_path)
    problems: list[str] = []
    assert len(record.load_records(tmp_path, on_problem=problems.append)) == 1
    assert len(problems) == 2 and all("skips it" in p for p in problems)
    notes = next(p for p in problems if "notes.json" in p)
    assert "not a run record" in notes and "delete" not in notes.lower() and "that run" not in notes


@pytest.mark.parametrize("code,needle", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
def test_disk_errors_are_clear_and_keep_the_old_record(tmp_path, monkeypatch, code, needle):
    path = record.write_record(tmp_path, built(value=80.0))
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ResultsError) as info:
        record.write_record(tmp_path, built(value=99.0))
    monkeypatch.undo()
    msg = str(info.value)
    assert needle in msg and str(tmp_path) in msg and "intact" in msg
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch):
    def mkstemp(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    with pytest.raises(ResultsError, match="read-only"):
        record.probe_writable(tmp_path / "sub")


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "f.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(target, binary=True) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(tmp_path / "entry") as d:
            (d / "x").write_text("1")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_no_write_then_rename_outside_the_atomic_helper():
    """Every file the project writes goes through hardneg.atomic (hardneg.data's download
    excepted: it streams into a part file that its own checksum check renames)."""
    allowed = {"hardneg/atomic.py", "hardneg/data.py"}
    offenders = []
    for p in [*REPO.glob("hardneg/**/*.py"), *REPO.glob("modalities/**/*.py")]:
        rel = p.relative_to(REPO).as_posix()
        text = p.read_text()
        if rel not in allowed and ("os.replace(" in text or "os.rename(" in text or "mkstemp(" in text):
            offenders.append(rel)
    assert offenders == []


def test_adapter_provenance_names_the_distribution(tmp_path, monkeypatch):
    from modalities.graph import GraphAdapter
    prov = record.adapter_provenance(GraphAdapter)
    assert prov["distribution"] == "hardneg" and prov["version"] and prov["class"] == "modalities.graph:GraphAdapter"
    (tmp_path / "plugin_mod.py").write_text("class P:\n    name = 'p'\n")
    dist = tmp_path / "plugin_dist-2.5.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-dist\nVersion: 2.5\n")
    (dist / "top_level.txt").write_text("plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    record.provenance._module_distributions.cache_clear()
    try:
        import plugin_mod
        prov = record.provenance.adapter_provenance.__wrapped__(plugin_mod.P)
        assert (prov["distribution"], prov["version"]) == ("plugin-dist", "2.5")
        assert record.provenance.adapter_provenance.__wrapped__(toy_adapter.ToyAdapter)["version"] is None
    finally:
        record.provenance._module_distributions.cache_clear()
        sys.modules.pop("plugin_mod", None)


def test_versions_are_looked_up_once_per_package(monkeypatch):
    calls: list[str] = []
    real = record.provenance.metadata.version

    def counting(name):
        calls.append(name)
        return real(name)

    record.provenance._dist_version.cache_clear()
    monkeypatch.setattr(record.provenance.metadata, "version", counting)
    a, b = record.versions(), record.versions()
    assert a == b and a["torch"] and "python" in a and set(record.CORE_PACKAGES) <= set(a)
    assert len(calls) == len(set(calls))
    record.provenance._dist_version.cache_clear()


@pytest.mark.skipif(not COMMITTED, reason="no committed records")
def test_every_committed_record_is_readable_and_keeps_its_run_id():
    for path in COMMITTED:
        rec = record.read_record(path)
        assert RunSpec.from_dict(rec["spec"]).run_id == rec["run_id"] == path.stem, path
