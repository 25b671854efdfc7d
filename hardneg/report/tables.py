"""Tables: by data set, at a glance, summary and gains (Markdown, CSV, LaTeX)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import results as store
from . import overall, stats
from .cells import _eval_points, _seed_stats, summary_table
from .compare import floors_table, gains_table
from .fmt import _g, _md_table, _mean_text, _num, _pval, _tex_table


def _mean_cell(r) -> str:
    """A summary row's value (see :func:`_mean_text`)."""
    return _mean_text(r["mean"], r["std"], r.n)


def dataset_table(df, modality: str, metric: str, split: str) -> tuple[list[str], list[list[str]]]:
    """One row per (setting, method, beta, tau+), one column per data set: ``metric`` as
    mean ± std (ddof = 1) over seeds, '(n=k)' where k is below the table's largest n."""
    ok = df[(df["status"] == "ok") & (df["modality"] == modality) & (df["metric"] == metric)
            & (df["split"] == split)]
    datasets = sorted(ok["dataset"].unique())
    keys = ["modality_setting", "trained", "method", "beta", "tau_plus"]
    cells: dict[tuple, dict[str, tuple[float, float, int]]] = {}
    for k, g in ok.groupby(keys + ["dataset"], sort=True, dropna=False):
        cells.setdefault(tuple(k[:-1]), {})[k[-1]] = _seed_stats(g["value"])
    top = max((n for row in cells.values() for _, _, n in row.values()), default=0)
    # the floors, then the beta = 0, tau+ = 0 baselines, then the variants by setting and grid
    order = sorted(cells, key=lambda k: (bool(k[1]), bool(k[1]) and (float(k[3]), float(k[4])) != (0.0, 0.0),
                                         str(k[0]), float(k[3]) if k[1] else -1.0, float(k[4]) if k[1] else -1.0,
                                         str(k[2])))
    show_setting = any(k[0] for k in cells)
    header = (["setting"] if show_setting else []) + ["method", "β", "τ+"] + datasets
    rows = []
    for k in order:
        setting, trained, method, beta, tau = k
        out = ([setting] if show_setting else []) + [method, _g(beta) if trained else "", _g(tau) if trained else ""]
        for ds in datasets:
            if ds not in cells[k]:
                out.append("")
                continue
            n = cells[k][ds][2]
            out.append(_mean_text(*cells[k][ds]) + (f" (n={n})" if n < top else ""))
        rows.append(out)
    return header, rows


def _summary_rows(t) -> list[list[str]]:
    return [[r.modality, r.dataset, r.metric, r.split, r.setting, r.method,
             "" if not r.trained else _g(r.beta), "" if not r.trained else _g(r.tau_plus),
             _mean_cell(r), str(r.n)]
            for _, r in t.iterrows()]


