"""Fetching the sentence modality's data: the SentEval tasks and the Project Gutenberg books.

Both run only when downloads are allowed (``hardneg data fetch``, ``hardneg run --download``
or ``HARDNEG_ALLOW_DOWNLOAD=1``), download through :func:`hardneg.data.download` (progress
bar, ``HARDNEG_MIRROR``, clear offline errors; archives are kept in the cache, never in the
data root) and install each folder in one rename (:func:`hardneg.data.staged_dir`), so the
data root holds a whole folder or none.

SentEval (Conneau & Kiela, 2018), into ``<data_root>/senteval/downstream``
    The sources and the post-processing of SentEval's ``data/downstream/get_transfer_data.bash``:
    MR, CR, SUBJ and MPQA from its ``datasmall_NB_ACL12.zip`` through ``cat -v`` and the Penn
    Treebank rules (:mod:`.text`); TREC from the UIUC question-classification pages with every
    backquote and apostrophe deleted; SST2 from the PrincetonML/SIF files unchanged; STS-B from
    the STS wiki's ``Stsbenchmark.tar.gz`` unchanged (SentEval also Moses-tokenises and
    lower-cases STS-B; this project keeps the original text, as sentence-transformers scores
    it). Two departures, because a checked copy must be the one the benchmark's records were
    made on: TREC's pages now live at cogcomp.seas.upenn.edu (the script names the old
    Illinois host), and MRPC comes from a pinned commit of the GitHub repository
    Pzeyang/Paraphrase_Identification (the raw MSR files with 4 appended toy rows, whose ids
    are -1, deleted) -- the copy SentEval serves differs from it (its published MD5s, in
    torchtext, are not those of these files) and no SHA-256 of it could be checked.
    ``SENTEVAL_FILES`` holds the SHA-256 of every file written, i.e. of the files the loaders
    read, not of the archives (no archive could be checked from here; the files it unpacks to
    could). A mismatch -- a changed upstream file, a bad mirror -- stops the task and writes
    nothing. No Hugging Face Hub copy is used: none with these exact files (SentEval's
    tokenisation, MRPC's columns, STS-B's seven columns) could be verified.

Books (``<data_root>/books``)
    The 41 novels of ``BOOKS`` (Project Gutenberg ids, titles, authors) fetched by id
    (``GUTENBERG_URL``), the Gutenberg header and footer cut at the ``*** START/END OF ...
    ***`` lines, paragraphs unwrapped, split into sentences by :func:`.text.split_sentences`
    (this project's rule-based splitter), one sentence per line with a blank line between
    paragraphs, gzipped reproducibly (no name, mtime 0). ``manifest.json`` lists, per book,
    the URL, the SHA-256 of the text fetched and of the ``.txt.gz`` written, and its counts
    beside the counts of the reference corpus the project's records were made on
    (``reference``): Gutenberg revises its files, and this splitter is not the one that made
    the reference, so counts differ a little; the manifest records by how much.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from hardneg.data import cache_dir, download, mirror_url, read_archive, sha256_file, staged_dir
from hardneg.errors import DataError
from hardneg.evaluation import senteval

from .text import GutenbergFormatError, book_text, ptb_tokenize, strip_quotes_trec

__all__ = ["BOOKS", "GUTENBERG_URL", "SENTEVAL_FILES", "Book", "SourceFile", "fetch_books", "fetch_senteval",
           "fetch_for_run", "books_present"]

_NB_ZIP = "https://dl.fbaipublicfiles.com/senteval/senteval_data/datasmall_NB_ACL12.zip"
_TREC = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
_SST = "https://raw.githubusercontent.com/PrincetonML/SIF/master/data/"
_STSB = "http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz"
_MRPC = "https://raw.githubusercontent.com/Pzeyang/Paraphrase_Identification/dc1755eb1a4755ca310f97209391f1f5c06e2fd1/"


@dataclass(frozen=True)
class SourceFile:
    """One file of a task folder: where it comes from, how it is made, its SHA-256."""

    name: str               # path inside the task's folder
    url: str
    member: str | None      # path inside the archive at ``url``; None: ``url`` is the file itself
    transform: str          # 'ptb' | 'trec' | 'mrpc' | 'none' (see _TRANSFORMS)
    sha256: str             # of the file written


def _drop_toy_rows(raw: bytes) -> bytes:
    """MRPC train: delete the appended example rows whose two sentence ids are -1."""
    lines = raw.splitlines(keepends=True)
    return b"".join(x for x in lines if x.split(b"\t")[1:3] != [b"-1", b"-1"])


_TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "ptb": ptb_tokenize, "trec": strip_quotes_trec, "mrpc": _drop_toy_rows, "none": lambda b: b}


def _f(name, url, member, transform, sha256):
    return SourceFile(name, url, member, transform, sha256)


#: task -> (folder under senteval/downstream, its files); SHA-256 of the files SentEval's
#: pipeline produces, checked against the project's reference copy of the data
SENTEVAL_FILES: dict[str, tuple[str, tuple[SourceFile, ...]]] = {
    "MR": ("MR", (
        _f("rt-polarity.pos", _NB_ZIP, "data/rt10662/rt-polarity.pos", "ptb",
           "34e5b0da2d491e46b700b00afe735aaae0962bcfe4f7f22b2d8077e714fa370f"),
        _f("rt-polarity.neg", _NB_ZIP, "data/rt10662/rt-polarity.neg", "ptb",
           "c4ac36eaa8adc8ee31c31f69594bfbe68d83ef5b6db53f1f19b28c0be52f3999"))),
    "CR": ("CR", (
        _f("custrev.pos", _NB_ZIP, "data/customerr/custrev.pos", "ptb",
           "91a20a4ffeb5d38a39a4087bb247e16538aff21e7d621ae59738379f39f21732"),
        _f("custrev.neg", _NB_ZIP, "data/customerr/custrev.neg", "ptb",
           "ec94532766f6f962094841ab3bee2ad6f232f996c3756825a91e78bcc294750f"))),
    "SUBJ": ("SUBJ", (
        _f("subj.objective", _NB_ZIP, "data/subj/subj.objective", "ptb",
           "d8ccd43f1674f1c17e4ab717564e3561cfb719b0db4cfb19e5677427c68ff8a1"),
        _f("subj.subjective", _NB_ZIP, "data/subj/subj.subjective", "ptb",
           "274c2ffe59c204dc4df779848561786f59a98cc20dda3cfdd7d9f76a4f730710"))),
    "MPQA": ("MPQA", (
        _f("mpqa.pos", _NB_ZIP, "data/mpqa/mpqa.pos", "ptb",
           "7487dbb74c77383e60b292845495163a9e21fb70a4fdacdda933413e43163f0d"),
        _f("mpqa.neg", _NB_ZIP, "data/mpqa/mpqa.neg", "ptb",
           "8da6e035fa4cea02f0555091096b29a6b3995ff0adf41fad25008dcee066b79e"))),
    "TREC": ("TREC", (
        _f("train_5500.label", _TREC + "train_5500.label", None, "trec",
           "8bd6e79493f43bbd22c364587366a1dced54e1e31259eaa92721a0f526031116"),
        _f("TREC_10.label", _TREC + "TREC_10.label", None, "trec",
           "86ad53c8fc9d397ab2f4be7c967d8efb470b260140557d3e57afad69d1b88b76"))),
    "MRPC": ("MRPC", (
        _f("msr_paraphrase_train.txt", _MRPC + "msr_paraphrase_train.txt", None, "mrpc",
           "f3d26d73bb3510032f80836e2e81cf32c71863f8dd6151aa80a125c2c799a557"),
        _f("msr_paraphrase_test.txt", _MRPC + "msr_paraphrase_test.txt", None, "none",
           "51a1f197d8786712d2f0d97700f5be653b7488a96cde00e158159350d23e3d90"))),
    "SST2": ("SST/binary", tuple(
        _f(f"sentiment-{split}", _SST + f"sentiment-{split}", None, "none", sha) for split, sha in (
            ("train", "10a92a297ec38e262386e5a2713b4bc70e5d18ced88b7f54bd171a26e5b34ab5"),
            ("dev", "9a6c7403b71a9b762158387afe4431253ae10cdfb2319b5275289f3766f48291"),
            ("test", "4fefd1cd67526cf87ebc7fafc3afc21cc7cfa6ae53b45e74f77f9456e3c62752")))),
    "STSB": ("STS/STSBenchmark", tuple(
        _f(name, _STSB, f"stsbenchmark/{name}", "none", sha) for name, sha in (
            ("sts-train.csv", "fbe68f39a712ff9e80d48906d62547bde42a8154a37dfb5ad78002f29a810fb3"),
            ("sts-dev.csv", "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234"),
            ("sts-test.csv", "affe45928a66ee5a708531233c95b7dacbbdc57f974f002a3d32ea0180cf816a"),
            ("LICENSE.txt", "3dfc3217395f8c5dd05c5f8995f25fe2f8fd258e6dd770b3de480749caee8c70"),
            ("readme.txt", "e9488363d211c32ca5e912954f16eb9233cfed1b5b4b0475d0d812d35d7c8ef1")))),
}


def _cached(url: str, folder: str) -> Path:
    """Where the download of ``url`` is kept: the cache, under a name unique to the URL."""
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    return cache_dir("downloads", folder) / f"{tag}-{url.rstrip('/').rsplit('/', 1)[-1]}"


def _refuse_foreign(folder: Path, what: str, hint: str) -> None:
    if folder.exists():
        raise DataError(f"{folder} exists but is incomplete ({hint}); it was not made by a fetch (those are "
                        f"installed whole), so it is left alone: remove it to fetch {what}")


def fetch_senteval(data_root: str | Path, tasks: Iterable[str] = senteval.TASKS, *, allow: bool | None = None,
                   log: Callable[[str], None] = print) -> list[str]:
    """Fetch the missing SentEval ``tasks`` into ``<data_root>/senteval/downstream``; returns
    the tasks fetched. Every file is checked against ``SENTEVAL_FILES`` before its task
    folder is installed (module docstring); any error leaves the data root as it was."""
    tasks = list(dict.fromkeys(tasks))
    base = senteval.downstream_root(data_root)
    fetched = []
    for task in tasks:
        missing = senteval.check_files(data_root, [task])      # also rejects unknown task names
        if not missing:
            continue
        folder_rel, files = SENTEVAL_FILES[task]
        folder = base / folder_rel
        _refuse_foreign(folder, f"SentEval {task}", "lacks " + ", ".join(p.name for p in missing))
        made = {}
        for sf in files:                                   # everything checked before anything is written
            data = _TRANSFORMS[sf.transform](_source_bytes(sf, allow))
            digest = hashlib.sha256(data).hexdigest()
            if digest != sf.sha256:
                _cached(sf.url, "senteval").unlink(missing_ok=True)
                raise DataError(f"SentEval {task}: {sf.name} made from {mirror_url(sf.url)}"
                                f"{f' ({sf.member})' if sf.member else ''} has sha256 {digest}, expected "
                                f"{sf.sha256}; nothing was written to {folder} (the download was discarded; "
                                "if it persists the upstream file changed: place the task by hand)")
            made[sf.name] = data
        with staged_dir(folder) as tmp:
            for name, data in made.items():
                (tmp / name).write_bytes(data)
        log(f"sentence: SentEval {task} -> {folder} ({len(files)} files, sha256 checked)")
        fetched.append(task)
    return fetched


def _source_bytes(sf: SourceFile, allow: bool | None) -> bytes:
    path = download(sf.url, _cached(sf.url, "senteval"), allow=allow)
    if sf.member is None:
        return path.read_bytes()
    return read_archive(path, mirror_url(sf.url), [sf.member])[sf.member]


# ---- books ---------------------------------------------------------------------------
GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt"


@dataclass(frozen=True)
class Book:
    """A novel of the corpus and the counts of the reference copy (PROVENANCE of the data)."""

    gutenberg_id: int
    title: str
    author: str
    ref_paragraphs: int
    ref_sentences: int
    ref_words: int

    @property
    def file(self) -> str:
        return f"pg{self.gutenberg_id:05d}.txt.gz"

    @property
    def url(self) -> str:
        return GUTENBERG_URL.format(id=self.gutenberg_id)


#: the corpus, in corpus order: Project Gutenberg id, title, author, reference counts
BOOKS: tuple[Book, ...] = tuple(Book(*b) for b in (
    (1184, 'The Count of Monte Cristo', 'Alexandre Dumas', 11987, 24926, 460041),
    (135, 'Les Miserables', 'Victor Hugo', 13608, 35157, 565698),
    (1400, 'Great Expectations', 'Charles Dickens', 3898, 9394, 184385),
    (158, 'Emma', 'Jane Austen', 2376, 7164, 157441),
    (219, 'Heart of Darkness', 'Joseph Conrad', 203, 2394, 37908),
    (236, 'The Jungle Book', 'Rudyard Kipling', 978, 3088, 50836),
    (244, 'A Study in Scarlet', 'Arthur Conan Doyle', 841, 2695, 43763),
    (2554, 'Crime and Punishment', 'Fyodor Dostoevsky', 3969, 14728, 203504),
    (2591, "Grimms' Fairy Tales", 'Jacob and Wilhelm Grimm', 978, 4350, 101109),
    (2600, 'War and Peace', 'Leo Tolstoy', 12106, 31154, 563023),
    (2701, 'Moby Dick; or The Whale', 'Herman Melville', 2795, 9289, 212730),
    (2814, 'Dubliners', 'James Joyce', 1705, 4756, 67560),
    (4300, 'Ulysses', 'James Joyce', 7088, 24129, 264931),
    (74, 'The Adventures of Tom Sawyer', 'Mark Twain', 2099, 5294, 70801),
    (76, 'Adventures of Huckleberry Finn', 'Mark Twain', 2473, 6381, 111217),
    (98, 'A Tale of Two Cities', 'Charles Dickens', 3327, 7564, 135842),
    (120, 'Treasure Island', 'Robert Louis Stevenson', 1470, 3739, 68589),
    (161, 'Sense and Sensibility', 'Jane Austen', 1865, 4711, 118580),
    (174, 'The Picture of Dorian Gray', 'Oscar Wilde', 1523, 6323, 78934),
    (1952, 'The Yellow Wallpaper', 'Charlotte Perkins Gilman', 268, 385, 6067),
    (33, 'The Scarlet Letter', 'Nathaniel Hawthorne', 814, 3384, 83625),
    (345, 'Dracula', 'Bram Stoker', 2253, 9164, 161378),
    (35, 'The Time Machine', 'H. G. Wells', 322, 1910, 32306),
    (46, 'A Christmas Carol', 'Charles Dickens', 722, 1769, 28541),
    (768, 'Wuthering Heights', 'Emily Bronte', 1944, 6263, 115899),
    (1661, 'The Adventures of Sherlock Holmes', 'Arthur Conan Doyle', 2547, 6652, 104504),
    (36, 'The War of the Worlds', 'H. G. Wells', 921, 3309, 60076),
    (43, 'The Strange Case of Dr. Jekyll and Mr. Hyde', 'Robert Louis Stevenson', 362, 1140, 25628),
    (829, "Gulliver's Travels", 'Jonathan Swift', 689, 2884, 105078),
    (84, 'Frankenstein', 'Mary Wollstonecraft Shelley', 797, 3357, 75042),
    (105, 'Persuasion', 'Jane Austen', 1035, 3584, 83283),
    (121, 'Northanger Abbey', 'Jane Austen', 1054, 3575, 77070),
    (1342, 'Pride and Prejudice', 'Jane Austen', 2126, 5930, 121567),
    (141, 'Mansfield Park', 'Jane Austen', 1841, 6667, 159540),
    (564, 'The Mystery of Edwin Drood', 'Charles Dickens', 2527, 5461, 95618),
    (6688, 'The Mill on the Floss', 'George Eliot', 3209, 8638, 206418),
    (766, 'David Copperfield', 'Charles Dickens', 7190, 18445, 354828),
    (786, 'Hard Times', 'Charles Dickens', 2276, 5797, 103233),
    (1260, 'Jane Eyre', 'Charlotte Bronte', 4104, 9472, 185455),
    (145, 'Middlemarch', 'George Eliot', 4795, 14412, 316344),
    (550, 'Silas Marner', 'George Eliot', 844, 2556, 70933),
))


def books_present(books_dir: Path) -> bool:
    """True when ``books_dir`` is a readable corpus (its manifest's files all exist)."""
    from .corpus import book_files
    try:
        book_files(books_dir)
        return True
    except DataError:
        return False


def fetch_books(data_root: str | Path, *, books: Sequence[Book] = BOOKS, allow: bool | None = None,
                log: Callable[[str], None] = print) -> Path:
    """Fetch the book corpus into ``<data_root>/books`` unless a readable one is there.

    Each text is downloaded into the cache (reused by a later try), cut, split and gzipped;
    only when every book is made are the files and ``manifest.json`` written into a staging
    folder that is installed in one rename.
    Raises :class:`DataError` naming the URL and the book for a text without the Gutenberg
    markers or not in UTF-8; the data root is then unchanged.
    """
    dest = Path(data_root) / "books"
    if books_present(dest):
        return dest
    _refuse_foreign(dest, "the book corpus", "no manifest.json with every book it lists")
    made = [_make_book(book, download(book.url, _cached(book.url, "gutenberg"), allow=allow)) for book in books]
    entries = [entry for entry, _ in made]
    with staged_dir(dest) as tmp:
        for entry, gz in made:
            (tmp / entry["file"]).write_bytes(gz)
        (tmp / "manifest.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
    ref = sum(b.ref_sentences for b in books)
    got = sum(e["sentences"] for e in entries)
    log(f"sentence: {len(entries)} books -> {dest}: {got:,} sentences ({got - ref:+,} against the reference "
        f"corpus's {ref:,}); per-book counts and checksums in {dest / 'manifest.json'}")
    return dest


def _make_book(book: Book, raw_path: Path) -> tuple[dict, bytes]:
    """(manifest entry, gzipped corpus text) of one downloaded Gutenberg text."""
    src = mirror_url(book.url)
    raw = raw_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raw_path.unlink(missing_ok=True)
        raise DataError(f"{src} ({raw_path.name}, {book.title!r}, Project Gutenberg #{book.gutenberg_id}) is not "
                        f"UTF-8 text ({exc.reason} at byte {exc.start}); nothing was written to the data root") from None
    try:
        corpus_text, counts = book_text(text)
    except GutenbergFormatError as exc:
        raw_path.unlink(missing_ok=True)
        raise DataError(f"{src} ({raw_path.name}, {book.title!r}, Project Gutenberg #{book.gutenberg_id}): {exc}, "
                        "so it is not a Project Gutenberg plain text (an error page?); it was discarded and nothing "
                        "was written to the data root") from None
    gz = gzip.compress(corpus_text.encode("utf-8"), compresslevel=9, mtime=0)
    return {"file": book.file, "gutenberg_id": book.gutenberg_id, "title": book.title, "author": book.author,
            "source_url": book.url, "source_sha256": sha256_file(raw_path), "source_encoding": "utf-8",
            "sha256": hashlib.sha256(gz).hexdigest(), **counts,
            "reference": {"paragraphs": book.ref_paragraphs, "sentences": book.ref_sentences,
                          "words": book.ref_words}}, gz


def fetch_for_run(data_root: str | Path, dataset: str, tasks: Iterable[str], *, allow: bool | None = None,
                  log: Callable[[str], None] = print) -> None:
    """What a sentence run on ``dataset`` reads: 'books' = the corpus and the SentEval
    ``tasks``; a SentEval task name = that task alone."""
    if dataset == "books":
        fetch_books(data_root, allow=allow, log=log)
        fetch_senteval(data_root, tasks, allow=allow, log=log)
    elif dataset in senteval.TASKS:
        fetch_senteval(data_root, [dataset], allow=allow, log=log)
    else:
        raise DataError(f"sentence data set {dataset!r} cannot be fetched; allowed: books, "
                        f"{', '.join(senteval.TASKS)}")
