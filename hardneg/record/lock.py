"""The results folder's lock: one runner process writes a folder at a time (:func:`hardneg.runner.run_suite`)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .provenance import utc_now
from . import ResultsError
from .store import atomic_write_text, ensure_writable

LOCK_INFO = ".runner.json"


class ResultsLockedError(ResultsError):
    """Another runner holds the results folder."""


class FolderLock:
    """Exclusive, non-blocking lock on a results folder for one runner process.

    POSIX: ``flock`` on the folder's own descriptor; the kernel drops it when the process
    ends, however it ends. A small ``.runner.json`` beside the records names the holder for
    the message a second runner prints; it is removed on release (a stale one after a kill
    is harmless and overwritten). Elsewhere: an exclusive-create lock file.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._fd: int | None = None
        self._excl: Path | None = None

    def _holder(self) -> str:
        try:
            info = json.loads((self.folder / LOCK_INFO).read_text())
            return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started_at')}: "
                    f"{info.get('command')}")
        except (OSError, ValueError):
            return "holder unknown"

    def acquire(self) -> "FolderLock":
        ensure_writable(self.folder)
        msg = (f"results folder {self.folder} is in use by another hardneg runner ({{holder}}). "
               "Wait for it to finish, or pass --results with another folder.")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            fcntl = None
        if fcntl is not None:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ResultsLockedError(msg.format(holder=self._holder())) from None
            except OSError as exc:  # file systems without flock support
                os.close(fd)
                raise ResultsError(f"cannot lock results folder {self.folder}: {exc.strerror}") from None
            self._fd = fd
        else:  # pragma: no cover
            path = self.folder / ".hardneg.lock"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise ResultsLockedError(msg.format(holder=self._holder()) +
                                         f" If no runner is alive, delete {path}.") from None
            self._excl = path
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now(),
                "command": " ".join(sys.argv)}
        try:
            atomic_write_text(self.folder / LOCK_INFO, json.dumps(info) + "\n")
        except ResultsError:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self._fd is None and self._excl is None:
            return
        try:
            (self.folder / LOCK_INFO).unlink()
        except OSError:
            pass
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._excl is not None:  # pragma: no cover
            try:
                self._excl.unlink()
            except OSError:
                pass
            self._excl = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
