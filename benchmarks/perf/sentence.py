"""Speed of the sentence modality, measured side by side in one process (1 CPU thread).

Prints: training sentences/s of the quick-thought GRU (plain softmax beta=0 vs hard
beta=1, tau+=0.1, so the cost of the hard loss shows as a ratio), training sentences/s
of the MiniLM fine-tune, and the wall time of the SentEval evaluation of the whole task
set (encode + classifiers) for the QT encoder.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/perf/sentence.py [--steps 20] [--eval-subsample 0]

``--eval-subsample 0`` evaluates on the full tasks (several minutes on one core);
``--skip-eval`` / ``--skip-minilm`` leave parts out.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from hardneg.adapters import open_run  # noqa: E402
from hardneg.objective import Objective  # noqa: E402
from hardneg.spec import LossSpec, RunSpec, TrainSpec  # noqa: E402
from modalities.sentence import SentenceAdapter  # noqa: E402


def make(options: dict, loss: LossSpec, batch_size: int, epochs: int = 1):
    ad = SentenceAdapter()
    spec = RunSpec("sentence", "books", 0, loss, TrainSpec(epochs=epochs, batch_size=batch_size, threads=1), options)
    run = open_run(ad, spec, device="cpu", log=lambda s: None)
    ad.prepare(run)
    torch.manual_seed(0)
    model = ad.build_model(run)
    return ad, run, model


def train_speed(ad, run, model, steps: int) -> float:
    """Sentences/s over ``steps`` optimizer steps (after one warm-up step)."""
    obj = Objective(run.spec.loss)
    opt = torch.optim.Adam(model.parameters(), lr=run.spec.train.lr)
    model.train()
    batches = iter(ad.train_batches(run, 0))
    n, t0 = 0, None
    for i in range(steps + 1):
        b = next(batches)
        loss = ad.compute_loss(model, b, obj, run).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 0:
            t0 = time.perf_counter()  # the first step pays one-off costs
        else:
            n += b[1] - b[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--eval-subsample", type=int, default=0)
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--skip-minilm", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    qt_opts = {"encoder": "qt-gru", "hidden": a.hidden, "emb_dim": 64, "vocab_size": 10000, "max_sentences": 20000,
               "eval_subsample": a.eval_subsample, "eval_cache": False}
    rows = []
    for beta, tau in ((0.0, 0.0), (1.0, 0.1)):
        ad, run, model = make(qt_opts, LossSpec(beta=beta, tau_plus=tau, temperature=1.0), a.batch_size)
        rows.append((f"QT GRU h{a.hidden} beta={beta} tau+={tau}", train_speed(ad, run, model, a.steps)))
    if not a.skip_minilm:
        mo = {"encoder": "minilm", "max_sentences": 5000, "score": "cosine"}
        ad, run, model = make(mo, LossSpec(beta=1.0, tau_plus=0.1, temperature=0.05), min(a.batch_size, 32))
        rows.append(("MiniLM fine-tune beta=1 tau+=0.1", train_speed(ad, run, model, max(2, a.steps // 4))))
    base = rows[0][1]
    print(f"{'training (1 thread)':45s} {'sentences/s':>12s} {'ratio':>7s}")
    for name, v in rows:
        print(f"{name:45s} {v:12.1f} {v / base:7.2f}")
    if not a.skip_eval:
        ad, run, model = make(qt_opts, LossSpec(temperature=1.0), a.batch_size, epochs=0)
        t0 = time.perf_counter()
        ad.evaluate(model, run)
        total = time.perf_counter() - t0
        print(f"SentEval, all {len(run.options['tasks'])} tasks "
              f"({'full' if not a.eval_subsample else f'subsample {a.eval_subsample}'}), QT encoder: {total:.1f}s")
        for r in run.extra["senteval_results"]:
            print(f"  {r.task:5s} {r.seconds:7.1f}s (classifier/scoring only)")


if __name__ == "__main__":
    main()
