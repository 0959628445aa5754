"""Synthetic motion for ``train --stable``: a temporal-consistency term that needs no video.

Each content crop ``x`` is also shown moved: a small random similarity transform ``T`` (shift, rotation about the
centre, zoom) plus Gaussian pixel noise ``n``. The stylised moved crop must match the moved stylised crop::

    ℓ_temporal = mean over valid pixels of (T(f(x)) − f(T(x) + n))²      (per image, then over the batch)

(ReCoNet, Gao et al. 2018, and Huang et al. 2017 with synthetic motion instead of optical flow; Gupta et al. 2017
show that a plain network's sensitivity to small input changes is what makes it flicker). Pixels of ``T(f(x))``
that come from outside the frame are masked out; ``T(x)`` fills them by repeating the border (what a camera
would see there is unknown, and black corners would change the network's output next to them).

The motion of every image is a pure function of ``(seed, step, image index in the global batch)``, drawn on the
host (``random_motion``) and passed into the compiled step as arrays: a resumed run draws the same motions, and
the ranks of a data-parallel run draw their own images' motions without talking to each other, the same for any
number of processes. The noise is drawn inside the step from per-image keys (``motion_noise``), so it costs no
host work or transfer.

Pixel coordinates: pixel centres at integers, ``(0, 0)`` the top-left pixel's centre, as OpenCV. A motion is
stored as the inverse map (output pixel → source pixel), the matrix ``cv2.warpAffine`` takes with
``WARP_INVERSE_MAP``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import mlx.core as mx
import numpy as np

from mlx_style.errors import UsageError

MOTION_STREAM = 0x4D4F56  # a fourth seed word: keeps these draws apart from the data order's PCG64([seed, epoch])
INSIDE_EPS = 1e-3  # px: a source coordinate this far outside the frame still counts as inside (float rounding)


@dataclass(frozen=True)
class StableConfig:
    """The temporal term's weight and the size of the random motion (uniform in ±each magnitude)."""

    weight: float = 0.0  # λ_temporal; 0: off
    shift: float = 3.0  # px at the training crop size: a hand-held camera moves a few px between frames at 30 fps
    rotate: float = 2.0  # degrees: the slight roll of a hand-held camera
    zoom: float = 0.03  # ±3% scale: a slow push in or out, and a face moving towards the camera
    noise: float = 3.0  # σ in 0–255 levels: webcam sensor noise in indoor light (what shimmers on a still scene)
    # True: T(f(x)) is a constant target, so the term moves only f(T(x) + n) towards it; False: both branches
    # (the term may then also flatten f(x) itself, the texture included)
    fixed_target: bool = False

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"[StableConfig] {name} must be a finite number ≥ 0, got {value!r}")

    @property
    def on(self) -> bool:
        return self.weight > 0

    def record(self) -> dict:
        """What weight files and checkpoints record, and what a resume compares: the magnitudes only when on
        (``fixed_target`` only when set, so records written before it existed still compare equal)."""
        if not self.on:
            return {"weight": 0.0}
        record = asdict(self)
        if not self.fixed_target:
            del record["fixed_target"]
        return record


@dataclass
class Motion:
    """One batch's motions: ``matrices`` (B, 2, 3) float32 inverse maps, ``keys`` (B, 2) uint32 noise keys."""

    matrices: np.ndarray
    keys: np.ndarray


def similarity_matrix(dx: float, dy: float, degrees: float, scale: float, height: int, width: int) -> np.ndarray:
    """The inverse map (2, 3) of: scale by ``scale`` and rotate by ``degrees`` about the image centre, then shift
    by ``(dx, dy)`` px. A content point ``p`` moves to ``p' = s·R·(p − c) + c + t``; the matrix maps ``p'`` back
    to ``p`` (float64)."""
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    inverse = np.array([[cos, sin], [-sin, cos]]) / scale  # (s·R)⁻¹ = Rᵀ / s
    offset = centre - inverse @ (centre + np.array([dx, dy]))
    return np.concatenate([inverse, offset[:, None]], axis=1)


