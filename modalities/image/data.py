"""Image data sets as in-memory uint8 tensors: CIFAR-10/100, STL-10 and ImageFolder trees.

Every data set becomes an :class:`ImageSplits`: three :class:`ImageSet` roles

* ``pretrain`` the images SimCLR trains on (labels kept for diagnostics only),
* ``probe``    the labelled images the linear probe / kNN memory bank uses,
* ``test``     the labelled images the probe is scored on.

For CIFAR and ImageFolder data ``pretrain`` and ``probe`` are the same training split; for
STL-10 ``pretrain`` is train+unlabeled (105k), ``probe`` is train (5k), ``test`` is test (8k),
as in the paper.

Sources (under the data root, read-only):

* ``cifar10``:  ``<root>/cifar10/cifar-10-batches-py/`` (torchvision pickles) if present, else the
  ImageFolder tree ``<root>/cifar10/{train,test}/<class>/*.{jpg,png}``.
* ``cifar100``: ``<root>/cifar100/cifar-100-python/{train,test,meta}`` (torchvision pickles), or an
  ImageFolder tree ``<root>/cifar100/{train,test}/<class>/``.
* ``stl10``:    ``<root>/stl10/stl10_binary/{train_X,train_y,test_X,test_y,unlabeled_X}.bin``.
* ``folder:PATH``: any ImageFolder tree ``PATH/{train,test}/<class>/<image>`` (PATH absolute or
  relative to the data root).

ImageFolder trees are decoded once (PIL) into a uint8 tensor cache under
``hardneg.data.cache_dir('image')``, keyed by a fingerprint of the file list (relative path,
size, mtime), so a later run loads 60,000 CIFAR-10 images in about a second. Pickle/binary
formats are read through torchvision's own dataset classes; their MD5 table only matches the
official full-size files, so the loader checks presence and records its own SHA-256 fingerprint
instead (downloads, when allowed, still go through torchvision's checksummed download:
:func:`fetch_dataset`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hardneg import data as hdata
from hardneg.atomic import atomic_write
from hardneg.errors import ConfigError, DataError

KNOWN_DATASETS = ("cifar10", "cifar100", "stl10")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1


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
# layout help for error messages
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
# ImageFolder trees
def _list_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} holds no class folders; expected {split_dir}/<class>/<image>")
    items: list[tuple[Path, int]] = []
    for ci, c in enumerate(classes):
        files = sorted(e.name for e in os.scandir(split_dir / c)
                       if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        items.extend((split_dir / c / f, ci) for f in files)
    if not items:
        raise DataError(f"{split_dir} holds no image files (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return classes, items


def _list_key(root: Path, items: Sequence[tuple[Path, int]]) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}\n".encode())
    for p, label in items:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode_folder(items: Sequence[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image with PIL; all must share one size and one mode (RGB or L)."""
    from PIL import Image, UnidentifiedImageError

    first_path, first_size, first_mode = None, None, None
    out: np.ndarray | None = None
    labels = np.empty(len(items), dtype=np.int64)
    for i, (path, label) in enumerate(items):
        try:
            with Image.open(path) as im:
                im.load()
                mode, size = im.mode, im.size
                if mode not in ("RGB", "L"):
                    raise DataError(f"image {path} has mode {mode!r}; allowed modes: 'RGB' or 'L' "
                                    "(convert the tree first)")
                arr = np.asarray(im)
        except DataError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"corrupt or unreadable image {path}: {exc}") from None
        if first_path is None:
            first_path, first_size, first_mode = path, size, mode
            out = np.empty((len(items), size[1], size[0], 3), dtype=np.uint8)
        elif size != first_size or mode != first_mode:
            raise DataError(
                f"image {path} is {size[0]}x{size[1]} {mode}, but {first_path} is "
                f"{first_size[0]}x{first_size[1]} {first_mode}; all images of a tree must share one size "
                "and one mode (resize/convert them first)")
        out[i] = arr[..., None] if arr.ndim == 2 else arr
        labels[i] = label
    assert out is not None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _read_items(split_dir: Path, classes: list[str], items: Sequence[tuple[Path, int]], *, log=print
                ) -> tuple[ImageSet, str]:
    """Decode ``items`` through the uint8 cache (keyed by the file list). Returns (set, fingerprint)."""
    key = _list_key(split_dir, items)
    cache_file = hdata.cache_dir("image", "folders") / f"{split_dir.name}-{key}.pt"
    blob = _read_cache(cache_file, classes, len(items))
    if blob is not None:
        return ImageSet(blob["images"], blob["labels"]), blob["fingerprint"]
    log(f"image: decoding {len(items)} images of {split_dir} once into {cache_file.parent} ...")
    images, labels = _decode_folder(items)
    fingerprint = hdata.fingerprint_files([p for p, _ in items], root=split_dir)
    with atomic_write(cache_file, binary=True) as fh:
        torch.save({"images": images, "labels": labels, "classes": classes, "fingerprint": fingerprint}, fh)
    return ImageSet(images, labels), fingerprint


