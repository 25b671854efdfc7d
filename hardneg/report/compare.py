"""Comparisons a verdict is made of: each variant against its baseline, each trained cell against
its untrained floor, with the test chosen by the records' provenance and p adjusted across the report.

A variant's baseline is the trained beta = 0, tau+ = 0 run of the same modality, data set, metric
and other settings (settings inert at beta = 0, tau+ = 0 share one baseline, see
:data:`~hardneg.report.cells.INERT_AT_BASELINE`). Its floor is the untrained ``random-init``
run (epochs = 0) of the same modality, data set, metric and adapter options.

Pairing: two runs of one seed are a pair only when both ran on the same
processor kind (the record's ``device``) and the same committed code (same ``git_commit``, both
``git_dirty`` false); otherwise the same seed diverges by rounding and pairing removes no
variance. The test is paired over the seeds that pair when they are at least
:data:`MIN_PAIRS` and at least half of the shared seeds (the others are left out, and the
``note`` names them and why: a choice made from provenance alone, never from the values);
otherwise it is Welch's unpaired test over all seeds of both cells, and the ``note`` says why.
The family for adjustment is every tested comparison of a headline metric (the adapter's
``headline_metrics``) in the report, variants against baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from . import stats
from .cells import KEY

NO_BASELINE = "no trained β = 0, τ+ = 0 run with these other settings: no baseline, no verdict"
NO_FLOOR = "no untrained (random-init) run with these options"
COLUMNS = KEY + ["method", "beta", "tau_plus", "headline", "variant_mean", "variant_sd", "baseline_mean",
                 "test", "n", "n_baseline", "gain", "gain_sd", "se", "df", "ci_low", "ci_high", "p_value", "mde",
                 "p_adj", "note"]


def _per_seed(g) -> tuple[dict, dict]:
    """Seed -> mean value, and seed -> (processor kind, commit, dirty) of a cell's rows."""
    vals, meta = {}, {}
    for seed, s in g.groupby("seed", sort=True):
        vals[int(seed)] = float(s["value"].astype(float).mean())
        r = s.iloc[0]
        meta[int(seed)] = (r.get("device"), r.get("git_commit"), r.get("git_dirty"))
    return vals, meta


def _clean(m: tuple) -> bool:
    # git_dirty arrives as a Python or NumPy bool, or None / NaN when unknown
    return isinstance(m[1], str) and bool(m[1]) and str(m[2]) == "False"


MIN_PAIRS = 3
_REASONS = ("processor kind differs", "commit differs", "dirty or unknown tree")


def _why(vm: tuple, bm: tuple) -> list[str]:
    bad = (vm[0] != bm[0], vm[1] != bm[1], not (_clean(vm) and _clean(bm)))
    return [what for what, b in zip(_REASONS, bad) if b]


def pairing(vmeta: Mapping[int, tuple], bmeta: Mapping[int, tuple]) -> tuple[list[int], str]:
    """Seeds to pair (none: Welch) and a note on the seeds that do not pair, see the module docstring."""
    shared = sorted(set(vmeta) & set(bmeta))
    if not shared:
        return [], "no seed in common"
    why = {s: _why(vmeta[s], bmeta[s]) for s in shared}
    good = [s for s in shared if not why[s]]
    n = len(shared)
    counts = {w: sum(w in why[s] for s in shared) for w in _REASONS}
    summary = "; ".join(f"{w} in {k}/{n} pairs" for w, k in counts.items() if k)
    if len(good) == n:
        return shared, ""
    if len(good) >= MIN_PAIRS and 2 * len(good) >= n:
        out = ", ".join(str(s) for s in shared if why[s])
        return good, f"paired over {len(good)}/{n} seeds, seed(s) {out} left out ({summary})"
    return [], summary


def _mixing(meta: Mapping[int, tuple]) -> str:
    kinds = {m[0] for m in meta.values()}
    commits = {m[1] for m in meta.values()}
    out = []
    if len(kinds) > 1:
        out.append(f"mixes {len(kinds)} processor kinds")
    if len(commits) > 1:
        out.append(f"mixes {len(commits)} commits")
    return ", ".join(out)


def compare(v: Mapping[int, float], vmeta: Mapping[int, tuple], b: Mapping[int, float],
            bmeta: Mapping[int, tuple]) -> tuple[stats.Comparison, str]:
    """Paired test where :func:`pairing` allows, else Welch; returns the comparison and a note."""
    shared, why = pairing(vmeta, bmeta)
    if shared:
        c = stats.paired([v[s] for s in shared], [b[s] for s in shared])
        note = why
    else:
        c = stats.welch(list(v.values()), list(b.values()))
        note = f"unpaired: {why}" if c.test else why
    mv, mb = _mixing(vmeta), _mixing(bmeta)
    extra = [x for x in (note, c.reason, mv and f"cell {mv}", mb and f"reference {mb}",
                         f"{c.nan_left_out} NaN value(s) left out" if c.nan_left_out else "") if x]
    return c, "; ".join(extra)