def random_motion(
    seed: int, step: int, count: int, height: int, width: int, config: StableConfig, first: int = 0
) -> Motion:
    """The motions of images ``first … first + count − 1`` of the global batch of ``step`` (0-based).

    Each image draws from its own ``PCG64([seed, step, index, MOTION_STREAM])``: a pure function of those, so a
    resume and any split of the batch over processes give the same motions.
    """
    matrices = np.empty((count, 2, 3), np.float32)
    keys = np.empty((count, 2), np.uint32)
    for i in range(count):
        rng = np.random.Generator(np.random.PCG64([seed, step, first + i, MOTION_STREAM]))
        dx, dy, degrees, zoom = rng.uniform(-1.0, 1.0, 4) * (config.shift, config.shift, config.rotate, config.zoom)
        matrices[i] = similarity_matrix(dx, dy, degrees, 1.0 + zoom, height, width)
        keys[i] = rng.integers(0, 2**32, 2, dtype=np.uint32)
    return Motion(matrices, keys)


def warp(images: mx.array, matrices: mx.array) -> tuple[mx.array, mx.array]:
    """Bilinear resampling of each image by its inverse map; differentiable in ``images``.

    Output pixel ``(x, y)`` takes the image at ``M·(x, y, 1)``, with the border repeated outside the frame
    (``cv2.warpAffine(..., INTER_LINEAR | WARP_INVERSE_MAP, borderMode=BORDER_REPLICATE)``, without OpenCV's
    1/32-px rounding of the coordinates).

    Shape:
        - images: ``(B, H, W, C)``; matrices: ``(B, 2, 3)``
        - returns: the warped ``(B, H, W, C)`` float32 and the mask ``(B, H, W, 1)``: 1.0 where the source point
          lies inside the frame, else 0.0.
    """
    B, H, W, C = images.shape
    if matrices.shape != (B, 2, 3):
        raise UsageError(f"[warp] expected matrices of shape {(B, 2, 3)}, got {tuple(matrices.shape)}")
    m = matrices.astype(mx.float32)[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    xs = mx.arange(W, dtype=mx.float32)[None, :]
    ys = mx.arange(H, dtype=mx.float32)[:, None]
    src_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]  # (B, H, W)
    src_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    inside = (
        (src_x >= -INSIDE_EPS) & (src_x <= W - 1 + INSIDE_EPS) & (src_y >= -INSIDE_EPS) & (src_y <= H - 1 + INSIDE_EPS)
    )
    src_x, src_y = mx.clip(src_x, 0, W - 1), mx.clip(src_y, 0, H - 1)
    x0, y0 = mx.floor(src_x), mx.floor(src_y)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    x0, y0 = x0.astype(mx.int32), y0.astype(mx.int32)
    x1, y1 = mx.minimum(x0 + 1, W - 1), mx.minimum(y0 + 1, H - 1)
    flat = images.astype(mx.float32).reshape(B, H * W, C)

    def at(y, x):
        return mx.take_along_axis(flat, (y * W + x).reshape(B, H * W, 1), axis=1).reshape(B, H, W, C)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy, inside[..., None].astype(mx.float32)


def motion_noise(keys: mx.array, shape: tuple[int, ...]) -> mx.array:
    """Standard normal noise of ``shape`` (B, H, W, C), image ``i`` drawn from ``keys[i]`` (deterministic)."""
    return mx.stack([mx.random.normal(tuple(shape[1:]), key=keys[i]) for i in range(shape[0])])


def masked_mean_square(diff: mx.array, mask: mx.array) -> mx.array:
    """Σ mask·diff² / (C·Σ mask) per image, averaged over the batch (an image with no valid pixel counts 0)."""
    B, H, W, C = diff.shape
    per_image = mx.sum((mask * diff * diff).reshape(B, -1), axis=1)
    valid = mx.sum(mask.reshape(B, -1), axis=1)
    return mx.mean(per_image / (C * mx.maximum(valid, 1.0)))


def moved_input(content: mx.array, matrices: mx.array, keys: mx.array, noise: float) -> tuple[mx.array, mx.array]:
    """``clip(T(x) + σ·n, 0, 255)`` and the valid mask of ``T``."""
    moved, mask = warp(content, matrices)
    if noise > 0:
        moved = mx.clip(moved + noise * motion_noise(keys, moved.shape), 0.0, 255.0)
    return moved, mask


def temporal_loss(
    model,
    content: mx.array,
    output: mx.array,
    matrices: mx.array,
    keys: mx.array,
    noise: float,
    fixed_target: bool = False,
) -> mx.array:
    """``ℓ_temporal`` of the module docstring, for ``output = model(content)``; gradients flow through both
    branches (``T(f(x))`` and ``f(T(x) + n)``), or with ``fixed_target`` through the moved crop's only."""
    moved, mask = moved_input(content, matrices, keys, noise)
    target, _ = warp(mx.stop_gradient(output) if fixed_target else output, matrices)
    return masked_mean_square(target - model(moved), mask)
