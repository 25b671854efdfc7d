"""The SentEval evaluation protocols (Conneau & Kiela, 2018): classifiers, cross-validation
and scores of a frozen ``encode(list[str]) -> np.ndarray`` on each task, and the trivial
baselines under the same protocols.

Protocols (all seeded; ``folds`` = 10 as in the quick-thought and hard-negative papers,
where SentEval's own default is 5):

* **MR, CR, SUBJ, MPQA** (binary): nested stratified k-fold. Outer ``folds`` splits give
  the reported test accuracy (mean over folds, std across folds); inside each outer
  training part, ``inner_folds`` stratified splits pick the L2 strength ``C`` from
  ``C_GRID`` by mean inner accuracy; the model refitted on the whole outer training part
  with that ``C`` is scored on the outer test part.
* **TREC** (6 coarse classes): stratified ``folds``-fold CV on the 5,452 training questions
  picks ``C``; refit on all of them; accuracy on the 500 test questions.
* **MRPC**: pair features ``[|u - v|, u * v]``; stratified ``folds``-fold CV on the 4,076
  training pairs picks ``C``; refit; test accuracy and F1 (positive class = paraphrase)
  on the 1,725 test pairs.
* **SST2**: ``C`` picked on the dev set (model fitted on train), refit on train, test accuracy.
* **STSB**: no training; Spearman correlation between the cosine similarity of the two
  sentence vectors and the gold score on the 1,379 test pairs (the figure
  sentence-transformers reports, 0.82 for all-MiniLM-L6-v2).

Classifier: scikit-learn ``LogisticRegression(solver='lbfgs', C=c, max_iter=MAX_ITER)``
(multinomial for TREC), ``C`` in ``C_GRID = {2^-2, 2^-1, 1, 2, 4, 8}`` (SentEval's grid
for its scikit-learn path). Unlike SentEval, features are standardised (mean and std of
the training part of each split) before the classifier, so the same ``C`` grid means the
same thing for unit-norm MiniLM vectors and unbounded GRU states. Within one inner split
the ``C`` path is fitted in increasing order with warm starts (same optimum, faster).

``subsample`` caps the examples per split for fast tests (never for reported figures;
results then say so in ``protocol``).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...errors import DataError, HardnegError
from .encoding import _encode_all, _sentences_of, _vecs
from .tasks import _BINARY_FILES, TASKS, _check_task_name, _subsample, check_files, load_task

C_GRID: tuple[float, ...] = tuple(2.0 ** t for t in range(-2, 4))
MAX_ITER = 200


@dataclass
class TaskResult:
    """Scores of one task: ``metrics`` e.g. {'acc': 77.1} (percent) or {'spearman': 0.82}."""

    task: str
    metrics: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    protocol: str = ""
    split: str = "test"
    n_train: int = 0
    n_test: int = 0
    chosen_c: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0


# ---- classifiers --------------------------------------------------------------------
def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu = train.mean(0)
    sd = train.std(0)
    sd[sd < 1e-8] = 1.0  # constant features (e.g. an all-zero vector) stay zero
    return [(a - mu) / sd for a in (train, *others)]


def _lr(c: float):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, warm_start=True)


def _fit(clf, x, y):
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        # the warm-started path is stopped at MAX_ITER on purpose; the last iterate is used
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _cv_pick_c(x: np.ndarray, y: np.ndarray, folds: int, seed: int, c_grid: Sequence[float]) -> float:
    """C with the best mean accuracy over stratified ``folds``-fold CV of (x, y)."""
    from sklearn.model_selection import StratifiedKFold
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    acc = np.zeros(len(c_grid))
    for tr, va in skf.split(x, y):
        xtr, xva = _standardise(x[tr], x[va])
        clf = None
        for k, c in enumerate(sorted(c_grid)):
            if clf is None:
                clf = _lr(c)
            else:
                clf.set_params(C=c)  # warm start from the previous C's solution
            _fit(clf, xtr, y[tr])
            acc[k] += (clf.predict(xva) == y[va]).mean()
    return float(sorted(c_grid)[int(np.argmax(acc))])


def _fit_predict(x: np.ndarray, y: np.ndarray, xt: np.ndarray, c: float) -> np.ndarray:
    xs, xts = _standardise(x, xt)
    return _fit(_lr(c), xs, y).predict(xts)


def nested_cv_accuracy(x: np.ndarray, y: np.ndarray, *, folds: int = 10, inner_folds: int = 10,
                       seed: int = 0, c_grid: Sequence[float] = C_GRID) -> tuple[float, float, list[float]]:
    """SentEval's InnerKFold protocol: (mean outer accuracy %, std %, chosen C per fold).

    acc = mean_k  accuracy(LR_{C*_k} fitted on outer-train_k, outer-test_k),
    C*_k = argmax_C mean inner-CV accuracy on outer-train_k.
    """
    from sklearn.model_selection import StratifiedKFold
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accs, cs = [], []
    for tr, te in outer.split(x, y):
        c = _cv_pick_c(x[tr], y[tr], inner_folds, seed, c_grid)
        pred = _fit_predict(x[tr], y[tr], x[te], c)
        accs.append(100.0 * (pred == y[te]).mean())
        cs.append(c)
    return float(np.mean(accs)), float(np.std(accs)), cs


def evaluate(encode: Callable[[list[str]], np.ndarray], data_root: str | os.PathLike,
             tasks: Sequence[str] = TASKS, *, seed: int = 0, folds: int = 10, inner_folds: int = 10,
             c_grid: Sequence[float] = C_GRID, subsample: int | None = None,
             cache_file: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = None) -> list[TaskResult]:
    """Run the SentEval protocols of ``tasks`` on a frozen ``encode``; see the module docstring.

    ``subsample``: at most this many examples per split (tests only). ``cache_file``: an
    ``.npz`` that stores the encodings keyed by the sentence set, reused when it matches.
    Missing files of any requested task raise DataError naming all of them before encoding.
    """
    tasks = list(tasks)
    for t in tasks:
        _check_task_name(t)
    if folds < 2 or inner_folds < 2:
        raise HardnegError(f"folds={folds}, inner_folds={inner_folds}; allowed: integers >= 2")
    missing = check_files(data_root, tasks)
    if missing:
        raise DataError("SentEval data missing: " + ", ".join(map(str, missing))
                        + "; expected SentEval's data/downstream layout under <data_root>/senteval/downstream")
    rng = np.random.default_rng(seed)
    loaded = []
    for t in tasks:
        td = load_task(t, data_root)
        if subsample:
            td = _subsample(td, int(subsample), rng)
        loaded.append(td)
    table = _encode_all(encode, [s for td in loaded for s in _sentences_of(td)],
                        Path(cache_file) if cache_file else None, log)
    sub = f"; SUBSAMPLED to <= {subsample} per split" if subsample else ""
    grid = "C in {" + ", ".join(f"{c:g}" for c in c_grid) + "}"
    lr = f"standardised features, sklearn LogisticRegression lbfgs, {grid}"
    results = []
    for td in loaded:
        t0 = time.perf_counter()
        t = td.name
        if t in _BINARY_FILES:
            xs, y = td.splits["all"]
            acc, sd, cs = nested_cv_accuracy(_vecs(table, xs), y, folds=folds, inner_folds=inner_folds,
                                             seed=seed, c_grid=c_grid)
            res = TaskResult(t, {"acc": acc}, {"acc": sd}, n_train=len(xs), n_test=len(xs), chosen_c=cs,
                             protocol=f"nested stratified {folds}-fold CV (inner {inner_folds}-fold picks C), "
                                      f"{lr}, seed {seed}{sub}", split="cv")
        elif t in ("TREC", "MRPC"):
            (xtr, ytr), (xte, yte) = td.splits["train"], td.splits["test"]
            if t == "TREC":
                ftr, fte = _vecs(table, xtr), _vecs(table, xte)
                feats = "sentence vector"
            else:
                ftr, fte = (_pair_features(table, p) for p in (xtr, xte))
                feats = "[|u-v|, u*v]"
            c = _cv_pick_c(ftr, ytr, folds, seed, c_grid)
            pred = _fit_predict(ftr, ytr, fte, c)
            m = {"acc": 100.0 * float((pred == yte).mean())}
            if t == "MRPC":
                from sklearn.metrics import f1_score
                m["f1"] = 100.0 * float(f1_score(yte, pred, pos_label=1))
            res = TaskResult(t, m, n_train=len(xtr), n_test=len(xte), chosen_c=[c],
                             protocol=f"features {feats}; stratified {folds}-fold CV on train picks C, "
                                      f"refit on train, test set; {lr}, seed {seed}{sub}")
        elif t == "SST2":
            (xtr, ytr), (xdv, ydv), (xte, yte) = (td.splits[s] for s in ("train", "dev", "test"))
            ftr, fdv, fte = _vecs(table, xtr), _vecs(table, xdv), _vecs(table, xte)
            s_tr, s_dv = _standardise(ftr, fdv)
            best, best_c, clf = -1.0, c_grid[0], None
            for c in sorted(c_grid):
                clf = _lr(c) if clf is None else clf.set_params(C=c)
                a = float((_fit(clf, s_tr, ytr).predict(s_dv) == ydv).mean())
                if a > best:
                    best, best_c = a, c
            pred = _fit_predict(ftr, ytr, fte, best_c)
            res = TaskResult(t, {"acc": 100.0 * float((pred == yte).mean())}, n_train=len(xtr),
                             n_test=len(xte), chosen_c=[best_c],
                             protocol=f"C picked on dev (fit on train), test accuracy; {lr}, seed {seed}{sub}")
        else:  # STSB
            from scipy.stats import spearmanr
            pairs, gold = td.splits["test"]
            u = _vecs(table, [a for a, _ in pairs])
            v = _vecs(table, [b for _, b in pairs])
            cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
            rho = float(spearmanr(cos, gold).statistic)
            res = TaskResult(t, {"spearman": rho}, n_test=len(pairs),
                             protocol=f"STS Benchmark test, Spearman of cosine similarity vs gold, no training{sub}")
        res.seconds = time.perf_counter() - t0
        res.skipped = td.skipped
        if td.skipped:  # SentEval keeps empty lines as empty sentences; we drop them, and say so
            res.protocol += f"; {td.skipped} empty line(s) dropped"
        if log:
            log(f"senteval: {t} " + " ".join(f"{k}={v:.4g}" for k, v in res.metrics.items())
                + f" ({res.seconds:.1f}s)")
        results.append(res)
    return results


def trivial_baselines(data_root: str | os.PathLike, tasks: Sequence[str] = TASKS, *, seed: int = 0,
                      folds: int = 10) -> list[TaskResult]:
    """What a classifier that ignores its input scores under each task's own protocol.

    MR, CR, SUBJ, MPQA: the majority class of each outer training part on its test fold (the
    same seeded folds as :func:`nested_cv_accuracy`); TREC and SST2: the training split's
    majority class on the test split; MRPC: answering 'paraphrase' always (accuracy = the
    test set's paraphrase share, F1 = 2p / (1 + p) for that share p). STSB has none (a
    constant similarity has no rank correlation) and is left out.
    """
    from sklearn.model_selection import StratifiedKFold
    out = []
    for t in tasks:
        _check_task_name(t)
        if t == "STSB":
            continue
        td = load_task(t, data_root)
        if t in _BINARY_FILES:
            xs, y = td.splits["all"]
            outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            accs = [100.0 * float((y[te] == np.bincount(y[tr]).argmax()).mean())
                    for tr, te in outer.split(np.zeros((len(y), 1)), y)]
            out.append(TaskResult(t, {"acc": float(np.mean(accs))}, split="cv", n_train=len(y), n_test=len(y),
                                  protocol=f"majority class of each outer training part, stratified {folds}-fold "
                                           f"CV, seed {seed}"))
        elif t == "MRPC":
            (_, _), (_, yte) = td.splits["train"], td.splits["test"]
            p = float(np.mean(yte == 1))
            out.append(TaskResult(t, {"acc": 100.0 * p, "f1": 100.0 * 2 * p / (1 + p)}, n_test=len(yte),
                                  protocol="'paraphrase' for every test pair"))
        else:  # TREC, SST2
            (_, ytr), (_, yte) = td.splits["train"], td.splits["test"]
            values, counts = np.unique(ytr, return_counts=True)   # TREC labels are strings
            maj = values[counts.argmax()]
            out.append(TaskResult(t, {"acc": 100.0 * float((yte == maj).mean())}, n_train=len(ytr),
                                  n_test=len(yte), protocol="the training split's majority class on the test split"))
    return out


def _pair_features(table: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> np.ndarray:
    u = _vecs(table, [a for a, _ in pairs])
    v = _vecs(table, [b for _, b in pairs])
    return np.concatenate([np.abs(u - v), u * v], axis=1)
