"""Clips with known motion for the stability measurements, made from a still photo:

- ``pan.mp4``: a slow pan and zoom across a large photo (a camera moving over a still scene);
- ``still_noise.mp4``: the same photo held still with sensor noise (a webcam pointed at a still scene).

    python -m scripts.bench.make_clips ../shared/data/content/holdout/deeptransfer_fullhd.jpg --out runs/clips
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from mlx_style.io.image import load_image


def pan_frames(photo: np.ndarray, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """A window of ``size`` (W, H) moving right and zooming in by 15% over ``frames`` frames."""
    H, W = photo.shape[:2]
    w, h = size
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        scale = 1.0 - 0.15 * t  # the window shrinks: a zoom in
        cw, ch = int(0.6 * W * scale), int(0.6 * W * scale * h / w)
        x0 = int((W - cw) * (0.2 + 0.5 * t))
        y0 = int((H - ch) * 0.5)
        crop = photo[y0 : y0 + ch, x0 : x0 + cw]
        out.append(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))
    return out


def noisy_still_frames(
    photo: np.ndarray, frames: int, size: tuple[int, int], sigma: float = 3.0, seed: int = 0
) -> list[np.ndarray]:
    base = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    rng = np.random.default_rng(seed)
    return [np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(frames)]


def write(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG" if path.suffix == ".avi" else "mp4v"), fps, (w, h)
    )
    for rgb in frames:
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.make_clips", description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("--out", default="runs/clips")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    args = p.parse_args(argv)
    photo = load_image(args.photo)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = (args.width, args.height)
    # MJPG .avi at high quality: mp4v's own compression noise would add flicker to the originals
    for name, frames in (
        ("pan.avi", pan_frames(photo, args.frames, size)),
        ("still_noise.avi", noisy_still_frames(photo, args.frames, size)),
    ):
        print(f"wrote {write(out / name, frames)} ({len(frames)} frames, {size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
