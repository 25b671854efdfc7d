"""Tables, plots and the report page, regenerated from run records alone (never retrains).

:func:`write_report` reads every record of a results folder and writes::

    OUT/report.md                  the page: provenance, protocol of every number, tables, figures
    OUT/tables/summary.{md,csv,tex}  mean +- std and n over seeds, per setting
    OUT/tables/gains.{md,csv,tex}    each variant minus the beta=0, tau+=0 baseline, paired by seed
    OUT/tables/runs.csv              the tidy table of hardneg.results.load (one row per run and metric)
    OUT/figures/*.png              metric vs beta, beta x tau+ heatmaps, training and diagnostics curves

Statistics. ``std`` is the sample standard deviation (ddof = 1) over seeds and ``n`` the
number of seeds with a finite value. A variant's gain over its baseline (same modality,
data set, metric and every other setting; trained, beta = 0, tau+ = 0) is computed on the
seeds both have: ``d_s = variant_s - baseline_s``, reported as mean(d), std(d) (ddof = 1),
the number of pairs and, for n >= 2, the two-sided paired t-test p-value
(``scipy.stats.ttest_rel``), uncorrected for multiple comparisons.

Determinism: rows are sorted, floats have fixed formats, PNGs are written by the Agg
backend with default style and no 'Software' metadata, and the page holds no generation
time, so the same records give byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import results as store
from .results import ResultsError

GRID_COLUMNS = ("beta", "tau_plus")
SETTING_COLUMNS = tuple(c for c in store.LOSS_COLUMNS + store.TRAIN_COLUMNS if c not in GRID_COLUMNS)
KEY = ["modality", "dataset", "metric", "split", "setting"]
#: loss settings that do nothing at beta = 0, tau+ = 0 (hardness and the floor act only through
#: beta and tau+, and both JSD conventions are plain JSD there): settings that differ only in
#: these share one baseline run
INERT_AT_BASELINE = ("jsd_convention", "hardness", "floor")


# ---- formatting -----------------------------------------------------------------------------

def _num(v: Any, digits: int = 2) -> str:
    if v is None:
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "" if math.isnan(f) else ("inf" if f > 0 else "-inf")
    return f"{f:.{digits}f}"


def _g(v: Any) -> str:
    """Grid values (beta, tau+): shortest exact-looking form, 0.1 not 0.10000000000000001."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{float(v):g}"


def _pval(p: Any) -> str:
    if p is None or not isinstance(p, float) or not math.isfinite(p):
        return ""
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None,
              drop_empty: Sequence[str] = ("setting",)) -> str:
    rows = [list(map(str, r)) for r in rows]
    align = list(align or ["l"] * len(header))
    header = list(header)
    for name in drop_empty:  # e.g. 'setting' when nothing but the grid varies
        if name in header and rows and all(r[header.index(name)] == "" for r in rows):
            i = header.index(name)
            header.pop(i)
            align.pop(i)
            rows = [r[:i] + r[i + 1:] for r in rows]
    sep = ["---:" if a == "r" else "---" for a in align]
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s).replace("±", r"$\pm$").replace("τ", r"$\tau$").replace(
        "β", r"$\beta$")


def _tex_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str], caption: str) -> str:
    rows = list(rows)
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           r"\begin{tabular}{" + "".join(align) + "}", r"\toprule",
           " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    out += [" & ".join(_tex_escape(str(c)) for c in r) + r" \\" for r in rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _tex_escape(caption) + "}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _slug(*parts: str) -> str:
    raw = "_".join(p for p in parts if p)
    safe = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in raw)
    return safe.strip("-") or "x"


# ---- preparing the frame ---------------------------------------------------------------------

def _settings_of(df, by: Sequence[str], cand: Sequence[str], skip: Sequence[str] = ()):
    """Per row, 'name=value, ...' of the candidate columns that vary among the trained runs of
    its ``by`` group (untrained rows: adapter options only), leaving out ``skip``."""
    import pandas as pd

    out = pd.Series([""] * len(df), index=df.index, dtype=object)
    for _, g in df.groupby(list(by), sort=True):
        tr = g[g["trained"]]
        varying = [c for c in cand if c in tr.columns and tr[c].astype(str).nunique(dropna=False) > 1
                   and c not in skip]
        for idx, row in g.iterrows():
            cols = varying if row["trained"] else [c for c in varying if c.startswith("opt.")]
            out[idx] = ", ".join(f"{c.removeprefix('opt.')}={_g(row[c]) if isinstance(row[c], float) else row[c]}"
                                 for c in cols)
    return out