def _read_cache(cache_file: Path, classes: list[str], n: int) -> dict | None:
    if not cache_file.exists():
        return None
    try:
        blob = torch.load(cache_file, weights_only=True)
        if blob["classes"] == classes and blob["images"].shape[0] == n:
            return blob
    except (OSError, RuntimeError, KeyError, EOFError):
        pass  # a damaged cache is rebuilt
    return None


def load_folder_split(split_dir: Path, *, select: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      log=print) -> tuple[ImageSet, list[str], str, torch.Tensor | None]:
    """One ImageFolder split via the uint8 cache. Returns (set, classes, fingerprint, chosen).

    ``select(labels) -> indices`` (sorted) picks the images to load from the labels of the
    listed files. Unless the whole split is cached already, only the chosen files are decoded
    (and cached under their own key), so a small subset of a large tree costs no full decode.
    The returned set then holds only the chosen images, in index order.
    """
    if not split_dir.is_dir():
        raise DataError(f"missing folder {split_dir}; expected layout: {LAYOUTS['folder']}")
    classes, items = _list_folder(split_dir)
    chosen = None if select is None else select(torch.tensor([c for _, c in items], dtype=torch.int64))
    if chosen is not None:
        full_key = _list_key(split_dir, items)
        full = _read_cache(hdata.cache_dir("image", "folders") / f"{split_dir.name}-{full_key}.pt", classes, len(items))
        if full is not None:
            return ImageSet(full["images"][chosen], full["labels"][chosen]), classes, full["fingerprint"], chosen
        items = [items[i] for i in chosen.tolist()]
    images, fingerprint = _read_items(split_dir, classes, items, log=log)
    return images, classes, fingerprint, chosen


def _load_folder_tree(name: str, root: Path, sub: "Subsets", *, log=print) -> ImageSplits:
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        layout = LAYOUTS.get(name, LAYOUTS["folder"])
        raise DataError(f"data set {name!r}: {root} lacks train/ and test/ folders; expected layout: {layout}")
    plan: dict[str, torch.Tensor] = {}

    def select_train(labels: torch.Tensor) -> torch.Tensor | None:
        probe, pretrain = sub.train_indices(labels, len(labels))
        plan["probe"], plan["pretrain"] = probe, pretrain
        if probe is None and pretrain is None:
            return None
        parts = [torch.arange(len(labels)) if probe is None else probe]
        if pretrain is not None:
            parts.append(pretrain)
        return torch.unique(torch.cat(parts))  # sorted

    train, classes, fp_train, chosen = load_folder_split(root / "train", select=select_train, log=log)
    test, classes_test, fp_test, _ = load_folder_split(
        root / "test", select=(lambda y: sub.test_indices(y)) if sub.test_subset else None, log=log)
    if classes_test != classes:
        raise DataError(f"{root}/test has classes {classes_test} but {root}/train has {classes}; they must match")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{root}/train images are {tuple(train.images.shape[1:])} but {root}/test images are "
                        f"{tuple(test.images.shape[1:])}; both splits must share one size and mode")
    probe, pretrain = train, train
    if chosen is not None:  # map indices of the whole split to rows of the loaded subset
        pos = torch.full((int(chosen.max()) + 1,), -1, dtype=torch.int64)
        pos[chosen] = torch.arange(len(chosen))
        if plan["probe"] is not None:
            probe = train.subset(pos[plan["probe"]])
        pretrain = train.subset(pos[plan["pretrain"]]) if plan["pretrain"] is not None else probe
    return ImageSplits(name, pretrain, probe, test, classes, f"ImageFolder {root}",
                       {f"{name}/train": fp_train, f"{name}/test": fp_test})


# ---------------------------------------------------------------------------------------
# torchvision pickle / binary formats
def _presence_only(cls):
    """A subclass of a torchvision data set that checks file presence instead of MD5.

    torchvision's MD5 table only matches the official full-size archives; small files of the
    same format (tests) and re-packed copies are accepted, and the run records a SHA-256 instead.
    """
    attrs = {"train_list": [[f, None] for f, _ in cls.train_list],
             "test_list": [[f, None] for f, _ in cls.test_list]}
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(f"{cls.__name__}Local", (cls,), attrs)


def _fingerprint_dir(folder: Path, names: Sequence[str]) -> str:
    return hdata.fingerprint_files([folder / n for n in names if (folder / n).exists()], root=folder)


