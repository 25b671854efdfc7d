"""The Verdict section, the first screen of every report: per modality, first each variant's
mean gain across data sets (:mod:`.overall`), then per data set each variant's gain over its baseline with its 95% CI, the test, raw and adjusted p, n and the MDE,
what pretraining added over the untrained floor, the achieved hardness, and sentences written
from those numbers (what survives adjustment, what the nulls rule out, floors that beat training,
cells where the floor binds)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import overall, published, selection, stats
from .cells import KEY
from .fmt import _g, _md_table, _num, _pval, _range
from .tables import TEST_NAMES, _ci, _n_text

MATCH = KEY + ["method", "beta", "tau_plus"]
HEADER = ["metric", "setting", "method", "β", "τ+", "ESS", "floor rate", "prior", "fn share", "mean ± sd (n)", "gain [95% CI]", "test", "n", "p",
          "p adj", "MDE", "over floor [95% CI]", "note"]
ALIGN = ["l"] * 5 + ["r"] * 6 + ["l"] + ["r"] * 5 + ["l"]
#: a floor rate above this means the floor (the clamp on the negative term) binds for most anchors
FLOOR_BINDS = 0.5


def trivial_baselines(records: Sequence[Mapping[str, Any]]) -> dict[tuple, tuple[float, str]]:
    """(modality, dataset, metric, split) -> (mean value over records, protocol) of the records'
    ``trivial_baselines`` (numbers that need no representation, e.g. the majority class)."""
    acc: dict[tuple, list] = {}
    for r in records:
        sp = r.get("spec") or {}
        for t in r.get("trivial_baselines") or []:
            v = t.get("value")
            if isinstance(v, (int, float)) and math.isfinite(v):
                k = (sp.get("modality"), sp.get("dataset"), t.get("metric"), t.get("split") or "")
                acc.setdefault(k, [[], t.get("protocol") or ""])[0].append(float(v))
    return {k: (sum(v) / len(v), p) for k, (v, p) in sorted(acc.items())}


def _cell_diag(df, key: Sequence[Any]) -> tuple[float, float, float, float]:
    """Mean final ESS, floor rate, measured class prior (the share of same-class candidates, to
    read beside tau+) and false-negative weight share (the weight mass on same-class negatives)
    of a cell's runs (NaN where not recorded)."""
    m = df
    for c, v in zip(MATCH, key):
        m = m[m[c] == v]
    out = []
    for k in ("diag.ess", "diag.floor_rate", "diag.true_class_prior", "diag.fn_weight_share"):
        vals = [float(x) for x in m.get(k, []) if math.isfinite(float(x))] if k in m.columns else []
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out[0], out[1], out[2], out[3]


def _rows_of(df, gains, floors, mod: str, ds: str) -> list[tuple[list[str], dict]]:
    """Verdict rows of one modality and data set (headline metrics; baselines first)."""
    f = floors[(floors["modality"] == mod) & (floors["dataset"] == ds) & floors["headline"].astype(bool)]
    g = gains[(gains["modality"] == mod) & (gains["dataset"] == ds)]
    gi = {tuple(r[c] for c in MATCH): r for _, r in g.iterrows()}
    out = []
    keys = sorted((tuple(r[c] for c in MATCH) for _, r in f.iterrows()),
                  key=lambda k: (k[2], k[3], k[4], (k[6], k[7]) != (0, 0), k[6], k[7], k[5]))
    fi = {tuple(r[c] for c in MATCH): r for _, r in f.iterrows()}
    many = len({k[2] for k in keys}) > 1
    for k in keys:
        fr, gr = fi[k], gi.get(k)
        ess, rate, prior, fn = _cell_diag(df, k)
        mean = f"{_num(fr.variant_mean)} ± {_num(fr.variant_sd)} ({fr.n})" if fr.n >= 2 else \
            f"{_num(fr.variant_mean)} ({fr.n})"
        base = (k[6], k[7]) == (0, 0)
        differ = next((x for x in str(fr.note).split("; ") if x.startswith("floor's options differ")), "")
        floor_note = (f"over floor: {TEST_NAMES[fr.test]}" + (f", {differ}" if differ else "") if fr.test
                      else (f"over floor: {fr.note}" if fr.note else ""))
        notes = [x for x in ((gr.note if gr is not None else ""), floor_note) if x]
        row = [f"`{k[2]}`" if many else "", k[4], k[5], _g(k[6]), _g(k[7]), _num(ess), _num(rate), _num(prior),
               _num(fn), mean,
               "baseline" if base else (_ci(gr) if gr is not None else ""),
               "" if base or gr is None else TEST_NAMES[gr.test], "" if base or gr is None else _n_text(gr),
               "" if base or gr is None else _pval(gr.p_value), "" if base or gr is None else _pval(gr.p_adj),
               "" if base or gr is None else _num(gr.mde), _ci(fr), "; ".join(notes)]
        out.append((row, {"key": k, "floor": fr, "gain": gr, "ess": ess, "floor_rate": rate, "baseline": base}))
    return out


