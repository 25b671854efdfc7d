"""The nested-CV RBF-SVC probe (hardneg.evaluation.svc)."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.evaluation.svc import DEFAULT_C_GRID, svc_nested_cv


def _blobs(n_per: int = 30, gap: float = 6.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (n_per, 5)), rng.normal(gap, 1, (n_per, 5))])
    y = np.array(["a"] * n_per + ["b"] * n_per)
    return X, y


def test_separable_classes_are_found_and_protocol_recorded():
    X, y = _blobs()
    res = svc_nested_cv(X, y, seed=3)
    assert res.mean == 1.0 and res.std == 0.0
    assert len(res.fold_accuracies) == 10 and len(res.chosen_C) == 10
    assert set(res.chosen_C) <= set(DEFAULT_C_GRID)
    assert (res.n_samples, res.n_features, res.n_classes) == (60, 5, 2)
    assert "outer stratified 10-fold" in res.protocol() and "5-fold" in res.protocol()


def test_random_labels_give_chance_and_seed_reproduces():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = rng.integers(0, 2, 120)
    a = svc_nested_cv(X, y, seed=0, outer_folds=5, inner_folds=3)
    b = svc_nested_cv(X, y, seed=0, outer_folds=5, inner_folds=3)
    assert a.fold_accuracies == b.fold_accuracies and a.chosen_C == b.chosen_C
    assert 0.3 < a.mean < 0.7
    # the std is the spread of the outer folds (population std)
    assert a.std == pytest.approx(float(np.std(a.fold_accuracies)))


def test_bad_inputs_name_the_problem():
    X, y = _blobs(12)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(HardnegError, match=r"1 embedding row\(s\) contain NaN"):
        svc_nested_cv(Xn, y)
    with pytest.raises(HardnegError, match=r"at least 2 classes"):
        svc_nested_cv(X, np.zeros(len(X)))
    with pytest.raises(HardnegError, match=r"class 'b' has 5 sample.*outer_folds=10"):
        svc_nested_cv(X[:17], y[:17])
    with pytest.raises(HardnegError, match=r"one label per row"):
        svc_nested_cv(X, y[:-1])
    with pytest.raises(HardnegError, match=r"2-d"):
        svc_nested_cv(X[:, 0], y)
