"""Formatting shared by tables, figures and the page: numbers, Markdown and LaTeX tables, slugs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


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
    esc = lambda s: s.replace("|", "\\|")
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



def _mean_text(mean: float, std: float, n: int) -> str:
    """mean, or mean ± std over n >= 2 seeds."""
    return f"{_num(mean)} ± {_num(std)}" if n >= 2 else _num(mean)


def _range(xs: Sequence[float]) -> str:
    xs = sorted(xs)
    med = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    if _num(xs[0]) == _num(xs[-1]):
        return _num(xs[0])
    return f"{_num(xs[0])} to {_num(xs[-1])} (median {_num(med)})"
