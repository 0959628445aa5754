"""The Hugging Face Hub: the pinned VGG files (``convert-vgg``) and style networks shared there
(``--model hf:user/name[@revision]``, ``mlx-style hub push``). Nothing is downloaded at import time.

Fetched with urllib, not huggingface_hub: the library builds cache paths from the server's ETag and X-Repo-Commit
headers, so a hostile endpoint could write anywhere ("../" in a header). Here a file goes to a private temporary
folder, is checked, and only then moves to a path built from checked names, in the Hub cache's layout
(``models--USER--NAME/snapshots/COMMIT/FILE``, ``refs/REVISION``), where copies hf_hub_download cached are found.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.request import HTTPRedirectHandler

from mlx_style.io.download import CHUNK, DownloadError, reachable  # noqa: F401  (reachable: tests patch it here)
from mlx_style.io.download import CERTIFICATE_HINT, ssl_context
from mlx_style.io.weights import WeightFileError, WeightWriteError, atomic_write, file_sha256


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str  # a commit hash, so the bytes never change under us
    sha256: str | None  # None: checked against the sha256 the Hub announces for the LFS file instead


VGG_SOURCES = {
    "vgg16": HubFile(
        "timm/vgg16.tv_in1k",
        "model.safetensors",
        "3394518cba29aee1ea82a49d971be90d2dd1dab7",
        "57b026918159a6bf9faf8405c3a551903768e7138989d9c6224a14227203fad8",
    ),
    "vgg19": HubFile("timm/vgg19.tv_in1k", "model.safetensors", "128d4708565b3a414bcbb9bbad440b2fe37b9f18", None),
}


def download(spec: HubFile, cache_dir: str | Path | None = None) -> Path:
    """Fetch ``spec`` from the Hub (cached, see ``pull_hub_file``), verify its sha256, return the local path."""
    from mlx_style.io.weights import read_header

    endpoint, _ = hub_settings(None, cache_dir)
    try:
        if (
            cached_hub_file(spec.repo_id, spec.filename, spec.revision, cache_dir) is None
            and not hub_offline()
            and not reachable(endpoint)
        ):
            raise _NotFetched(f"{endpoint} cannot be reached (offline?)")
        path = pull_hub_file(
            spec.repo_id,
            spec.filename,
            spec.revision,
            what=f"{spec.repo_id}/{spec.filename}",
            cache_dir=cache_dir,
            sha256=spec.sha256,
            check=read_header,
        )
    except _NotFetched as exc:
        raise DownloadError(
            f"could not download {spec.repo_id}/{spec.filename} from the Hugging Face Hub ({exc}); "
            f"when online, run the command again, or download model.safetensors from "
            f"https://huggingface.co/{spec.repo_id} yourself and pass it with --from FILE"
        ) from None
    if spec.sha256:  # a copy cached earlier is checked too
        actual = file_sha256(path)
        if actual != spec.sha256:
            raise WeightFileError(f"{path} has sha256 {actual}, expected {spec.sha256}: delete it and download again")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Style networks shared on the Hugging Face Hub: ``--model hf:user/name[@revision]``
#
# Fetched with urllib, not huggingface_hub: the library builds cache paths from the server's ETag and X-Repo-Commit
# headers, so a hostile endpoint could write anywhere ("../" in a header). Here a file goes to a private temporary
# folder, is checked, and only then moves to a path built from checked names, in the Hub cache's layout
# (``models--USER--NAME/snapshots/COMMIT/FILE``, ``refs/REVISION``), where copies hf_hub_download cached are found.

HF_PREFIX = "hf:"
HUB_MODEL_FILE = "model.safetensors"  # what `mlx-style hub push` uploads, and what a pull fetches
HUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")  # the Hub's rule for users and repos
REVISION = re.compile(r"[A-Za-z0-9._/-]{1,200}")  # branch and tag names, stricter than git's; commits
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PULL_BYTES = 1 << 30  # the largest weight file mlx_style writes is VGG19's 0.55 GB; a style network has MBs
DEADLINE_ENV = "MLX_STYLE_HUB_DEADLINE"  # seconds a whole transfer may take (default 1800): a trickle ends too
TIMEOUT_ENV = "HF_HUB_DOWNLOAD_TIMEOUT"  # seconds to connect, and between bytes (huggingface_hub's name; 10)


class _NotFetched(Exception):
    """The Hub could not be asked, or did not give the file: a cached copy serves, else the caller says why."""


def parse_hf_name(name: str) -> tuple[str, str | None]:
    """``hf:user/name@revision`` → ``("user/name", "revision")`` (revision None: the default branch). Names and
    revisions become parts of URLs and cache paths, so only the Hub's own rules pass: no ``..``, no ``/`` at either
    end of a revision, nothing but letters, digits, ``.``, ``_``, ``-`` (and ``/`` inside a revision).

    Raises:
        WeightFileError: not of that form.
    """
    repo, _, revision = name.removeprefix(HF_PREFIX).partition("@")
    parts = repo.split("/")
    names_ok = len(parts) == 2 and all(HUB_NAME.fullmatch(p) and ".." not in p and "--" not in p for p in parts)
    revision_ok = not revision or (
        REVISION.fullmatch(revision) is not None
        and ".." not in revision
        and all(p and not p.startswith(".") and not p.endswith((".", ".lock")) for p in revision.split("/"))
    )
    if not (names_ok and revision_ok):
        raise WeightFileError(
            f"{name!r}: expected hf:USER/NAME or hf:USER/NAME@REVISION (names of letters, digits, "
            "'.', '_' and '-'; a revision is a branch, a tag or a commit)"
        )
    return repo, revision or None


def hub_settings(endpoint: str | None = None, cache_dir: str | Path | None = None) -> tuple[str, Path]:
    """``(endpoint, cache folder)``: the arguments, else huggingface_hub's (``HF_ENDPOINT``, ``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/"), Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def hub_timeout() -> float:
    """Seconds a connection may take to open, and to send the next bytes (``HF_HUB_DOWNLOAD_TIMEOUT``)."""
    return _env_seconds(TIMEOUT_ENV, 10.0)


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it resolves (symlinks followed) inside ``root``: nothing outside the cache is
    read or written, whatever a server said or the cache already holds."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise DownloadError(f"{path} leads outside the Hugging Face cache {root}: remove it")
    return path