def _prepare(df):
    """Add 'trained' and the setting strings of a row: 'setting' (the non-grid settings that vary
    within its modality and data set), 'base_setting' (the same without what does nothing at
    beta = 0, tau+ = 0) and 'modality_setting' (what varies across the whole modality)."""
    df = df.copy()
    df["trained"] = df["epochs"].fillna(0).astype(float) > 0
    cand = list(SETTING_COLUMNS) + sorted(c for c in df.columns if c.startswith("opt."))
    df["setting"] = _settings_of(df, ["modality", "dataset"], cand)
    df["base_setting"] = _settings_of(df, ["modality", "dataset"], cand, skip=INERT_AT_BASELINE)
    df["modality_setting"] = _settings_of(df, ["modality"], cand)
    df["split"] = df["split"].fillna("")
    return df


def _seed_stats(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof = 1) and n of the finite values (NaN where n is too small)."""
    vals = values.astype(float)
    finite = vals[vals.map(math.isfinite)]
    n = int(len(finite))
    return (float(finite.mean()) if n else math.nan, float(finite.std(ddof=1)) if n >= 2 else math.nan, n)


def summary_table(df):
    """Mean, std (ddof=1) and n over seeds per (modality, dataset, metric, split, setting, method, beta, tau+)."""
    import pandas as pd

    ok = df[(df["status"] == "ok") & df["metric"].notna()]
    rows = []
    keys = KEY + ["method", "beta", "tau_plus", "trained"]
    for k, g in ok.groupby(keys, sort=True, dropna=False):
        mean, std, n = _seed_stats(g["value"])
        rows.append({**dict(zip(keys, k)), "mean": mean, "std": std, "n": n,
                     "seeds": " ".join(str(int(s)) for s in sorted(g["seed"].dropna().unique()))})
    out = pd.DataFrame(rows, columns=keys + ["mean", "std", "n", "seeds"])
    if len(out):
        # the random-init floor first, then the grid in order
        out = out.sort_values(KEY + ["trained", "beta", "tau_plus", "method"], kind="mergesort").reset_index(drop=True)
    return out


def gains_table(df):
    """Each trained variant minus its beta=0, tau+=0 baseline, paired over shared seeds."""
    import pandas as pd
    from scipy import stats

    ok = df[(df["status"] == "ok") & df["metric"].notna() & df["trained"]]
    if "base_setting" not in ok.columns:
        ok = ok.assign(base_setting=ok["setting"])
    at_zero = ok[(ok["beta"] == 0) & (ok["tau_plus"] == 0)]
    rows = []
    for k, g in ok.groupby(KEY, sort=True, dropna=False):
        base = g[(g["beta"] == 0) & (g["tau_plus"] == 0)]
        if base.empty:
            # e.g. the authors' JSD convention, whose beta = 0, tau+ = 0 run is plain JSD, run once
            mod, ds, metric, split, _ = k
            same = at_zero[(at_zero["modality"] == mod) & (at_zero["dataset"] == ds) & (at_zero["metric"] == metric)
                           & (at_zero["split"] == split) & (at_zero["base_setting"] == g["base_setting"].iloc[0])]
            if same.empty or same["setting"].nunique() != 1:
                continue
            base = same
        b = base.groupby("seed")["value"].mean()
        for (method, beta, tau), v in g.groupby(["method", "beta", "tau_plus"], sort=True):
            if beta == 0 and tau == 0:
                continue
            vs = v.groupby("seed")["value"].mean()
            shared = sorted(s for s in set(vs.index) & set(b.index)
                            if math.isfinite(vs[s]) and math.isfinite(b[s]))
            d = [float(vs[s] - b[s]) for s in shared]
            n = len(d)
            mean_d = sum(d) / n if n else math.nan
            std_d = (math.sqrt(sum((x - mean_d) ** 2 for x in d) / (n - 1)) if n >= 2 else math.nan)
            p = math.nan
            if n >= 2:
                # identical differences (up to rounding) leave the t statistic undefined, not huge
                if std_d > 1e-9 * max(1.0, abs(mean_d)):
                    p = float(stats.ttest_rel([vs[s] for s in shared], [b[s] for s in shared]).pvalue)
            rows.append({**dict(zip(KEY, k)), "method": method, "beta": beta, "tau_plus": tau,
                         "variant_mean": float(vs.mean()), "baseline_mean": float(b.mean()),
                         "gain": mean_d, "gain_std": std_d, "pairs": n, "p_value": p})
    cols = KEY + ["method", "beta", "tau_plus", "variant_mean", "baseline_mean", "gain", "gain_std", "pairs",
                  "p_value"]
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out = out.sort_values(KEY + ["beta", "tau_plus", "method"], kind="mergesort").reset_index(drop=True)
    return out


# ---- writing tables ---------------------------------------------------------------------------

def _mean_text(mean: float, std: float, n: int) -> str:
    """mean, or mean ± std over n >= 2 seeds."""
    return f"{_num(mean)} ± {_num(std)}" if n >= 2 else _num(mean)


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
GAINS_HEADER = ["modality", "dataset", "metric", "split", "setting", "method", "β", "τ+", "variant", "baseline",
                "gain ± std", "pairs", "p"]


def _gain_rows(t) -> list[list[str]]:
    return [[r.modality, r.dataset, r.metric, r.split, r.setting, r.method, _g(r.beta), _g(r.tau_plus),
             _num(r.variant_mean), _num(r.baseline_mean),
             (f"{_num(r.gain, 2)} ± {_num(r.gain_std)}" if r.pairs >= 2 else _num(r.gain)), str(r.pairs),
             _pval(r.p_value)] for _, r in t.iterrows()]


def _write_csv(df, path: Path) -> None:
    text = df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    store.atomic_write_text(path, text)


def write_tables(df, out: Path) -> dict[str, Any]:
    """Write summary/gains/runs tables as Markdown, CSV and LaTeX; return the frames."""
    tdir = out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    summ = summary_table(df)
    gains = gains_table(df)
    _write_csv(summ.drop(columns=["trained"]), tdir / "summary.csv")
    _write_csv(gains, tdir / "gains.csv")
    runs = df.drop(columns=["trained", "base_setting", "modality_setting"], errors="ignore").copy()
    _write_csv(runs, tdir / "runs.csv")
    al_s = ["l"] * 8 + ["r", "r"]
    al_g = ["l"] * 8 + ["r"] * 5
    store.atomic_write_text(tdir / "summary.md", _md_table(SUMMARY_HEADER, _summary_rows(summ), al_s))
    store.atomic_write_text(tdir / "gains.md", _md_table(GAINS_HEADER, _gain_rows(gains), al_g))
    store.atomic_write_text(tdir / "summary.tex", _tex_table(
        SUMMARY_HEADER, _summary_rows(summ), al_s,
        "Mean $\\pm$ sample std over seeds (n seeds); empty beta/tau+ marks the untrained (random-init) floor."))
    store.atomic_write_text(tdir / "gains.tex", _tex_table(
        GAINS_HEADER, _gain_rows(gains), al_g,
        "Gain over the beta=0, tau+=0 baseline of the same setting, paired over shared seeds; "
        "p: two-sided paired t-test (uncorrected)."))
    return {"summary": summ, "gains": gains}


# ---- figures ------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return matplotlib, plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    os.replace(tmp, path)


def _finish(fig, axes, used: int, title: str, path: Path) -> None:
    """Hide unused panels, title, lay out, save without metadata and close one figure."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    _plt()[1].close(fig)


