"""Across data sets: does a variant help on average over the data sets it ran on?

One row per variant (modality, metric, split, setting, method, beta, tau+) that has a verdict
row on at least two data sets. Its gain is the unweighted mean of the per-data-set gains of
:func:`~hardneg.report.compare.gains_table`, tested with :func:`~hardneg.report.stats.mean_of_gains`
(each data set's se and df as its own test gave them, paired or Welch): whether the variant
helps on average over *these* data sets, each weighted equally. Beside it, the data sets read as
a sample (a one-sample t over the K gains, df K - 1): how widely the gain varies from data set to
data set, and the wider interval a claim about other data sets would need.

A variant whose tau+ is set per data set (debiasing at each data set's measured class prior) has
a different tau+ on every data set; such cells (same everything but tau+, one data set each) are
one row, its tau+ shown as ``per data set`` with the values.

Data sets where the variant has no test (n = 1, no baseline) are left out and named. The
adjusted family is these rows alone (Holm or BH as the report's): a separate question from the
per-data-set family, and said so on the page.
"""

from __future__ import annotations

import math
from . import stats
from .fmt import _g, _md_table, _num, _pval, _range

PER_DATASET = "per data set"
COLUMNS = ["modality", "metric", "split", "setting", "method", "beta", "tau_plus", "datasets", "k", "gain",
           "ci_low", "ci_high", "p_value", "p_adj", "mde", "positive", "gain_sd", "sample_ci_low",
           "sample_ci_high", "note"]
HEADER = ["metric", "setting", "method", "β", "τ+", "data sets", "mean gain [95% CI]", "p", "p adj", "MDE",
          "gain > 0", "sd over data sets", "95% CI, data sets as a sample", "note"]
ALIGN = ["l"] * 5 + ["r"] * 8 + ["l"]


def _groups(h) -> dict[tuple, list]:
    """Variant key -> its verdict rows, one per data set (tau+ merged where set per data set)."""
    groups: dict[tuple, list] = {}
    for _, r in h.iterrows():
        key = (r.modality, r.metric, r.split, r.setting, r.method, float(r.beta), float(r.tau_plus))
        groups.setdefault(key, []).append(r)
    lone: dict[tuple, list[tuple]] = {}
    for key, rows in groups.items():
        if len(rows) == 1:
            lone.setdefault(key[:6], []).append(key)
    for head, keys in lone.items():
        dsets = [groups[k][0].dataset for k in keys]
        if len(keys) >= 2 and len(set(dsets)) == len(dsets):
            merged = sorted((groups.pop(k)[0] for k in keys), key=lambda r: r.dataset)
            groups[head + (PER_DATASET,)] = merged
    return groups


def overall_table(gains, adjust: str = "holm"):
    """The across-data-sets rows (see the module docstring) as a frame; ``p_adj`` over its rows."""
    import pandas as pd

    h = gains[gains["headline"].astype(bool)]
    rows = []
    for key, grp in _groups(h).items():
        if len(grp) < 2:
            continue
        mod, metric, split, setting, method, beta, tau = key
        tested = [r for r in grp if r.test and math.isfinite(r.p_value)]
        left = [r.dataset for r in grp if not (r.test and math.isfinite(r.p_value))]
        notes = [f"left out (no test): {', '.join(left)}"] if left else []
        welch = [r.dataset for r in tested if r.test == "welch"]
        if welch:
            notes.append(f"Welch t on {', '.join(welch)}")
        if tau == PER_DATASET:
            tau = f"{PER_DATASET} ({', '.join(f'{r.dataset} {_g(r.tau_plus)}' for r in grp)})"
        d = [float(r.gain) for r in tested]
        nan = math.nan
        if len(tested) >= 2:
            c = stats.mean_of_gains(d, [float(r.se) for r in tested], [float(r.df) for r in tested])
            sample = stats.paired(d, [0.0] * len(d))
        else:
            c = sample = None
            notes.append("tested on fewer than two data sets: no mean")
        rows.append({"modality": mod, "metric": metric, "split": split, "setting": setting, "method": method,
                     "beta": beta, "tau_plus": tau, "datasets": ", ".join(r.dataset for r in tested),
                     "k": len(tested), "gain": c.gain if c else nan, "ci_low": c.ci_low if c else nan,
                     "ci_high": c.ci_high if c else nan, "p_value": c.p if c else nan, "p_adj": nan,
                     "mde": c.mde if c else nan, "positive": sum(x > 0 for x in d),
                     "gain_sd": c.sd if c else nan,
                     "sample_ci_low": sample.ci_low if sample else nan,
                     "sample_ci_high": sample.ci_high if sample else nan, "note": "; ".join(notes)})
    fam = [i for i, r in enumerate(rows) if math.isfinite(r["p_value"])]
    for i, q in zip(fam, stats.adjust([rows[i]["p_value"] for i in fam], adjust)):
        rows[i]["p_adj"] = q
    rows.sort(key=lambda r: (r["modality"], r["metric"], r["split"], r["setting"], r["beta"],
                             isinstance(r["tau_plus"], str), str(r["tau_plus"]) if isinstance(r["tau_plus"], str)
                             else r["tau_plus"], r["method"]))
    return pd.DataFrame(rows, columns=COLUMNS)


