"""The frame a report is computed from: setting strings, per-cell summaries, gains over baselines."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .. import results as store
from .fmt import _g

GRID_COLUMNS = ("beta", "tau_plus")
SETTING_COLUMNS = tuple(c for c in store.LOSS_COLUMNS + store.TRAIN_COLUMNS if c not in GRID_COLUMNS)
KEY = ["modality", "dataset", "metric", "split", "setting"]
#: loss settings that do nothing at beta = 0, tau+ = 0 (hardness and the floor act only through
#: beta and tau+, and both JSD conventions are plain JSD there): settings that differ only in
#: these share one baseline run
INERT_AT_BASELINE = ("jsd_convention", "hardness", "floor")


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
    n = len(finite)
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

