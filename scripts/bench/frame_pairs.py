"""Two consecutive stylised frames and their difference, one row per setting: what flicker looks like.

    python -m scripts.bench.frame_pairs --clip runs/clips/still_noise.avi --frame 30 --size 256 \
        --setting plain=wave --setting "--smooth 0.5=wave:0.5" \
        --setting "--stable=runs/stable/wave_stable.safetensors" \
        -o docs/flicker_pairs.jpg

Each ``--setting LABEL=MODEL[:SMOOTH]``: the clip's frames up to ``--frame + 1`` stylised at ``--size`` (longer
side) by MODEL, smoothed with weight SMOOTH when given (``infer.smoothing``, as ``stylize --smooth``); the row
shows frame t, frame t+1 and |t+1 − t| ×10 (black: no change).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

from mlx_style.infer.flicker import read_video
from mlx_style.infer.smoothing import TemporalSmoother
from mlx_style.infer.stylize import load_network, stylize_array
from mlx_style.io.image import resize_max_side
from mlx_style.optim.layers import label_tile, make_grid

GAIN = 10  # the difference image is amplified so small changes show


def stylised_pair(frames: list[np.ndarray], net, smooth: float) -> tuple[np.ndarray, np.ndarray]:
    """Stylised frames ``len(frames) − 2`` and ``len(frames) − 1`` (RGB), smoothing along the way if asked."""
    smoother = TemporalSmoother(smooth) if smooth else None
    out = []
    for frame in frames:
        styled = stylize_array(net, frame)
        out.append(smoother(frame, styled) if smoother else styled)
    return out[-2], out[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.frame_pairs", description=__doc__.splitlines()[0])
    p.add_argument("--clip", required=True)
    p.add_argument("--frame", type=int, default=30, help="t: frames t and t+1 are shown")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--setting", action="append", required=True, metavar="LABEL=MODEL[:SMOOTH]")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    frames = read_video(args.clip, args.frame + 2)
    frames = [resize_max_side(f[:, :, ::-1].copy(), args.size) for f in frames]  # BGR → RGB, network size
    tiles = []
    for setting in args.setting:
        label, _, spec = setting.partition("=")
        model, _, smooth = (
            spec.rpartition(":") if spec.rsplit(":", 1)[-1].replace(".", "").isdigit() else (spec, "", "")
        )
        net, _ = load_network(model)
        a, b = stylised_pair(frames, net, float(smooth) if smooth else 0.0)
        diff = np.abs(b.astype(np.float32) - a.astype(np.float32)).mean(axis=2, keepdims=True) * GAIN
        tiles += [
            label_tile(a, f"{label}: frame {args.frame}"),
            label_tile(b, f"frame {args.frame + 1}"),
            label_tile(np.repeat(diff, 3, axis=2), f"|difference| x{GAIN} (mean {diff.mean() / GAIN:.2f})"),
        ]
    grid = make_grid(tiles, 3)
    grid.save(args.output, quality=88) if args.output.endswith((".jpg", ".jpeg")) else grid.save(args.output)
    print(f"wrote {args.output} ({grid.size[0]}×{grid.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
