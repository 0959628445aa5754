"""Pixel conventions: the one place that defines pixel ranges, normalisation and resizing.

Convention everywhere in mlx_style: float32 RGB, values 0–255, NHWC. Networks take and return that range.
VGG loss networks want their own preprocessing, applied by ``vgg_preprocess`` from the weight file's
``preprocess`` field:

- ``torchvision``: RGB scaled to 0–1, minus ImageNet mean (0.485, 0.456, 0.406), divided by std
  (0.229, 0.224, 0.225).
- ``caffe`` (the original Oxford/Caffe VGG that Gatys and Johnson used): BGR, 0–255, minus
  (103.939, 116.779, 123.68) in B, G, R order; no division.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from PIL import Image

from mlx_style.errors import UsageError

PREPROCESSING = ("torchvision", "caffe")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def vgg_preprocess(x: mx.array, mode: str) -> mx.array:
    """Map RGB 0–255 NHWC images to what VGG weights of the given ``mode`` expect."""
    if mode == "torchvision":
        mean = mx.array(IMAGENET_MEAN_RGB, dtype=x.dtype)
        std = mx.array(IMAGENET_STD_RGB, dtype=x.dtype)
        return (x / 255.0 - mean) / std
    if mode == "caffe":
        return x[..., ::-1] - mx.array(CAFFE_MEAN_BGR, dtype=x.dtype)
    raise UsageError(f"[vgg_preprocess] mode must be one of {PREPROCESSING}, got {mode!r}")


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
    return image[top : top + height, left : left + width]


def resize_max_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` (used for style images and ``--size``)."""
    H, W = image.shape[:2]
    scale = size / max(H, W)
    return resize(image, max(1, round(H * scale)), max(1, round(W * scale)))
