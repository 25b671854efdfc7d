"""Data-root resolution, writable caches, checksummed downloads and clear offline errors.

Where data live
    ``--data-root`` (passed as ``explicit``) wins, then the environment variable
    ``HARDNEG_DATA``, then a per-user folder (``$XDG_CACHE_HOME/hardneg/data`` or
    ``~/.cache/hardneg/data``). Loaders treat the root as read-only; only the fetchers
    (``hardneg data fetch``, ``hardneg run --download``) write there, and only whole folders
    at once (:func:`staged_dir`).

Where derived files go
    Anything a library wants to write next to the data (PyG's ``processed/``, tokeniser
    vocabularies, Arrow caches) and the downloaded archives go under :func:`cache_dir`:
    ``HARDNEG_CACHE`` or ``$XDG_CACHE_HOME/hardneg/cache``. Never under the data root.

Downloads
    :func:`download` fetches a URL to a file, with a progress bar. The bytes go to a
    temporary ``.part`` sibling that becomes the file (one rename) only once it is complete
    (as many bytes as the server announced), is not an HTML page served in place of the file,
    and matches its SHA-256 when one is given; so a file that exists is a finished download.
    It runs only when downloads are allowed; offline it raises :class:`DataError` naming the
    URL, the file and how to place it by hand.

Mirrors
    ``HARDNEG_MIRROR=BASE`` fetches every ``https://HOST/PATH`` as ``BASE/HOST/PATH``
    (:func:`mirror_url`): a folder tree laid out as ``wget -x`` writes it, served over HTTP or
    given as a ``file://`` URL, stands in for the original hosts (an institute's mirror, an
    offline machine, the tests' server on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

from . import atomic
from .errors import DataError

ENV_DATA = "HARDNEG_DATA"
ENV_CACHE = "HARDNEG_CACHE"
ENV_ALLOW_DOWNLOAD = "HARDNEG_ALLOW_DOWNLOAD"
ENV_MIRROR = "HARDNEG_MIRROR"
_CHUNK = 1 << 16


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


def mirror_url(url: str) -> str:
    """``url`` as fetched: ``$HARDNEG_MIRROR/HOST/PATH`` when the variable is set, else ``url``."""
    base = os.environ.get(ENV_MIRROR, "").strip()
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    rest = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
    return base.rstrip("/") + "/" + rest


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like an HTML page."""
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!-- ")) or (
        text.startswith(b"<?xml") and b"<html" in text)


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, allow: bool | None = None,
             timeout: float = 60.0, progress: bool | None = None) -> Path:
    """Fetch ``url`` (through :func:`mirror_url`) to ``dest``, atomically; returns ``dest``.

    An existing ``dest`` with the right checksum (or any existing one when ``sha256`` is None:
    only finished downloads are ever renamed into place) is reused without a request. Raises
    :class:`DataError`, naming the URL and ``dest``, when downloads are off, the host cannot
    be reached or answers an HTTP error, fewer bytes arrive than announced, an HTML page
    arrives instead of the file, or the SHA-256 differs; nothing is left at ``dest`` then.
    ``progress`` None shows a bar on a terminal only.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    src = mirror_url(url)
    if not downloads_allowed(allow):
        raise DataError(
            f"{dest} is missing and downloads are off. Either allow downloads "
            f"(--download or {ENV_ALLOW_DOWNLOAD}=1) or fetch {src} yourself and place it at {dest}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write {dest} ({exc.strerror}); the folder must be writable to download "
                        f"{src} into it") from None
    _remove_stale_parts(dest)
    tmp = temp_sibling(dest, ".part")
    try:
        got, total = _fetch_to(src, tmp, dest, timeout, progress)
        if total is not None and got != total:
            raise DataError(f"download of {src} stopped early: {got} of {total} bytes arrived; nothing was "
                            f"written to {dest}, try again")
        with open(tmp, "rb") as fh:
            head = fh.read(512)
        if looks_like_html(head) and not dest.name.lower().endswith((".html", ".htm")):
            raise DataError(f"{src} served an HTML page instead of {dest.name} (an error or login page?); "
                            f"nothing was written to {dest}")
        if sha256 is not None:
            digest = sha256_file(tmp)
            if digest != sha256:
                raise DataError(f"checksum mismatch for {src} ({dest.name}): expected sha256 {sha256}, got "
                                f"{digest}; the file was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch_to(src: str, tmp: Path, dest: Path, timeout: float, progress: bool | None) -> tuple[int, int | None]:
    from tqdm.auto import tqdm

    from . import __version__
    req = urllib.request.Request(src, headers={"User-Agent": f"hardneg/{__version__} (data fetch)"})
    got, total = 0, None
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, leave=False,
                      disable=None if progress is None else not progress) as bar:
                while block := resp.read(_CHUNK):
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        raise DataError(f"could not download {src} (HTTP {exc.code} {exc.reason}); nothing was written to "
                        f"{dest}. Fetch it elsewhere and place it at {dest}") from None
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"could not download {src} ({reason}); this machine may be offline. Fetch it "
                        f"elsewhere and place it at {dest}") from None
    except http.client.HTTPException as exc:  # IncompleteRead and friends: the caller sees the short count
        if total is None:
            raise DataError(f"download of {src} broke off ({type(exc).__name__}); nothing was written to "
                            f"{dest}, try again") from None
    return got, total


def _remove_stale_parts(dest: Path) -> None:
    """Delete ``.part`` leftovers of ``dest`` whose writing process is gone (a killed download)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        pid = part.name[len(dest.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``dest``; when the block ends without an error it becomes
    ``dest`` (one rename; an old ``dest`` is moved aside first and deleted), else it is deleted.

    Readers therefore see either the old folder or the complete new one, never a half-written
    one. If another process installed ``dest`` meanwhile, its copy is kept.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise DataError(f"cannot write {dest} ({exc.strerror}); the data root must be writable to fetch into "
                        "it (or point --data-root / HARDNEG_DATA at a writable folder)") from None
    try:
        yield tmp
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_archive(path: Path, url: str, members: Iterable[str]) -> dict[str, bytes]:
    """The named members of a zip or .tar.gz archive, as bytes.

    Raises :class:`DataError` naming ``url`` and the file when the archive is truncated or
    damaged (bad zip directory or CRC, gzip stream ending early) or lacks a member; the
    archive is deleted then, so the next fetch downloads it again.
    """
    wanted = list(members)
    out: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                for m in wanted:
                    if m in names:
                        out[m] = zf.read(m)       # checks the member's CRC
        else:
            with tarfile.open(path, mode="r:*") as tf:
                for info in tf:
                    if info.name in wanted and info.isfile():
                        out[info.name] = tf.extractfile(info).read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        path.unlink(missing_ok=True)
        raise DataError(f"the archive {path.name} from {url} is truncated or damaged ({type(exc).__name__}: "
                        f"{exc}); it was removed, fetch again") from None
    missing = [m for m in wanted if m not in out]
    if missing:
        path.unlink(missing_ok=True)
        raise DataError(f"the archive {path.name} from {url} lacks {', '.join(missing)} (truncated, or not the "
                        "expected archive); it was removed, fetch again")
    return out


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


def temp_sibling(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A temporary path beside ``path`` naming this process (pid) and call, for a download's
    ``.part`` file: several runners share the cache, and a killed download's leftover is
    recognised by its dead pid (:func:`_remove_stale_parts`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
