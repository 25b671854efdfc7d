"""Fetching sentence data (SentEval, Gutenberg books) from a local HTTP server on 127.0.0.1.

The server stands in for the internet through ``HARDNEG_MIRROR`` (https://HOST/PATH is fetched
as MIRROR/HOST/PATH); it serves small files of the real formats that the tests write: a
SentEval-style zip, plain SentEval task files, Gutenberg-style texts with header and footer.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from hardneg.errors import DataError
from modalities.sentence import fetch
from modalities.sentence.corpus import load_corpus
from modalities.sentence.text import ptb_tokenize, split_sentences


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (URL path -> bytes), counting requests.

    Paths in ``short`` announce more bytes than they send (a connection that breaks off).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.short: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = urllib.parse.unquote(self.path)
                server.requests.append(path)
                body = server.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if path in server.short else 0)))
                self.end_headers()
                self.wfile.write(body)
                if path in server.short:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, url: str, body: bytes) -> None:
        """Serve ``body`` where the mirror layout puts ``url`` (/HOST/PATH)."""
        parts = urllib.parse.urlsplit(url)
        self.files["/" + parts.netloc + parts.path] = body

    def hits(self, url: str) -> int:
        parts = urllib.parse.urlsplit(url)
        return self.requests.count("/" + parts.netloc + parts.path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture()
def server(monkeypatch, tmp_path):
    srv = LocalServer()
    monkeypatch.setenv("HARDNEG_MIRROR", srv.url)
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    yield srv
    srv.close()


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ---- SentEval ---------------------------------------------------------------------------
# raw lines of SentEval's CR archive and the lines SentEval's pipeline makes of them (copied
# from the published files), plus a Latin-1 byte that ``cat -v`` renders as M-i
CR_RAW = [b'update : the finish is more " mirror " than silver -- and i like it ! .',
          b"this player has worked flawlessly for me and at this price , you can 't go wrong .",
          b"( he had owned two apex dvd players , and was pleased with both of them . )",
          b"a caf\xe9 i cannot recommend ."]
CR_DONE = [b"update : the finish is more `` mirror `` than silver -- and i like it ! . ",
           b"this player has worked flawlessly for me and at this price , you can 't go wrong . ",
           b"( he had owned two apex dvd players , and was pleased with both of them . ) ",
           b"a cafM-i i can not recommend . "]
NB_ZIP = "https://dl.fbaipublicfiles.com/senteval/senteval_data/datasmall_NB_ACL12.zip"


def cr_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/customerr/custrev.pos", b"\n".join(CR_RAW[:2]) + b"\n")
        zf.writestr("data/customerr/custrev.neg", b"\n".join(CR_RAW[2:]) + b"\n")
        zf.writestr("data/readme.txt", b"other files of the archive are ignored\n")
    return buf.getvalue()


@pytest.fixture()
def cr_table(monkeypatch):
    """SENTEVAL_FILES' CR entry with the SHA-256 of the expected (hand-copied) outputs."""
    pos, neg = b"\n".join(CR_DONE[:2]) + b"\n", b"\n".join(CR_DONE[2:]) + b"\n"
    files = tuple(fetch.SourceFile(n, NB_ZIP, f"data/customerr/{n}", "ptb", hashlib.sha256(b).hexdigest())
                  for n, b in (("custrev.pos", pos), ("custrev.neg", neg)))
    monkeypatch.setitem(fetch.SENTEVAL_FILES, "CR", ("CR", files))
    return pos, neg


