"""ImageFolder trees: listing, PIL decoding, and the uint8 tensor cache.

A tree is ``<root>/{train,test}/<class>/<image>`` (extensions :data:`IMAGE_EXTENSIONS`); all
images of a tree must share one size and one mode (RGB, or L replicated to three channels), and
an image PIL cannot read raises :class:`DataError` naming its path.

Each split is decoded once (PIL) into a uint8 tensor cache under
``hardneg.data.cache_dir('image')``, keyed by a fingerprint of the file list (relative path,
size, mtime), so a later run loads 60,000 CIFAR-10 images in about a second. With subsets only
the chosen files are decoded (and cached under their own key) unless the whole split is cached.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hardneg import data as hdata
from hardneg.atomic import atomic_write
from hardneg.errors import DataError

from .data import LAYOUTS, ImageSet, ImageSplits, Subsets

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1


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


def load_folder_tree(name: str, root: Path, sub: Subsets, *, log=print) -> ImageSplits:
    """The splits of the tree ``root`` (``train/`` = pretrain and probe, ``test/``), ``sub`` applied."""
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


def fingerprint_folder_tree(name: str, tree: Path, subsets: Subsets) -> dict[str, str] | None:
    """The checksums :func:`load_folder_tree` records for the tree, computed without decoding.

    Only the splits read whole (no ``train_subset`` / ``pretrain_subset`` for train, no
    ``test_subset`` for test): a subset's recorded fingerprint depends on whether the whole
    split was cached when it ran. None when the tree lacks ``train/`` or ``test/``."""
    if not (tree / "train").is_dir() or not (tree / "test").is_dir():
        return None
    out = {}
    for split, whole in (("train", not subsets.train_subset and not subsets.pretrain_subset),
                         ("test", not subsets.test_subset)):
        if whole:
            _, items = _list_folder(tree / split)
            out[f"{name}/{split}"] = hdata.fingerprint_files([p for p, _ in items], root=tree / split)
    return out
