"""Figures: metric vs beta, beta x tau+ heatmaps, training, diagnostics and evaluation curves, and
the learning curves of every cell of a data set on one axis (headline metric vs samples seen)."""

from __future__ import annotations

import hashlib
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import atomic
from .cells import _curves, _eval_points, _is_eval_curve
from .fmt import _g, _slug


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return matplotlib, plt


def _save(fig, path: Path) -> None:
    with atomic.atomic_write(path, binary=True) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


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


def _options(setting: str) -> set[str]:
    return {p for p in setting.split(", ") if p}


def _references(summ, trivial: Mapping[tuple, tuple[float, str]], mod: str, ds: str, setting: str):
    """Untrained rows (whatever their setting string, as long as their adapter options agree with
    ``setting``) and trivial baselines of one modality and data set: [(metric, split, label, value)]."""
    u = summ[(summ["modality"] == mod) & (summ["dataset"] == ds) & ~summ["trained"].astype(bool)]
    out = []
    for _, r in u.iterrows():
        if _options(r["setting"]) <= _options(setting) and math.isfinite(float(r["mean"])):
            out.append((r["metric"], r["split"], f"{r['method']} (untrained)", float(r["mean"])))
    for (m, d, metric, split), (v, _) in trivial.items():
        if (m, d) == (mod, ds):
            out.append((metric, split, "trivial baseline", float(v)))
    return out


def _ess_figure(df, mod: str, ds: str, fdir: Path, plt) -> str | None:
    """Headline metric against the final ESS of the weights, one point per trained cell (mean over seeds)."""
    m = df[(df["modality"] == mod) & (df["dataset"] == ds) & df["trained"] & (df["status"] == "ok")
           & df["headline"].astype(bool)]
    if "diag.ess" not in m.columns or not m["diag.ess"].map(math.isfinite).any():
        return None
    metrics = sorted(set(zip(m["metric"], m["split"])))
    r, c = _grid_shape(len(metrics))
    fig, axes = plt.subplots(r, c, figsize=(4.2 * c, 3.4 * r), squeeze=False)
    for ax, (metric, split) in zip(axes.flat, metrics):
        cell = m[(m["metric"] == metric) & (m["split"] == split)].groupby(
            ["setting", "beta", "tau_plus"], sort=True).agg(ess=("diag.ess", "mean"), value=("value", "mean"))
        for tau, pts in cell.groupby(level="tau_plus", sort=True):
            ax.scatter(pts["ess"], pts["value"], label=f"τ+={_g(tau)}", s=18)
            for (_, beta, _), row in pts.iterrows():
                ax.annotate(f"β={_g(beta)}", (row["ess"], row["value"]), fontsize=6)
        ax.set_xlabel("final ESS of the negative weights (1 = uniform)")
        ax.set_ylabel(f"{metric} ({split})")
        ax.legend(fontsize=7)
    name = f"ess_{_slug(mod, ds)}.png"
    _finish(fig, axes, len(metrics), f"{mod} / {ds}: downstream metric vs achieved hardness (mean over seeds)",
            fdir / name)
    return name


def learning_series(records: Sequence[Mapping[str, Any]], setting_of: Mapping[str, str], mod: str, ds: str,
                    metric: str) -> dict[str, list[tuple[int, float, int]]]:
    """The learning curve of every trained cell of one data set on one metric, for comparing cells:
    {label: [(training samples seen after the epoch, mean of ``eval_<metric>`` over seeds, seeds)]},
    the last point being the record's last-epoch ``metric``.
    Samples are the cumulative sum of the curves' per-epoch ``samples`` (the epoch number where a
    record has none); a label is the cell's setting string and its beta and tau+."""
    cells: dict[str, dict[int, list[float]]] = {}
    for r in records:
        sp = r.get("spec") or {}
        if r.get("status") != "ok" or sp.get("modality") != mod or sp.get("dataset") != ds:
            continue
        seen, at = 0, {}
        for e in _curves(r):
            n = e.get("samples")
            seen += int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else 1
            at[int(e.get("epoch", 0))] = seen
        pts = {at.get(ep, seen): v for ep, v in _eval_points(r, metric).items()}
        if not pts:
            continue
        loss = sp.get("loss") or {}
        setting = setting_of.get(r.get("run_id"), "")
        label = ", ".join(x for x in (setting, f"β={_g(loss.get('beta', 0))}, τ+={_g(loss.get('tau_plus', 0))}") if x)
        for seen, v in pts.items():
            cells.setdefault(label, {}).setdefault(seen, []).append(v)
    return {label: [(seen, sum(v) / len(v), len(v)) for seen, v in sorted(pts.items())]
            for label, pts in sorted(cells.items())}


