"""Image I/O and pixel conventions: the one place that defines pixel ranges and normalisation.

Convention everywhere in mlx_style: float32 RGB, values 0–255, NHWC. Networks take and return that range.
VGG loss networks want their own preprocessing, applied by ``vgg_preprocess`` from the weight file's
``preprocess`` field:

- ``torchvision``: RGB scaled to 0–1, minus ImageNet mean (0.485, 0.456, 0.406), divided by std
  (0.229, 0.224, 0.225).
- ``caffe`` (the original Oxford/Caffe VGG that Gatys and Johnson used): BGR, 0–255, minus
  (103.939, 116.779, 123.68) in B, G, R order; no division.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
from PIL import Image, ImageOps
from mlx_style.errors import MlxStyleError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
PREPROCESSING = ("torchvision", "caffe")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class ImageError(MlxStyleError, ValueError):
    """An image that cannot be read or used."""


def vgg_preprocess(x: mx.array, mode: str) -> mx.array:
    """Map RGB 0–255 NHWC images to what VGG weights of the given ``mode`` expect."""
    if mode == "torchvision":
        mean = mx.array(IMAGENET_MEAN_RGB, dtype=x.dtype)
        std = mx.array(IMAGENET_STD_RGB, dtype=x.dtype)
        return (x / 255.0 - mean) / std
    if mode == "caffe":
        return x[..., ::-1] - mx.array(CAFFE_MEAN_BGR, dtype=x.dtype)
    raise ValueError(f"[vgg_preprocess] mode must be one of {PREPROCESSING}, got {mode!r}")


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


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 RGB with a high-quality filter (Lanczos down, bicubic up)."""
    if image.shape[:2] == (height, width):
        return image
    down = height < image.shape[0]
    method = Image.Resampling.LANCZOS if down else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size``, keeping the aspect ratio."""
    H, W = image.shape[:2]
    scale = size / min(H, W)
    return resize(image, max(size, round(H * scale)), max(size, round(W * scale)))


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    H, W = image.shape[:2]
    top, left = (H - height) // 2, (W - width) // 2
    return image[top:top + height, left:left + width]


def resize_max_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` (used for style images and ``--size``)."""
    H, W = image.shape[:2]
    scale = size / max(H, W)
    return resize(image, max(1, round(H * scale)), max(1, round(W * scale)))


def to_batch(image: np.ndarray) -> mx.array:
    """uint8/float HWC → float32 ``(1, H, W, 3)`` MLX array in 0–255."""
    return mx.array(np.asarray(image, dtype=np.float32))[None]


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, searched recursively, sorted for a reproducible order."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