def _sentences(rows: Sequence[dict], floor_means: Mapping[str, tuple[float, str]], trivial: Mapping[tuple, tuple],
               mod: str, ds: str) -> list[str]:
    """Plain sentences from the numbers of one data set's verdict rows (``floor_means``: per
    metric, the strongest untrained floor's mean and name)."""
    L = []
    var = [r for r in rows if not r["baseline"] and r["gain"] is not None]
    tested = [r for r in var if r["gain"].test]
    surv = [r for r in tested if math.isfinite(r["gain"].p_adj) and r["gain"].p_adj < stats.ALPHA]
    untested = [r for r in var if not r["gain"].test]

    def name(r):
        k = r["key"]
        return f"{k[5]} (β {_g(k[6])}, τ+ {_g(k[7])}{', ' + k[4] if k[4] else ''}; `{k[2]}`)"
    if surv:
        L.append("Gains that survive adjustment: " + "; ".join(
            f"{name(r)}: {_ci(r['gain'])}, p adj {_pval(r['gain'].p_adj)}" for r in surv) + ".")
    elif tested:
        best = min(tested, key=lambda r: r["gain"].p_adj if math.isfinite(r["gain"].p_adj) else 2.0)
        q = best["gain"].p_adj
        L.append(f"No gain survives adjustment ({len(tested)} tested; smallest adjusted p "
                 f"{_pval(q) if math.isfinite(q) else 'n/a (not in the family)'}, {name(best)}).")
    nulls = [r for r in tested if r not in surv]
    if nulls:
        L.append(f"The {len(nulls)} null result(s) would detect (80% power) only true gains of at least "
                 f"{_range([r['gain'].mde for r in nulls])} points; every one of their 95% CIs lies within "
                 f"[{_num(min(r['gain'].ci_low for r in nulls))}, {_num(max(r['gain'].ci_high for r in nulls))}], "
                 "so larger effects are ruled out and smaller ones are neither shown nor excluded.")
    if untested:
        reasons = sorted({r["gain"].note or "no test" for r in untested})
        L.append(f"No verdict for {len(untested)} variant(s): " + "; ".join(reasons) + ".")
    trained = [r for r in rows if math.isfinite(r["floor"].variant_mean)]
    for metric in sorted({r["key"][2] for r in trained}):
        tm = [r for r in trained if r["key"][2] == metric]
        fl, fl_name = floor_means.get(metric, (math.nan, ""))
        if math.isfinite(fl):
            best = max(tm, key=lambda r: r["floor"].variant_mean)
            if fl >= best["floor"].variant_mean:
                L.append(f"The untrained floor ({fl_name}, {_num(fl)}) beats every trained run on `{metric}` "
                         f"(best trained: {_num(best['floor'].variant_mean)}, {name(best)}).")
        for (m, d, met, split), (tv, proto) in trivial.items():
            if (m, d, met) == (mod, ds, metric):
                above = sum(r["floor"].variant_mean > tv for r in tm)
                L.append(f"Trivial baseline on `{metric}`: {_num(tv)} ({proto}); {above} of {len(tm)} trained "
                         f"cells are above it.")
    binds = [r for r in rows if math.isfinite(r["floor_rate"]) and r["floor_rate"] > FLOOR_BINDS]
    if binds:
        L.append(f"The floor binds for most anchors (final floor rate > {FLOOR_BINDS}) in {len(binds)} cell(s): "
                 + "; ".join(f"{name(r)} {_num(r['floor_rate'])}" for r in binds) + ".")
    flat = [r for r in rows if not r["baseline"] and math.isfinite(r["ess"]) and r["ess"] >= 0.95]
    if flat and len(flat) == len([r for r in rows if not r["baseline"] and math.isfinite(r["ess"])]):
        L.append(f"Every variant ends with near-uniform weights (final ESS ≥ 0.95 of the negatives): nominal "
                 f"β does not make the weighting hard here (ESS {_range([r['ess'] for r in flat])}).")
    return L


