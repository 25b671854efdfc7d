"""Image modality: SimCLR (Chen et al., ICML 2020) with hard / debiased negatives (Robinson et al.,
ICLR 2021, section 5.1; Chuang et al., NeurIPS 2020), registered as ``image``.

Data sets: ``cifar10``, ``cifar100``, ``stl10`` (torchvision formats, or ImageFolder trees for
the CIFARs) and ``folder:PATH`` (any ImageFolder tree with ``train/`` and ``test/``); see
:mod:`modalities.image.data` (ImageFolder trees: :mod:`modalities.image.folder`; torchvision formats and
downloads: :mod:`modalities.image.archives`). Views: :mod:`modalities.image.augment`. Encoders:
:mod:`modalities.image.models`.

A training batch of B images gives 2B views; the loss is the shared core's two-view form
(``Objective.two_view``), identical to the generic ``score_batch`` path (2B x 2B cosine
scores, partner = positive, the other 2B - 2 views = negatives) but without building masks.

Forward modes (option ``forward``):

* ``two-pass`` (default, the authors' code): the encoder runs once per view, so every
  BatchNorm layer normalises each view's B images with their own batch statistics (the
  authors additionally split each view over 2 GPUs under DataParallel, i.e. BN groups of B/2;
  this adapter does not emulate that split).
* ``one-pass``: both views go through one forward of 2B images; BatchNorm statistics are shared
  across views, which lets the network match partners through batch statistics less easily
  but changes the numbers; it is slightly faster on GPUs.

Evaluation: linear probe on frozen encoder features (``hardneg.evaluation.linear``; encoder in
eval mode, or ``probe_bn='train'`` for parity with the authors' drifting BatchNorm) and the
weighted kNN monitor (``hardneg.evaluation.knn``; k = 200, T = 0.5, memory = probe training
set without augmentation). Metrics, in percent: ``linear_top1`` (+ ``linear_top5`` when there
are more than 10 classes), ``knn_top1`` (+ ``knn_top5``). ``train.epochs = 0`` gives the
random-initialisation floor under the same probe.

Labels are passed to the loss core for diagnostics only (false-negative rate among the
top-weighted negatives, the batch's true class prior beside tau_plus); a batch holding an
unlabelled image (STL-10's unlabeled split) passes none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from hardneg.adapters import DataStatus, Metric, ModalityAdapter, Option, RunContext, ScoreBatch
from hardneg.errors import DataError
from hardneg.evaluation.knn import PROTOCOL as KNN_PROTOCOL
from hardneg.evaluation.knn import knn_accuracy
from hardneg.evaluation.linear import extract_features, linear_probe

from .augment import AugmentSpec, BatchedViewLoader, BatchedViews, CpuViewLoader, eval_transform
from .archives import fetch_dataset
from .data import (KNOWN_DATASETS, ImageSet, Subsets, data_present, fingerprint_dataset, load_dataset,
                   parse_dataset_name)
from .models import ENCODERS, SimCLRModel, build_encoder

__all__ = ["ImageAdapter"]


class ImageAdapter(ModalityAdapter):
    """SimCLR on images; see the module docstring for the protocol and options."""

    name = "image"
    default_loss = {"objective": "infonce", "temperature": 0.5}
    headline_metrics = ("linear_top1",)
    options = {
        "encoder": Option("resnet18", "encoder with the CIFAR stem (paper: resnet50; resnet10 is a small CPU encoder)",
                          choices=tuple(ENCODERS)),
        "width": Option(1.0, "channel width multiplier of the encoder (1 = the published widths)", low=0.03125, high=4.0),
        "pipeline": Option("batched", "view implementation: 'batched' (tensor ops on the device, whole batch) or "
                           "'cpu' (torchvision v2 per image, DataLoader workers)", choices=("batched", "cpu"),
                           training_only=True),
        "workers": Option(0, "DataLoader worker processes for pipeline='cpu' (0 = in the main process)", low=0, high=64,
                          training_only=True),
        "forward": Option("two-pass", "'two-pass': one encoder pass per view (authors' per-view BatchNorm); "
                          "'one-pass': both views in one pass", choices=("two-pass", "one-pass"), training_only=True),
        "train_subset": Option(0, "stratified subset of the labelled training split by count (0 = all)", low=0),
        "test_subset": Option(0, "stratified subset of the test split by count (0 = all)", low=0),
        "pretrain_subset": Option(0, "random subset by count of the whole pretraining split (CIFAR/folder: train; "
                                  "STL-10: train+unlabeled); 0 = the probe's training images (CIFAR/folder, "
                                  "after train_subset) or all of train+unlabeled (STL-10)", low=0),
        "subset_seed": Option(0, "seed of the subset choice (fixed across run seeds so runs compare)", low=0),
        "image_size": Option(32, "training/probe resolution (paper: 32 for every data set)", low=8, high=512),
        "probe_epochs": Option(100, "linear-probe epochs (paper 100)", low=0),
        "probe_augment": Option(True, "augment the probe's training inputs with one pretraining view (paper: on)"),
        "probe_bn": Option("eval", "encoder mode during the probe: 'eval' (correct) or 'train' (authors' parity, "
                           "BatchNorm statistics drift)", choices=("eval", "train")),
        "probe_lr": Option(1e-3, "linear-probe Adam learning rate", low=0.0),
        "probe_weight_decay": Option(1e-6, "linear-probe Adam weight decay", low=0.0),
        "probe_batch_size": Option(512, "linear-probe batch size", low=1),
        "knn_k": Option(200, "neighbours of the kNN monitor", low=1),
        "knn_temperature": Option(0.5, "vote weight exp(sim / T) of the kNN monitor", low=1e-6),
        "evaluation": Option("linear+knn", "which probes to run", choices=("linear+knn", "linear", "knn")),
        "channels_last": Option("auto", "channels-last memory format ('auto': on CUDA only)",
                                choices=("auto", "on", "off")),
        "compile": Option(False, "torch.compile the encoder (GPU runs)"),
        "download": Option(False, "allow torchvision downloads (also HARDNEG_ALLOW_DOWNLOAD=1)"),
    }

    # ---- discovery -----------------------------------------------------------------
    def datasets(self) -> list[str]:
        return list(KNOWN_DATASETS)

    def accepts_custom_dataset(self, dataset: str) -> bool:
        return dataset.startswith("folder:")

    def check_data(self, data_root: Path) -> list[DataStatus]:
        out = []
        for d in self.datasets():
            ok, path, detail = data_present(d, data_root)
            out.append(DataStatus(d, ok, path, detail))
        return out

    def fetch_data(self, data_root: Path, dataset: str, options=None, *, allow: bool | None = True,
                   log=print) -> None:
        """torchvision's archive of ``dataset`` (MD5-checked), unpacked under the data root."""
        fetch_dataset(dataset, data_root, allow=allow, log=log)

    def data_fingerprint(self, data_root: Path, dataset: str, options) -> dict[str, str] | None:
        """The checksums :meth:`prepare` records, where they do not depend on the cache (see
        :func:`modalities.image.data.fingerprint_dataset`)."""
        o = {**{k: opt.default for k, opt in self.options.items()}, **dict(options)}
        return fingerprint_dataset(dataset, data_root, Subsets(o["train_subset"], o["test_subset"],
                                                               o["pretrain_subset"], o["subset_seed"]))

    # ---- data ----------------------------------------------------------------------
    def prepare(self, run: RunContext) -> None:
        o = run.options
        parse_dataset_name(run.spec.dataset)
        subsets = Subsets(o["train_subset"], o["test_subset"], o["pretrain_subset"], o["subset_seed"])
        splits = load_dataset(run.spec.dataset, run.data_root, download=o["download"] or None, subsets=subsets,
                              log=run.log)
        if run.scramble_test:   # the conformance kit: the test images become noise, their labels shuffled
            g = torch.Generator().manual_seed(12345)
            t = splits.test
            splits.test = ImageSet(torch.randint(0, 256, tuple(t.images.shape), generator=g, dtype=torch.uint8),
                                   t.labels[torch.randperm(len(t), generator=g)])
        b = run.spec.train.batch_size
        if b > len(splits.pretrain):
            raise DataError(f"train.batch_size={b} is larger than the {len(splits.pretrain)} pretraining images of "
                            f"{run.spec.dataset!r}; allowed: batch_size <= {len(splits.pretrain)} "
                            "(or use a larger subset)")
        c = splits.pretrain.images.shape[1]
        if c != 3:
            raise DataError(f"{run.spec.dataset!r} images have {c} channels; allowed: 3 (RGB)")
        spec = AugmentSpec(size=o["image_size"])
        if o["pipeline"] == "cpu":
            loader = CpuViewLoader(splits.pretrain.images, splits.pretrain.labels, b, spec, workers=o["workers"],
                                   pin_memory=run.device.type == "cuda")
        else:
            loader = BatchedViewLoader(splits.pretrain.images, splits.pretrain.labels, b, spec, device=run.device)
        run.extra["image_splits"] = splits
        run.extra["image_loader"] = loader
        run.extra["image_augment"] = spec
        run.extra["channels_last"] = o["channels_last"] == "on" or (o["channels_last"] == "auto"
                                                                     and run.device.type == "cuda")
        run.data_checksums.update(splits.checksums)
        run.counters.update({"pretrain_images": len(splits.pretrain), "probe_images": len(splits.probe),
                             "test_images": len(splits.test), "classes": splits.num_classes})
        run.log(f"image: {run.spec.dataset} ({splits.source}): pretrain {len(splits.pretrain)}, probe "
                f"{len(splits.probe)}, test {len(splits.test)} images, {splits.num_classes} classes, "
                f"{o['pipeline']} views")

    # ---- model ---------------------------------------------------------------------
    def build_model(self, run: RunContext) -> nn.Module:
        o = run.options
        model = SimCLRModel(build_encoder(o["encoder"], o["width"])).to(run.device)
        if run.extra.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        if o["compile"]:
            model.encoder.compile()
        return model

    def _to_input(self, x: torch.Tensor, run: RunContext) -> torch.Tensor:
        x = x.to(run.device, non_blocking=True)
        if run.extra.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, run: RunContext, epoch: int) -> Iterable[Any]:
        for v1, v2, labels in run.extra["image_loader"].epoch(run.generator):
            yield self._to_input(v1, run), self._to_input(v2, run), labels.to(run.device, non_blocking=True)

    def count_samples(self, batch: Any) -> int | None:
        return int(batch[0].shape[0])

    def _project(self, model: nn.Module, batch: Any, run: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
        v1, v2, _ = batch
        if run.options["forward"] == "one-pass":
            return model(torch.cat([v1, v2])).chunk(2)
        return model(v1), model(v2)

    @staticmethod
    def _diag_labels(labels: torch.Tensor) -> torch.Tensor | None:
        return labels if bool((labels >= 0).all()) else None

    def score_batch(self, model: nn.Module, batch: Any, run: RunContext) -> ScoreBatch:
        """2B x 2B cosine scores of [view1; view2]; positive = partner view, negatives = the other 2B - 2."""
        from hardneg.losses import two_view_masks

        z1, z2 = self._project(model, batch, run)
        z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
        pos, neg = two_view_masks(z1.shape[0], z.device)
        lab = self._diag_labels(batch[2])
        lab2 = None if lab is None else torch.cat([lab, lab])
        return ScoreBatch(z @ z.T, pos, neg, "cosine", lab2, lab2)

    def compute_loss(self, model: nn.Module, batch: Any, objective, run: RunContext, *, details: bool = False):
        """Fast path: ``objective.two_view(z1, z2)`` (same value as the score_batch path)."""
        z1, z2 = self._project(model, batch, run)
        labels = self._diag_labels(batch[2]) if details else None
        return objective.two_view(z1, z2, details=details, labels=labels)

    # ---- evaluation ----------------------------------------------------------------
    def trivial_baselines(self, run: RunContext) -> list[Metric]:
        """The probe training split's majority class, scored on the test split (top-1, percent)."""
        splits = run.extra["image_splits"]
        majority = int(torch.bincount(splits.probe.labels).argmax())
        acc = 100.0 * float((splits.test.labels == majority).float().mean())
        protocol = "majority class of the probe training images, predicted for every test image"
        return [Metric(name, acc, "test", protocol, "trivial") for name in ("linear_top1", "knn_top1")]

    def evaluate(self, model: nn.Module, run: RunContext) -> list[Metric]:
        o = run.options
        splits = run.extra["image_splits"]
        spec: AugmentSpec = run.extra["image_augment"]
        encoder = model.encoder
        cl = run.extra.get("channels_last")
        amp = run.device.type == "cuda" and run.spec.train.amp != "off"
        k = splits.num_classes
        size = o["image_size"]

        def test_tf(x: torch.Tensor) -> torch.Tensor:
            x = eval_transform(x, size)
            return x.contiguous(memory_format=torch.channels_last) if cl else x

        views = BatchedViews(spec)

        def train_tf(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            x = views(x, gen)
            return x.contiguous(memory_format=torch.channels_last) if cl else x

        metrics: list[Metric] = []
        was = encoder.training
        what = f"probe {len(splits.probe)} / test {len(splits.test)} images of {run.spec.dataset}"
        feats: tuple[torch.Tensor, torch.Tensor] | None = None

        def frozen_features() -> tuple[torch.Tensor, torch.Tensor]:
            encoder.eval()
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=amp):
                mem = extract_features(encoder, splits.probe.images, transform=test_tf, device=run.device)
                qry = extract_features(encoder, splits.test.images, transform=test_tf, device=run.device)
            encoder.train(was)
            return mem, qry

        if "linear" in o["evaluation"]:
            fixed = not o["probe_augment"] and o["probe_bn"] == "eval"
            if fixed:  # features are a fixed function of the input: compute once, share with kNN
                feats = frozen_features()
            res = linear_probe(feats[0] if fixed else splits.probe.images, splits.probe.labels,
                               feats[1] if fixed else splits.test.images, splits.test.labels,
                               num_classes=k, encoder=None if fixed else encoder, epochs=o["probe_epochs"],
                               lr=o["probe_lr"], weight_decay=o["probe_weight_decay"],
                               batch_size=o["probe_batch_size"],
                               train_transform=train_tf if o["probe_augment"] else None,
                               test_transform=None if fixed else test_tf, encoder_mode=o["probe_bn"],
                               device=run.device, generator=run.generator, autocast=amp)
            protocol = res.protocol.replace("on frozen features", "on frozen encoder features") + f"; {what}"
            metrics.append(Metric("linear_top1", 100.0 * res.top1, "test", protocol, "last-epoch"))
            if res.top5 is not None:
                metrics.append(Metric("linear_top5", 100.0 * res.top5, "test", protocol, "last-epoch"))
            run.counters["probe_train_top1"] = 100.0 * res.train_top1
        if "knn" in o["evaluation"]:
            mem, qry = feats if feats is not None else frozen_features()
            tops = (1, 5) if k > 10 else (1,)
            acc = knn_accuracy(mem, splits.probe.labels, qry, splits.test.labels, num_classes=k, k=o["knn_k"],
                               temperature=o["knn_temperature"], topk=tops)
            protocol = KNN_PROTOCOL.format(k=o["knn_k"], t=o["knn_temperature"],
                                           memory="probe training images, no augmentation") + f"; {what}"
            metrics.append(Metric("knn_top1", 100.0 * acc[1], "test", protocol, "last-epoch"))
            if 5 in acc:
                metrics.append(Metric("knn_top5", 100.0 * acc[5], "test", protocol, "last-epoch"))
        return metrics