def _learning_figure(df, summ, records, mod: str, ds: str, fdir: Path, plt) -> str | None:
    """Headline metrics (and, while at most four panels, the other metrics) evaluated during
    training against samples seen, every cell of the data set
    on one panel, untrained rows as horizontal lines (the trivial baselines, far below, are in the
    beta figures and tables); None below two cells."""
    setting_of = dict(zip(df["run_id"], df["setting"]))
    here = df[(df["modality"] == mod) & (df["dataset"] == ds)]
    heads = sorted(set(here[here["headline"].astype(bool)]["metric"]))
    monitors = sorted({k.removeprefix("eval_") for r in records if (r.get("spec") or {}).get("dataset") == ds
                       and (r.get("spec") or {}).get("modality") == mod for e in _curves(r) for k in e
                       if _is_eval_curve(k)} - set(heads))
    if len(heads) + len(monitors) <= 4:          # e.g. a kNN monitor beside the headline linear probe
        heads += monitors
    panels = [(m, s) for m in heads if len(s := learning_series(records, setting_of, mod, ds, m)) >= 2]
    if not panels:
        return None
    r, c = _grid_shape(len(panels))
    lines = max(len(s) for _, s in panels) + 2
    fig, axes = plt.subplots(r, c, figsize=(7.5 * c, (4.0 + 0.32 * lines) * r), squeeze=False)
    for ax, (metric, series) in zip(axes.flat, panels):
        for label, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=textwrap.fill(label, 60))
        u = summ[(summ["modality"] == mod) & (summ["dataset"] == ds) & ~summ["trained"].astype(bool)
                 & (summ["metric"] == metric)]
        refs = [(f"{row['method']} (untrained{', ' + row['setting'] if row['setting'] else ''})", float(row["mean"]))
                for _, row in u.iterrows() if math.isfinite(float(row["mean"]))]
        for i, (label, val) in enumerate(refs):
            ax.axhline(val, color="grey", ls=("--", ":", "-.")[i % 3], lw=1, label=textwrap.fill(label, 60))
        ax.set_xlabel("training samples seen")
        ax.set_ylabel(metric)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    name = f"learning_{_slug(mod, ds)}.png"
    _finish(fig, axes, len(panels), f"{mod} / {ds}: learning curves of every cell (mean over seeds)", fdir / name)
    return name


def plot_all(df, summ, records: Sequence[Mapping[str, Any]], out: Path,
             trivial: Mapping[tuple, tuple[float, str]] | None = None) -> list[dict[str, str]]:
    """All figures; returns [{kind, modality, dataset, setting, file}] in a fixed order. Every β plot
    draws the untrained rows of its data set and the trivial baselines as horizontal lines."""
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
            refs = _references(summ, trivial or {}, mod, ds, setting)
            metrics = sorted(set(zip(tr["metric"], tr["split"])))
            title = f"{mod} / {ds}" + (f"\n{textwrap.fill(setting, 70)}" if setting else "")
            if metrics and tr["beta"].nunique() >= 1:
                r, c = _grid_shape(len(metrics))
                fig, axes = plt.subplots(r, c, figsize=(4.2 * c, 3.4 * r), squeeze=False)
                for ax, (metric, split) in zip(axes.flat, metrics):
                    m = tr[(tr["metric"] == metric) & (tr["split"] == split)]
                    for tau, line in m.groupby("tau_plus", sort=True):
                        line = line.groupby("beta", sort=True).agg(mean=("mean", "mean"), std=("std", "mean"))
                        ax.errorbar(line.index.astype(float), line["mean"], yerr=line["std"].fillna(0.0),
                                    marker="o", capsize=3, label=f"τ+={_g(tau)}")
                    for i, (met, spl, label, val) in enumerate(x for x in refs if x[:2] == (metric, split)):
                        ax.axhline(val, color="grey" if "untrained" in label else "black",
                                   ls=("--", ":", "-.")[i % 3], lw=1, label=label)
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
                        if ((k == "loss" or k.startswith("diag_") or _is_eval_curve(k))
                                and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
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
        for mod, ds in sorted(set(zip(df["modality"].dropna(), df["dataset"].dropna()))):
            name = _ess_figure(df, mod, ds, fdir, plt)
            if name:
                made.append({"kind": "ess", "modality": mod, "dataset": ds, "setting": "", "file": name})
            name = _learning_figure(df, summ, records, mod, ds, fdir, plt)
            if name:
                made.append({"kind": "learning", "modality": mod, "dataset": ds, "setting": "", "file": name})
    return made