PARITY_WITHIN = 1.0    # points: the gap to a parity target that counts as parity


def parity_rows(df, mod: str, ds: str) -> list[list[str]]:
    """Our trained beta = 0, tau+ = 0 cells of the methods a parity target names (raw scores,
    last epoch, headline metric) against that target's mean ± sd (n): Welch t on the summary
    statistics, the gap's 95% CI, and whether the gap is within ``PARITY_WITHIN`` points."""
    out = []
    for what, t_mean, t_sd, t_n, _, methods in published.parity(mod, ds):
        m = df[(df["modality"] == mod) & (df["dataset"] == ds) & df["trained"] & (df["status"] == "ok")
               & df["headline"].astype(bool) & (df["selection"] == "last-epoch") & df["method"].isin(methods)
               & (df["beta"].astype(float) == 0) & (df["tau_plus"].astype(float) == 0)]
        if "opt.scores" in m.columns:
            m = m[m["opt.scores"].isna() | (m["opt.scores"] == "raw")]
        for (setting, method, metric), g in m.groupby(["setting", "method", "metric"], sort=True):
            vals = [float(v) for v in g["value"] if math.isfinite(float(v))]
            if len(vals) < 2:
                continue
            mean, sd = sum(vals) / len(vals), stats._sd(vals)
            c = stats.welch_summary(mean, sd, len(vals), t_mean, t_sd, t_n)
            out.append([setting, method, metric, f"{_num(mean)} ± {_num(sd)} ({len(vals)})",
                        f"{_num(t_mean)} ± {_num(t_sd)} ({t_n})", _ci(c), _pval(c.p), _num(c.mde),
                        "yes" if abs(c.gain) <= PARITY_WITHIN else "no"])
    return out


PARITY_HEADER = ["setting", "method", "metric", "ours: mean ± sd (n)", "target: mean ± sd (n)",
                 "gap [95% CI]", "p (Welch)", "MDE", f"|gap| ≤ {PARITY_WITHIN:g}"]


