"""scripts/download_coco.py against a local HTTP server: resume (Range), size and MD5 checks, unpacking, offline."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_coco.py"


def load_script():
    spec = importlib.util.spec_from_file_location("download_coco", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dc = load_script()


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"val2017/{i:012d}.jpg", bytes([i]) * 5000)
    return buf.getvalue()


PAYLOAD = make_zip()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /val2017.zip; honours ``Range: bytes=N-`` unless ``ranges`` is False; records requests."""

    def __init__(self, ranges: bool = True, cut_after: int | None = None):
        self.ranges, self.cut_after, self.requests = ranges, cut_after, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                server.requests.append(header)
                start = int(header[len("bytes=") :].rstrip("-")) if header and server.ranges else 0
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.end_headers()
                if server.cut_after is not None and len(server.requests) == 1:
                    self.wfile.write(body[: server.cut_after])  # the connection drops mid-file
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/val2017.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def config(tmp_path, url, **kw):
    return dc.DownloadConfig(out=str(tmp_path / "coco"), url=url, size=len(PAYLOAD), md5=MD5, timeout=5, **kw)


def test_download_verifies_unpacks_and_is_idempotent(tmp_path):
    with Server() as server:
        folder = dc.download(config(tmp_path, server.url), stream=io.StringIO())
        assert sorted(p.name for p in folder.iterdir()) == [
            ".complete",
            "000000000000.jpg",
            "000000000001.jpg",
            "000000000002.jpg",
        ]
        assert not (tmp_path / "coco" / "val2017.zip").exists()  # deleted after a good unpack
        assert dc.download(config(tmp_path, server.url), stream=io.StringIO()) == folder
        assert len(server.requests) == 1  # the second call found the .complete marker


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path):
    with Server(cut_after=4000) as server:
        with pytest.raises(dc.DownloadError, match="run the same command again|incomplete"):
            dc.download(config(tmp_path, server.url), stream=io.StringIO())
        part = tmp_path / "coco" / "val2017.zip.part"
        assert 0 < part.stat().st_size < len(PAYLOAD)
        have = part.stat().st_size
        folder = dc.download(config(tmp_path, server.url, keep_zip=True), stream=io.StringIO())
        assert server.requests == [None, f"bytes={have}-"]
        assert (tmp_path / "coco" / "val2017.zip").read_bytes() == PAYLOAD
        assert (folder / "000000000002.jpg").read_bytes() == bytes([2]) * 5000


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "val2017.zip.part").write_bytes(PAYLOAD[:1000])
    with Server(ranges=False) as server:
        dc.download(config(tmp_path, server.url, keep_zip=True), stream=io.StringIO())
    assert (tmp_path / "coco" / "val2017.zip").read_bytes() == PAYLOAD


def test_a_wrong_checksum_deletes_the_file_and_says_so(tmp_path):
    with Server() as server:
        bad = dc.DownloadConfig(out=str(tmp_path / "coco"), url=server.url, size=len(PAYLOAD), md5="0" * 32)
        with pytest.raises(dc.DownloadError, match="corrupt.*deleted"):
            dc.download(bad, stream=io.StringIO())
    assert not list((tmp_path / "coco").iterdir())
    assert dc.SPLITS["val2017"].size == 815_585_330 and len(dc.SPLITS["train2017"].md5) == 32


def test_offline_is_one_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    code = dc.main(["--out", str(tmp_path / "coco"), "--url", f"http://127.0.0.1:{port}/val2017.zip", "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot reach 127.0.0.1" in err and "resumes" in err