def _row(k, method, beta, tau, headline, v, c: stats.Comparison | None, base_mean, note) -> dict:
    vals = [x for x in v.values() if math.isfinite(x)]
    mean = sum(vals) / len(vals) if vals else math.nan
    sd = stats._sd(vals)
    nan = math.nan
    return {**dict(zip(KEY, k)), "method": method, "beta": beta, "tau_plus": tau, "headline": headline,
            "variant_mean": mean, "variant_sd": sd, "baseline_mean": base_mean,
            "test": c.test if c else "", "n": c.n if c else len(vals), "n_baseline": c.n_baseline if c else 0,
            "gain": c.gain if c else nan, "gain_sd": c.sd if c else nan, "se": c.se if c else nan,
            "df": c.df if c else nan, "ci_low": c.ci_low if c else nan,
            "ci_high": c.ci_high if c else nan, "p_value": c.p if c else nan, "mde": c.mde if c else nan,
            "p_adj": nan, "note": note}


def _frame(rows: Sequence[dict], sort: Sequence[str]):
    import pandas as pd

    out = pd.DataFrame(list(rows), columns=COLUMNS)
    if len(out):
        out = out.sort_values(list(sort), kind="mergesort").reset_index(drop=True)
    return out


def gains_table(df, adjust: str = "holm"):
    """Each trained variant minus its beta = 0, tau+ = 0 baseline (see the module docstring);
    ``p_adj`` is adjusted (``holm`` or ``bh``) across every tested headline comparison."""
    stats.adjust([], adjust)  # a bad method is an error even when nothing is tested
    ok = df[(df["status"] == "ok") & df["metric"].notna() & df["trained"]]
    if "base_setting" not in ok.columns:
        ok = ok.assign(base_setting=ok["setting"])
    at_zero = ok[(ok["beta"] == 0) & (ok["tau_plus"] == 0)]
    rows = []
    for k, g in ok.groupby(KEY, sort=True, dropna=False):
        headline = bool(g["headline"].iloc[0]) if "headline" in g.columns else True
        base = g[(g["beta"] == 0) & (g["tau_plus"] == 0)]
        if base.empty:
            # e.g. the authors' JSD convention, whose beta = 0, tau+ = 0 run is plain JSD, run once
            mod, ds, metric, split, _ = k
            same = at_zero[(at_zero["modality"] == mod) & (at_zero["dataset"] == ds) & (at_zero["metric"] == metric)
                           & (at_zero["split"] == split) & (at_zero["base_setting"] == g["base_setting"].iloc[0])]
            base = same if len(same) and same["setting"].nunique() == 1 else same.iloc[0:0]
        b, bmeta = _per_seed(base)
        bvals = [x for x in b.values() if math.isfinite(x)]
        bmean = sum(bvals) / len(bvals) if bvals else math.nan
        for (method, beta, tau), cell in g.groupby(["method", "beta", "tau_plus"], sort=True):
            if beta == 0 and tau == 0:
                continue
            v, vmeta = _per_seed(cell)
            if not b:
                rows.append(_row(k, method, beta, tau, headline, v, None, bmean, NO_BASELINE))
                continue
            c, note = compare(v, vmeta, b, bmeta)
            rows.append(_row(k, method, beta, tau, headline, v, c, bmean, note))
    fam = [i for i, r in enumerate(rows) if r["headline"] and math.isfinite(r["p_value"])]
    for i, q in zip(fam, stats.adjust([rows[i]["p_value"] for i in fam], adjust)):
        rows[i]["p_adj"] = q
    return _frame(rows, KEY + ["beta", "tau_plus", "method"])


def _options_of(setting: str) -> set[str]:
    return {p for p in setting.split(", ") if p}


def floors_table(df):
    """Each trained cell (baselines included) minus its untrained ``random-init`` floor: what
    pretraining added, tested as in :func:`compare`; ``p_adj`` is left empty (not a verdict)."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()]
    floors = ok[~ok["trained"] & (ok["method"] == "random-init")]
    rows = []
    for k, g in ok[ok["trained"]].groupby(KEY, sort=True, dropna=False):
        mod, ds, metric, split, setting = k
        f = floors[(floors["modality"] == mod) & (floors["dataset"] == ds) & (floors["metric"] == metric)
                   & (floors["split"] == split)]
        opts = _options_of(setting)
        same = f[f["setting"].map(lambda s, o=opts: _options_of(s) <= o).astype(bool)]
        other = ""
        if same.empty and f["setting"].nunique() == 1:
            # e.g. records from before an option existed: the one floor there is, said to differ
            other = f"floor's options differ ({f['setting'].iloc[0]})"
        else:
            f = same
        b, bmeta = _per_seed(f)
        fvals = [x for x in b.values() if math.isfinite(x)]
        fmean = sum(fvals) / len(fvals) if fvals else math.nan
        headline = bool(g["headline"].iloc[0]) if "headline" in g.columns else True
        for (method, beta, tau), cell in g.groupby(["method", "beta", "tau_plus"], sort=True):
            v, vmeta = _per_seed(cell)
            if not b or f["setting"].nunique() != 1:
                rows.append(_row(k, method, beta, tau, headline, v, None, fmean, NO_FLOOR))
                continue
            c, note = compare(v, vmeta, b, bmeta)
            rows.append(_row(k, method, beta, tau, headline, v, c, fmean, "; ".join(x for x in (other, note) if x)))
    return _frame(rows, KEY + ["beta", "tau_plus", "method"])
