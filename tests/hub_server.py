"""A local stand-in for the Hugging Face Hub (no internet here): the endpoints a pull (``io.hub``) and
``HfApi.upload_folder`` use, on 127.0.0.1, in a thread. Only what the tests need; bounded and stopped by them."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    """``repos[repo_id] = {"main": commit, commit: {path: bytes}}``; ``cut_next_download`` bytes: the next file
    GET sends only that many bytes, then closes (an interrupted download); ``corrupt_next_download``: the next
    file GET changes one byte; ``trickle`` seconds: file GETs send a byte at a time, that far apart; ``headers``:
    sent with every answer, over the honest ones (a hostile server's ``X-Repo-Commit`` or ``ETag``)."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.cut_next_download: int | None = None
        self.corrupt_next_download = False
        self.trickle: float | None = None
        self.headers: dict[str, str] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in {**(headers or {}), **hub.headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _resolve(self):
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                commits = hub.repos.get(repo)
                if commits is None:
                    self._send(404, b"{}", {"X-Error-Code": "RepositoryNotFound", "X-Error-Message": "no repo"})
                    return False
                commit = (
                    commits.get(revision) if revision in commits and isinstance(commits[revision], str) else revision
                )
                files = commits.get(commit)
                if not isinstance(files, dict):
                    self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "no revision"})
                    return False
                if filename not in files:
                    self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "no file"})
                    return False
                return commit, files[filename]

            def do_HEAD(self):
                hub.requests.append(f"HEAD {self.path}")
                found = self._resolve()
                if found:
                    commit, data = found
                    self._send_file_headers(commit, data, len(data))

            def _send_file_headers(self, commit, data, length, code=200, extra=None):
                self.send_response(code)
                honest = {
                    "X-Repo-Commit": commit,
                    "ETag": '"' + hashlib.sha256(data).hexdigest() + '"',
                    "Content-Length": str(length),
                    "Accept-Ranges": "bytes",
                }
                for k, v in {**honest, **(extra or {}), **hub.headers}.items():
                    self.send_header(k, v)
                self.end_headers()

            def do_GET(self):
                hub.requests.append(f"GET {self.path} {self.headers.get('Range', '')}")
                found = self._resolve()
                if not found:
                    if found is None:
                        self._send(404, b"{}")
                    return
                commit, data = found
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0] or 0)
                body = data[start:]
                if start:
                    self._send_file_headers(
                        commit, data, len(body), 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                    )
                else:
                    self._send_file_headers(commit, data, len(body))
                if hub.corrupt_next_download:
                    body, hub.corrupt_next_download = body[:-10] + bytes([body[-10] ^ 0xFF]) + body[-9:], False
                if hub.trickle:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(hub.trickle)
                    return
                if hub.cut_next_download is not None:
                    body, hub.cut_next_download = body[: hub.cut_next_download], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(length)
                hub.requests.append(f"POST {self.path}")
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    repo = json.loads(payload)
                    repo_id = (
                        f"{repo.get('organization') or 'user'}/{repo['name']}"
                        if "/" not in repo["name"]
                        else repo["name"]
                    )
                    hub.repos.setdefault(repo_id, {})
                    return self._send(
                        200,
                        json.dumps({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id}).encode(),
                        {"Content-Type": "application/json"},
                    )
                if path == "/api/validate-yaml":  # the model card's front matter
                    return self._send(200, b'{"errors": [], "warnings": []}', {"Content-Type": "application/json"})
                if "/preupload/" in path:
                    files = json.loads(payload)["files"]
                    answer = {
                        "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    }
                    return self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
                if "/commit/" in path:
                    repo_id = "/".join(path.split("/")[3:5])
                    commits = hub.repos.setdefault(repo_id, {})
                    files = dict(commits.get(commits.get("main"), {}) or {})
                    for line in payload.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            value = item["value"]
                            files[value["path"]] = base64.b64decode(value["content"])
                    commit = hashlib.sha1(
                        json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
                    ).hexdigest()
                    commits[commit], commits["main"] = files, commit
                    answer = {
                        "commitOid": commit,
                        "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{commit}",
                        "success": True,
                    }
                    return self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
                self._send(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client that gave up (the tests' point) is no news
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo_id: str, files: dict[str, bytes]) -> str:
        commit = hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos.setdefault(repo_id, {})[commit] = dict(files)
        self.repos[repo_id]["main"] = commit
        return commit

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def silent_server():
    """The address of a server that accepts connections and never answers (a hung Hub): the kernel completes the
    connection, nobody reads or writes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
