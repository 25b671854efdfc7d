"""The book corpus: BookCorpus-style books read through the ``datasets`` library, and runs of
consecutive sentences for quick-thought's batches (see :mod:`modalities.sentence`)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from hardneg.data import fingerprint_files
from hardneg.errors import DataError, HardnegError

__all__ = ["book_files", "load_corpus", "consecutive_runs"]


def book_files(books_dir: Path) -> list[Path]:
    """The books in corpus order: manifest.json order if present, else sorted *.txt.gz."""
    if not books_dir.is_dir():
        raise DataError(f"book corpus folder {books_dir} does not exist; expected <data_root>/books "
                        "with *.txt.gz files (one sentence per line) and an optional manifest.json")
    manifest = books_dir / "manifest.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
            names = [e["file"] for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{manifest}: expected a JSON list of objects with a 'file' key ({exc})") from None
        files = [books_dir / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{manifest} lists book file(s) that do not exist: {', '.join(missing)}")
    else:
        files = sorted(books_dir.glob("*.txt.gz"))
    if not files:
        raise DataError(f"empty book corpus: no *.txt.gz files in {books_dir}")
    return files


def _read_book_lines(files: list[tuple[int, str]], fingerprint: str) -> Iterator[dict[str, Any]]:
    """Generator for ``datasets``: one row per sentence (book index, line number, text).

    ``fingerprint`` only keys the Arrow cache to the files' contents.
    """
    # (index, path) pairs: ``datasets`` may shard a list argument, so the index travels with the file
    for b, path in files:
        lineno = 0
        try:
            with gzip.open(path, "rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise DataError(f"{path}, line {lineno}: text is not valid UTF-8 ({exc.reason} at byte "
                                        f"{exc.start}); the book corpus must be UTF-8") from None
                    text = text.strip()
                    if text:
                        yield {"book": b, "line": lineno, "text": text}
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut stream, EOFError
            what = "is not a gzip file" if lineno == 0 and isinstance(exc, gzip.BadGzipFile) else (
                f"is truncated or damaged after line {lineno}")
            raise DataError(f"book {path} {what} ({exc}); every book must be a complete gzip file "
                            "(*.txt.gz): replace it, or remove the books folder and fetch it again") from None


def load_corpus(books_dir: Path, cache: Path) -> tuple["Any", list[Path], str]:
    """The book corpus as a ``datasets.Dataset`` (columns book, line, text), its files and checksum."""
    import datasets
    from datasets.exceptions import DatasetGenerationError
    files = book_files(books_dir)
    fp = fingerprint_files(files, root=books_dir)
    try:
        with _quiet_datasets():
            ds = datasets.Dataset.from_generator(
                _read_book_lines, gen_kwargs={"files": [(b, str(f)) for b, f in enumerate(files)], "fingerprint": fp},
                cache_dir=str(cache / "hf-datasets"),
                features=datasets.Features({"book": datasets.Value("int32"), "line": datasets.Value("int32"),
                                            "text": datasets.Value("string")}))
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, HardnegError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    except ValueError as exc:
        if "no data" not in str(exc):  # datasets' wording when the generator yields no row
            raise
        raise DataError(f"empty book corpus: the files in {books_dir} hold no non-blank line") from None
    if len(ds) == 0:
        raise DataError(f"empty book corpus: the files in {books_dir} hold no non-blank line")
    return ds, files, fp


class _quiet_datasets:
    def __enter__(self):
        import datasets
        self._was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *a):
        import datasets
        if self._was:
            datasets.enable_progress_bars()


def consecutive_runs(book_lengths: Sequence[int], batch_size: int, offsets: Sequence[int] | None = None
                     ) -> tuple[list[tuple[int, int]], int]:
    """Runs ``(start, end)`` in corpus-global sentence indices: ``batch_size`` consecutive
    sentences of one book each, book ``b`` chunked from ``offsets[b]``; also returns how
    many sentences were left out (offset heads and tails that do not fill a run)."""
    runs, start, dropped = [], 0, 0
    for b, n in enumerate(book_lengths):
        off = 0 if offsets is None else int(offsets[b])
        if n - off < batch_size:
            off = 0
        k = (n - off) // batch_size
        runs += [(start + off + i * batch_size, start + off + (i + 1) * batch_size) for i in range(k)]
        dropped += n - k * batch_size
        start += n
    return runs, dropped
