"""Image files: reading any picture as uint8 RGB (EXIF rotation, alpha over white, 16-bit, CMYK), writing, and
finding pictures in folders. Pixel conventions and resizing live in ``mlx_style.pixels`` (re-exported here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import mlx.core as mx
import numpy as np
from PIL import Image, ImageOps
from mlx_style.errors import MlxStyleError
from mlx_style.pixels import (CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PREPROCESSING,  # noqa: F401
                              center_crop, resize, resize_max_side, resize_shorter, vgg_preprocess)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)``; raises ``ImageError`` with the reason."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path)
    return path


def to_batch(image: np.ndarray) -> mx.array:
    """uint8/float HWC → float32 ``(1, H, W, 3)`` MLX array in 0–255."""
    return mx.array(np.asarray(image, dtype=np.float32))[None]


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, searched recursively, sorted for a reproducible order."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