def cached_hub_file(repo: str, filename: str, revision: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached ``filename`` of ``repo`` at ``revision`` (a commit, or a branch or tag through its ref), or None."""
    _, root = hub_settings(None, cache_dir)
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = revision
    if not COMMIT.fullmatch(revision):
        try:
            with open(_inside(root, folder / "refs" / revision)) as f:
                commit = f.read(100).strip()
        except (OSError, UnicodeDecodeError):
            return None
    path = folder / "snapshots" / commit / filename
    return _inside(root, path) if COMMIT.fullmatch(commit) and path.is_file() else None


class _Redirects(HTTPRedirectHandler):
    """Follows http(s) redirects only, keeping each hop's headers: the Hub names the commit and the sha256 on its
    own answer, the CDN it sends large files to does not."""

    def __init__(self):
        self.hops = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(("http://", "https://")):
            return None
        self.hops.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _printable(text: str, limit: int = 160) -> str:
    """A server's words, safe for one terminal line."""
    return "".join(c for c in str(text) if c.isprintable())[:limit]


def _network_reason(exc: Exception, timeout: float) -> str:
    cause = getattr(exc, "reason", None) or exc  # URLError wraps the socket's error
    if isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g} s; set {TIMEOUT_ENV} to wait longer"
    if "CERTIFICATE_VERIFY_FAILED" in str(cause) or type(cause).__name__ == "SSLCertVerificationError":
        return CERTIFICATE_HINT
    return _printable(cause) or type(exc).__name__