def render(df, tables: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The '## Verdict' section as Markdown lines."""
    gains, floors, adjust = tables["gains"], tables["floors"], tables.get("adjust", "holm")
    trivial = trivial_baselines(records)
    L = ["## Verdict", ""]
    suites = sorted({str(r.get("suite")) for r in records})
    schemas = sorted({str(r.get("schema_version")) for r in records})
    if len(suites) > 1:
        L += [(f"**Mixed folder:** records of {len(suites)} suites ({', '.join(suites)}); comparisons below "
              "pool them only where modality, data set and every setting agree."), ""]
    if len(schemas) > 1:
        L += [f"**Mixed folder:** records of schema versions {', '.join(schemas)}.", ""]
    hl = gains["headline"].astype(bool)
    fin = gains["p_value"].astype(float).map(math.isfinite).astype(bool)
    fam = gains[hl & fin]
    dh = df[df["headline"].astype(bool) & df["metric"].notna()]
    heads = sorted(set(zip(dh["modality"], dh["metric"])))
    n_pair = int((fam["test"] == "paired").sum())
    n_welch = int((fam["test"] == "welch").sum())
    n_none = int((hl & ~fin).sum())
    surv = int((fam["p_adj"] < stats.ALPHA).sum())
    raw = int((fam["p_value"] < stats.ALPHA).sum())
    L.append(
        "Each variant against its baseline (the trained β = 0, τ+ = 0 run of the same data set, metric and other "
        "settings) on the headline metric(s) " + ", ".join(f"`{x}` ({m})" for m, x in heads) + ". "
        "Gain: variant minus baseline, with its t-based 95% CI. Test: paired t over seeds only where both runs of "
        "each seed share processor kind and the same committed code; otherwise Welch's unpaired t, and the note "
        "says why. p: two-sided; p adj: " + stats.ADJUSTMENT_NAMES[adjust] + f" across all {len(fam)} tested "
        "comparisons of this report (`hardneg report --adjust bh` for the other). MDE: the true gain the test "
        "detects with 80% power at α = 0.05, (t₀.₉₇₅,df + t₀.₈,df) · se. Over floor: the cell minus the untrained "
        "random-init run (what pretraining added). ESS and floor rate: the final epoch's effective sample size "
        "of the negative weights (1 = uniform) and share of anchors where the floor binds, beside nominal β, τ+; "
        "prior: the measured share of same-class candidates (the τ+ the labels would give); fn share: the "
        "share of the negative weight on same-class candidates (false negatives).")
    L.append("")
    if len(fam):
        L.append(f"**In numbers:** {len(fam)} comparisons tested ({n_pair} paired, {n_welch} Welch), {n_none} "
                 f"without a test; {raw} have raw p < 0.05 (about {len(fam) * stats.ALPHA:.1f} expected by chance "
                 f"if no variant changed anything); {surv} survive {adjust.upper() if adjust == 'bh' else 'Holm'} "
                 "adjustment at 0.05.")
    elif n_none:
        L.append(f"**In numbers:** no comparison could be tested ({n_none} without a test; reasons per row).")
    else:
        L.append("**In numbers:** no variant to compare: these records hold baselines and floors only, so the "
                 "section shows what pretraining added and the references, and no gain is tested.")
    L.append("")
    data_notes = published.data_notes(records)
    for mod in sorted(set(floors["modality"]) | set(gains["modality"])):
        if "overall" in tables:
            L += overall.render(tables["overall"], adjust, mod)
        for ds in sorted(set(floors[floors["modality"] == mod]["dataset"])):
            rows = _rows_of(df, gains, floors, mod, ds)
            if not rows:
                continue
            L += [f"### {mod} / {ds}", ""]
            refs = df[(df["modality"] == mod) & (df["dataset"] == ds) & ~df["trained"] & (df["status"] == "ok")
                      & df["headline"].astype(bool)]
            ref_txt, floor_means = [], {}
            for (method, setting, metric), g in refs.groupby(["method", "setting", "metric"], sort=True):
                vals = [float(v) for v in g["value"] if math.isfinite(float(v))]
                mean = sum(vals) / len(vals) if vals else math.nan
                sd = stats._sd(vals)
                label = method + (f" [{setting}]" if setting else "")   # two untrained encoders: two floors
                if method == "random-init" and math.isfinite(mean) and mean > floor_means.get(metric, (-math.inf, ""))[0]:
                    floor_means[metric] = (mean, label)
                ref_txt.append(f"{label} {_num(mean)}" + (f" ± {_num(sd)}" if len(vals) > 1 else "")
                               + f" (n={len(vals)}, `{metric}`)")
            for (m, d, metric, split), (tv, proto) in trivial.items():
                if (m, d) == (mod, ds) and metric in set(refs["metric"]) | {r[1]["key"][2] for r in rows}:
                    ref_txt.append(f"trivial {_num(tv)} (`{metric}`: {proto})")
            if ref_txt:
                L += ["Untrained and trivial references: " + "; ".join(ref_txt) + ".", ""]
            for note in data_notes.get((mod, ds), []):
                L += [f"Data: {note}.", ""]
            pub = published.rows(mod, ds)
            if pub:
                L += ["Published and parity numbers (not ours; read with their protocol):", "",
                      _md_table(["what", "value", "source and protocol"], pub, ["l", "r", "l"])]
            par = parity_rows(df, mod, ds)
            if par:
                L += ["Parity with the targets above (ours minus target, Welch t on their mean ± sd (n); "
                      "the target's repeats are another code's, so nothing pairs):", "",
                      _md_table(PARITY_HEADER, par, ["l", "l", "l", "r", "r", "r", "r", "r", "l"],
                                drop_empty=("setting",))]
            L.append(_md_table(HEADER, [r for r, _ in rows], ALIGN, drop_empty=("metric", "setting", "ESS", "floor rate", "prior",
                                                                           "fn share")))
            for s in _sentences([x for _, x in rows], floor_means, trivial, mod, ds):
                L.append(f"- {s}")
            L.append("")
    return L + selection.section(df, records)