def _wide_table(t, metric_order: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """One row per (data set, setting, method, beta, tau+), one column per metric: the summary
    of a modality at a glance (cells: mean, or mean ± std over n >= 2 seeds)."""
    metrics = [m for m in metric_order if m in set(t["metric"])]
    metrics += sorted(set(t["metric"]) - set(metrics))
    keys = ["dataset", "setting", "trained", "method", "beta", "tau_plus"]
    rows: dict[tuple, dict[str, Any]] = {}
    for _, r in t.iterrows():
        k = tuple("" if (isinstance(r[c], float) and math.isnan(r[c])) else r[c] for c in keys)
        row = rows.setdefault(k, {"n": set()})
        row[r.metric] = _mean_cell(r)
        row["n"].add(int(r.n))
    show_setting = any(k[1] for k in rows)
    header = ["dataset"] + (["setting"] if show_setting else []) + ["method", "β", "τ+", "n"] + metrics
    out = []
    for k, row in rows.items():
        ds, setting, trained, method, beta, tau = k
        out.append([ds] + ([setting] if show_setting else []) +
                   [method, _g(beta) if trained else "", _g(tau) if trained else "",
                    "/".join(str(n) for n in sorted(row["n"]))] + [row.get(m, "") for m in metrics])
    return header, out


SUMMARY_HEADER = ["modality", "dataset", "metric", "split", "setting", "method", "β", "τ+", "mean ± std", "n"]
GAINS_HEADER = ["modality", "dataset", "metric", "split", "setting", "method", "β", "τ+", "variant", "reference",
                "gain [95% CI]", "test", "n", "p", "p adj", "MDE", "note"]
GAINS_ALIGN = ["l"] * 8 + ["r"] * 3 + ["l"] + ["r"] * 4 + ["l"]
TEST_NAMES = {"paired": "paired t", "welch": "Welch t", "": "none"}


def _ci(r) -> str:
    """'gain [lo, hi]', or the gain alone where no test was made."""
    if not math.isfinite(r.gain):
        return ""
    if not math.isfinite(r.ci_low):
        return _num(r.gain)
    return f"{_num(r.gain)} [{_num(r.ci_low)}, {_num(r.ci_high)}]"


def _n_text(r) -> str:
    return str(r.n) if r.test == "paired" or r.n == r.n_baseline or not r.n_baseline else f"{r.n}/{r.n_baseline}"


def _gain_rows(t) -> list[list[str]]:
    """Rows of a :func:`~hardneg.report.compare.gains_table` or ``floors_table`` frame."""
    return [[r.modality, r.dataset, r.metric, r.split, r.setting, r.method, _g(r.beta), _g(r.tau_plus),
             _num(r.variant_mean), _num(r.baseline_mean), _ci(r), TEST_NAMES[r.test], _n_text(r),
             _pval(r.p_value), _pval(r.p_adj), _num(r.mde), r.note] for _, r in t.iterrows()]


def _write_csv(df, path: Path) -> None:
    text = df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    store.atomic_write_text(path, text)


def write_tables(df, out: Path, adjust: str = "holm") -> dict[str, Any]:
    """Write summary, gains and floors tables as Markdown, CSV and LaTeX, the across-data-sets
    table (:mod:`.overall`) as Markdown and CSV, and the tidy runs.csv; return the frames (``adjust``: the p adjustment of the gains, see :func:`gains_table`)."""
    tdir = out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    summ = summary_table(df)
    gains = gains_table(df, adjust)
    floors = floors_table(df)
    across = overall.overall_table(gains, adjust)
    _write_csv(summ.drop(columns=["trained"]), tdir / "summary.csv")
    _write_csv(gains, tdir / "gains.csv")
    _write_csv(across, tdir / "overall.csv")
    store.atomic_write_text(tdir / "overall.md", _md_table(
        ["modality"] + overall.HEADER, [[m] + row for m, row in zip(across["modality"], overall.table_rows(across))],
        ["l"] + overall.ALIGN))
    _write_csv(floors.drop(columns=["p_adj"]), tdir / "floors.csv")
    runs = df.drop(columns=["trained", "base_setting", "modality_setting"], errors="ignore").copy()
    _write_csv(runs, tdir / "runs.csv")
    al_s = ["l"] * 8 + ["r", "r"]
    store.atomic_write_text(tdir / "summary.md", _md_table(SUMMARY_HEADER, _summary_rows(summ), al_s))
    store.atomic_write_text(tdir / "gains.md", _md_table(GAINS_HEADER, _gain_rows(gains), GAINS_ALIGN))
    store.atomic_write_text(tdir / "floors.md", _md_table(GAINS_HEADER, _gain_rows(floors), GAINS_ALIGN,
                                                          drop_empty=("setting", "p adj")))
    store.atomic_write_text(tdir / "summary.tex", _tex_table(
        SUMMARY_HEADER, _summary_rows(summ), al_s,
        "Mean $\\pm$ sample std over seeds (n seeds); empty beta/tau+ marks the untrained (random-init) floor."))
    store.atomic_write_text(tdir / "gains.tex", _tex_table(
        GAINS_HEADER, _gain_rows(gains), GAINS_ALIGN,
        "Gain over the beta=0, tau+=0 baseline of the same settings with its t-based 95% CI; test: paired by "
        "seed where both runs share processor kind and clean commit, else Welch; p two-sided; p adj: "
        f"{stats.ADJUSTMENT_NAMES[adjust]} across the report's headline comparisons; MDE at 80% power."))
    return {"summary": summ, "gains": gains, "floors": floors, "overall": across, "adjust": adjust}


HARDNESS_HEADER = ["dataset", "setting", "method", "β", "τ+", "n", "ESS", "floor rate", "class prior",
                   "FN weight share"]


def hardness_table(df, modality: str) -> list[list[str]]:
    """Achieved hardness beside nominal β, τ+: per trained cell the mean over runs of the final
    epoch's diagnostics (ESS of the negative weights, 1 = uniform; share of anchors where the floor
    binds; measured class prior, to read beside τ+; weight mass on same-class negatives)."""
    ok = df[(df["status"] == "ok") & (df["modality"] == modality) & df["trained"]]
    cols = ["diag.ess", "diag.floor_rate", "diag.true_class_prior", "diag.fn_weight_share"]
    if not all(c in ok.columns for c in cols) or not ok[cols].map(math.isfinite).any().any():
        return []
    runs = ok.drop_duplicates("run_id")
    rows = []
    for (ds, setting, method, beta, tau), g in runs.groupby(["dataset", "setting", "method", "beta", "tau_plus"],
                                                            sort=True):
        vals = []
        for c in cols:
            x = [float(v) for v in g[c] if math.isfinite(float(v))]
            vals.append(_num(sum(x) / len(x)) if x else "")
        rows.append([ds, setting, method, _g(beta), _g(tau), str(len(g))] + vals)
    return rows


#: the most evaluated epochs a curve table shows (evenly thinned, the first and the last kept)
CURVE_COLUMNS = 10


def curve_table(records, setting_of, modality: str, dataset: str, metric: str) -> tuple[list[str], list[list[str]]]:
    """The curve of every trained cell of one data set on one metric during training: per cell
    (setting, method, beta, tau+) the mean over seeds of ``eval_<metric>`` at each evaluated epoch
    (1-based), the last epoch's column being the last-epoch ``metric`` itself. Whether a curve
    still rises at the end says whether training converged. At most :data:`CURVE_COLUMNS`
    epochs; ([], []) when no cell has one."""
    cells: dict[tuple, dict[int, list[float]]] = {}
    for r in records:
        sp = r.get("spec") or {}
        if r.get("status") != "ok" or sp.get("modality") != modality or sp.get("dataset") != dataset:
            continue
        pts = {ep + 1: v for ep, v in _eval_points(r, metric).items()}
        loss = sp.get("loss") or {}
        cell = (setting_of.get(r.get("run_id"), ""), str(r.get("method", "")), float(loss.get("beta", 0)),
                float(loss.get("tau_plus", 0)))
        for ep, v in pts.items():
            cells.setdefault(cell, {}).setdefault(ep, []).append(v)
    if not cells:
        return [], []
    epochs = sorted({ep for c in cells.values() for ep in c})
    if len(epochs) > CURVE_COLUMNS:
        step = (len(epochs) - 1) / (CURVE_COLUMNS - 1)
        epochs = [epochs[round(i * step)] for i in range(CURVE_COLUMNS)]
    show_setting = any(k[0] for k in cells)
    header = (["setting"] if show_setting else []) + ["method", "β", "τ+", "n"] + [f"epoch {e}" for e in epochs]
    rows = []
    for k in sorted(cells, key=lambda k: (k[0], (k[2], k[3]) != (0.0, 0.0), k[2], k[3], k[1])):
        c = cells[k]
        rows.append(([k[0]] if show_setting else []) + [k[1], _g(k[2]), _g(k[3]), str(max(len(v) for v in c.values()))]
                    + [_num(sum(c[e]) / len(c[e])) if e in c else "" for e in epochs])
    return header, rows