def _open(url: str, method: str, timeout: float):
    """``(response, headers of every hop)``; any failure is ``_NotFetched`` with its reason."""
    from urllib.error import HTTPError
    from urllib.request import HTTPSHandler, Request, build_opener

    from huggingface_hub import get_token

    request = Request(url, method=method, headers={"User-Agent": "mlx_style"})
    token = get_token()
    if token:  # never sent on to another host a redirect names
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    redirects = _Redirects()
    try:
        response = build_opener(redirects, HTTPSHandler(context=ssl_context())).open(request, timeout=timeout)
    except HTTPError as exc:
        message = exc.headers.get("X-Error-Message") if exc.headers else None
        raise _NotFetched(f"HTTP {exc.code}" + (f": {_printable(message, 100)}" if message else "")) from None
    except Exception as exc:  # noqa: BLE001  (URLError, timeouts, resets, bad URLs: "could not ask")
        raise _NotFetched(_network_reason(exc, timeout)) from None
    return response, [*redirects.hops, response.headers]


def _first(hops, name: str) -> str | None:
    return next((h[name] for h in hops if h.get(name)), None)


def _receive(url: str, dest: Path, timeout: float, deadline: float, max_bytes: int) -> tuple[str, list]:
    """GET ``url`` into ``dest`` within ``deadline`` (a ``time.monotonic`` value) and ``max_bytes``; returns the
    sha256 of what came and the headers of every hop."""
    import hashlib
    import time
    from http.client import HTTPException

    response, hops = _open(url, "GET", timeout)
    with response, open(dest, "wb") as out:
        declared = response.headers.get("Content-Length")  # the last hop's: a redirect's is its own body's
        declared = int(declared) if declared and declared.isdigit() else None
        if (declared or 0) > max_bytes:
            raise _NotFetched(
                f"it is {declared / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} MB a weight file may have"
            )
        digest, received = hashlib.sha256(), 0
        while True:
            if time.monotonic() > deadline:
                raise _NotFetched(
                    f"the transfer took longer than {_env_seconds(DEADLINE_ENV, 1800.0):g} s "
                    f"(set {DEADLINE_ENV} to allow more)"
                )
            try:
                chunk = response.read1(CHUNK)  # what has come, not a full chunk: a trickle still meets the deadline
            except (OSError, HTTPException) as exc:
                raise _NotFetched(_network_reason(exc, timeout)) from None
            if not chunk:
                break
            received += len(chunk)
            if received > (declared or max_bytes):
                raise _NotFetched(f"the server sent more than the {declared or max_bytes} bytes it announced")
            out.write(chunk)
            digest.update(chunk)
    if declared is not None and received < declared:
        raise _NotFetched(f"the transfer stopped after {received} of {declared} bytes")
    return digest.hexdigest(), hops


def _cache_write_failure(root: Path, exc: OSError) -> WeightWriteError:
    import errno

    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WeightWriteError(
            f"no permission to write the Hugging Face cache {root}: set HF_HUB_CACHE to a folder you can write"
        )
    if exc.errno == errno.ENOSPC:
        return WeightWriteError(
            f"the disk holding the Hugging Face cache {root} is full: make room, or set "
            "HF_HUB_CACHE to a folder on another disk"
        )
    return WeightWriteError(f"could not write the Hugging Face cache {root} ({_printable(exc)})")


