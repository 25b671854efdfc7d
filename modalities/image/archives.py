"""The torchvision pickle / binary formats: CIFAR-10/100 pickles, STL-10 binary, and their downloads.

* ``cifar10``:  ``<root>/cifar10/cifar-10-batches-py/`` (torchvision pickles).
* ``cifar100``: ``<root>/cifar100/cifar-100-python/{train,test,meta}``.
* ``stl10``:    ``<root>/stl10/stl10_binary/{train_X,train_y,test_X,test_y,unlabeled_X}.bin``.

The files are read through torchvision's own dataset classes (imported on use, never at import
time); their MD5 table only matches the official full-size files, so the loader checks presence
and records its own SHA-256 fingerprint instead. Downloads, when allowed, still go through
torchvision's checksummed download (:func:`fetch_dataset`). Which files each format holds is
named in :data:`_ARCHIVE_FILES`, so that presence checks and fingerprints need no torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hardneg import data as hdata
from hardneg.errors import DataError

from .data import KNOWN_DATASETS, LAYOUTS, ImageSet, ImageSplits, data_present, parse_dataset_name

#: the files torchvision's CIFAR10 / CIFAR100 / STL10 classes read (their train_list, test_list
#: and meta), named here so that presence checks and fingerprints do not import torchvision (seconds)
_ARCHIVE_FILES = {
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                        "data_batch_5", "test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
    "stl10": ("stl10_binary", ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")),
}


def archive_dir(kind: str, data_root: Path) -> Path:
    """Where the files of ``kind`` (cifar10 | cifar100 | stl10) lie: ``<data_root>/<kind>/<base folder>``."""
    return Path(data_root) / kind / _ARCHIVE_FILES[kind][0]


def fingerprint_archive(kind: str, data_root: Path) -> dict[str, str] | None:
    """``{kind: SHA-256}`` of the files :func:`load_cifar_pickles` / :func:`load_stl10` record,
    computed without torchvision; None when their folder is not there."""
    folder = archive_dir(kind, data_root)
    if not folder.is_dir():
        return None
    return {kind: _fingerprint_dir(folder, list(_ARCHIVE_FILES[kind][1]))}


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


def load_cifar_pickles(name: str, base: Path) -> ImageSplits:
    """The CIFAR-10/100 pickles under ``base`` (``<root>/<name>``); pretrain and probe are the train split."""
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


def load_stl10(base: Path) -> ImageSplits:
    """The STL-10 binary under ``base``: pretrain = train+unlabeled, probe = train, test = test."""
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