def _grid_shape(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return (n + cols - 1) // cols, cols


def _curves(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch entries from a record: list-of-dicts, or dict-of-lists."""
    c = rec.get("curves") or []
    if isinstance(c, Mapping):
        keys = sorted(c)
        length = max((len(c[k]) for k in keys if isinstance(c[k], list)), default=0)
        return [{k: c[k][i] for k in keys if isinstance(c[k], list) and i < len(c[k])} | {"epoch": i}
                for i in range(length)]
    return [e for e in c if isinstance(e, Mapping)]


def _is_eval_curve(key: str) -> bool:
    """Downstream metrics evaluated during training (train.eval_every), not their std or timing."""
    return key.startswith("eval_") and not key.endswith("_std") and key != "eval_seconds"


def plot_all(df, summ, records: Sequence[Mapping[str, Any]], out: Path) -> list[dict[str, str]]:
    """All figures; returns [{kind, modality, dataset, setting, file}] in a fixed order."""
    matplotlib, plt = _plt()
    fdir = out / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, str]] = []
    setting_of = dict(zip(df["run_id"], df["setting"]))
    with matplotlib.rc_context():
        plt.style.use("default")
        matplotlib.rcParams["svg.hashsalt"] = "hardneg"
        for (mod, ds, setting), g in summ.groupby(["modality", "dataset", "setting"], sort=True):
            tag = _slug(mod, ds) + (f"_{hashlib.sha256(setting.encode()).hexdigest()[:8]}" if setting else "")
            tr = g[g["trained"]]
            floor = g[~g["trained"]]
            metrics = sorted(set(zip(tr["metric"], tr["split"])))
            title = f"{mod} / {ds}" + (f"\n{setting}" if setting else "")
            if metrics and tr["beta"].nunique() >= 1:
                r, c = _grid_shape(len(metrics))
                fig, axes = plt.subplots(r, c, figsize=(4.2 * c, 3.4 * r), squeeze=False)
                for ax, (metric, split) in zip(axes.flat, metrics):
                    m = tr[(tr["metric"] == metric) & (tr["split"] == split)]
                    for tau, line in m.groupby("tau_plus", sort=True):
                        line = line.groupby("beta", sort=True).agg(mean=("mean", "mean"), std=("std", "mean"))
                        ax.errorbar(line.index.astype(float), line["mean"], yerr=line["std"].fillna(0.0),
                                    marker="o", capsize=3, label=f"τ+={_g(tau)}")
                    fl = floor[(floor["metric"] == metric) & (floor["split"] == split)]
                    if len(fl):
                        ax.axhline(float(fl["mean"].mean()), color="grey", ls="--", lw=1, label="random init")
                    ax.set_xlabel("β")
                    ax.set_ylabel(f"{metric} ({split})")
                    ax.legend(fontsize=7)
                name = f"beta_{tag}.png"
                _finish(fig, axes, len(metrics), title + "  (mean ± std over seeds)", fdir / name)
                made.append({"kind": "beta", "modality": mod, "dataset": ds, "setting": setting, "file": name})
            if metrics and tr["beta"].nunique() >= 2 and tr["tau_plus"].nunique() >= 2:
                r, c = _grid_shape(len(metrics))
                fig, axes = plt.subplots(r, c, figsize=(4.2 * c, 3.4 * r), squeeze=False)
                for ax, (metric, split) in zip(axes.flat, metrics):
                    m = tr[(tr["metric"] == metric) & (tr["split"] == split)]
                    piv = m.pivot_table(index="tau_plus", columns="beta", values="mean", aggfunc="mean").sort_index()
                    piv = piv.reindex(sorted(piv.columns), axis=1)
                    im = ax.imshow(piv.values, origin="lower", aspect="auto", cmap="viridis")
                    ax.set_xticks(range(len(piv.columns)), [_g(b) for b in piv.columns])
                    ax.set_yticks(range(len(piv.index)), [_g(t) for t in piv.index])
                    for i in range(piv.shape[0]):
                        for j in range(piv.shape[1]):
                            v = piv.values[i, j]
                            if math.isfinite(v):
                                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="w")
                    ax.set_xlabel("β")
                    ax.set_ylabel("τ+")
                    ax.set_title(f"{metric} ({split})", fontsize=8)
                    fig.colorbar(im, ax=ax)
                name = f"heatmap_{tag}.png"
                _finish(fig, axes, len(metrics), title + "  (mean over seeds)", fdir / name)
                made.append({"kind": "heatmap", "modality": mod, "dataset": ds, "setting": setting, "file": name})
            # curves: mean over seeds per (beta, tau+)
            recs = [r for r in records if r.get("status") == "ok" and setting_of.get(r.get("run_id")) == setting
                    and (r.get("spec") or {}).get("modality") == mod and (r.get("spec") or {}).get("dataset") == ds
                    and _curves(r)]
            if not recs:
                continue
            series: dict[tuple[float, float], dict[str, dict[int, list[float]]]] = {}
            for r in recs:
                loss = r["spec"]["loss"]
                key = (float(loss["beta"]), float(loss["tau_plus"]))
                for e in _curves(r):
                    ep = int(e.get("epoch", 0))
                    for k, v in e.items():
                        if k == "loss" or k.startswith("diag_") or _is_eval_curve(k):
                            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                                series.setdefault(key, {}).setdefault(k, {}).setdefault(ep, []).append(float(v))
            for kind, wanted in (("curves", lambda k: k == "loss"), ("diagnostics", lambda k: k.startswith("diag_")),
                                 ("evaluation", _is_eval_curve)):
                keys = sorted({k for s in series.values() for k in s if wanted(k)})
                if not keys:
                    continue
                r_, c_ = _grid_shape(len(keys))
                fig, axes = plt.subplots(r_, c_, figsize=(4.2 * c_, 3.2 * r_), squeeze=False)
                for ax, k in zip(axes.flat, keys):
                    for (beta, tau) in sorted(series):
                        pts = series[(beta, tau)].get(k)
                        if not pts:
                            continue
                        eps = sorted(pts)
                        ax.plot([e + 1 for e in eps], [sum(pts[e]) / len(pts[e]) for e in eps], marker=".",
                                label=f"β={_g(beta)}, τ+={_g(tau)}")
                    ax.set_xlabel("epoch")
                    ax.set_ylabel("training loss" if k == "loss" else
                                  k.removeprefix("diag_").removeprefix("eval_"))
                    ax.legend(fontsize=6)
                name = f"{kind}_{tag}.png"
                _finish(fig, axes, len(keys), title + "  (mean over seeds)", fdir / name)
                made.append({"kind": kind, "modality": mod, "dataset": ds, "setting": setting, "file": name})
    return made


# ---- the page -------------------------------------------------------------------------------------

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


def render_page(suite: str, folder: Path, df, tables: Mapping[str, Any], figures: Sequence[Mapping[str, str]],
                records: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown report page (no generation timestamp: the page depends on the records only)."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    L: list[str] = [f"# hardneg report: suite `{suite}`", ""]
    L.append(f"Regenerate with `hardneg report {folder.as_posix()}`: everything below is computed from the "
             f"{len(records)} run records in that folder ({len(ok)} ok, {len(failed)} failed); nothing is retrained.")
    L.append("")
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
        ("total run time", f"{sum(float(r.get('wall_time_s') or 0) for r in records) / 60:.1f} min "
                           "(sum over runs)"),
    ]
    L.append(_md_table(["", ""], [[a, b] for a, b in prov]))
    L.append("Statistics: mean ± sample standard deviation (ddof = 1) over seeds, n = seeds with a finite "
             "value. Gains: variant minus the trained β = 0, τ+ = 0 baseline of the same modality, data set, "
             "metric and other settings (settings that differ only in what does nothing at β = 0, τ+ = 0, "
             "such as the JSD convention, share that baseline), paired over the seeds both have; p is the two-sided paired t-test "
             "(scipy.stats.ttest_rel, n ≥ 2, not corrected for multiple comparisons). Rows without β and τ+ "
             "(`random-init`, and what an adapter names its other untrained runs, such as `random-bow` or `pretrained`) are evaluated without training "
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
            L.append("### Gain over the β = 0, τ+ = 0 baseline (paired over seeds)")
            L.append("")
            L.append(_md_table(GAINS_HEADER[1:], [r[1:] for r in _gain_rows(gm)], ["l"] * 7 + ["r"] * 5))
        figs = [f for f in figures if f["modality"] == mod]
        if figs:
            L.append("### Figures")
            L.append("")
            for f in figs:
                what = {"beta": "metric vs β, one line per τ+ (error bars: std over seeds)",
                        "heatmap": "β × τ+ heatmap of the mean metric", "curves": "training loss per epoch",
                        "diagnostics": "loss-core diagnostics per epoch (first batch of the epoch)",
                        "evaluation": "downstream metric evaluated during training (train.eval_every)"}[f["kind"]]
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
    L.append("Tables: `tables/summary.{md,csv,tex}`, `tables/gains.{md,csv,tex}`, `tables/runs.csv` (one row per "
             "run and metric, as `hardneg.results.load` returns it).")
    L.append("")
    return "\n".join(L)


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Regenerate the report of the records in ``results_dir``; returns the page's path.

    ``out`` defaults to ``reports/<suite>``. Files this function generates (report.md,
    tables/, figures/) are replaced; nothing else in ``out`` is touched.
    """
    folder = Path(results_dir)
    records = store.load_records(folder)
    if not records:
        raise ResultsError(f"no run records (*.json) in {folder}; run a suite first (hardneg run SUITE)")
    suites = sorted({str(r.get("suite")) for r in records})
    suite = suites[0] if len(suites) == 1 else folder.name
    out = Path(out) if out is not None else Path("reports") / suite
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("tables", "figures"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    df = _prepare(store.to_frame(records))
    tables = write_tables(df, out)
    figures = plot_all(df, tables["summary"], records, out)
    page = out / "report.md"
    try:
        rel = Path(os.path.relpath(folder, Path.cwd()))
    except ValueError:
        rel = folder
    store.atomic_write_text(page, render_page(suite, rel, df, tables, figures, records))
    return page
