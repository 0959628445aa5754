"""Colour preservation and blending on float RGB images in 0–255 (Gatys et al. 2016, "Preserving color")."""

from __future__ import annotations

import numpy as np

from mlx_style.errors import UsageError


# BT.601 full range (JPEG's YCbCr): Y is luminance, Cb and Cr the chroma, offset by 128.
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    return (np.asarray(ycbcr, dtype=np.float32) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T


def keep_colors(stylized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The stylised image's luminance with the original's chroma (Cb, Cr); float RGB, not clipped."""
    y = rgb_to_ycbcr(stylized)[..., :1]
    cbcr = rgb_to_ycbcr(original)[..., 1:]
    return ycbcr_to_rgb(np.concatenate([y, cbcr], axis=-1))


def blend(stylized: np.ndarray, original: np.ndarray, strength: float) -> np.ndarray:
    """``strength · stylized + (1 − strength) · original``."""
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"--strength must be between 0 and 1, got {strength}")
    return strength * np.asarray(stylized, np.float32) + (1.0 - strength) * np.asarray(original, np.float32)