def _ci(lo: float, hi: float, mid: float | None = None) -> str:
    if not math.isfinite(lo):
        return _num(mid) if mid is not None and math.isfinite(mid) else ""
    return (f"{_num(mid)} " if mid is not None else "") + f"[{_num(lo)}, {_num(hi)}]"


def table_rows(t) -> list[list[str]]:
    """Rows of :data:`HEADER` (the page's and ``tables/overall.md``'s)."""
    return [[f"`{r.metric}`", r.setting, r.method, _g(r.beta), r.tau_plus if isinstance(r.tau_plus, str)
             else _g(r.tau_plus), f"{r.k}: {r.datasets}" if r.k else "", _ci(r.ci_low, r.ci_high, r.gain),
             _pval(r.p_value), _pval(r.p_adj), _num(r.mde), f"{r.positive}/{r.k}" if r.k else "",
             _num(r.gain_sd), _ci(r.sample_ci_low, r.sample_ci_high), r.note] for _, r in t.iterrows()]


def _name(r) -> str:
    tau = r.tau_plus if isinstance(r.tau_plus, str) else _g(r.tau_plus)
    return f"{r.method} (β {_g(r.beta)}, τ+ {tau}{', ' + r.setting if r.setting else ''}; `{r.metric}`)"


def sentences(t) -> list[str]:
    """What the across-data-sets rows say, in words."""
    tested = [r for _, r in t.iterrows() if math.isfinite(r.p_value)]
    if not tested:
        return []
    surv = [r for r in tested if r.p_adj < stats.ALPHA]
    L = []
    if surv:
        L.append("Mean gains over data sets that survive adjustment: " + "; ".join(
            f"{_name(r)}: {_ci(r.ci_low, r.ci_high, r.gain)} over {r.k} data sets, p adj {_pval(r.p_adj)}, "
            f"gain > 0 on {r.positive} of {r.k}" for r in surv) + ".")
    else:
        best = min(tested, key=lambda r: r.p_adj)
        L.append(f"No mean gain over data sets survives adjustment ({len(tested)} tested; smallest adjusted p "
                 f"{_pval(best.p_adj)}, {_name(best)}).")
    nulls = [r for r in tested if not r.p_adj < stats.ALPHA]
    if nulls:
        L.append(f"The {len(nulls)} null mean(s) would detect (80% power) only mean gains of at least "
                 f"{_range([r.mde for r in nulls])} points; their 95% CIs lie within "
                 f"[{_num(min(r.ci_low for r in nulls))}, {_num(max(r.ci_high for r in nulls))}].")
    return L


def render(t, adjust: str, modality: str) -> list[str]:
    """The across-data-sets subsection of one modality's verdict (nothing when no row)."""
    t = t[t["modality"] == modality]
    if t.empty:
        return []
    L = [f"### {modality}: across data sets", "",
         "Each variant's gain averaged over the data sets where it has a test, each data set weighted equally: "
         "mean gain with its 95% CI from the per-data-set standard errors (df by Welch-Satterthwaite), the "
         "question being whether it helps on average over these data sets. p adj: "
         f"{stats.ADJUSTMENT_NAMES[adjust]} across the {int(t['p_value'].map(math.isfinite).sum())} rows of "
         "this table, a family of its own beside the per-data-set one. Gain > 0: on how many data sets the "
         "mean gain is positive. The last CI reads the data sets as a sample (one-sample t over their gains, "
         "df K − 1): what a claim about data sets not run here would have to live with.", "",
         _md_table(HEADER, table_rows(t), ALIGN, drop_empty=("setting", "note"))]
    L += [f"- {s}" for s in sentences(t)]
    return L + [""]
