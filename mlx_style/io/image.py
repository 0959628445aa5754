"""Image files: reading any picture as uint8 RGB (EXIF rotation, alpha over white, 16-bit, CMYK; HEIC with the
``heic`` extra), writing, and finding pictures in folders (skipping macOS's AppleDouble ``._name`` files). Pixel
conventions and resizing live in ``mlx_style.pixels`` (re-exported here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import mlx.core as mx
import numpy as np
from PIL import Image, ImageOps
from mlx_style.errors import MlxStyleError
from mlx_style.pixels import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    PREPROCESSING,  # noqa: F401
    center_crop,
    resize,
    resize_max_side,
    resize_shorter,
    vgg_preprocess,
)

HEIF_EXTENSIONS = (".heic", ".heif")  # the iPhone's default; read through pillow-heif (`pip install -e ".[heic]"`)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", *HEIF_EXTENSIONS)
HEIF_HINT = 'HEIC pictures need pillow-heif: pip install -e ".[heic]" (or convert the picture to JPEG)'


class ImageError(MlxStyleError, ValueError):
    """An image that cannot be read or used."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF rotation and convert any mode (L, P, CMYK, I;16, RGBA, LA…) to 8-bit RGB.

    Alpha is composited over white, as a viewer would show it; 16-bit images are scaled, not clipped.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def register_heif(path: str | Path) -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif's opener, registered on first use) when ``path`` is one; raises
    ``ImageError`` saying how to install it when it is missing."""
    if not isinstance(path, (str, os.PathLike)) or Path(path).suffix.lower() not in HEIF_EXTENSIONS:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        raise ImageError(f"{path}: {HEIF_HINT}") from None
    register_heif_opener()  # idempotent; registers saving too


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)``; raises ``ImageError`` with the reason."""
    register_heif(path)
    try:
        if isinstance(path, (str, os.PathLike)) and not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageError(f"{path}: not a regular file (a folder, pipe or device)")  # a FIFO would block
        with Image.open(path) as img:
            img.load()
            return np.asarray(to_rgb(img), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})")


def save_image(path: str | Path, image: np.ndarray | mx.array) -> Path:
    """Write an RGB image (float 0–255 or uint8, HWC or 1HWC) with rounding and clipping; format from suffix."""
    a = np.asarray(image)
    if a.ndim == 4:
        a = a[0]
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32)), 0, 255).astype(np.uint8)
    path = Path(path)
    register_heif(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path)
    return path


def to_batch(image: np.ndarray) -> mx.array:
    """uint8/float HWC → float32 ``(1, H, W, 3)`` MLX array in 0–255."""
    return mx.array(np.asarray(image, dtype=np.float32))[None]


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, searched recursively, sorted for a reproducible order. AppleDouble files
    (``._name.jpg``: the metadata macOS writes beside each file on external and network volumes) are not images."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("._")
    )
