"""Atomic writes: the one way hardneg writes a file (records, checkpoints, caches, reports).

A file is written to a temporary sibling in the same folder (``.tmp-<name>-<pid>-<random>.part``:
unique per process and call, because several runners share the caches), flushed and
fsync'ed, renamed over the final name with ``os.replace`` (atomic on POSIX and Windows),
and the folder is fsync'ed. A reader therefore sees the old file or the whole new one,
whatever kills the writer; a killed writer leaves at most a ``.tmp-*`` file, which
:func:`hardneg.record.clean_stale` removes from results folders and which caches ignore.

Folders (a cache entry of several files) are built in a temporary sibling folder and
renamed into place by :func:`atomic_dir`; a folder that already exists (a report) is
swapped for the new one by :func:`replace_dir`.

Errors are the caller's ``OSError``; callers that face users turn them into messages
(see :func:`hardneg.record.explain_oserror`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, binary: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success of the block it replaces ``path``.

    ``with atomic_write(p, binary=True) as fh: torch.save(state, fh)``. If the block raises,
    the temporary file is removed and ``path`` is untouched. The new file gets ordinary
    permissions (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.stem}-{os.getpid()}-", suffix=".part", dir=folder)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
        except (AttributeError, OSError):
            pass
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_write(path) as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, binary=True) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, existing_ok: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Build a folder in a temporary sibling of ``final``; rename it to ``final`` when the block succeeds.

    If ``final`` appeared meanwhile (another process built the same entry) and
    ``existing_ok(final)`` says it is whole, the new copy is discarded; otherwise the
    rename's error propagates. The temporary folder never outlives the block.
    """
    final = Path(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-{os.getpid()}-{secrets.token_hex(2)}-",
                                dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if existing_ok is None or not existing_ok(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_RENAME_EXCHANGE = 2  # renameat2(2) flag (Linux >= 3.15)
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def replace_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temporary sibling of ``final``; when the block succeeds it replaces ``final``.

    Where the kernel can (Linux renameat2 with RENAME_EXCHANGE), the old and the new folder are
    exchanged in one step, so whatever kills the writer, ``final`` is the whole old folder or the
    whole new one. Elsewhere the old folder is first renamed aside (``.tmp-<name>-old-...``) and
    the new one renamed in; a kill between the two renames leaves the old folder aside, which
    the next call restores before it starts. A failed block leaves ``final`` untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = sorted(final.parent.glob(f"{TMP_PREFIX}{final.name}-old-*"))
    if aside and not final.exists():
        os.rename(aside[-1], final)              # an earlier writer was killed between its renames
    for stale in final.parent.glob(f"{TMP_PREFIX}{final.name}-old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-{os.getpid()}-{secrets.token_hex(2)}-",
                                dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if not final.exists():
            os.rename(tmp, final)
        elif not _exchange(tmp, final):
            old = final.with_name(f"{TMP_PREFIX}{final.name}-old-{os.getpid()}-{secrets.token_hex(2)}")
            os.rename(final, old)
            os.rename(tmp, final)
            tmp = old
        _fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
