"""Does the SVC evaluation protocol explain a gap to the authors' graph numbers?

On ONE fixed embedding (InfoGraph trained 200 epochs, the JSD baseline of
benchmarks/graph-parity.toml, or the untrained encoder with ``--floor``) this evaluates:

* ``hardneg``: :func:`hardneg.evaluation.svc.svc_nested_cv` (outer stratified 10-fold, shuffled
  and seeded; inner stratified 5-fold, shuffled and seeded; data in file order), fold seed k;
* ``authors``: the protocol of the authors' script as written (Robinson et al., ICLR 2021,
  github.com/joshr17/HCL graph/evaluate_embedding.py), emulated here: the data set in a random
  order (their ``dataset.shuffle()``), outer ``StratifiedKFold(10, shuffle=True)``, inner
  ``GridSearchCV(SVC(), C grid, cv=5)``, i.e. UNshuffled stratified 5-fold over that order;
  repeat k draws the order and the outer folds from seed k.

for ``--repeats`` fold seeds each, and prints the mean and std of the accuracy over repeats
per protocol: the spread of the evaluation alone, and whether the protocols differ.

    python benchmarks/studies/svc_protocols.py --dataset PTC_MR --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import numpy as np
import torch

from hardneg.context import open_run
from hardneg.evaluation.svc import DEFAULT_C_GRID, svc_nested_cv
from hardneg.objective import Objective
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.train import train
from modalities.graph import GraphAdapter


def authors_protocol(X: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Mean outer accuracy of the authors' evaluation, its randomness drawn from ``seed``."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    accs = []
    for tr, te in StratifiedKFold(n_splits=10, shuffle=True, random_state=seed).split(X, y):
        search = GridSearchCV(SVC(), {"C": list(DEFAULT_C_GRID)}, cv=5, scoring="accuracy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            search.fit(X[tr], y[tr])
        accs.append(float((search.predict(X[te]) == y[te]).mean()))
    return float(np.mean(accs))


def embedding(dataset: str, seed: int, floor: bool) -> tuple[np.ndarray, np.ndarray]:
    spec = RunSpec("graph", dataset, seed, LossSpec(objective="jsd", temperature=1.0),
                   TrainSpec(epochs=0 if floor else 200, batch_size=128, lr=1e-3, weight_decay=0.0, threads=1),
                   {"shuffle": "once"})
    a = GraphAdapter()
    run = open_run(a, spec, log=lambda s: None, device="cpu")
    a.prepare(run)
    model = a.build_model(run)
    train(a, model, run, Objective(spec.loss))
    return a.embed_all(model, run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="PTC_MR")
    p.add_argument("--seed", type=int, default=0, help="training seed of the embedding")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--floor", action="store_true", help="the untrained encoder instead of a trained one")
    args = p.parse_args()
    torch.set_num_threads(1)
    X, y = embedding(args.dataset, args.seed, args.floor)
    ours = [100 * svc_nested_cv(X, y, seed=k).mean for k in range(args.repeats)]
    theirs = [100 * authors_protocol(X, y, k) for k in range(args.repeats)]
    what = "untrained" if args.floor else "trained 200 epochs (JSD)"
    print(f"{args.dataset}, one embedding ({what}, training seed {args.seed}), {args.repeats} evaluation repeats")
    for name, v in (("hardneg", ours), ("authors", theirs)):
        print(f"  {name:8s} {statistics.mean(v):6.2f} +- {statistics.stdev(v):4.2f}   "
              f"min {min(v):6.2f} max {max(v):6.2f}")
    from scipy.stats import ttest_ind
    t = ttest_ind(theirs, ours, equal_var=False)
    print(f"  authors - hardneg = {statistics.mean(theirs) - statistics.mean(ours):+.2f} "
          f"(Welch t {t.statistic:.2f}, p {t.pvalue:.3f})")


if __name__ == "__main__":
    main()
