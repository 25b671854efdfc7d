"""The report page and :func:`write_report`, the one entry point."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import atomic, record
from .. import results as store
from ..results import ResultsError
from . import companion, stats, verdict
from .cells import _curves, _is_eval_curve, _prepare
from .figures import plot_all
from .fmt import _md_table
from .tables import (
    GAINS_ALIGN,
    GAINS_HEADER,
    HARDNESS_HEADER,
    SUMMARY_HEADER,
    _gain_rows,
    _summary_rows,
    _wide_table,
    curve_table,
    dataset_table,
    hardness_table,
    write_tables,
)


def _unique(records: Sequence[Mapping[str, Any]], getter) -> list[str]:
    vals = set()
    for r in records:
        try:
            v = getter(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.add(str(v))
    return sorted(vals)


def _provenance_counts(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Records per processor kind and per commit, with how many came from uncommitted trees."""
    kinds: dict[str, int] = {}
    commits: dict[str, list[int]] = {}
    for r in records:
        kinds[str(r.get("device") or "unknown")] = kinds.get(str(r.get("device") or "unknown"), 0) + 1
        c = commits.setdefault(str(r.get("git_commit") or "unknown")[:12], [0, 0])
        c[0] += 1
        c[1] += r.get("git_dirty") is not False
    dirty = sum(c[1] for c in commits.values())
    L = [(f"Records per processor kind and per commit ({dirty} of {len(records)} from an uncommitted tree or of "
         "unknown state; runs of one seed on different kinds or code are not pairs):"), ""]
    L.append(_md_table(["processor kind", "records"], [[k, str(v)] for k, v in sorted(kinds.items())], ["l", "r"]))
    L.append(_md_table(["commit", "records", "of them dirty or unknown"],
                       [[k, str(v[0]), str(v[1])] for k, v in sorted(commits.items())], ["l", "r", "r"]))
    return L


def _fixed_settings(recs: Sequence[Mapping[str, Any]], section: str) -> list[tuple[str, str]]:
    """Settings of ``section`` ('loss', 'train', 'options') and their values over trained runs."""
    trained = [r for r in recs if (r.get("spec") or {}).get("train", {}).get("epochs", 0) > 0] or list(recs)
    keys = sorted({k for r in trained for k in ((r.get("spec") or {}).get(section) or {})})
    out = []
    for k in keys:
        vals = sorted({json.dumps(((r.get("spec") or {}).get(section) or {}).get(k), sort_keys=True)
                       for r in trained})
        out.append((k, ", ".join(vals)))
    return out


def _curve_section(df, recs: Sequence[Mapping[str, Any]], mod: str, dsets: Sequence[str]) -> list[str]:
    """Per data set and evaluated metric (headline metrics first), the curve of every trained cell
    during training (``train.eval_every``), as numbers beside the learning figure."""
    setting_of = dict(zip(df["run_id"], df["setting"]))
    heads = set(df[(df["modality"] == mod) & df["headline"].astype(bool)]["metric"])
    L: list[str] = []
    for ds in dsets:
        here = [r for r in recs if r["spec"]["dataset"] == ds]
        metrics = sorted({k.removeprefix("eval_") for r in here for e in _curves(r) for k in e if _is_eval_curve(k)},
                         key=lambda m: (m not in heads, m))
        for metric in metrics:
            header, rows = curve_table(here, setting_of, mod, ds, metric)
            if not rows:
                continue
            if not L:
                L += ["### Curves during training (mean over seeds)", "",
                      "Each trained cell's metric evaluated every `train.eval_every` epochs under the protocol "
                      "above, the last column being the last-epoch number the verdict uses: a curve still "
                      "rising there means training had not converged.", ""]
            L.append(f"**{ds}, `{metric}`**")
            L.append("")
            n_at = header.index("n")
            L.append(_md_table(header, rows, ["l"] * n_at + ["r"] * (len(header) - n_at)))
    return L