def pull_hub_file(
    repo: str,
    filename: str,
    revision: str,
    *,
    what: str,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    sha256: str | None = None,
    check=None,
    max_bytes: int | None = None,
) -> Path:
    """``filename`` of ``repo`` at ``revision`` from the Hub's cache, fetched into it when missing or when a branch
    has moved. ``repo`` and ``revision`` are checked names (``parse_hf_name``). A transfer is bounded by
    ``HF_HUB_DOWNLOAD_TIMEOUT`` between bytes, ``MLX_STYLE_HUB_DEADLINE`` in all and ``max_bytes``
    (``MAX_PULL_BYTES``), and is kept only when whole, of the sha256 pinned or announced by the Hub, and passed by
    ``check(path)`` (which raises ``ValueError``): a bad transfer never sticks, the next run fetches again.

    Raises:
        _NotFetched: offline, or the server failed, and no copy is cached.
        WeightFileError: the server sent bytes that are not the file (nothing is kept).
        WeightWriteError: the cache cannot be written.
    """
    import shutil
    import tempfile
    import time
    from urllib.parse import quote

    endpoint, root = hub_settings(endpoint, cache_dir)
    cached = cached_hub_file(repo, filename, revision, root)
    if cached is not None and COMMIT.fullmatch(revision):  # a commit's bytes never change: no need to ask
        return cached
    if hub_offline():
        if cached is not None:
            return cached
        raise _NotFetched("HF_HUB_OFFLINE is set, so nothing is downloaded")
    timeout, deadline = hub_timeout(), time.monotonic() + _env_seconds(DEADLINE_ENV, 1800.0)
    url = f"{endpoint}/{repo}/resolve/{{}}/{quote(filename)}"
    try:
        response, hops = _open(url.format(quote(revision, safe="")), "HEAD", timeout)
        response.close()
        commit = _first(hops, "X-Repo-Commit") or (revision if COMMIT.fullmatch(revision) else "")
        if not COMMIT.fullmatch(commit) or (COMMIT.fullmatch(revision) and commit != revision):
            raise _NotFetched(f"the server named no valid commit for {revision} ({_printable(commit, 50)!r})")
        folder = root / ("models--" + repo.replace("/", "--"))
        dest = folder / "snapshots" / commit / filename
        if not dest.is_file():
            root.mkdir(parents=True, exist_ok=True)
            private = Path(tempfile.mkdtemp(prefix=".mlx_style-pull-", dir=root))  # 0700: nobody else sees it
            try:
                part = private / filename
                actual, hops = _receive(url.format(commit), part, timeout, deadline, max_bytes or MAX_PULL_BYTES)
                announced = (_first(hops, "X-Linked-Etag") or _first(hops, "ETag") or "").removeprefix("W/")
                announced = announced.strip('"').lower()  # an LFS file's sha256; other ETags are no checksum here
                expected = sha256 or (announced if SHA256.fullmatch(announced) else None)
                if expected and actual != expected:
                    raise WeightFileError(
                        f"{what}: the server sent bytes with sha256 {actual}, expected {expected}; "
                        "nothing was kept: run the command again"
                    )
                if check is not None:
                    try:
                        check(part)
                    except ValueError as exc:
                        reason = _printable(str(exc).replace(str(part), filename), 200)
                        raise WeightFileError(
                            f"{what}: the server sent a {filename} that is not usable ({reason}); nothing was kept"
                        ) from None
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, _inside(root, dest.parent) / filename)
            finally:
                shutil.rmtree(private, ignore_errors=True)
        if commit != revision and cached != dest:  # the branch or tag names this commit now: for offline runs
            ref = folder / "refs" / revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(_inside(root, ref.parent) / ref.name, lambda tmp: Path(tmp).write_text(commit))
        return _inside(root, dest)
    except _NotFetched:
        if cached is not None:  # offline, or the Hub is down: the copy fetched before serves
            return cached
        raise
    except WeightWriteError:
        raise
    except OSError as exc:  # the cache's folders or files (the network's errors are _NotFetched)
        raise _cache_write_failure(root, exc) from None


def _usable_weights(path: Path) -> None:
    from mlx_style.io.weights import load_weights

    load_weights(path)  # format, tensor and metadata checksums: a file that would fail later is never cached


def fetch_hub_model(name: str, cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """The weight file of ``hf:user/name[@revision]``, downloaded once into the Hugging Face cache (see
    ``pull_hub_file``), or the cached copy when offline. It is checked before it is kept, and again when loaded.

    Raises:
        WeightFileError: a name that is not ``hf:USER/NAME[@REVISION]``, or the server sent a bad file.
        DownloadError: offline and not cached, no such repository or revision, the server failed or was too slow.
    """
    repo, revision = parse_hf_name(name)
    try:
        return pull_hub_file(
            repo,
            HUB_MODEL_FILE,
            revision or "main",
            what=name,
            cache_dir=cache_dir,
            endpoint=endpoint,
            check=_usable_weights,
        )
    except _NotFetched as exc:
        raise DownloadError(
            f"could not fetch {name} from the Hugging Face Hub ({exc}), and no copy is cached: "
            "check the name and the connection"
        ) from None
