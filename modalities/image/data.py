"""Image data sets as in-memory uint8 tensors: the data model and the entry points.

Every data set becomes an :class:`ImageSplits`: three :class:`ImageSet` roles

* ``pretrain`` the images SimCLR trains on (labels kept for diagnostics only),
* ``probe``    the labelled images the linear probe / kNN memory bank uses,
* ``test``     the labelled images the probe is scored on.

For CIFAR and ImageFolder data ``pretrain`` and ``probe`` are the same training split; for
STL-10 ``pretrain`` is train+unlabeled (105k), ``probe`` is train (5k), ``test`` is test (8k),
as in the paper. :class:`Subsets` picks deterministic subsets of the roles.

Sources (under the data root, read-only):

* ``cifar10``:  ``<root>/cifar10/cifar-10-batches-py/`` (torchvision pickles) if present, else the
  ImageFolder tree ``<root>/cifar10/{train,test}/<class>/*.{jpg,png}``.
* ``cifar100``: ``<root>/cifar100/cifar-100-python/{train,test,meta}`` (torchvision pickles), or an
  ImageFolder tree ``<root>/cifar100/{train,test}/<class>/``.
* ``stl10``:    ``<root>/stl10/stl10_binary/{train_X,train_y,test_X,test_y,unlabeled_X}.bin``.
* ``folder:PATH``: any ImageFolder tree ``PATH/{train,test}/<class>/<image>`` (PATH absolute or
  relative to the data root).

:func:`load_dataset`, :func:`fingerprint_dataset` and :func:`data_present` dispatch on the
source: ImageFolder trees (decoding and the uint8 cache) are :mod:`modalities.image.folder`'s,
the torchvision pickle / binary formats and their downloads :mod:`modalities.image.archives`'.
Those two build this module's :class:`ImageSplits`, so this module imports them on use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from hardneg import data as hdata
from hardneg.errors import ConfigError, DataError

KNOWN_DATASETS = ("cifar10", "cifar100", "stl10")


@dataclass
class ImageSet:
    """Images (N, C, H, W) uint8 and labels (N,) int64 (-1 = unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class ImageSplits:
    """The three roles of one data set plus its class names and provenance."""

    name: str
    pretrain: ImageSet
    probe: ImageSet
    test: ImageSet
    classes: list[str]
    source: str                       # human statement of where the pixels came from
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Subsets:
    """Subset choice by count (0 = all), deterministic in ``seed`` and independent of the run seed.

    train_subset:    stratified subset of the labelled training split (the probe's training set;
                     CIFAR/folder pretraining uses the same images unless pretrain_subset is set).
    test_subset:     stratified subset of the test split.
    pretrain_subset: uniform random subset of the whole pretraining split (CIFAR/folder: train;
                     STL-10: train+unlabeled), independent of train_subset.
    """

    train_subset: int = 0
    test_subset: int = 0
    pretrain_subset: int = 0
    seed: int = 0

    def train_indices(self, labels: torch.Tensor, n_pretrain: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(probe indices or None = all, pretrain indices or None = same as probe / all)."""
        probe = stratified_subset(labels, self.train_subset, seed=self.seed, what="train_subset") \
            if self.train_subset else None
        return probe, self.pretrain_indices(n_pretrain)

    def pretrain_indices(self, n: int) -> torch.Tensor | None:
        if not self.pretrain_subset:
            return None
        if self.pretrain_subset > n:
            raise ConfigError(f"pretrain_subset={self.pretrain_subset} exceeds the {n} pretraining images; "
                              f"allowed: 1 <= pretrain_subset <= {n} (0 = all)")
        g = torch.Generator().manual_seed(int(self.seed) + 1)
        return torch.sort(torch.randperm(n, generator=g)[: self.pretrain_subset]).values

    def test_indices(self, labels: torch.Tensor) -> torch.Tensor:
        return stratified_subset(labels, self.test_subset, seed=self.seed, what="test_subset")

    def apply(self, s: "ImageSplits") -> "ImageSplits":
        """Subsets of in-memory splits (pickle / binary formats)."""
        same = s.pretrain is s.probe
        full_pretrain = s.pretrain
        if self.train_subset:
            s.probe = s.probe.subset(stratified_subset(s.probe.labels, self.train_subset, seed=self.seed,
                                                       what="train_subset"))
            if same:
                s.pretrain = s.probe
        if self.test_subset:
            s.test = s.test.subset(self.test_indices(s.test.labels))
        idx = self.pretrain_indices(len(full_pretrain))
        if idx is not None:
            s.pretrain = full_pretrain.subset(idx)
        return s


# ---------------------------------------------------------------------------------------
# data set names, and layout help for error messages
LAYOUTS = {
    "cifar10": ("<root>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} "
                "(torchvision pickles) or <root>/cifar10/{train,test}/<class>/*.jpg (ImageFolder)"),
    "cifar100": ("<root>/cifar100/cifar-100-python/{train,test,meta} (torchvision pickles) or "
                 "<root>/cifar100/{train,test}/<class>/*.png (ImageFolder)"),
    "stl10": "<root>/stl10/stl10_binary/{train_X,train_y,test_X,test_y,unlabeled_X}.bin (+ class_names.txt)",
    "folder": "PATH/train/<class>/<image> and PATH/test/<class>/<image> (torchvision ImageFolder)",
}


def parse_dataset_name(name: str) -> tuple[str, str | None]:
    """'cifar10' -> ('cifar10', None); 'folder:PATH' -> ('folder', PATH); else ConfigError."""
    if name.startswith("folder:"):
        path = name[len("folder:"):]
        if not path:
            raise ConfigError("dataset 'folder:' needs a path, e.g. 'folder:/data/pets'; "
                              f"expected layout: {LAYOUTS['folder']}")
        return "folder", path
    if name in KNOWN_DATASETS:
        return name, None
    raise ConfigError(f"unknown image data set {name!r}; allowed: {', '.join(KNOWN_DATASETS)}, "
                      "or 'folder:PATH' for an ImageFolder tree")


# ---------------------------------------------------------------------------------------
# entry points: dispatch to the ImageFolder (.folder) and torchvision (.archives) readers
def load_dataset(name: str, data_root: Path, *, download: bool | None = None, subsets: Subsets = Subsets(),
                 log=print) -> ImageSplits:
    """Load data set ``name`` ('cifar10' | 'cifar100' | 'stl10' | 'folder:PATH') from ``data_root``.

    ``subsets`` are applied (for ImageFolder trees only the chosen files are decoded unless the
    whole split is cached). Downloads (torchvision's, MD5-checked) happen only when
    ``hardneg.data.downloads_allowed(download)``; offline, a missing data set raises
    :class:`DataError` naming the expected layout.
    """
    from .archives import archive_dir, fetch_dataset, load_cifar_pickles, load_stl10
    from .folder import load_folder_tree

    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        return load_folder_tree(name, folder_root(path, data_root), subsets, log=log)
    allow = hdata.downloads_allowed(download)
    if kind in ("cifar10", "cifar100"):
        base = data_root / kind
        if archive_dir(kind, data_root).is_dir():
            return subsets.apply(load_cifar_pickles(kind, base))
        if (base / "train").is_dir() and (base / "test").is_dir():
            return load_folder_tree(kind, base, subsets, log=log)
        if allow:
            fetch_dataset(kind, data_root, log=log)
            return subsets.apply(load_cifar_pickles(kind, base))
        raise DataError(f"data set {kind!r} not found under {data_root}; expected {LAYOUTS[kind]}. Downloads are "
                        f"off: set {hdata.ENV_ALLOW_DOWNLOAD}=1 (or pass --download) to fetch it with torchvision")
    base = data_root / "stl10"
    if archive_dir("stl10", data_root).is_dir():
        return subsets.apply(load_stl10(base))
    if allow:
        fetch_dataset("stl10", data_root, log=log)
        return subsets.apply(load_stl10(base))
    raise DataError(f"data set 'stl10' not found under {data_root}; expected {LAYOUTS['stl10']}. Downloads are "
                    f"off: set {hdata.ENV_ALLOW_DOWNLOAD}=1 (or pass --download) to fetch it with torchvision")


def fingerprint_dataset(name: str, data_root: Path, subsets: Subsets = Subsets()) -> dict[str, str] | None:
    """The checksums :func:`load_dataset` records for ``name``, computed without decoding.

    For ImageFolder trees only the splits read whole (see
    :func:`modalities.image.folder.fingerprint_folder_tree`). None when the data set is not there."""
    from .archives import fingerprint_archive
    from .folder import fingerprint_folder_tree

    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        return fingerprint_folder_tree(name, folder_root(path, data_root), subsets)
    archive = fingerprint_archive(kind, data_root)
    if archive is not None or kind == "stl10":
        return archive
    return fingerprint_folder_tree(name, data_root / kind, subsets)


def stratified_subset(labels: torch.Tensor, count: int, *, seed: int = 0, what: str = "subset") -> torch.Tensor:
    """Indices of ``count`` items with class proportions kept (largest-remainder rounding).

    Deterministic in ``seed``; sorted. ``count`` must not exceed the number of labelled items.
    Unlabelled items (label -1) are never chosen.
    """
    labelled = torch.nonzero(labels >= 0).flatten()
    if count > labelled.numel():
        raise ConfigError(f"{what}={count} exceeds the {labelled.numel()} labelled images available; "
                          f"allowed: 1 <= {what} <= {labelled.numel()} (0 = all)")
    g = torch.Generator().manual_seed(int(seed))
    classes, counts = torch.unique(labels[labelled], return_counts=True)
    exact = counts.double() * count / labelled.numel()
    take = exact.floor().long()
    short = count - int(take.sum())
    if short > 0:
        order = torch.argsort(exact - take.double(), descending=True, stable=True)
        take[order[:short]] += 1
    chosen = []
    for c, n in zip(classes.tolist(), take.tolist()):
        idx = labelled[labels[labelled] == c]
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:n]])
    return torch.sort(torch.cat(chosen)).values


def folder_root(path: str, data_root: Path) -> Path:
    """The tree of ``folder:PATH``: PATH with ``~`` expanded, relative paths under the data root."""
    root = Path(path).expanduser()
    return root if root.is_absolute() else Path(data_root) / root


def data_present(name: str, data_root: Path) -> tuple[bool, str, str]:
    """(present, path, detail) for ``hardneg data check`` without loading pixels."""
    from .archives import archive_dir

    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        root = folder_root(path, data_root)
        ok = (root / "train").is_dir() and (root / "test").is_dir()
        return ok, str(root), "" if ok else f"expected {LAYOUTS['folder']}"
    base = data_root / kind
    ok = archive_dir(kind, data_root).is_dir()
    if kind != "stl10":
        ok = ok or ((base / "train").is_dir() and (base / "test").is_dir())
    return ok, str(base), "" if ok else f"expected {LAYOUTS[kind]}"
