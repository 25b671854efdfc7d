"""Data-root resolution, writable caches, checksummed downloads and clear offline errors.

Where data live
    ``--data-root`` (passed as ``explicit``) wins, then the environment variable
    ``HARDNEG_DATA``, then a per-user folder (``$XDG_CACHE_HOME/hardneg/data`` or
    ``~/.cache/hardneg/data``). Every loader takes its files from this root and treats it
    as read-only.

Where derived files go
    Anything a library wants to write next to the data (PyG's ``processed/``, tokeniser
    vocabularies, Arrow caches) goes under :func:`cache_dir`: ``HARDNEG_CACHE`` or
    ``$XDG_CACHE_HOME/hardneg/cache``. Never under the data root.

Downloads
    :func:`download` fetches a URL to a file, verifies its SHA-256, and writes atomically.
    It runs only when the caller allows downloads; offline it raises :class:`DataError`
    naming the URL, the expected file and how to place it by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

from . import atomic
from .errors import DataError

ENV_DATA = "HARDNEG_DATA"
ENV_CACHE = "HARDNEG_CACHE"
ENV_ALLOW_DOWNLOAD = "HARDNEG_ALLOW_DOWNLOAD"


def _user_cache_base() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path.home() / ".cache"


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit`` > ``$HARDNEG_DATA`` > ``~/.cache/hardneg/data``."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser().resolve()
    return (_user_cache_base() / "hardneg" / "data").resolve()


def cache_dir(*parts: str) -> Path:
    """A writable cache folder (created on demand) for files derived from the data."""
    env = os.environ.get(ENV_CACHE)
    base = Path(env).expanduser() if env else _user_cache_base() / "hardneg" / "cache"
    path = base.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder {path} ({exc.strerror}); set {ENV_CACHE} to a "
            "writable folder") from None
    if not os.access(path, os.W_OK):
        raise DataError(f"the cache folder {path} is not writable; set {ENV_CACHE} to a writable folder")
    return path


def downloads_allowed(explicit: bool | None = None) -> bool:
    """Downloads run only when asked: ``explicit`` or ``HARDNEG_ALLOW_DOWNLOAD=1``."""
    if explicit is not None:
        return bool(explicit)
    return os.environ.get(ENV_ALLOW_DOWNLOAD, "").lower() in {"1", "true", "yes"}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             allow: bool | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (atomically), verifying ``sha256`` when given.

    An existing ``dest`` with the right checksum is reused. Raises :class:`DataError` when
    downloads are not allowed, the network is unreachable, or the checksum differs; a
    partial file is never left at ``dest``.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    if not downloads_allowed(allow):
        raise DataError(
            f"{dest} is missing and downloads are off. Either allow downloads "
            f"(--download or {ENV_ALLOW_DOWNLOAD}=1) or fetch {url} yourself and place it at {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataError(
                    f"could not download {url} ({reason}); this machine may be offline. "
                    f"Fetch it elsewhere and place it at {dest}") from None
        if sha256 is not None:
            got = sha256_file(tmp)
            if got != sha256:
                raise DataError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
                                "the file was discarded")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def fingerprint_files(paths: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None) -> str:
    """A SHA-256 over the contents of ``paths`` (sorted), cached by (path, size, mtime).

    Used to record which data version a run saw. Hashing is cached in the cache folder so
    that a 60,000-file image tree costs a stat per file after the first run.
    """
    files = sorted(Path(p) for p in paths)
    cache_file = cache_dir("fingerprints") / "index.json"
    try:
        index = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        index = {}
    h = hashlib.sha256()
    changed = False
    for f in files:
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = index.get(key)
        if digest is None:
            digest = sha256_file(f)
            index[key] = digest
            changed = True
        rel = f.relative_to(root) if root is not None else f.name
        h.update(f"{rel}\0{digest}\n".encode())
    if changed:
        atomic.write_text(cache_file, json.dumps(index))   # a concurrent writer's index may win; both are valid
    return h.hexdigest()
