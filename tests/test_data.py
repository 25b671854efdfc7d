"""Data root resolution, caches, and downloads tested against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

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