def test_senteval_fetch_verified_reused_and_offline(server, cr_table, tmp_path):
    root = tmp_path / "root"
    server.put(NB_ZIP, cr_zip())
    with pytest.raises(DataError, match=r"downloads are off.*127\.0\.0\.1.*datasmall_NB_ACL12\.zip"):
        fetch.fetch_senteval(root, ["CR"], allow=False, log=lambda s: None)
    assert listing(root / "senteval") == [] and server.requests == []
    assert fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None) == ["CR"]
    cr = root / "senteval" / "downstream" / "CR"
    assert (cr / "custrev.pos").read_bytes() == cr_table[0] and (cr / "custrev.neg").read_bytes() == cr_table[1]
    assert listing(root / "senteval") == ["downstream", "downstream/CR", "downstream/CR/custrev.neg",
                                          "downstream/CR/custrev.pos"]
    # present: nothing fetched again; removed: rebuilt from the cached archive, no second download
    assert fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None) == []
    (cr / "custrev.pos").unlink()
    (cr / "custrev.neg").unlink()
    cr.rmdir()
    assert fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None) == ["CR"]
    assert server.hits(NB_ZIP) == 1
    # the loaders read what was fetched
    from hardneg.evaluation import senteval
    task = senteval.load_task("CR", root)
    assert task.splits["all"][0][-1] == "a cafM-i i can not recommend ." and list(task.splits["all"][1]) == [1, 1, 0, 0]


def test_senteval_checksum_mismatch_leaves_nothing(server, cr_table, monkeypatch, tmp_path):
    root = tmp_path / "root"
    server.put(NB_ZIP, cr_zip())
    bad = tuple(fetch.SourceFile(f.name, f.url, f.member, f.transform, "0" * 64)
                for f in fetch.SENTEVAL_FILES["CR"][1])
    monkeypatch.setitem(fetch.SENTEVAL_FILES, "CR", ("CR", bad))
    with pytest.raises(DataError) as e:
        fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None)
    msg = str(e.value)
    assert "custrev.pos" in msg and f"{server.url}/dl.fbaipublicfiles.com/" in msg and "expected 000" in msg
    assert listing(root / "senteval" / "downstream") == []          # no folder, no staging leftovers
    assert list((tmp_path / "cache" / "downloads" / "senteval").iterdir()) == []   # the download discarded


@pytest.mark.parametrize("kind", ["truncated", "html", "short"])
def test_senteval_bad_downloads_name_url_and_file(server, cr_table, tmp_path, kind):
    root = tmp_path / "root"
    good = cr_zip()
    body = {"truncated": good[: len(good) // 2], "html": b"<!DOCTYPE html><html><body>404</body></html>",
            "short": good}[kind]
    server.put(NB_ZIP, body)
    if kind == "short":
        server.short.add("/" + NB_ZIP.split("://", 1)[1])
    match = {"truncated": r"archive .*datasmall_NB_ACL12\.zip from http://127\.0\.0\.1.* is truncated or damaged",
             "html": r"127\.0\.0\.1.*datasmall_NB_ACL12\.zip served an HTML page instead of .*datasmall_NB_ACL12\.zip",
             "short": r"download of http://127\.0\.0\.1.*datasmall_NB_ACL12\.zip stopped early"}[kind]
    with pytest.raises(DataError, match=match):
        fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None)
    assert listing(root / "senteval" / "downstream") == []
    cached = tmp_path / "cache" / "downloads" / "senteval"
    assert list(cached.iterdir()) == []       # no partial file that a later fetch could take as finished
    # the next try with a good file succeeds (it downloads again)
    server.short.clear()
    server.put(NB_ZIP, good)
    assert fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None) == ["CR"]
    assert server.hits(NB_ZIP) == 2


def test_senteval_unreachable_host_and_foreign_folder(monkeypatch, cr_table, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HARDNEG_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "root"
    with pytest.raises(DataError, match=rf"could not download http://127\.0\.0\.1:{port}/dl\.fbaipublicfiles\.com/"
                                        r"senteval/senteval_data/datasmall_NB_ACL12\.zip .*offline"):
        fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None)
    half = root / "senteval" / "downstream" / "CR"
    half.mkdir(parents=True)
    (half / "custrev.pos").write_text("mine\n")
    with pytest.raises(DataError, match=r"CR exists but is incomplete \(lacks custrev\.neg\).*left alone"):
        fetch.fetch_senteval(root, ["CR"], allow=True, log=lambda s: None)
    assert (half / "custrev.pos").read_text() == "mine\n"
    with pytest.raises(Exception, match="unknown SentEval task 'XX'"):
        fetch.fetch_senteval(root, ["XX"], allow=True)


