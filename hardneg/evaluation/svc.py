"""Nested cross-validated RBF-SVC probe (the InfoGraph / graph-kernel protocol).

Protocol, for embeddings ``X`` (n, d) of a *whole* data set and labels ``y`` (n,):

* outer loop: stratified K-fold (default 10), shuffled with a seeded ``random_state``;
* inside each outer training part: ``GridSearchCV`` over ``C`` in {1e-3, 1e-2, ..., 1e3}
  for ``SVC(kernel='rbf', gamma='scale')`` with stratified 5-fold inner CV, scored by
  accuracy; the best ``C`` is refitted on the whole outer training part;
* the refitted SVC is scored on the outer test fold.

Result: ``mean`` and ``std`` (population std, ``ddof=0``) of the K outer-fold accuracies
(fractions in [0, 1]), plus each fold's accuracy and chosen ``C``. No feature scaling is
applied, as in the published protocol (Sun et al. 2020; Robinson et al. 2021 code).

Generic: any ``(X, y)`` works, so other modalities can reuse it.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import HardnegError

DEFAULT_C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
PROTOCOL = ("RBF SVC (gamma='scale', no scaling) on whole-data-set embeddings; outer stratified "
            "{outer}-fold CV (shuffled, seeded); inside each fold C in {{1e-3..1e3}} chosen by "
            "stratified {inner}-fold GridSearchCV; mean and std of outer-fold accuracy")


@dataclass
class SVCResult:
    """Outcome of :func:`svc_nested_cv`: accuracies are fractions in [0, 1]."""

    mean: float
    std: float
    fold_accuracies: list[float] = field(default_factory=list)
    chosen_C: list[float] = field(default_factory=list)
    outer_folds: int = 10
    inner_folds: int = 5
    seed: int = 0
    n_samples: int = 0
    n_features: int = 0
    n_classes: int = 0

    def protocol(self) -> str:
        """A one-line human statement of the protocol that produced this result."""
        return PROTOCOL.format(outer=self.outer_folds, inner=self.inner_folds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def svc_nested_cv(X: Any, y: Any, *, seed: int = 0, outer_folds: int = 10, inner_folds: int = 5,
                  c_grid: Sequence[float] = DEFAULT_C_GRID, n_jobs: int | None = None) -> SVCResult:
    """Nested-CV accuracy of an RBF SVC on ``(X, y)``; see the module docstring.

    ``seed`` fixes the outer and inner fold assignments (the inner folds get ``seed + 1 + k``
    for outer fold ``k``), so the result is reproducible. Raises :class:`HardnegError` for
    inputs that cannot support the protocol: non-finite features, mismatched lengths, fewer
    than two classes, or a class with fewer members than ``outer_folds``.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    X = np.asarray(X, dtype=np.float64)
    y_raw = np.asarray(y)
    if X.ndim != 2:
        raise HardnegError(f"SVC probe: X must be 2-d (samples x features); got shape {X.shape}")
    if y_raw.ndim != 1 or len(y_raw) != len(X):
        raise HardnegError(f"SVC probe: y must be 1-d with one label per row of X; got y shape "
                           f"{y_raw.shape} for X shape {X.shape}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise HardnegError(f"SVC probe: {bad} embedding row(s) contain NaN or inf; allowed: finite values "
                           "(the encoder diverged?)")
    if outer_folds < 2 or inner_folds < 2:
        raise HardnegError(f"SVC probe: outer_folds={outer_folds}, inner_folds={inner_folds}; allowed: >= 2")
    classes, y_enc = np.unique(y_raw, return_inverse=True)
    if len(classes) < 2:
        raise HardnegError(f"SVC probe: need at least 2 classes; got {len(classes)} ({classes.tolist()})")
    counts = np.bincount(y_enc)
    if counts.min() < outer_folds:
        raise HardnegError(f"SVC probe: class {classes[counts.argmin()].item()!r} has {counts.min()} sample(s); "
                           f"allowed: at least outer_folds={outer_folds} per class")

    outer = StratifiedKFold(n_splits=outer_folds, shuffle=True, random_state=seed)
    accs: list[float] = []
    chosen: list[float] = []
    for k, (tr, te) in enumerate(outer.split(X, y_enc)):
        inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed + 1 + k)
        search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(c_grid)}, cv=inner,
                              scoring="accuracy", n_jobs=n_jobs, refit=True)
        with warnings.catch_warnings():
            # an inner training part may lack a rare class; sklearn warns, the protocol goes on
            warnings.simplefilter("ignore", category=UserWarning)
            search.fit(X[tr], y_enc[tr])
        accs.append(float((search.predict(X[te]) == y_enc[te]).mean()))
        chosen.append(float(search.best_params_["C"]))
    a = np.asarray(accs)
    return SVCResult(mean=float(a.mean()), std=float(a.std()), fold_accuracies=accs, chosen_C=chosen,
                     outer_folds=outer_folds, inner_folds=inner_folds, seed=seed, n_samples=len(X),
                     n_features=X.shape[1], n_classes=len(classes))


def majority_baseline(y: Any, *, seed: int = 0, outer_folds: int = 10) -> float:
    """Accuracy of predicting each outer training part's majority class on its test fold.

    The same seeded outer folds as :func:`svc_nested_cv` (fraction in [0, 1]): the number a
    representation must beat before its SVC accuracy says anything.
    """
    from sklearn.model_selection import StratifiedKFold

    _, y_enc = np.unique(np.asarray(y), return_inverse=True)
    outer = StratifiedKFold(n_splits=outer_folds, shuffle=True, random_state=seed)
    accs = [float((y_enc[te] == np.bincount(y_enc[tr]).argmax()).mean())
            for tr, te in outer.split(np.zeros((len(y_enc), 1)), y_enc)]
    return float(np.mean(accs))
