"""The studio's Live tab without the browser: a clip's frames through ``studio.live.LiveSession`` (network and
smoothing, as the tab runs them), the automatic size against fixed ones, in one process.

    python -m scripts.bench.studio_live --clip fox.mp4 --camera 320 --sizes 320 --frames 40

Prints one row per setting: the processing size, frames per second and ms a frame over the frames after the first
(the automatic row's first frame includes its measurement). The browser's round trip is not in these numbers.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)

from mlx_style.backend import keep_freed_memory
from mlx_style.infer.stylize import load_network
from mlx_style.studio.live import LiveSession


def read_frames(clip: str, count: int, side: int) -> list[np.ndarray]:
    """The clip's first ``count`` frames as RGB, the longer side ``side`` (a webcam's frame in the tab)."""
    capture = cv2.VideoCapture(clip)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        scale = side / max(h, w)
        frames.append(np.ascontiguousarray(cv2.resize(frame, (round(w * scale), round(h * scale)))[..., ::-1]))
    capture.release()
    if not frames:
        raise SystemExit(f"error: no frames in {clip}")
    return frames


def run(net, frames: list[np.ndarray], size: int | None) -> dict:
    """One setting over the frames; ``size`` None is the automatic size."""
    session = LiveSession()
    start = time.perf_counter()
    session.frame(frames[0], net, ("net",), size or 320, auto_size=size is None)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for frame in frames[1:]:
        session.frame(frame, net, ("net",), size or 320, auto_size=size is None)
    seconds = (time.perf_counter() - start) / max(1, len(frames) - 1)
    return {"size": session.size, "auto": size is None, "first_s": first, "fps": 1 / seconds, "ms": 1e3 * seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", required=True, help="a video whose frames stand in for the webcam")
    p.add_argument("--model", default="wave")
    p.add_argument("--camera", type=int, default=320, help="longer side of the camera's frames")
    p.add_argument("--sizes", default="320", help="fixed processing sizes to compare, comma-separated")
    p.add_argument("--frames", type=int, default=40)
    args = p.parse_args(argv)
    keep_freed_memory()
    net, _ = load_network(args.model)
    frames = read_frames(args.clip, args.frames, args.camera)
    rows = [run(net, frames, None)] + [run(net, frames, int(s)) for s in args.sizes.split(",") if s]
    print(f"{args.model}, {len(frames)} frames of {frames[0].shape[1]}×{frames[0].shape[0]}, smoothing on")
    print("| setting | processing size | fps | ms a frame | first frame (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        setting = "automatic" if row["auto"] else "fixed"
        print(f"| {setting} | {row['size']} | {row['fps']:.1f} | {row['ms']:.0f} | {row['first_s']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
