"""Data root resolution, caches, and downloads tested against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading

import pytest

from hardneg.data import cache_dir, download, fingerprint_files, resolve_data_root
from hardneg.errors import DataError

PAYLOAD = b"hardneg test payload\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def server():
    """A one-file HTTP server on 127.0.0.1 (no network needed)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/file.bin":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HARDNEG_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "cli") == (tmp_path / "cli").resolve()
    assert resolve_data_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("HARDNEG_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == (tmp_path / "xdg" / "hardneg" / "data").resolve()


def test_cache_dir_is_created_and_unusable_one_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "c"))
    assert cache_dir("a", "b").is_dir()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HARDNEG_CACHE", str(blocker))
    with pytest.raises(DataError, match="cannot create the cache folder .*not-a-folder.*set HARDNEG_CACHE"):
        cache_dir("x")


def test_download_verifies_and_reuses(server, tmp_path):
    dest = tmp_path / "d" / "file.bin"
    assert download(f"{server}/file.bin", dest, sha256=SHA, allow=True).read_bytes() == PAYLOAD
    mtime = dest.stat().st_mtime_ns
    download(f"{server}/file.bin", dest, sha256=SHA, allow=False)  # present and verified: no fetch needed
    assert dest.stat().st_mtime_ns == mtime


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{server}/file.bin", dest, sha256="0" * 64, allow=True)
    assert list(tmp_path.iterdir()) == []


def test_download_offline_and_unreachable_errors(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError) as e:
        download(f"{server}/file.bin", dest, sha256=SHA, allow=False)
    assert "downloads are off" in str(e.value) and str(dest) in str(e.value) and "file.bin" in str(e.value)
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="could not download"):
        download(f"http://127.0.0.1:{port}/file.bin", dest, allow=True, timeout=5)
    with pytest.raises(DataError, match="could not download"):
        download(f"{server}/missing.bin", dest, allow=True)
    assert list(tmp_path.iterdir()) == []


def test_fingerprint_is_content_based(monkeypatch, tmp_path):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    f1 = fingerprint_files([a, b], root=tmp_path)
    assert f1 == fingerprint_files([b, a], root=tmp_path)
    b.write_text("three")
    assert fingerprint_files([a, b], root=tmp_path) != f1


def test_fingerprint_index_survives_a_concurrent_writer(monkeypatch, tmp_path):
    """Two runners hashing new files at once: the second writes and renames its index
    while the first is between its write and its rename (the race of a --jobs 2 suite)."""
    import hardneg.data as hdata
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    real_replace = os.replace
    state = {"nested": False}

    def replace_after_another_writer(src, dst):
        if not state["nested"]:
            state["nested"] = True
            fingerprint_files([b], root=tmp_path)      # the other process, start to finish
        real_replace(src, dst)

    monkeypatch.setattr(hdata.os, "replace", replace_after_another_writer)
    digest = fingerprint_files([a], root=tmp_path)
    monkeypatch.setattr(hdata.os, "replace", real_replace)
    assert digest == fingerprint_files([a], root=tmp_path)
    index_dir = cache_dir("fingerprints")
    assert sorted(p.name for p in index_dir.iterdir()) == ["index.json"]   # no temporary left behind


