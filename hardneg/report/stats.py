"""Statistics a verdict needs: paired and Welch t-tests, the 95% CI of a gain, the minimum
detectable effect, and Holm / Benjamini-Hochberg adjustment across a report's comparisons.

All tests are two-sided at ``ALPHA = 0.05``; intervals are t-based at 95%.

Paired (same seeds, shared randomness): ``d_s = variant_s - baseline_s`` over the n seeds
both have; ``se = sd(d) / sqrt(n)`` with the sample sd (ddof = 1), ``df = n - 1``.

Welch (unpaired): ``se = sqrt(s_v^2 / n_v + s_b^2 / n_b)``, df by Welch-Satterthwaite
``se^4 / ((s_v^2/n_v)^2 / (n_v-1) + (s_b^2/n_b)^2 / (n_b-1))``.

Across data sets (:func:`mean_of_gains`): the unweighted mean of K per-data-set gains,
``se = sqrt(sum se_k^2) / K``, df by Welch-Satterthwaite over the K parts.

Either way ``t = gain / se``, ``p = 2 * (1 - F_t(|t|; df))``, the CI is
``gain +- t_{0.975, df} * se`` and the minimum detectable effect at 80% power is
``MDE = (t_{1-alpha/2, df} + t_{power, df}) * se``: the normal-approximation power formula
with t critical values in place of z (the exact noncentral-t answer is slightly larger for
very small df). It is the true gain a test of this n and spread would find four times in
five, so a null result rules out effects larger than about the MDE, not effects in general.

No test is invented: a comparison with fewer than two values on a side (paired: pairs), or
with zero spread (every difference identical up to rounding; both sides constant), gets
``p = NaN`` and a ``reason``. NaN values are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


from ..results import ResultsError

ALPHA = 0.05
POWER = 0.80
LEVEL = 0.95
ADJUSTMENTS = ("holm", "bh")


@dataclass(frozen=True)
class Comparison:
    """One variant against its baseline. ``test`` is 'paired', 'welch', 'mean' (over data sets,
    :func:`mean_of_gains`) or '' (no test, see ``reason``)."""

    test: str
    n: int                  # pairs (paired) or variant seeds (welch)
    n_baseline: int         # pairs (paired) or baseline seeds (welch)
    gain: float
    sd: float               # sd of the differences (paired), of the variant's values (welch), of the gains (mean)
    se: float
    df: float
    ci_low: float
    ci_high: float
    p: float
    mde: float
    reason: str = ""
    nan_left_out: int = 0


def _finite(xs: Sequence[float]) -> tuple[list[float], int]:
    vals = [float(x) for x in xs]
    ok = [x for x in vals if math.isfinite(x)]
    return ok, len(vals) - len(ok)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _sd(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof = 1); NaN below two values."""
    if len(xs) < 2:
        return math.nan
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _is_zero_spread(sd: float, scale: float) -> bool:
    # identical values up to float rounding leave t undefined, not huge
    return sd <= 1e-9 * max(1.0, abs(scale))


def t_interval(mean: float, se: float, df: float, level: float = LEVEL) -> tuple[float, float]:
    """``mean +- t_{(1+level)/2, df} * se``."""
    from scipy import stats as _st  # imported when used: it costs seconds

    h = float(_st.t.ppf(0.5 + level / 2, df)) * se
    return mean - h, mean + h


