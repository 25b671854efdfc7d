"""Atomic writes: the one way hardneg writes a file (records, checkpoints, caches, reports).

A file is written to a temporary sibling in the same folder (``.tmp-<name>-<pid>-<random>.part``:
unique per process and call, because several runners share the caches), flushed and
fsync'ed, renamed over the final name with ``os.replace`` (atomic on POSIX and Windows),
and the folder is fsync'ed. A reader therefore sees the old file or the whole new one,
whatever kills the writer; a killed writer leaves at most a ``.tmp-*`` file, which
:func:`hardneg.record.clean_stale` removes from results folders and which caches ignore.

Folders (a cache entry of several files) are built in a temporary sibling folder and
renamed into place by :func:`atomic_dir`.

Errors are the caller's ``OSError``; callers that face users turn them into messages
(see :func:`hardneg.record.explain_oserror`).
"""

from __future__ import annotations

import contextlib
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
