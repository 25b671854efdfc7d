"""A tiny but real modality for the runner's tests: two-view contrastive learning on blobs.

Data: K Gaussian class centres in 16-d, deterministic from the data set name; a sample is a
centre plus noise, its two views add independent noise. Model: a 2-layer MLP. Loss: the
shared core on the 2B x 2B cosine score matrix (SimCLR layout). Evaluation: nearest-class-
mean accuracy of the frozen embeddings on a held-out split. Runs in well under a second.

Options ``fail`` ('none', 'raise', 'nan') make a run fail on purpose, so the runner's
failure handling is tested through the ordinary code path.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from torch import nn

from hardneg import adapters
from hardneg.adapters import DataStatus, Metric, ModalityAdapter, Option, ScoreBatch
from hardneg.losses import two_view_masks

DATASETS = {"blobs4": 4, "blobs8": 8}
MISSING = "absent"   # a data set this adapter knows but never finds (for `data check`)


def _dataset(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = DATASETS[name]
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, 16, generator=g) * 2.0
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, 16, generator=g)
    return x, y


class ToyAdapter(ModalityAdapter):
    name = "toy"
    options = {
        "hidden": Option(16, "hidden width of the MLP", low=2, high=1024),
        "n": Option(64, "number of training samples", low=8, high=100000),
        "fail": Option("none", "make the run fail on purpose", choices=("none", "raise", "nan")),
        "delay": Option(0.0, "seconds to sleep per epoch (to kill a suite mid-run in tests)", low=0.0, high=60.0),
        "jitter": Option(0.3, "std of the view noise (training only)", low=0.0, high=5.0, low_inclusive=False,
                         training_only=True),
    }
    default_loss = {"temperature": 0.2}

    def datasets(self) -> list[str]:
        return sorted(DATASETS) + [MISSING]

    def check_data(self, data_root: Path) -> list[DataStatus]:
        out = [DataStatus(d, True, "(generated)", "made in memory") for d in sorted(DATASETS)]
        out.append(DataStatus(MISSING, False, str(Path(data_root) / "toy" / MISSING),
                              "never present; it exists to test `hardneg data check`"))
        return out

    def data_fingerprint(self, data_root, dataset, options) -> dict:
        """'generated', or the text of ``<data_root>/toy/<dataset>.version`` (tests change the data that way)."""
        marker = Path(data_root) / "toy" / f"{dataset}.version"
        return {dataset: marker.read_text().strip() if marker.is_file() else "generated"}

    def prepare(self, run) -> None:
        if run.spec.dataset == MISSING:
            from hardneg.errors import DataError
            raise DataError(f"toy data set {MISSING!r} is missing by design")
        n = run.options["n"]
        run.extra["train"] = _dataset(run.spec.dataset, n)
        run.extra["test"] = _dataset(run.spec.dataset, n + 32)
        if run.scramble_test:           # the conformance kit: other held-out rows
            x, y = run.extra["test"]
            g = torch.Generator().manual_seed(99)
            run.extra["test"] = (torch.randn(x.shape, generator=g), y[torch.randperm(len(y), generator=g)])
        run.data_checksums.update(self.data_fingerprint(run.data_root, run.spec.dataset, run.options))
        if run.options["fail"] == "raise":
            raise RuntimeError("toy failure requested by option fail='raise'")

    def build_model(self, run) -> nn.Module:
        torch.manual_seed(run.spec.seed)
        h = run.options["hidden"]
        return nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, 8)).to(run.device)

    def train_batches(self, run, epoch: int):
        if run.options["delay"]:
            time.sleep(run.options["delay"])
        x, _ = run.extra["train"]
        bs = min(run.spec.train.batch_size, len(x))
        perm = torch.randperm(len(x), generator=run.generator)
        for i in range(0, len(x) - bs + 1, bs):
            xb = x[perm[i:i + bs]]
            v1 = xb + run.options["jitter"] * torch.randn(xb.shape, generator=run.generator)
            v2 = xb + run.options["jitter"] * torch.randn(xb.shape, generator=run.generator)
            yield v1, v2

    def score_batch(self, model, batch, run) -> ScoreBatch:
        v1, v2 = batch
        z = nn.functional.normalize(model(torch.cat([v1, v2])), dim=1)
        scores = z @ z.T
        if run.options["fail"] == "nan":
            scores = scores * float("nan")
        pos, neg = two_view_masks(len(v1), scores.device)
        return ScoreBatch(scores, pos, neg, "cosine")

    def count_samples(self, batch) -> int:
        return len(batch[0])

    def evaluate(self, model, run) -> list[Metric]:
        xtr, ytr = run.extra["train"]
        xte, yte = run.extra["test"]
        with torch.no_grad():
            ztr = nn.functional.normalize(model(xtr), dim=1)
            zte = nn.functional.normalize(model(xte), dim=1)
        k = DATASETS[run.spec.dataset]
        means = torch.stack([ztr[ytr == c].mean(0) for c in range(k)])
        acc = (torch.argmax(zte @ means.T, dim=1) == yte).float().mean().item()
        return [Metric("ncm_acc", 100.0 * acc, split="test",
                       protocol="nearest class mean on frozen embeddings, held-out split")]


def register() -> None:
    adapters.register("toy", ToyAdapter, replace=True)


register()


SUITE = """
[suite]
name = "toy"
[defaults.train]
epochs = 2
batch_size = 16
threads = 1
[grid]
beta = [0.0, 1.0]
tau_plus = [0.0, 0.1]
seed = [0, 1]
[toy]
datasets = ["blobs4"]
random_init = true
"""


def write_suite(folder: Path, text: str = SUITE, name: str = "toy.toml") -> Path:
    """A small toy suite file (10 runs: 2 random-init + 2 x 2 x 2 grid) in ``folder``."""
    path = Path(folder) / name
    path.write_text(text)
    return path
