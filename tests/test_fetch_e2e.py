"""The main job's data, all three modalities, fetched into an empty data root by the project's
own commands, with a server on 127.0.0.1 standing in for the internet (``HARDNEG_MIRROR``).

What the server holds, in the original hosts' layout (/HOST/PATH):
* the TU Dortmund zips of MUTAG and PTC_MR, made from the real raw files;
* SentEval's ``datasmall_NB_ACL12.zip`` (MR, CR, SUBJ, MPQA) and the TREC files, made from the
  real published files (they are their own raw form under SentEval's rules, but for one SUBJ
  line whose raw ``it''s`` the test restores), so the project's real SHA-256 table is checked;
* the 41 Gutenberg texts of the corpus: the first paragraphs of each real book, re-wrapped,
  between a Gutenberg header and footer;
* a CIFAR-10 archive in torchvision's format (``cifar-10-python.tar.gz``) with a few random
  images: the only stand-in whose checksum cannot be the real one, so torchvision's MD5 table
  is pointed at it for this test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hardneg import cli
from modalities import graph
from modalities.sentence import fetch

from test_fetch import LocalServer

QUICK_TASKS = ("MR", "CR", "SUBJ", "MPQA", "TREC")


def _tu_zip(data_root: Path, name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((data_root / "tudataset" / name / "raw").glob(f"{name}_*.txt")):
            zf.write(f, f"{name}/{f.name}")
    return buf.getvalue()


def _senteval_sources(data_root: Path, srv: LocalServer) -> None:
    base = data_root / "senteval" / "downstream"
    archives: dict[str, dict[str, bytes]] = {}
    for task in QUICK_TASKS:
        folder, files = fetch.SENTEVAL_FILES[task]
        for sf in files:
            raw = (base / folder / sf.name).read_bytes()
            if sf.name == "subj.objective":
                raw = raw.replace(b"realizes it' 's", b"realizes it''s")
            if sf.member is None:
                srv.put(sf.url, raw)
            else:
                archives.setdefault(sf.url, {})[sf.member] = raw
    for url, members in archives.items():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, raw in members.items():
                zf.writestr(member, raw)
        srv.put(url, buf.getvalue())


def _gutenberg_sources(data_root: Path, srv: LocalServer, paragraphs: int = 40) -> None:
    for book in fetch.BOOKS:
        ref = gzip.open(data_root / "books" / book.file, "rt", encoding="utf-8").read()
        paras = [p.replace("\n", " ") for p in ref.strip("\n").split("\n\n")[:paragraphs]]
        body = "\n\n".join(textwrap.fill(p, 70) for p in paras)
        title = book.title.upper()
        srv.put(book.url, (f"The Project Gutenberg eBook of {book.title}\n\n*** START OF THE PROJECT GUTENBERG "
                           f"EBOOK {title} ***\n\n{body}\n\n*** END OF THE PROJECT GUTENBERG EBOOK {title} ***\n\n"
                           "Section 5. General Information About Project Gutenberg\n").encode("utf-8"))


def _cifar_archive(monkeypatch) -> bytes:
    """A torchvision-format CIFAR-10 archive (10 random images per batch) and its MD5s set."""
    from torchvision.datasets import CIFAR10
    rng = np.random.default_rng(0)
    members, md5 = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        members[name] = pickle.dumps({"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                                      "labels": list(range(10))})
    members["batches.meta"] = pickle.dumps({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                            "frog", "horse", "ship", "truck"]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
            md5[name] = hashlib.md5(blob).hexdigest()
    archive = buf.getvalue()
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5[n]] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return archive


@pytest.fixture()
def internet(data_root, monkeypatch, tmp_path):
    from torchvision.datasets import CIFAR10
    srv = LocalServer()
    for name in ("MUTAG", "PTC_MR"):
        srv.put(graph.TU_URL.format(name=name), _tu_zip(data_root, name))
    _senteval_sources(data_root, srv)
    _gutenberg_sources(data_root, srv)
    srv.put(CIFAR10.url, _cifar_archive(monkeypatch))
    monkeypatch.setenv("HARDNEG_MIRROR", srv.url)
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    yield srv
    srv.close()


@pytest.mark.slow
def test_main_job_data_fetched_into_an_empty_root(internet, data_root, tmp_path, capsys):
    root = tmp_path / "fresh"
    assert cli.main(["data", "check", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "get it with: hardneg data fetch graph/MUTAG --data-root" in out
    assert "get it with: hardneg data fetch sentence/books --data-root" in out

    assert cli.main(["data", "fetch", "quick", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "sentence: SentEval MR" in out and "41 books" in out and "image: downloaded cifar10" in out

    # every host the suite needs was asked, nothing else; each file once (torchvision's own
    # downloader asks for its archive twice: a redirect probe, then the download)
    hosts = {p.split("/")[1] for p in internet.requests}
    assert hosts == {"www.chrsmrrs.com", "dl.fbaipublicfiles.com", "cogcomp.seas.upenn.edu",
                     "www.gutenberg.org", "www.cs.toronto.edu"}
    ours = [p for p in internet.requests if not p.startswith("/www.cs.toronto.edu/")]
    assert len(ours) == len(set(ours)) == 2 + 1 + 2 + 41

    # what the loaders read is there, and the fetched SentEval files are the real ones
    from hardneg.data import sha256_file
    from hardneg.evaluation import senteval
    assert senteval.check_files(root, QUICK_TASKS) == []
    for task in QUICK_TASKS:
        folder, files = fetch.SENTEVAL_FILES[task]
        for sf in files:
            assert sha256_file(root / "senteval" / "downstream" / folder / sf.name) == sha256_file(
                data_root / "senteval" / "downstream" / folder / sf.name)
    for name in ("MUTAG", "PTC_MR"):
        raw = root / "tudataset" / name / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(
            p.name for p in (data_root / "tudataset" / name / "raw").glob(f"{name}_*.txt"))
    assert (root / "cifar10" / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert not (root / "cifar10" / "cifar-10-python.tar.gz").exists()        # archives stay out of the root
    from modalities.sentence.corpus import load_corpus
    ds, files, _ = load_corpus(root / "books", tmp_path / "arrow")
    assert len(files) == 41 and len(ds) > 41 * 40
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".")]
    assert leftovers == []                                                   # no staging or .part files

    assert cli.main(["data", "check", "--data-root", str(root), "--modality", "graph"]) == 0
    out = capsys.readouterr().out
    assert "present  MUTAG" in out and "present  PTC_MR" in out
    # a second fetch finds everything present and downloads nothing
    n = len(internet.requests)
    assert cli.main(["data", "fetch", "quick", "--data-root", str(root)]) == 0
    assert len(internet.requests) == n


@pytest.mark.slow
def test_run_download_fetches_on_demand(internet, tmp_path, capsys, monkeypatch):
    """``hardneg run --download`` on an empty root: the suite's data first, then the runs."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "fresh"
    code = cli.main(["run", "quick", "--download", "--data-root", str(root), "--only", "graph/MUTAG",
                     "--set", "graph.train.epochs=1", "--set", "graph.grid.beta=[0.0]", "--set",
                     "graph.grid.tau_plus=[0.0]", "--set", "graph.grid.seed=[0]", "--set", "graph.random_init=false",
                     "--no-progress", "--no-report"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (root / "tudataset" / "MUTAG" / "raw" / "MUTAG_A.txt").is_file()
    assert not (root / "tudataset" / "PTC_MR").exists()                    # only what --only asked for
    assert {p.split("/")[1] for p in internet.requests} == {"www.chrsmrrs.com"}
