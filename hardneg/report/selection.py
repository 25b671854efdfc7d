"""Numbers chosen on the test data: the best-epoch metrics that ``train.eval_every`` records
(selection 'selected-on-test') set beside the last epoch they are chosen against, per data set
in sentences and per cell in a table. The verdict itself stays on the last epoch; these say how
far a number selected the way published InfoGraph-style figures are would move it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .cells import _eval_points
from .fmt import _g, _md_table, _num, _range

_CELL = ["setting", "method", "beta", "tau_plus"]
TABLE_HEADER = ["data set", "metric", "setting", "method", "β", "τ+", "n", "last epoch", "best epoch",
                "best − last", "chosen epoch"]
TABLE_ALIGN = ["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "r"]


def _best_epoch(r: Mapping[str, Any], base: str) -> tuple[int, int] | None:
    """(best epoch, epochs), 1-based, of a record whose curves carry ``eval_<base>``; ties go to the
    earliest epoch, and the last epoch's evaluation is the last-epoch metric itself."""
    epochs = int(((r.get("spec") or {}).get("train") or {}).get("epochs") or 0)
    pts = [(v, e) for e, v in _eval_points(r, base).items()]
    if not pts:
        return None
    best = max(pts, key=lambda p: (p[0], -p[1]))
    return best[1] + 1, epochs


def _pairs(ok, g, mod: str, ds: str, base: str) -> list[tuple[str, float, float]]:
    """(run id, best value, last value) of the runs of one cell's rows ``g`` that hold both."""
    last = ok[(ok["modality"] == mod) & (ok["dataset"] == ds) & (ok["metric"] == base)]
    out = []
    for k, cell in g.groupby(_CELL, sort=True, dropna=False):
        other = last
        for c, v in zip(_CELL, k):
            other = other[other[c] == v]
        b = cell.set_index("run_id")["value"].astype(float)
        a = other.set_index("run_id")["value"].astype(float)
        out += [(i, float(b[i]), float(a[i])) for i in sorted(set(b.index) & set(a.index))
                if math.isfinite(b[i] - a[i])]
    return out


def _cells(df, records: Sequence[Mapping[str, Any]]) -> list[tuple[tuple, list, list[tuple[int, int]]]]:
    """Per best-epoch metric and cell, once: ((modality, data set, metric, setting, beta, tau+,
    method), [(run id, best, last)], [(chosen epoch, epochs)]), the baseline (beta 0, tau+ 0) first."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()]
    sel = ok[ok["selection"].astype(str).str.contains("test")]
    by_id = {r.get("run_id"): r for r in records if r.get("status") == "ok"}
    out = []
    order = ["setting", "beta", "tau_plus", "method"]
    for key, g in sel.groupby(["modality", "dataset", "metric"] + order, sort=True, dropna=False):
        mod, ds, metric = key[:3]
        base = metric.removesuffix("_best")
        pairs = _pairs(ok, g, mod, ds, base)
        if pairs:
            be = [x for x in (_best_epoch(by_id[i], base) for i, _, _ in pairs if i in by_id) if x]
            out.append((key, pairs, be))
    return out


def _sentences(cells) -> list[str]:
    grouped: dict[tuple, tuple[list, list]] = {}
    for key, pairs, be in cells:
        acc = grouped.setdefault(key[:3], ([], []))
        acc[0].extend(pairs)
        acc[1].extend(be)
    L = []
    for (mod, ds, metric), (pairs, be) in sorted(grouped.items()):
        base = metric.removesuffix("_best")
        be = sorted(be)
        s = (f"{mod} / {ds}: `{metric}` takes the epoch with the best test score; over {len(pairs)} run(s) it is "
             f"above the last-epoch `{base}` by {_range([b - a for _, b, a in pairs])} points")
        if be:
            s += (f"; the chosen epoch is {_range([float(e) for e, _ in be]).replace('.00', '')} "
                  f"of {max(t for _, t in be)} (earliest {be[0][0]})")
        L.append(s + ". A number chosen on the test data is optimistic: compare it with published numbers "
                 "selected the same way, never read it as an estimate of generalisation.")
    return L


def _rows(cells) -> list[list[str]]:
    rows = []
    for (mod, ds, metric, setting, beta, tau, method), pairs, be in cells:
        best = [b for _, b, _ in pairs]
        last = [a for _, _, a in pairs]
        rows.append([f"{mod} / {ds}", f"`{metric}`", setting if isinstance(setting, str) else "", str(method),
                     _g(beta), _g(tau), str(len(pairs)), _num(sum(last) / len(last)),
                     _num(sum(best) / len(best)), _range([b - a for _, b, a in pairs]),
                     _range([float(e) for e, _ in be]).replace(".00", "") if be else ""])
    return rows


def body(df, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per data set a sentence, then the per-cell table (empty without best-epoch metrics)."""
    cells = _cells(df, records)
    if not cells:
        return []
    return ([f"- {s}" for s in _sentences(cells)] + ["",
            "Per cell (means over the runs that hold both numbers; best − last per run; the chosen epoch is "
            "1-based):", "", _md_table(TABLE_HEADER, _rows(cells), TABLE_ALIGN, drop_empty=("setting",))])


def section(df, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's 'Numbers selected on the test data' block (empty without best-epoch metrics)."""
    b = body(df, records)
    return ["### Numbers selected on the test data", ""] + b if b else []
