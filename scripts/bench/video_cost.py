"""What reading and writing video costs beside the network: decode and encode time per frame (``io.video``, the layer
``stylize`` and the cam's ``--output`` use) next to the style network's time per frame, as a markdown table.

    python -m scripts.bench.video_cost --clip ../shared/data/video/fox.mp4 --frames 30 --network-frames 3

Frames come from ``--clip`` (resized to each size) or, without it, a synthetic moving pattern with noise. Each size
is encoded with every ``--encoder`` at the default quality, then the H.264 file is decoded back to RGB (what
``stylize`` does per frame: decode, convert to RGB, turn upright). The network is the built-in default style at the
frame's own size (``stylize``'s default), after one untimed frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import cv2
import mlx.core as mx

from mlx_style.infer.stylize import load_network, stylize_array
from mlx_style.io import video
from mlx_style.io.registry import default_model

SIZES = ((640, 480), (1920, 1080))
RATE = Fraction(30)


def source_frames(clip: str | None, width: int, height: int, count: int) -> list[np.ndarray]:
    """``count`` RGB frames of ``width × height``: the clip's first frames resized, or a moving noisy pattern."""
    if clip:
        frames = []
        for frame in video.VideoReader(clip):
            frames.append(cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                return frames
        return (frames * count)[:count]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return [
        np.clip(
            128
            + 80 * np.sin((xx + 7 * i) / 37.0)[..., None] * np.cos(yy / 53.0)[..., None]
            + rng.normal(0, 12, (height, width, 3)),
            0,
            255,
        ).astype(np.uint8)
        for i in range(count)
    ]


def encode_ms(frames: list[np.ndarray], path: Path, encoder: str) -> float:
    """Milliseconds per frame to encode and write ``frames`` (flushing included)."""
    H, W = frames[0].shape[:2]
    start = time.perf_counter()
    writer = video.SegmentWriter(path, encoder, video.DEFAULT_QUALITY, RATE, 1 / RATE, W, H)
    for i, frame in enumerate(frames):
        writer.write(frame, i, 1)
    writer.close()
    return 1000 * (time.perf_counter() - start) / len(frames)


def decode_ms(path: Path) -> float:
    start, count = time.perf_counter(), 0
    for _ in video.VideoReader(path):
        count += 1
    return 1000 * (time.perf_counter() - start) / count


def network_ms(net, frame: np.ndarray, count: int) -> float:
    stylize_array(net, frame)  # untimed: the first call of a size builds its kernels
    start = time.perf_counter()
    for _ in range(count):
        stylize_array(net, frame)
    return 1000 * (time.perf_counter() - start) / count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.video_cost", description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=None, help="frames from this video (default: a synthetic pattern)")
    p.add_argument("--frames", type=int, default=60, help="frames encoded and decoded per size")
    p.add_argument("--network-frames", type=int, default=5, help="frames timed through the network per size")
    p.add_argument(
        "--encoder", action="append", default=None, help="encoders to time (default: libx264 and libvpx-vp9)"
    )
    args = p.parse_args(argv)
    encoders = args.encoder or ["libx264", "libvpx-vp9"]
    model = default_model()
    net, _ = load_network(model)
    head = [
        "frame size",
        "decode H.264 → RGB",
        *(f"encode {e}" for e in encoders),
        f"network ({model.stem})",
        f"(decode + {encoders[0]}) / network",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for W, H in SIZES:
            frames = source_frames(args.clip, W, H, args.frames)
            encode = {e: encode_ms(frames, Path(folder) / f"{W}_{e}.mp4", e) for e in encoders}
            decode = decode_ms(Path(folder) / f"{W}_{encoders[0]}.mp4")
            model_ms = network_ms(net, frames[0], args.network_frames)
            share = (decode + encode[encoders[0]]) / model_ms
            rows.append(
                [
                    f"{W}×{H}",
                    f"{decode:.1f} ms",
                    *(f"{encode[e]:.1f} ms" for e in encoders),
                    f"{model_ms:.0f} ms",
                    f"{share:.1%}",
                ]
            )
            print(f"{W}×{H} done", file=sys.stderr)
    print(f"| {' | '.join(head)} |\n|{'---|' * len(head)}")
    print("\n".join(f"| {' | '.join(row)} |" for row in rows))
    print(
        f"\n{mx.default_device()}, {args.frames} frames encoded/decoded, {args.network_frames} through the network "
        f"per size; quality {video.DEFAULT_QUALITY}; PyAV {video.av.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
