"""Download and unpack COCO 2017 images for training: ``python scripts/download_coco.py [--split train2017]``.

``val2017`` (5,000 images, 815 MB) is the default, enough for a first run; ``train2017`` (118,287 images, 19.3 GB)
is the set Johnson et al. trained on. The download resumes where it stopped (HTTP Range requests to a ``.part``
file), shows its progress, and is verified before unpacking: the byte size, and the MD5 that the community
lists for these archives (COCO's own site publishes no checksums; the values below agree across torchvision-
style loaders, TFDS and many download scripts). The archive is deleted after a good unpack unless
``--keep-zip``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Archive:
    url: str
    size: int | None  # bytes; None: unknown (then only the MD5, if any, is checked)
    md5: str | None


SPLITS = {
    "val2017": Archive(
        "http://images.cocodataset.org/zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"
    ),
    "train2017": Archive(
        "http://images.cocodataset.org/zips/train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2"
    ),
}
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that cannot go on; the message says what to do."""


@dataclass
class DownloadConfig:
    split: str = "val2017"  # the quick one; train2017 for a full run
    out: str = "data/coco"  # images land in <out>/<split>/
    keep_zip: bool = False
    url: str | None = None  # a mirror; then --size/--md5 describe its file (None: the split's own values)
    size: int | None = None
    md5: str | None = None
    timeout: float = 30.0  # seconds without data before giving up (the next run resumes)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Bytes done, rate and ETA: one updating line on a terminal, a line every 10% otherwise."""

    def __init__(self, total: int | None, start: int, stream=None):
        self.total, self.done, self.stream = total, start, stream or sys.stderr
        self.t0, self.start, self.last_decile = time.perf_counter(), start, -1
        self.tty = self.stream.isatty()

    def update(self, n: int) -> None:
        self.done += n
        rate = (self.done - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        if self.total:
            eta = f"{(self.total - self.done) / rate / 60:.0f} min" if rate > 0 else "?"
            text = (
                f"{human_bytes(self.done)} / {human_bytes(self.total)} ({100 * self.done / self.total:.0f}%), "
                f"{human_bytes(rate)}/s, ETA {eta}"
            )
            decile = int(10 * self.done / self.total)
        else:
            text, decile = f"{human_bytes(self.done)}, {human_bytes(rate)}/s", -1
        if self.tty:
            self.stream.write("\r" + text.ljust(70))
            self.stream.flush()
        elif decile > self.last_decile:
            self.last_decile = decile
            self.stream.write(text + "\n")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, part: Path, size: int | None, timeout: float, stream=None) -> None:
    """Download ``url`` into ``part``, continuing from the bytes already there (HTTP Range)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    if size is not None and have > size:
        part.unlink()  # longer than the real file: not ours, start over
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we have: complete (the size check decides)
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {urllib.parse.urlparse(url).netloc} ({reason}): check the network "
            "and run the same command again (it resumes)"
        )
    with response:
        if have and response.status != 206:  # the server ignored the Range header: start again
            have = 0
        mode = "ab" if have else "wb"
        progress = Progress(size, have, stream)
        try:
            with open(part, mode) as f:
                while block := response.read(CHUNK):
                    f.write(block)
                    progress.update(len(block))
        except (OSError, http.client.HTTPException) as exc:  # dropped connection, timeout, short read
            raise DownloadError(
                f"the download stopped ({exc}) at {human_bytes(part.stat().st_size)}: run the "
                "same command again to resume"
            )
        finally:
            progress.close()


def verify(path: Path, size: int | None, md5: str | None) -> None:
    """Check size, then MD5; a bad file is deleted (it cannot be repaired by resuming)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        if actual > size:
            path.unlink()
        raise DownloadError(
            f"{path} has {actual} bytes, expected {size}: "
            + ("deleted; run again" if actual > size else "incomplete; run again to resume")
        )
    if md5 is not None:
        got = md5sum(path)
        if got != md5:
            path.unlink()
            raise DownloadError(f"{path} is corrupt (md5 {got}, expected {md5}): deleted; run again")


def unpack(archive: Path, out: Path) -> int:
    """Extract the zip into ``out`` (zipfile drops absolute and ``..`` paths); returns the number of files."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        archive.unlink()
        raise DownloadError(f"{archive} is not a valid zip ({exc}): deleted; run again")
    return len(names)


def download(config: DownloadConfig, stream=None) -> Path:
    """Make ``<out>/<split>/`` hold the split's images; returns that folder. Idempotent and resumable."""
    if config.split not in SPLITS:
        raise DownloadError(f"unknown split {config.split!r}; choose one of {sorted(SPLITS)}")
    spec = SPLITS[config.split]
    url = config.url or spec.url
    size = config.size if config.url else spec.size
    md5 = config.md5 if config.url else spec.md5
    out = Path(config.out)
    folder, done = out / config.split, out / config.split / ".complete"
    if done.exists():
        return folder
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{config.split}.zip"
    if not archive.exists():
        part = archive.with_name(archive.name + ".part")
        fetch(url, part, size, config.timeout, stream)
        verify(part, size, md5)
        part.replace(archive)
    count = unpack(archive, out)
    done.write_text(f"{count} files from {url}\n")
    if not config.keep_zip:
        archive.unlink()
    return folder


def build_parser() -> argparse.ArgumentParser:
    d = DownloadConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--split",
        choices=sorted(SPLITS),
        default=d.split,
        help="val2017 (815 MB, 5k images) or train2017 (19.3 GB, 118k images)",
    )
    p.add_argument("--out", default=d.out, help="images go to OUT/SPLIT/")
    p.add_argument("--keep-zip", action="store_true", help="keep the archive after unpacking")
    p.add_argument("--url", default=d.url, help="download from a mirror instead")
    p.add_argument("--size", type=int, default=d.size, help="the mirror file's size in bytes (with --url)")
    p.add_argument("--md5", default=d.md5, help="the mirror file's MD5 (with --url)")
    p.add_argument("--timeout", type=float, default=d.timeout, help="seconds without data before giving up")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = DownloadConfig(**vars(args))
    try:
        folder = download(config)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume the download", file=sys.stderr)
        return 130
    print(
        f"COCO {config.split} is in {folder}; train with: python -m mlx_style.train --style STYLE.jpg --data {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