# ---- the download machinery: mirrors, short reads, HTML pages, partial files, staging ----
@pytest.fixture()
def odd_server():
    """Serves /file.bin, /short.bin (announces 1000 bytes more than it sends) and /page.bin
    (an HTML error page with status 200); counts requests."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = {"/file.bin": PAYLOAD, "/short.bin": PAYLOAD, "/mirror/example.org/data/file.bin": PAYLOAD,
                    "/page.bin": b"\n  <!DOCTYPE html><html><title>Error</title></html>"}.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + (1000 if self.path == "/short.bin" else 0)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_mirror_url_and_a_download_through_it(monkeypatch, odd_server, tmp_path):
    from hardneg.data import mirror_url
    base, hits = odd_server
    monkeypatch.delenv("HARDNEG_MIRROR", raising=False)
    assert mirror_url("https://example.org/data/file.bin") == "https://example.org/data/file.bin"
    monkeypatch.setenv("HARDNEG_MIRROR", f"{base}/mirror/")
    assert mirror_url("https://example.org/data/file.bin?x=1") == f"{base}/mirror/example.org/data/file.bin?x=1"
    dest = download("https://example.org/data/file.bin", tmp_path / "f.bin", sha256=SHA, allow=True)
    assert dest.read_bytes() == PAYLOAD and hits == ["/mirror/example.org/data/file.bin"]
    download("https://example.org/data/file.bin", dest, sha256=SHA, allow=True)
    assert len(hits) == 1                                        # reused, not fetched again


def test_short_read_and_html_page_leave_nothing(odd_server, tmp_path):
    base, _ = odd_server
    with pytest.raises(DataError, match=rf"download of {base}/short\.bin stopped early: 21000 of 22000 bytes"):
        download(f"{base}/short.bin", tmp_path / "short.bin", allow=True)
    with pytest.raises(DataError, match=rf"{base}/page\.bin served an HTML page instead of page\.bin"):
        download(f"{base}/page.bin", tmp_path / "page.bin", allow=True)
    assert list(tmp_path.iterdir()) == []


def test_partial_download_is_never_taken_for_a_finished_one(odd_server, tmp_path, monkeypatch):
    """A killed download leaves only a .part file (under a name no loader reads); the next call
    downloads afresh and clears the dead process's leftover."""
    import hardneg.data as hdata
    base, hits = odd_server
    dest = tmp_path / "file.bin"
    real = hdata._fetch_to

    def killed(src, tmp, dest_, timeout, progress):
        tmp.write_bytes(PAYLOAD[:100])
        raise KeyboardInterrupt                             # the process dies mid-transfer
    monkeypatch.setattr(hdata, "_fetch_to", killed)
    with pytest.raises(KeyboardInterrupt):
        download(f"{base}/file.bin", dest, allow=True)
    assert not dest.exists()
    stale = tmp_path / f".file.bin.{2 ** 22 + 12345}-deadbeef.part"   # a pid that does not run
    stale.write_bytes(PAYLOAD[:100])
    monkeypatch.setattr(hdata, "_fetch_to", real)
    assert download(f"{base}/file.bin", dest, allow=True).read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"] and len(hits) == 1


def test_staged_dir_installs_whole_or_not_at_all(tmp_path):
    from hardneg.data import staged_dir
    dest = tmp_path / "root" / "task"
    with pytest.raises(RuntimeError):
        with staged_dir(dest) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("the fetch failed half-way")
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with staged_dir(dest) as tmp:
        (tmp / "a.txt").write_text("one")
    with staged_dir(dest) as tmp:                                 # replacing an older copy
        (tmp / "b.txt").write_text("two")
    assert [p.name for p in dest.iterdir()] == ["b.txt"] and [p.name for p in dest.parent.iterdir()] == ["task"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):                            # (root ignores permissions)
            with pytest.raises(DataError, match=r"cannot write .*ro/x.*must be writable"):
                with staged_dir(ro / "x"):
                    pass
    finally:
        ro.chmod(0o755)


def test_read_archive_names_a_truncated_tar(tmp_path):
    import io
    import tarfile
    from hardneg.data import read_archive
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = os.urandom(200_000)
        info = tarfile.TarInfo("stsbenchmark/sts-test.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    good = tmp_path / "good.tar.gz"
    good.write_bytes(buf.getvalue())
    assert read_archive(good, "http://x/good.tar.gz", ["stsbenchmark/sts-test.csv"])[
        "stsbenchmark/sts-test.csv"] == data
    cut = tmp_path / "Stsbenchmark.tar.gz"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"archive Stsbenchmark\.tar\.gz from http://x/S\.tar\.gz is truncated"):
        read_archive(cut, "http://x/S.tar.gz", ["stsbenchmark/sts-test.csv"])
    assert not cut.exists()                                       # removed: the next fetch downloads again
    with pytest.raises(DataError, match=r"lacks stsbenchmark/other\.csv"):
        read_archive(good, "http://x/good.tar.gz", ["stsbenchmark/other.csv"])