def _load_cifar_pickles(name: str, base: Path) -> ImageSplits:
    from torchvision import datasets as tvd

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    folder = base / cls.base_folder
    local = _presence_only(cls)
    try:
        tr = local(str(base), train=True)
        te = local(str(base), train=False)
    except RuntimeError as exc:
        raise DataError(f"data set {name!r}: {folder} is incomplete ({exc}); expected layout: "
                        f"{LAYOUTS[name]}") from None
    except Exception as exc:  # unpickling errors of a damaged file
        raise DataError(f"data set {name!r}: cannot read {folder} ({type(exc).__name__}: {exc})") from None

    def to_set(ds) -> ImageSet:
        return ImageSet(torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous(),
                        torch.as_tensor(ds.targets, dtype=torch.int64))

    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    train = to_set(tr)
    return ImageSplits(name, train, train, to_set(te), list(tr.classes), f"torchvision {cls.__name__} {folder}",
                       {name: _fingerprint_dir(folder, files)})


def _load_stl10(base: Path) -> ImageSplits:
    from torchvision import datasets as tvd

    folder = base / tvd.STL10.base_folder
    local = _presence_only(tvd.STL10)
    try:
        sets = {s: local(str(base), split=s) for s in ("train", "unlabeled", "test")}
    except RuntimeError as exc:
        raise DataError(f"data set 'stl10': {folder} is incomplete ({exc}); expected layout: {LAYOUTS['stl10']}") from None
    except ValueError as exc:  # a .bin whose size is not a multiple of 3*96*96
        raise DataError(f"data set 'stl10': cannot read {folder} ({exc})") from None

    def to_set(ds) -> ImageSet:
        return ImageSet(torch.from_numpy(np.ascontiguousarray(ds.data)),
                        torch.from_numpy(np.asarray(ds.labels, dtype=np.int64)))

    train, unl, test = (to_set(sets[s]) for s in ("train", "unlabeled", "test"))
    if len(train.labels) != len(train.images) or len(test.labels) != len(test.images):
        raise DataError(f"data set 'stl10': label and image counts differ in {folder}")
    pretrain = ImageSet(torch.cat([train.images, unl.images]), torch.cat([train.labels, unl.labels]))
    classes = getattr(sets["train"], "classes", None) or [str(i) for i in range(int(train.labels.max()) + 1)]
    files = [f for f, _ in tvd.STL10.train_list + tvd.STL10.test_list]
    return ImageSplits("stl10", pretrain, train, test, list(classes), f"torchvision STL10 {folder}",
                       {"stl10": _fingerprint_dir(folder, files)})


def fetch_dataset(name: str, data_root: Path, *, allow: bool | None = True, log=print) -> None:
    """Download torchvision's archive of ``name`` (cifar10 | cifar100 | stl10) into the data root.

    Nothing happens when the data set is present. torchvision fetches the archive (from
    ``HARDNEG_MIRROR`` when set), checks its published MD5 and unpacks it into a staging
    folder that becomes ``<data_root>/<name>`` in one rename (the archive itself is not kept),
    so a failed download leaves no half-unpacked folder. Raises :class:`DataError` naming the URL.
    """
    kind, _ = parse_dataset_name(name)
    if kind == "folder":
        raise DataError(f"image data set {name!r} is a local folder and cannot be downloaded; allowed: "
                        f"{', '.join(KNOWN_DATASETS)}")
    data_root = Path(data_root)
    if data_present(name, data_root)[0]:
        return
    from torchvision import datasets as tvd
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "stl10": tvd.STL10}[kind]
    url = hdata.mirror_url(cls.url)
    base = data_root / kind
    if not hdata.downloads_allowed(allow):
        raise DataError(f"data set {kind!r} is missing under {data_root} and downloads are off; allow them "
                        f"(--download or {hdata.ENV_ALLOW_DOWNLOAD}=1) or unpack {url} into {base} yourself")
    if base.exists() and any(base.iterdir()):
        raise DataError(f"{base} exists but does not hold {LAYOUTS[kind]}; it is left alone: remove it to fetch {kind}")
    mirrored = type(cls.__name__, (cls,), {"url": url})
    with hdata.staged_dir(base) as tmp:
        try:
            if kind == "stl10":
                mirrored(str(tmp), split="test", download=True)
            else:
                mirrored(str(tmp), train=True, download=True)
        except (OSError, RuntimeError, ValueError, EOFError) as exc:  # offline, HTTP error, bad MD5, bad archive
            raise DataError(f"could not fetch {kind!r} from {url} ({type(exc).__name__}: {exc}); nothing was "
                            f"written to {base}") from None
        (tmp / cls.filename).unlink(missing_ok=True)
    log(f"image: downloaded {kind} from {url} into {base}")