def render_page(suite: str, folder: Path, df, tables: Mapping[str, Any], figures: Sequence[Mapping[str, str]],
                records: Sequence[Mapping[str, Any]],
                companions: Sequence[companion.Companion] = ()) -> str:
    """The Markdown report page (no generation timestamp: the page depends on the records only)."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    L: list[str] = [f"# hardneg report: suite `{suite}`", ""]
    command = " ".join([f"hardneg report {folder.as_posix()}"]
                       + [f"--companion {companion.shown(c.folder)}" for c in companions])
    L.append(f"Regenerate with `{command}`: everything below is computed from the "
             f"{len(records)} run records in that folder ({len(ok)} ok, {len(failed)} failed)"
             + (" and, in the companion section only, those of its companion(s)" if companions else "")
             + "; nothing is retrained.")
    L.append("")
    L += verdict.render(df, tables, records)
    L += companion.section(companions)
    L.append("## Provenance")
    L.append("")
    finished = _unique(records, lambda r: r.get("finished_at"))
    prov = [
        ("runs finished", f"{finished[0]} to {finished[-1]}" if finished else "?"),
        ("devices", "; ".join(_unique(records, lambda r: r.get("device"))) or "?"),
        ("hosts", ", ".join(_unique(records, lambda r: r.get("host"))) or "?"),
        ("git commits", ", ".join(c[:12] + (" (with local changes)" if any(
            r.get("git_commit") == c and r.get("git_dirty") for r in records) else "")
            for c in _unique(records, lambda r: r.get("git_commit"))) or "unknown"),
        ("hardneg / torch", ", ".join(_unique(records, lambda r: r["versions"].get("hardneg"))) + " / "
         + ", ".join(_unique(records, lambda r: r["versions"].get("torch")))),
        ("total run time", (f"{sum(record.run_wall_s(r) or 0.0 for r in records) / 60:.1f} min "
                           "(sum over runs)")),
    ]
    L.append(_md_table(["", ""], [[a, b] for a, b in prov]))
    L += _provenance_counts(records)
    L.append("Statistics: mean ± sample standard deviation (ddof = 1) over seeds, n = seeds with a finite "
             "value. Gains: variant minus the trained β = 0, τ+ = 0 baseline of the same modality, data set, "
             "metric and other settings (settings that differ only in what does nothing at β = 0, τ+ = 0, "
             "such as the JSD convention, share that baseline), tested as in the Verdict (paired by seed only "
             "on one processor kind and clean commit, else Welch; p adj only for the headline metrics, the "
             "verdict's family). Rows without β and τ+ "
             "(`random-init`, and what an adapter names its other untrained runs, such as `random-bow` or "
             "`pretrained`) are evaluated without training "
             "(epochs = 0) under the same protocol: the floors any pretraining must beat, or a pretrained model "
             "as shipped.")
    L.append("")
    summ = tables["summary"]
    gains = tables["gains"]
    for mod in sorted({(r.get("spec") or {}).get("modality") for r in records} - {None}):
        recs = [r for r in records if (r.get("spec") or {}).get("modality") == mod]
        L.append(f"## {mod}")
        L.append("")
        dsets = sorted({r["spec"]["dataset"] for r in recs})
        seeds = sorted({int(r["spec"]["seed"]) for r in recs})
        L.append(f"Data sets: {', '.join(dsets)}. Seeds: {', '.join(map(str, seeds))}. "
                 f"Runs: {len(recs)} ({sum(r.get('status') == 'ok' for r in recs)} ok).")
        L.append("")
        L.append("### Protocol")
        L.append("")
        prot_rows = []
        m = df[(df["modality"] == mod) & df["metric"].notna()]
        for (metric, split, protocol, selection), _g_ in m.groupby(["metric", "split", "protocol", "selection"],
                                                                 sort=True, dropna=False):
            prot_rows.append([f"`{metric}`", str(split), str(protocol), str(selection)])
        if prot_rows:
            L.append("Every number of this modality is one of these metrics, measured on the frozen encoder:")
            L.append("")
            L.append(_md_table(["metric", "split", "protocol", "model selection"], prot_rows))
        L.append("Training settings of the trained runs (values separated by commas vary across runs):")
        L.append("")
        rows = [[f"train.{k}", v] for k, v in _fixed_settings(recs, "train")]
        rows += [[f"loss.{k}", v] for k, v in _fixed_settings(recs, "loss")]
        rows += [[f"options.{k}", v] for k, v in _fixed_settings(recs, "options")]
        L.append(_md_table(["setting", "value(s)"], rows))
        hard = hardness_table(df, mod)
        if hard:
            L.append("### Achieved hardness (final epoch, mean over runs)")
            L.append("")
            L.append("Nominal β and τ+ beside what the weights did: ESS of the negative weights (1 = uniform, "
                     "so β had no effect), the share of anchors where the floor binds (> 0.5: the floor, not "
                     "the weighting, sets the loss), the measured class prior (to compare with τ+) and the "
                     "weight mass on same-class negatives.")
            L.append("")
            L.append(_md_table(HARDNESS_HEADER, hard, ["l"] * 5 + ["r"] * 5))
        L += _curve_section(df, recs, mod, dsets)
        s = summ[summ["modality"] == mod]
        for metric, split in sorted(set(zip(s["metric"], s["split"]))):
            if s[(s["metric"] == metric) & (s["split"] == split)]["dataset"].nunique() < 2:
                continue
            header, rows = dataset_table(df, mod, metric, split)
            L.append(f"### By data set: `{metric}` ({split}), mean ± std over seeds")
            L.append("")
            L.append(_md_table(header, rows, ["l"] * (header.index("τ+") + 1) + ["r"] * (len(header) - header.index("τ+") - 1)))
            L.append("")
        if len(s) and s["metric"].nunique() > 2:
            order = list(dict.fromkeys(m.get("metric") for r in recs for m in (r.get("metrics") or [])))
            header, rows = _wide_table(s, order)
            L.append("### At a glance (mean, ± std over n seeds where n ≥ 2; one column per metric)")
            L.append("")
            n_at = header.index("n")
            L.append(_md_table(header, rows, ["l"] * n_at + ["r"] * (len(header) - n_at)))
            L.append("")
        if len(s):
            L.append("### Results (mean ± std over seeds)")
            L.append("")
            L.append(_md_table(SUMMARY_HEADER[1:], [r[1:] for r in _summary_rows(s)], ["l"] * 7 + ["r", "r"]))
        gm = gains[gains["modality"] == mod]
        if len(gm):
            L.append("### Gain over the β = 0, τ+ = 0 baseline, every metric (tests as in the Verdict)")
            L.append("")
            L.append(_md_table(GAINS_HEADER[1:], [r[1:] for r in _gain_rows(gm)], GAINS_ALIGN[1:],
                               drop_empty=("setting", "p adj", "note")))
        figs = [f for f in figures if f["modality"] == mod]
        if figs:
            L.append("### Figures")
            L.append("")
            for f in figs:
                what = {"beta": "metric vs β, one line per τ+ (error bars: std over seeds; horizontal lines: untrained rows and trivial baselines)",
                        "heatmap": "β × τ+ heatmap of the mean metric", "curves": "training loss per epoch",
                        "diagnostics": "loss-core diagnostics per epoch (first batch of the epoch)",
                        "evaluation": "downstream metric evaluated during training (train.eval_every)",
                        "ess": "headline metric vs the final ESS of the negative weights (achieved hardness)",
                        "learning": "headline metric evaluated during training against training samples seen, "
                                    "every cell on one axis (horizontal lines: untrained rows)"
                        }[f["kind"]]
                cap = f"{f['dataset']}: {what}" + (f" [{f['setting']}]" if f["setting"] else "")
                L.append(f"![{cap}](figures/{f['file']})")
                L.append("")
    if failed:
        L.append("## Failed runs")
        L.append("")
        L.append("These runs have a failure record; `hardneg run` retries them.")
        L.append("")
        rows = []
        for r in sorted(failed, key=lambda r: r.get("run_id", "")):
            sp = r.get("spec") or {}
            err = r.get("error") or {}
            msg = str(err.get("message", "")).splitlines()[0][:160] if err.get("message") else ""
            rows.append([r.get("run_id", ""), sp.get("modality", ""), sp.get("dataset", ""), r.get("method", ""),
                         str(sp.get("seed", "")), f"{err.get('type', '')}: {msg}"])
        L.append(_md_table(["run", "modality", "dataset", "method", "seed", "error"], rows))
    L.append("## Files")
    L.append("")
    L.append("Tables: `tables/summary.{md,csv,tex}`, `tables/gains.{md,csv,tex}`, `tables/overall.{md,csv}` (each "
             "variant's mean gain across data sets), `tables/floors.{md,csv}` (each "
             "trained cell minus its untrained floor), `tables/runs.csv` (one row per "
             "run and metric, as `hardneg.results.load` returns it).")
    L.append("")
    return "\n".join(L)


#: the report folder's record of what it was made from (records, adjustment, report code)
FINGERPRINT = ".inputs.sha256"
_GENERATED = ("report.md", "tables", "figures", FINGERPRINT, companion.LIST_FILE)


def _record_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))


def inputs_fingerprint(results_dir: Path, adjust: str, companions: Sequence[Path] = (),
                       out: Path | None = None) -> str:
    """SHA-256 over what a report depends on: every record file's name and bytes (its companion
    folders' too, each named by its path relative to the report folder ``out``), the p
    adjustment, and the report package's own source (so a changed report shows up too)."""
    h = hashlib.sha256(f"adjust={adjust}\n".encode())
    code = sorted(Path(__file__).parent.glob("*.py"))
    inputs = [("record", _record_files(results_dir), results_dir)]
    for c in companions:
        name = Path(os.path.relpath(c.resolve(), (out or Path.cwd()).resolve())).as_posix()
        inputs.append((f"companion {name}", _record_files(c), c))
    for label, paths, root in inputs + [("code", code, Path(__file__).parent)]:
        for p in paths:
            h.update(f"{label}:{p.relative_to(root).as_posix()}\n".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 adjust: str = "holm", *, if_changed: bool = False,
                 companions: Sequence[str | os.PathLike] | None = None) -> Path:
    """Regenerate the report of the records in ``results_dir``; returns the page's path.

    ``out`` defaults to ``reports/<suite>``; ``adjust`` is the verdict's p adjustment, ``holm``
    (family-wise error) or ``bh`` (Benjamini-Hochberg, false discovery rate). The new report
    (report.md, tables/, figures/ and ``.inputs.sha256``) is built beside the old one and
    swapped into place (:func:`hardneg.atomic.replace_dir`), so a kill leaves the old report or
    the new one, never a mix; anything else in ``out`` is carried over unchanged. With
    ``if_changed`` (what ``hardneg run`` uses), nothing is written when the records, the
    adjustment and the report code are those the existing report was made from. ``companions``
    are other suites' results folders whose best-epoch numbers the page sets beside this
    suite's (:mod:`.companion`); None keeps those the existing report in ``out`` was made with.
    """
    folder = Path(results_dir)
    records = store.load_records(folder)
    if not records:
        raise ResultsError(f"no run records (*.json) in {folder}; run a suite first (hardneg run SUITE)")
    suites = sorted({str(r.get("suite")) for r in records})
    suite = suites[0] if len(suites) == 1 else folder.name
    out = Path(out) if out is not None else Path("reports") / suite
    stats.adjust([], adjust)
    page = out / "report.md"
    companion_dirs = companion.resolve(out, companions)
    fingerprint = inputs_fingerprint(folder, adjust, companion_dirs, out)
    if if_changed and page.is_file() and (out / FINGERPRINT).is_file() \
            and (out / FINGERPRINT).read_text().strip() == fingerprint:
        return page
    beside = companion.load(companion_dirs, folder)
    try:
        rel = Path(os.path.relpath(folder, Path.cwd()))
    except ValueError:
        rel = folder
    df = _prepare(store.to_frame(records), records)
    with atomic.replace_dir(out) as new:
        if out.is_dir():
            for entry in out.iterdir():
                if entry.name not in _GENERATED and not entry.name.startswith(atomic.TMP_PREFIX):
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, new / entry.name)
        tables = write_tables(df, new, adjust)
        figures = plot_all(df, tables["summary"], records, new, verdict.trivial_baselines(records))
        store.atomic_write_text(new / "report.md", render_page(suite, rel, df, tables, figures, records, beside))
        atomic.write_text(new / FINGERPRINT, fingerprint + "\n")
        if beside:
            atomic.write_text(new / companion.LIST_FILE, companion.remember(out, beside))
    return page
