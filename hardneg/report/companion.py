"""Companion suites: other records whose best-epoch numbers a report sets beside its own.

A suite that evaluates only at the last epoch (the honest number, e.g. benchmarks/paper-graph.toml)
cannot say how far the epoch selection of published InfoGraph-style figures would move it; a
companion suite runs the same cells with ``train.eval_every`` (benchmarks/graph-best-epoch.toml)
and records a best-epoch metric chosen on the test data. ``hardneg report RESULTS --companion DIR``
puts DIR's 'numbers selected on the test data' (:mod:`.selection`) on RESULTS' page under the
companion's own provenance; nothing in the verdict uses them. The report folder remembers its
companions in :data:`LIST_FILE` (paths relative to the report folder), so a later regeneration,
``hardneg run``'s included, keeps them unless told otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import results as store
from ..results import ResultsError
from . import selection
from .cells import _prepare

#: the report folder's list of its companion folders, one path per line, relative to that folder
LIST_FILE = ".companions"


@dataclass(frozen=True)
class Companion:
    folder: Path
    records: list[Mapping[str, Any]]
    body: list[str]


def resolve(out: Path, given: Sequence[str | os.PathLike] | None) -> list[Path]:
    """The companion folders of the report in ``out``: ``given`` when not None, else those the
    report there was last made with (none if it has no :data:`LIST_FILE`)."""
    if given is not None:
        return [Path(g) for g in given]
    listed = out / LIST_FILE
    if not listed.is_file():
        return []
    return [(out / line.strip()).resolve() for line in listed.read_text().splitlines() if line.strip()]


def load(folders: Sequence[Path], main: Path) -> list[Companion]:
    """Read every companion folder; a folder that is the report's own, holds no records, or holds
    no best-epoch (selected-on-test) metric is an error naming it."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise ResultsError(f"companion folder {folder} does not exist; give a results folder of a suite "
                               "whose runs record best-epoch metrics (train.eval_every), e.g. "
                               "results/graph-best-epoch")
        if folder.resolve() == main.resolve():
            raise ResultsError(f"companion folder {folder} is the report's own results folder; a companion is "
                               "another suite's records")
        records = store.load_records(folder)
        if not records:
            raise ResultsError(f"companion folder {folder} holds no run records (*.json)")
        body = selection.body(_prepare(store.to_frame(records), records), records)
        if not body:
            raise ResultsError(f"companion folder {folder} holds no best-epoch metric (selection "
                               "'selected-on-test', from train.eval_every); a companion contributes only those")
        out.append(Companion(folder, records, body))
    return out


def remember(out: Path, companions: Sequence[Companion]) -> str:
    """The text of :data:`LIST_FILE` for a report written to ``out``."""
    return "".join(os.path.relpath(c.folder.resolve(), out.resolve()) + "\n" for c in companions)


def shown(folder: Path) -> str:
    """A folder as the page names it: relative to the working directory where it can be."""
    try:
        return Path(os.path.relpath(folder, Path.cwd())).as_posix()
    except ValueError:
        return folder.as_posix()


def _values(records: Sequence[Mapping[str, Any]], get) -> list[str]:
    return sorted({str(v) for v in (get(r) for r in records) if v is not None})


def section(companions: Sequence[Companion]) -> list[str]:
    """One block per companion: its provenance, then its best-epoch sentences and table."""
    L: list[str] = []
    for c in companions:
        recs = c.records
        suites = _values(recs, lambda r: r.get("suite"))
        seeds = sorted({int((r.get("spec") or {}).get("seed")) for r in recs
                        if (r.get("spec") or {}).get("seed") is not None})
        commits = []
        for sha in _values(recs, lambda r: r.get("git_commit")):
            dirty = any(r.get("git_commit") == sha and r.get("git_dirty") is not False for r in recs)
            commits.append(sha[:12] + (" (some from an uncommitted tree)" if dirty else " (clean)"))
        L += [f"## Companion `{', '.join(suites) or c.folder.name}`: numbers selected on the test data", "",
              (f"From other runs than this report's: the {len(recs)} record(s) in `{shown(c.folder)}` "
               f"(seeds {', '.join(map(str, seeds)) or '?'}; commit {', '.join(commits) or 'unknown'}; "
               f"{'; '.join(_values(recs, lambda r: r.get('device'))) or 'unknown processor kind'}), which "
               "evaluate during training (`train.eval_every`) and record the best evaluation, chosen on the "
               "reported accuracy itself. Nothing in the Verdict uses them; they say how far the epoch selection "
               "behind published InfoGraph-style numbers would move the last-epoch numbers of cells like these."),
              ""] + c.body + [""]
    return L
