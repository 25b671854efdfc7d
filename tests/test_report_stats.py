"""hardneg.report.stats against hand-computed cases (and scipy where it has the same test)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from hardneg.report import stats
from hardneg.results import ResultsError

P = [0.01, 0.04, 0.03, 0.005]


def test_holm_on_a_known_p_vector():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max -> 0.06 last
    assert stats.holm(P) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_bh_on_a_known_p_vector():
    # sorted times m/rank: 0.02, 0.02, 0.04, 0.04; running min from the top
    assert stats.bh(P) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.bh(P) == pytest.approx(list(st.false_discovery_control(P, method="bh")))


def test_adjustment_keeps_untested_entries_out_of_the_family():
    q = stats.holm([0.01, math.nan, 0.04])                 # m = 2, not 3
    assert q[0] == pytest.approx(0.02) and math.isnan(q[1]) and q[2] == pytest.approx(0.04)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]            # capped at 1
    with pytest.raises(ResultsError, match="'bonferroni' is not one of holm, bh"):
        stats.adjust(P, "bonferroni")


def test_paired_ci_and_p_on_a_known_sample():
    # d = 1..5: mean 3, sd sqrt(2.5), se sqrt(0.5); t_{0.975,4} = 2.776445 (tables: 2.776)
    base = [10.0, 10.0, 10.0, 10.0, 10.0]
    c = stats.paired([11.0, 12.0, 13.0, 14.0, 15.0], base)
    assert c.test == "paired" and c.n == 5 and c.df == 4
    assert c.gain == pytest.approx(3.0) and c.sd == pytest.approx(math.sqrt(2.5))
    half = 2.776445 * math.sqrt(0.5)
    assert (c.ci_low, c.ci_high) == pytest.approx((3 - half, 3 + half), rel=1e-6)
    # t = 3 / sqrt(0.5) = 4.2426, df 4
    assert c.p == pytest.approx(st.ttest_rel([11, 12, 13, 14, 15], base).pvalue)
    assert c.p == pytest.approx(0.01324, abs=1e-4)


def test_mde_on_a_known_n_and_sd():
    # paired, n = 10, sd 2: se = 2 / sqrt(10); (t_{0.975,9} + t_{0.80,9}) = 2.262157 + 0.883423 (tables 2.262, 0.883)
    assert stats.mde(2 / math.sqrt(10), 9) == pytest.approx((2.262157 + 0.883423) * 2 / math.sqrt(10), rel=1e-5)
    assert stats.mde(2 / math.sqrt(10), 9) == pytest.approx(1.9894, abs=1e-3)
    d = [1.0, -1.0] * 5                                     # sd of the differences: sqrt(10/9)
    c = stats.paired([5 + x for x in d], [5.0] * 10)
    assert c.mde == pytest.approx(stats.mde(math.sqrt(10 / 9) / math.sqrt(10), 9))


def test_welch_matches_its_formula_and_scipy():
    v, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    c = stats.welch(v, b)
    a, e = st.tvar(v) / 4, st.tvar(b) / 3                  # 1.6667/4, 4/3
    df = (a + e) ** 2 / (a * a / 3 + e * e / 2)
    assert c.test == "welch" and c.df == pytest.approx(df) and c.gain == pytest.approx(2.5 - 4.0)
    assert c.se == pytest.approx(math.sqrt(a + e))
    assert c.p == pytest.approx(st.ttest_ind(v, b, equal_var=False).pvalue)


def test_n_1_constant_and_nan_get_no_test_and_a_reason():
    one = stats.paired([3.0], [2.0])
    assert one.test == "" and math.isnan(one.p) and "n = 1" in one.reason and one.gain == 1.0
    flat = stats.paired([2.5, 3.5, 4.5], [2.0, 3.0, 4.0])   # every seed +0.5
    assert flat.test == "" and flat.sd == 0.0 and "sd 0" in flat.reason and flat.gain == pytest.approx(0.5)
    const = stats.welch([7.0, 7.0], [7.0, 7.0])
    assert const.test == "" and "constant" in const.reason
    nan = stats.paired([math.nan, math.nan], [1.0, 2.0])
    assert nan.test == "" and "NaN" in nan.reason and nan.nan_left_out == 2
    part = stats.paired([1.0, 2.0, math.nan, 4.0], [0.0, 0.5, 1.0, 1.0])
    assert part.n == 3 and part.nan_left_out == 1 and part.test == "paired"
    with pytest.raises(ResultsError, match="one value per seed"):
        stats.paired([1.0], [1.0, 2.0])