def load_dataset(name: str, data_root: Path, *, download: bool | None = None, subsets: Subsets = Subsets(),
                 log=print) -> ImageSplits:
    """Load data set ``name`` ('cifar10' | 'cifar100' | 'stl10' | 'folder:PATH') from ``data_root``.

    ``subsets`` are applied (for ImageFolder trees only the chosen files are decoded unless the
    whole split is cached). Downloads (torchvision's, MD5-checked) happen only when
    ``hardneg.data.downloads_allowed(download)``; offline, a missing data set raises
    :class:`DataError` naming the expected layout.
    """
    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        root = Path(path).expanduser()
        if not root.is_absolute():
            root = data_root / root
        return _load_folder_tree(name, root, subsets, log=log)
    allow = hdata.downloads_allowed(download)
    if kind in ("cifar10", "cifar100"):
        from torchvision import datasets as tvd
        base = data_root / kind
        cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
        if (base / cls.base_folder).is_dir():
            return subsets.apply(_load_cifar_pickles(kind, base))
        if (base / "train").is_dir() and (base / "test").is_dir():
            return _load_folder_tree(kind, base, subsets, log=log)
        if allow:
            fetch_dataset(kind, data_root, log=log)
            return subsets.apply(_load_cifar_pickles(kind, base))
        raise DataError(f"data set {kind!r} not found under {data_root}; expected {LAYOUTS[kind]}. Downloads are "
                        f"off: set {hdata.ENV_ALLOW_DOWNLOAD}=1 (or pass --download) to fetch it with torchvision")
    base = data_root / "stl10"
    if (base / "stl10_binary").is_dir():
        return subsets.apply(_load_stl10(base))
    if allow:
        fetch_dataset("stl10", data_root, log=log)
        return subsets.apply(_load_stl10(base))
    raise DataError(f"data set 'stl10' not found under {data_root}; expected {LAYOUTS['stl10']}. Downloads are "
                    f"off: set {hdata.ENV_ALLOW_DOWNLOAD}=1 (or pass --download) to fetch it with torchvision")


#: the files torchvision's CIFAR10 / CIFAR100 / STL10 classes read (their train_list, test_list
#: and meta), named here so that fingerprinting a data set does not import torchvision (seconds)
_ARCHIVE_FILES = {
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                        "data_batch_5", "test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
    "stl10": ("stl10_binary", ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")),
}


def fingerprint_dataset(name: str, data_root: Path, subsets: Subsets = Subsets()) -> dict[str, str] | None:
    """The checksums :func:`load_dataset` records for ``name``, computed without decoding.

    For ImageFolder trees only the splits read whole (no ``train_subset`` / ``pretrain_subset``
    for train, no ``test_subset`` for test): a subset's recorded fingerprint depends on whether
    the whole split was cached when it ran. None when the data set is not there."""
    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        root = Path(path).expanduser()
        tree = root if root.is_absolute() else data_root / root
    elif kind in ("cifar10", "cifar100"):
        sub, files = _ARCHIVE_FILES[kind]
        folder = data_root / kind / sub
        if folder.is_dir():
            return {kind: _fingerprint_dir(folder, list(files))}
        tree = data_root / kind
    else:
        sub, files = _ARCHIVE_FILES["stl10"]
        folder = data_root / "stl10" / sub
        if not folder.is_dir():
            return None
        return {"stl10": _fingerprint_dir(folder, list(files))}
    if not (tree / "train").is_dir() or not (tree / "test").is_dir():
        return None
    out = {}
    for split, whole in (("train", not subsets.train_subset and not subsets.pretrain_subset),
                         ("test", not subsets.test_subset)):
        if whole:
            _, items = _list_folder(tree / split)
            out[f"{name}/{split}"] = hdata.fingerprint_files([p for p, _ in items], root=tree / split)
    return out


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


def data_present(name: str, data_root: Path) -> tuple[bool, str, str]:
    """(present, path, detail) for ``hardneg data check`` without loading pixels."""
    kind, path = parse_dataset_name(name)
    data_root = Path(data_root)
    if kind == "folder":
        root = Path(path) if Path(path).is_absolute() else data_root / path
        ok = (root / "train").is_dir() and (root / "test").is_dir()
        return ok, str(root), "" if ok else f"expected {LAYOUTS['folder']}"
    base = data_root / kind
    if kind == "stl10":
        ok = (base / "stl10_binary").is_dir()
    else:
        sub = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
        ok = (base / sub).is_dir() or ((base / "train").is_dir() and (base / "test").is_dir())
    return ok, str(base), "" if ok else f"expected {LAYOUTS[kind]}"
