"""Imported networks, MLX beside onnxruntime running the original graph, in the same run on the same device.

    python -m scripts.bench.bench_imported --model weights/magenta26.safetensors \
        --onnx ../shared/data/weights/magenta_onnx/multistyle26.onnx --sizes 256x256,640x480,1280x720
    python -m scripts.bench.bench_imported --model weights/magenta_arbitrary.safetensors \
        --onnx ../shared/data/weights/magenta_onnx --style-image ../shared/data/styles/starry_night.jpg

Median of ``--repeats`` calls after ``--warmup`` each (MLX's convolutions tuned first), per size; prints the time
ratio MLX / onnxruntime (below 1: MLX is faster) and writes JSON with ``--json``. See
``mlx_style.bench.imported``, which ``mlx-style bench --onnx`` runs too.
"""

from __future__ import annotations

import argparse
import json
import sys

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

from mlx_style.bench.inference import parse_sizes
from mlx_style.bench.imported import compare_imported


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.bench_imported", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--onnx", required=True, help="the original graph (the arbitrary pair: the folder of both)")
    p.add_argument("--sizes", default="256x256,640x480,1280x720")
    p.add_argument("--style-image", default=None, help="the arbitrary pair's style (default: a random picture)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = compare_imported(
        args.model, args.onnx, parse_sizes(args.sizes), args.warmup, args.repeats, args.threads, args.style_image
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