def mde(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect, two-sided: ``(t_{1-alpha/2, df} + t_{power, df}) * se``."""
    from scipy import stats as _st

    return (float(_st.t.ppf(1 - alpha / 2, df)) + float(_st.t.ppf(power, df))) * se


def _tested(test: str, n: int, nb: int, gain: float, sd: float, se: float, df: float, nan: int) -> Comparison:
    from scipy import stats as _st

    t = gain / se
    p = float(2 * _st.t.sf(abs(t), df))
    lo, hi = t_interval(gain, se, df)
    return Comparison(test, n, nb, gain, sd, se, df, lo, hi, p, mde(se, df), "", nan)


def _untested(n: int, nb: int, gain: float, sd: float, reason: str, nan: int) -> Comparison:
    nanv = math.nan
    return Comparison("", n, nb, gain, sd, nanv, nanv, nanv, nanv, nanv, nanv, reason, nan)


def paired(variant: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Paired t-test of ``variant - baseline`` (equal-length sequences, one entry per seed)."""
    if len(variant) != len(baseline):
        raise ResultsError(f"paired needs one value per seed on both sides, got {len(variant)} and {len(baseline)}")
    pairs = [(float(v), float(b)) for v, b in zip(variant, baseline)]
    d = [v - b for v, b in pairs if math.isfinite(v) and math.isfinite(b)]
    nan, n = len(pairs) - len(d), len(d)
    gain, sd = _mean(d), _sd(d)
    if n == 0:
        return _untested(0, 0, gain, sd, "no finite values (NaN)", nan)
    if n < 2:
        return _untested(n, n, gain, sd, "n = 1 pair: no spread to test against", nan)
    if _is_zero_spread(sd, gain):
        return _untested(n, n, gain, 0.0, "every seed gives the same difference (sd 0): t undefined", nan)
    return _tested("paired", n, n, gain, sd, sd / math.sqrt(n), n - 1, nan)


def welch(variant: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Welch's unpaired t-test of mean(variant) - mean(baseline)."""
    v, nv_nan = _finite(variant)
    b, nb_nan = _finite(baseline)
    nan, nv, nb = nv_nan + nb_nan, len(v), len(b)
    gain = _mean(v) - _mean(b) if v and b else math.nan
    sv, sb = _sd(v), _sd(b)
    if nv == 0 or nb == 0:
        return _untested(nv, nb, gain, sv, "no finite values (NaN) on one side", nan)
    if nv < 2 or nb < 2:
        return _untested(nv, nb, gain, sv, f"n = {min(nv, nb)} on one side: no spread to test against", nan)
    if _is_zero_spread(sv, _mean(v)) and _is_zero_spread(sb, _mean(b)):
        return _untested(nv, nb, gain, 0.0, "both sides constant across seeds (sd 0): t undefined", nan)
    return welch_summary(_mean(v), sv, nv, _mean(b), sb, nb, nan)


def welch_summary(mean_v: float, sd_v: float, n_v: int, mean_b: float, sd_b: float, n_b: int,
                  nan: int = 0) -> Comparison:
    """Welch's t-test from summary statistics (n >= 2 and a positive spread on some side), for
    numbers known only as mean ± sd (n), such as another code's published repeats."""
    a, c = sd_v * sd_v / n_v, sd_b * sd_b / n_b
    se = math.sqrt(a + c)
    df = (a + c) ** 2 / ((a * a / (n_v - 1) if a else 0.0) + (c * c / (n_b - 1) if c else 0.0))
    return _tested("welch", n_v, n_b, mean_v - mean_b, sd_v, se, df, nan)


def mean_of_gains(gains: Sequence[float], ses: Sequence[float], dfs: Sequence[float]) -> Comparison:
    """The unweighted mean of K independent gains (one per data set), each with its standard error
    and degrees of freedom: ``D = mean(d_k)``, ``se = sqrt(sum se_k^2) / K``, df by
    Welch-Satterthwaite ``(sum se_k^2)^2 / sum(se_k^4 / df_k)``, then t, p, CI and MDE as above.
    It asks whether the variant helps on average over these K data sets (each weighted equally,
    so the least noisy data set does not decide alone); ``n`` is K."""
    k = len(gains)
    if not (k == len(ses) == len(dfs)):
        raise ResultsError(f"mean_of_gains needs one gain, se and df per data set, got {k}, {len(ses)}, {len(dfs)}")
    rows = [(float(d), float(s), float(f)) for d, s, f in zip(gains, ses, dfs)]
    if any(not (math.isfinite(d) and math.isfinite(s) and s > 0 and math.isfinite(f) and f > 0) for d, s, f in rows):
        raise ResultsError(f"mean_of_gains needs finite gains and positive finite se and df, got {rows}")
    if k < 2:
        return _untested(k, k, rows[0][0] if rows else math.nan, math.nan, "fewer than two data sets", 0)
    var = sum(s * s for _, s, _ in rows)
    se = math.sqrt(var) / k
    df = var * var / sum(s ** 4 / f for _, s, f in rows)
    return _tested("mean", k, k, _mean([d for d, _, _ in rows]), _sd([d for d, _, _ in rows]), se, df, 0)


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: sorted ascending, ``q_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))``.

    NaN entries (no test) are kept as NaN and not counted in m.
    """
    idx = [i for i, x in enumerate(p) if math.isfinite(x)]
    m = len(idx)
    out = [math.nan] * len(p)
    run = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: (p[i], i))):
        run = max(run, min(1.0, (m - rank) * p[i]))
        out[i] = run
    return out


def bh(p: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg: sorted ascending, ``q_(i) = min_{j>=i} min(1, m p_(j) / j)``.

    NaN entries (no test) are kept as NaN and not counted in m.
    """
    idx = [i for i, x in enumerate(p) if math.isfinite(x)]
    m = len(idx)
    out = [math.nan] * len(p)
    run = 1.0
    order = sorted(idx, key=lambda i: (p[i], i))
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        run = min(run, m * p[i] / (rank + 1))
        out[i] = run
    return out


def adjust(p: Sequence[float], method: str = "holm") -> list[float]:
    """``holm`` (family-wise error, the default) or ``bh`` (false discovery rate)."""
    if method not in ADJUSTMENTS:
        raise ResultsError(f"adjustment {method!r} is not one of {', '.join(ADJUSTMENTS)}")
    return holm(p) if method == "holm" else bh(p)


ADJUSTMENT_NAMES = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}
