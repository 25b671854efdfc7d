"""The report is swapped into place whole, keeps what is not its own, and is skipped when nothing changed."""

from __future__ import annotations

import os

import pytest
from test_report import hand_records, rec

from hardneg import atomic, report, results
from hardneg.report import page as page_mod


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_writer_killed_mid_report_leaves_the_old_report_whole(tmp_path, monkeypatch):
    hand_records(tmp_path / "res")
    out = tmp_path / "rep"
    report.write_report(tmp_path / "res", out)
    (out / "NOTES.md").write_text("mine")
    before = _files(out)
    results.write_record(tmp_path / "res", rec("bbbbbbbbbbbb", 5.0, 0.1, 0, 90.0))   # a new record

    def killed(*a, **k):
        raise KeyboardInterrupt("killed while drawing")
    monkeypatch.setattr(page_mod, "plot_all", killed)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(tmp_path / "res", out)
    assert _files(out) == before                                   # old tables, figures, page
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(atomic.TMP_PREFIX)] == []

    monkeypatch.undo()
    report.write_report(tmp_path / "res", out)
    after = _files(out)
    assert after["NOTES.md"] == b"mine"                            # not the report's: carried over
    assert after["tables/runs.csv"] != before["tables/runs.csv"]   # the new record is in


def test_without_an_atomic_exchange_a_kill_between_renames_is_recovered(tmp_path, monkeypatch):
    final = tmp_path / "rep"
    final.mkdir()
    (final / "report.md").write_text("old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:                                         # the new folder's rename: killed
            raise KeyboardInterrupt
        real_rename(src, dst)
    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic.replace_dir(final) as new:
            (new / "report.md").write_text("new")
    monkeypatch.setattr(atomic.os, "rename", real_rename)
    assert not final.exists() and len(list(tmp_path.glob(".tmp-rep-old-*"))) == 1   # old one aside
    with atomic.replace_dir(final) as new:                          # the next writer restores it first
        assert (final / "report.md").read_text() == "old"
        (new / "report.md").write_text("newer")
    assert (final / "report.md").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_unchanged_inputs_are_not_regenerated_when_asked(tmp_path, monkeypatch):
    hand_records(tmp_path / "res")
    out = tmp_path / "rep"
    report.write_report(tmp_path / "res", out, if_changed=True)
    fingerprint = (out / page_mod.FINGERPRINT).read_text()
    calls = []
    real = page_mod.plot_all
    monkeypatch.setattr(page_mod, "plot_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    report.write_report(tmp_path / "res", out, if_changed=True)
    assert calls == []                                              # nothing changed: nothing drawn
    report.write_report(tmp_path / "res", out, adjust="bh", if_changed=True)
    assert calls == [1]                                             # another adjustment is another report
    results.write_record(tmp_path / "res", rec("bbbbbbbbbbbb", 5.0, 0.1, 0, 90.0))
    report.write_report(tmp_path / "res", out, if_changed=True)
    assert calls == [1, 1] and (out / page_mod.FINGERPRINT).read_text() != fingerprint
    report.write_report(tmp_path / "res", out)                      # `hardneg report` always regenerates
    assert calls == [1, 1, 1]
