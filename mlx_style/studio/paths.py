"""What the page may name: folders typed in it, confined to the roots given on the command line; the names of runs;
and uploads, which go through the same image and video checks as the commands.

The page never sends a path the server opens without one of these: a typed folder is resolved (symlinks and
``..`` followed) and must lie in a root; an upload must lie in the upload folder Gradio wrote it to; a run or style
name is a plain file name. Everything else the page sends is a key looked up in a table (``catalogue``) or a number.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from mlx_style.errors import MlxStyleError
from mlx_style.infer.files import VIDEO_EXTENSIONS
from mlx_style.io import video
from mlx_style.io.image import IMAGE_EXTENSIONS, load_image

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a run or style name: one plain file name, no dot first
MAX_UPLOAD_PIXELS = 80_000_000  # an upload's header above this is refused before decoding (a 12 MP photo is 12e6)


class StudioError(MlxStyleError, ValueError):
    """Something the page asked for that cannot be done; the message is what the page shows."""


def allowed_roots(roots: list[str] | tuple[str, ...]) -> tuple[Path, ...]:
    """The roots as real folders (symlinks resolved); the current folder when none is given.

    Raises:
        StudioError: a root that is not an existing folder.
    """
    resolved = []
    for root in roots or (os.getcwd(),):
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise StudioError(f"--root {root}: not a folder")
        resolved.append(path)
    return tuple(resolved)


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def confine(text: str, roots: tuple[Path, ...], must_be_dir: bool = True) -> Path:
    """The real path a folder typed in the page names, if it lies in one of ``roots``.

    A relative path is taken from the first root, not from wherever the server runs; symlinks and ``..`` are
    resolved before the check, so neither leads out.

    Raises:
        StudioError: empty, outside every root, missing, or not a folder (``must_be_dir``).
    """
    text = (text or "").strip()
    if not text:
        raise StudioError("type a folder path")
    if "\x00" in text:
        raise StudioError("a path cannot hold a NUL character")
    path = Path(text).expanduser()
    path = (path if path.is_absolute() else roots[0] / path).resolve()
    if not any(inside(path, root) for root in roots):
        names = ", ".join(str(r) for r in roots)
        raise StudioError(
            f"{text} is outside the folders this studio may read ({names}): start it with "
            "--root FOLDER to allow another"
        )
    if not path.exists():
        raise StudioError(f"{text}: no such folder")
    if must_be_dir and not path.is_dir():
        raise StudioError(f"{text}: not a folder")
    return path


def check_name(text: str, what: str = "name") -> str:
    """A run or style name the page typed: letters, digits, ``.``, ``_``, ``-``; 64 characters at most."""
    text = (text or "").strip()
    if not NAME.match(text) or text.endswith(".safetensors"):
        raise StudioError(
            f"{what} {text!r}: use letters, digits, '.', '_' and '-' (64 at most, not starting with '.' or '-')"
        )
    return text


def check_upload(path: str | Path, upload_root: Path | None) -> Path:
    """The path of a file Gradio received, checked to lie in its upload folder (a crafted request naming another
    file of the server is refused even if Gradio let it through)."""
    real = Path(path).resolve()
    if upload_root is not None and not inside(real, upload_root.resolve()):
        raise StudioError(f"{Path(path).name}: not an upload of this page")
    if not real.is_file():
        raise StudioError(f"{Path(path).name}: the upload is gone; upload it again")
    return real


def upload_kind(path: str | Path) -> str:
    """``image`` or ``video`` by the file's suffix, as ``mlx-style stylize`` tells them apart.

    Raises:
        StudioError: a suffix that is neither.
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    raise StudioError(
        f"{Path(path).name}: not a picture ({', '.join(IMAGE_EXTENSIONS)}) or a video ({', '.join(VIDEO_EXTENSIONS)})"
    )


def load_upload_image(path: str | Path, upload_root: Path | None = None) -> np.ndarray:
    """An uploaded picture as uint8 RGB, read as every command reads one (``io.image.load_image``: EXIF
    rotation, alpha over white, 16-bit), after a header check of its size.

    Raises:
        StudioError: not an upload, too many pixels, or not a readable image (the reason).
    """
    real = check_upload(path, upload_root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in one line
            with Image.open(real) as img:
                width, height = img.size
    except Exception:  # noqa: BLE001  (any header Pillow cannot read: load_image says why below)
        width = height = 0
    if width * height > MAX_UPLOAD_PIXELS:
        raise StudioError(
            f"{Path(path).name}: {width}×{height} is over {MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels; resize it first"
        )
    try:
        return load_image(real)
    except MlxStyleError as exc:
        raise StudioError(named(exc, real, Path(path).name)) from None


def probe_upload_video(path: str | Path, upload_root: Path | None = None) -> video.VideoInfo:
    """An uploaded video's headers (``io.video.probe``, as ``mlx-style stylize`` reads them), nothing decoded.

    Raises:
        StudioError: not an upload, or not a readable video (the reason).
    """
    real = check_upload(path, upload_root)
    try:
        return video.probe(real)
    except MlxStyleError as exc:
        raise StudioError(named(exc, real, Path(path).name)) from None


def named(exc: BaseException, real: Path, name: str) -> str:
    """An error's line about the file ``real``, naming it as the user knows it (the upload's name)."""
    text = str(exc).replace(str(real), name)
    return text if name in text else f"{name}: {text}"