def test_senteval_table_covers_what_the_loaders_read():
    from hardneg.evaluation import senteval
    assert set(fetch.SENTEVAL_FILES) == set(senteval.TASKS)
    for task, (folder, files) in fetch.SENTEVAL_FILES.items():
        names = {f"{folder}/{f.name}" for f in files}
        assert set(senteval._FILES[task]) <= names, task
        assert all(len(f.sha256) == 64 and f.transform in fetch._TRANSFORMS for f in files)


def test_post_processing_reproduces_the_published_files(data_root):
    """The real published SentEval files (the project's reference copy) are what the rules make
    of their raw text: hand-copied raw CR lines become lines of the file, and the files are a
    fixed point of the rules (one known line of SUBJ aside, whose raw form is ``it''s``)."""
    base = data_root / "senteval" / "downstream"
    cr = (base / "CR" / "custrev.pos").read_bytes().split(b"\n")
    assert all(line in cr for line in CR_DONE[:2])
    for rel in ("MR/rt-polarity.pos", "CR/custrev.neg", "MPQA/mpqa.neg", "SUBJ/subj.subjective"):
        raw = (base / rel).read_bytes()
        assert ptb_tokenize(raw) == raw, rel
    subj = (base / "SUBJ" / "subj.objective").read_bytes()
    assert ptb_tokenize(subj.replace(b"realizes it' 's", b"realizes it''s")) == subj
    assert hashlib.sha256(subj).hexdigest() == next(
        f.sha256 for f in fetch.SENTEVAL_FILES["SUBJ"][1] if f.name == "subj.objective")
    mrpc = (base / "MRPC" / "msr_paraphrase_train.txt").read_bytes()
    toy = b"0\t-1\t-1\tI like green apples.\tI don't like green apples.\r\n"
    assert fetch._drop_toy_rows(mrpc + toy) == mrpc


# ---- books ------------------------------------------------------------------------------
PARAGRAPHS = [["It was a dark night.", "Mr. Holmes sat by the fire, and Dr. Watson read."],
              ["\u201cWho is there?\u201d cried she.", "Nobody answered!"],
              ["The end came at 3 o\u2019clock."]]


def gutenberg_text(title: str, paragraphs=PARAGRAPHS, markers: bool = True) -> bytes:
    import textwrap
    body = "\n\n".join(textwrap.fill(" ".join(p), 30) for p in paragraphs)
    head = (f"\ufeffThe Project Gutenberg eBook of {title}\r\n\r\nThis ebook is for the use of anyone.\r\n\r\n"
            f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\n\r\nProduced by a volunteer.\r\n\r\n"
            "[Illustration]\r\n\r\n")
    foot = f"\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\r\n\r\nThe licence.\r\n"
    text = (head + body.replace("\n", "\r\n") + foot) if markers else body
    return text.encode("utf-8")


BOOKS = (fetch.Book(11, "Alice", "Lewis Carroll", 3, 5, 30), fetch.Book(84, "Frankenstein", "Mary Shelley", 3, 6, 31))


def test_books_fetched_split_with_manifest_and_reused(server, tmp_path):
    root = tmp_path / "root"
    for b in BOOKS:
        server.put(b.url, gutenberg_text(b.title))
    out = fetch.fetch_books(root, books=BOOKS, allow=True, log=lambda s: None)
    assert listing(out) == ["manifest.json", "pg00011.txt.gz", "pg00084.txt.gz"]
    text = gzip.open(out / "pg00011.txt.gz", "rt", encoding="utf-8").read()
    assert text == "\n\n".join("\n".join(p) for p in PARAGRAPHS) + "\n"    # no header, footer, credits
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["gutenberg_id"] for m in manifest] == [11, 84]
    m = manifest[1]
    assert m["sentences"] == 5 and m["reference"]["sentences"] == 6 and m["paragraphs"] == 3
    assert m["sha256"] == hashlib.sha256((out / "pg00084.txt.gz").read_bytes()).hexdigest()
    assert m["source_sha256"] == hashlib.sha256(gutenberg_text("Frankenstein")).hexdigest()
    assert m["source_url"] == "https://www.gutenberg.org/cache/epub/84/pg84.txt"
    ds, files, _ = load_corpus(out, tmp_path / "arrow")               # the corpus reader takes it
    assert len(ds) == 10 and [f.name for f in files] == ["pg00011.txt.gz", "pg00084.txt.gz"]
    fetch.fetch_books(root, books=BOOKS, allow=True, log=lambda s: None)
    assert [server.hits(b.url) for b in BOOKS] == [1, 1]
    # gzip is reproducible: a second corpus from the cached texts is byte-identical
    again = fetch.fetch_books(tmp_path / "other", books=BOOKS, allow=True, log=lambda s: None)
    assert (again / "pg00084.txt.gz").read_bytes() == (out / "pg00084.txt.gz").read_bytes()
    assert [server.hits(b.url) for b in BOOKS] == [1, 1]


