"""How stable a stylised video is: the warping error (Lai et al. 2018) and the static flicker.

- Warping error: optical flow on the *original* frames (OpenCV's DIS), the previous stylised frame warped onto the
  current one, the mean squared difference (RGB in 0–1) over the pixels whose flow passes a forward–backward
  consistency check (Sundaram et al. 2010, as Lai et al. and Ruder et al. use), averaged over frame pairs.
- Static flicker: the mean absolute change of the stylised video's luma (0–255 levels per frame) over the pixels
  where the original stayed still: its luma changed by less than ``static_threshold`` levels *and* its flow moved
  the pixel by less than ``STILL_FLOW`` px. Luma alone is not enough: a flat wall that moves keeps its luma, and a
  painted texture that rightly moves with it would count as shimmer (in fox.mp4, two-thirds of the pixels that pass
  the luma test move by more than half a pixel).

The same numbers for the original video are the floor. ``mlx-style flicker ORIGINAL STYLISED`` prints both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mlx_style.errors import MlxStyleError
from mlx_style.io.video import VideoError, VideoReader, probe

STATIC_THRESHOLD = 2.0  # luma levels: a pixel the original changed less than this counts as still...
STILL_FLOW = 0.5  # px: ...if its flow also moved it less than this (DIS reads 0.03 px on a still, noisy scene)


class FlickerError(MlxStyleError, ValueError):
    """Videos that cannot be compared (unreadable, of different lengths or sizes)."""


@dataclass
class Stability:
    """The stability of one video against the motion of the original: lower is steadier."""

    warping_error: float  # mean squared RGB difference (0–1 scale) over consistent pixels
    static_flicker: float  # mean |Δ luma| (0–255) over pixels the original left still
    frames: int


def read_video(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """The frames of a video (upright, through ``io.video``) as BGR uint8 arrays; ``FlickerError`` when it has none."""
    frames = list(iter_video(path, limit))
    if not frames:
        raise FlickerError(f"{path}: no readable frames")
    return frames


def iter_video(path: str | Path, limit: int | None = None):
    """``read_video`` one frame at a time, so a long video is measured in bounded memory."""
    try:
        for i, frame in enumerate(VideoReader(path)):
            if limit is not None and i >= limit:
                return
            yield np.ascontiguousarray(frame.image[..., ::-1])
    except VideoError as exc:
        raise FlickerError(f"{path}: {exc}") from None


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def luma(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma of a BGR frame, float32 0–255."""
    b, g, r = (frame[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


class FlowEstimator:
    """DIS optical flow between two grey frames (``flow[y, x]``: where pixel (x, y) of ``a`` lies in ``b``)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self.dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(a, b, None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)``: an image of ``flow``'s frame built from ``image``'s pixels."""
    H, W = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels of frame t whose flow to t−1 (``backward``) and back (``forward``, t−1 → t) agree (Sundaram et al.):
    ``|b + f(x + b)|² < 0.01 (|b|² + |f(x + b)|²) + 0.5``. False at occlusions and where the flow is wrong."""
    f_back = warp(forward, backward)
    total = backward + f_back
    bound = 0.01 * (np.sum(backward**2, -1) + np.sum(f_back**2, -1)) + 0.5
    return np.sum(total**2, -1) < bound


def stability(
    original,
    stylised,
    static_threshold: float = STATIC_THRESHOLD,
    flow: FlowEstimator | None = None,
) -> Stability:
    """The warping error and static flicker of ``stylised`` against the motion of ``original`` (BGR frames: lists,
    or iterables read one frame at a time), over the frames both have.

    A stylised video of another size is compared at the original's size (it is resized).
    """
    pairs = zip(original, stylised)
    first = next(pairs, None)
    flow = flow or FlowEstimator()
    errors, flickers, n = [], [], 0 if first is None else 1
    if first is not None:
        H, W = first[0].shape[:2]
        prev_o, prev_g, prev_s = first[0], gray(first[0]), _fit(first[1], H, W)
    for cur_o, cur in pairs:
        n += 1
        cur_g, cur_s = gray(cur_o), _fit(cur, H, W)
        backward, forward = flow(cur_g, prev_g), flow(prev_g, cur_g)
        mask = consistent(backward, forward)
        warped = warp(prev_s, backward).astype(np.float32) / 255.0
        diff = np.sum((cur_s.astype(np.float32) / 255.0 - warped) ** 2, -1) / 3.0
        if mask.any():
            errors.append(float(diff[mask].mean()))
        still = (np.abs(luma(cur_o) - luma(prev_o)) < static_threshold) & (np.sum(backward**2, -1) < STILL_FLOW**2)
        if still.any():
            flickers.append(float(np.abs(luma(cur_s) - luma(prev_s))[still].mean()))
        prev_o, prev_g, prev_s = cur_o, cur_g, cur_s
    if n < 2:
        raise FlickerError("need at least two frames of each video")
    return Stability(
        float(np.mean(errors)) if errors else float("nan"), float(np.mean(flickers)) if flickers else float("nan"), n
    )


def _fit(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def compare(original_path: str | Path, stylised_path: str | Path, limit: int | None = None) -> dict:
    """``{"stylised": Stability, "original": Stability, "notes": [...]}`` as dicts: the video's numbers, the floor,
    and a line for each way the two videos differ (size, length) that the numbers gloss over. Frames are read one
    at a time, so a long video takes bounded memory."""
    infos = []
    for path in (original_path, stylised_path):
        try:
            infos.append(probe(path))
        except VideoError as exc:
            raise FlickerError(f"{path}: {exc}") from None
    (o, s), notes = infos, []
    if (o.width, o.height) != (s.width, s.height):
        notes.append(
            f"the stylised video is {s.width}×{s.height}, the original {o.width}×{o.height}: compared at "
            "the original's size"
        )
    if o.frames != s.frames and (limit is None or min(o.frames, s.frames) < limit):
        notes.append(
            f"the stylised video has {s.frames} frames, the original {o.frames}: compared over the first "
            f"{min(o.frames, s.frames)}"
        )
    stylised = stability(iter_video(original_path, limit), iter_video(stylised_path, limit))
    floor = stability(iter_video(original_path, limit), iter_video(original_path, limit))
    return {"stylised": asdict(stylised), "original": asdict(floor), "notes": notes}
