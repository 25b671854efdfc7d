"""The frame a report is computed from: setting strings, per-cell summaries, gains over baselines,
and the per-epoch curves of a record."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import results as store
from ..spec import INERT_FOR_OBJECTIVE
from .fmt import _g

GRID_COLUMNS = ("beta", "tau_plus")
SETTING_COLUMNS = tuple(c for c in store.LOSS_COLUMNS + store.TRAIN_COLUMNS if c not in GRID_COLUMNS)
KEY = ["modality", "dataset", "metric", "split", "setting"]
#: loss settings that do nothing at beta = 0, tau+ = 0 (hardness and the floor act only through
#: beta and tau+, and both JSD conventions are plain JSD there): settings that differ only in
#: these share one baseline run
INERT_AT_BASELINE = ("jsd_convention", "hardness", "floor")


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


def _eval_points(rec: Mapping[str, Any], metric: str) -> dict[int, float]:
    """{0-based epoch: value} of a record's finite ``eval_<metric>`` curve entries and, when there
    is one, its last-epoch ``metric`` at the last epoch (the evaluation after training)."""
    key = f"eval_{metric}"
    pts = {int(e.get("epoch", 0)): float(e[key]) for e in _curves(rec)
           if isinstance(e.get(key), (int, float)) and not isinstance(e[key], bool) and math.isfinite(e[key])}
    final = [float(m["value"]) for m in rec.get("metrics") or [] if m.get("metric") == metric
             and m.get("selection") == "last-epoch" and isinstance(m.get("value"), (int, float))
             and math.isfinite(m["value"])]
    epochs = int(((rec.get("spec") or {}).get("train") or {}).get("epochs") or 0)
    if pts and final and epochs:
        pts[epochs - 1] = final[0]
    return pts


def _training_only(modality: str) -> frozenset[str]:
    """The ``opt.NAME`` columns of the options the registered adapter declares ``training_only``
    (nothing when the modality is not installed here)."""
    try:
        from ..adapters import adapter_class
        return frozenset(f"opt.{k}" for k, o in adapter_class(modality).options.items() if o.training_only)
    except Exception:  # noqa: BLE001 - records of an adapter not installed here
        return frozenset()


def _reads(df, column: str):
    """The rows of ``df`` whose objective reads the loss setting ``column`` (all rows for any
    other column): a setting an objective ignores neither varies nor shows in its rows."""
    if "objective" not in df.columns:
        return df
    ignoring = [o for o, cols in INERT_FOR_OBJECTIVE.items() if column in cols]
    return df[~df["objective"].isin(ignoring)] if ignoring else df


def _settings_of(df, by: Sequence[str], cand: Sequence[str], skip: Sequence[str] = ()):
    """Per row, 'name=value, ...' of the candidate columns that vary within its ``by`` group
    (``by[0]`` the modality), leaving out ``skip``: loss and training settings that vary among
    the group's trained runs, adapter options that vary among all its runs. A loss setting that
    an objective ignores (:data:`~hardneg.spec.INERT_FOR_OBJECTIVE`) neither counts nor shows in
    that objective's rows. Untrained rows: adapter options only, and not those that matter only
    to training (an untrained run's value of such an option is its default, which says nothing),
    so one floor serves every value of them."""
    import pandas as pd

    out = pd.Series([""] * len(df), index=df.index, dtype=object)
    for key, g in df.groupby(list(by), sort=True):
        tr = g[g["trained"]]
        # loss and training settings: as they vary among the trained runs; adapter options: among
        # all runs, so two floors that differ (an untrained GRU beside random word vectors) stay
        # apart and each trained row names the value its floor is matched on
        varying = [c for c in cand if c in g.columns and c not in skip
                   and _reads(g if c.startswith("opt.") else tr, c)[c].astype(str).nunique(dropna=False) > 1]
        inert = _training_only(str(key[0] if isinstance(key, tuple) else key))   # by[0] is the modality
        for idx, row in g.iterrows():
            cols = varying if row["trained"] else [c for c in varying if c.startswith("opt.") and c not in inert]
            cols = [c for c in cols if c not in INERT_FOR_OBJECTIVE.get(row.get("objective"), ())]
            out[idx] = ", ".join(f"{c.removeprefix('opt.')}={_g(row[c]) if isinstance(row[c], float) else row[c]}"
                                 for c in cols)
    return out


#: a record's final diagnostics (hardness achieved at the end of training) taken into the frame
DIAGNOSTICS = ("ess", "floor_rate", "true_class_prior", "fn_weight_share")


def headline_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per modality, the metrics a verdict is about: the records' ``headline_metrics`` (the
    adapter's), else (records older than that field) the registered adapter's that the records
    measured, else the first metric of the modality's first ok record."""
    out: dict[str, list[str]] = {}
    for r in sorted(records, key=lambda r: str(r.get("run_id"))):
        mod = (r.get("spec") or {}).get("modality")
        for m in r.get("headline_metrics") or []:
            if m not in out.setdefault(mod, []):
                out[mod].append(m)
    measured: dict[str, set] = {}
    for r in records:
        measured.setdefault((r.get("spec") or {}).get("modality"), set()).update(
            m.get("metric") for m in r.get("metrics") or [])
    for mod in sorted(m for m in measured if m and not out.get(m)):
        try:
            from ..adapters import adapter_class
            declared = [m for m in adapter_class(mod).headline_metrics if m in measured[mod]]
        except Exception:  # noqa: BLE001 - a modality not installed here: fall back to the records
            declared = []
        if declared:
            out[mod] = declared
    for r in sorted(records, key=lambda r: str(r.get("run_id"))):
        mod = (r.get("spec") or {}).get("modality")
        if not out.get(mod) and r.get("status") == "ok" and r.get("metrics"):
            out[mod] = [r["metrics"][0].get("metric")]
    return out


def _prepare(df, records: Sequence[Mapping[str, Any]] | None = None):
    """Add 'trained' and the setting strings of a row: 'setting' (the non-grid settings that vary
    within its modality and data set), 'base_setting' (the same without what does nothing at
    beta = 0, tau+ = 0) and 'modality_setting' (what varies across the whole modality). With the
    records: 'git_dirty', 'headline' (the row's metric is a headline metric of its modality) and
    the final diagnostics as 'diag.NAME' (see :data:`DIAGNOSTICS`); without, those are unknown."""
    df = df.copy()
    by_id = {r.get("run_id"): r for r in records or ()}
    df["git_dirty"] = [by_id[i].get("git_dirty") if i in by_id else None for i in df["run_id"]]
    heads = headline_metrics(records) if records else {}
    df["headline"] = [(m in heads.get(mod, [])) if records else True for mod, m in zip(df["modality"], df["metric"])]
    for k in DIAGNOSTICS:
        vals = []
        for i in df["run_id"]:
            v = ((by_id.get(i) or {}).get("diagnostics") or {}).get(k)
            vals.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan)
        df[f"diag.{k}"] = vals
    df["trained"] = df["epochs"].fillna(0).astype(float) > 0
    cand = list(SETTING_COLUMNS) + sorted(c for c in df.columns if c.startswith("opt."))
    df["setting"] = _settings_of(df, ["modality", "dataset"], cand)
    df["base_setting"] = _settings_of(df, ["modality", "dataset"], cand, skip=INERT_AT_BASELINE)
    df["modality_setting"] = _settings_of(df, ["modality"], cand)
    df["split"] = df["split"].fillna("")
    return df


def load_frame(folder):
    """The prepared frame of a results folder (records, tidy rows, :func:`_prepare` with records)."""
    records = store.load_records(folder)
    return _prepare(store.to_frame(records), records)


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