def test_book_without_markers_names_url_and_book(server, tmp_path):
    root = tmp_path / "root"
    server.put(BOOKS[0].url, gutenberg_text("Alice"))
    server.put(BOOKS[1].url, gutenberg_text("Frankenstein", markers=False))
    with pytest.raises(DataError) as e:
        fetch.fetch_books(root, books=BOOKS, allow=True, log=lambda s: None)
    msg = str(e.value)
    assert f"{server.url}/www.gutenberg.org/cache/epub/84/pg84.txt" in msg and "'Frankenstein'" in msg
    assert "#84" in msg and "START OF THE PROJECT GUTENBERG EBOOK" in msg
    assert listing(root) == []                                   # not even the first book
    server.put(BOOKS[1].url, b"<html><body>Service unavailable</body></html>")
    with pytest.raises(DataError, match=r"pg84\.txt served an HTML page"):
        fetch.fetch_books(root, books=BOOKS, allow=True, log=lambda s: None)
    assert listing(root) == []


def test_splitter_rules():
    assert split_sentences("Mr. Darcy bowed. \u201cIndeed!\u201d said J. R. Smith. And so? Yes... It ended.") == [
        "Mr. Darcy bowed.", "\u201cIndeed!\u201d said J. R. Smith.", "And so?", "Yes...", "It ended."]
    assert split_sentences("It was 3 p.m. when we left. she said no.") == ["It was 3 p.m. when we left. she said no."]


# ---- broken books (issue 15) ------------------------------------------------------------
@pytest.mark.parametrize("damage", ["not-gzip", "truncated"])
def test_a_broken_book_is_named(tmp_path, damage):
    books = tmp_path / "books"
    books.mkdir()
    good = gzip.compress(("A sentence.\n" * 5000).encode())
    (books / "pg00001.txt.gz").write_bytes(good)
    bad = b"plain text, not gzip\n" if damage == "not-gzip" else good[: len(good) // 2]
    (books / "pg00002.txt.gz").write_bytes(bad)
    want = "is not a gzip file" if damage == "not-gzip" else "is truncated or damaged"
    with pytest.raises(DataError, match=rf"book .*pg00002\.txt\.gz {want}"):
        load_corpus(books, tmp_path / "cache")


def test_sentence_prepare_fetches_only_when_downloads_are_allowed(monkeypatch, tmp_path):
    """The adapter's prepare hook (``hardneg run --download``): with downloads on it fetches the
    corpus and the run's tasks before checking for them; off, it only reports what is missing."""
    from types import SimpleNamespace

    import modalities.sentence as sentence
    from hardneg.spec import TrainSpec
    calls = []
    monkeypatch.setattr(sentence, "fetch_for_run", lambda root, ds, tasks, **kw: calls.append((ds, list(tasks))))
    ad = sentence.SentenceAdapter()
    opts = ad.resolve_options({"tasks": ["MR", "TREC"]})
    run = SimpleNamespace(options=opts, data_root=tmp_path, log=lambda s: None,
                          spec=SimpleNamespace(dataset="books", train=TrainSpec(epochs=1, batch_size=8)))
    monkeypatch.delenv("HARDNEG_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(DataError, match=r"SentEval data missing: .*MR/rt-polarity\.pos.*hardneg data fetch sentence/books"):
        ad.prepare(run)
    assert calls == []
    monkeypatch.setenv("HARDNEG_ALLOW_DOWNLOAD", "1")
    with pytest.raises(DataError):
        ad.prepare(run)
    assert calls == [("books", ["MR", "TREC"])]
