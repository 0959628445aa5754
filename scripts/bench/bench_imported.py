"""Imported networks, MLX beside onnxruntime running the original graph, in the same run on the same device.

    python -m scripts.bench.bench_imported --model weights/magenta26.safetensors \
        --onnx ../shared/data/weights/magenta_onnx/multistyle26.onnx --sizes 256x256,640x480,1280x720

Median of ``--repeats`` calls after ``--warmup`` each (MLX's convolutions tuned first), per size; prints the time
ratio MLX / onnxruntime (below 1: MLX is faster) and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style.infer.stylize import load_network
from mlx_style.nn.conv import tune_convs
from scripts.bench.bench_ops import median_ms


def timed(fn, warmup: int, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` more (``bench_ops.median_ms`` warms once itself)."""
    for _ in range(max(warmup - 1, 0)):
        fn()
    return median_ms(fn, repeats) / 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.bench_imported", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--onnx", required=True, help="the original graph")
    p.add_argument("--sizes", default="256x256,640x480,1280x720")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import onnxruntime as ort

    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    net, _ = load_network(args.model, style=7)
    weights = np.asarray(net.style_weights)
    rows = []
    print(f"MLX {mx.__version__} on {mx.default_device()}, onnxruntime {ort.__version__} (CPU)")
    print(f"{'size':>10} {'MLX ms':>8} {'ORT ms':>8} {'MLX/ORT':>8}")
    for size in args.sizes.split(","):
        W, H = map(int, size.split("x"))
        image = np.random.default_rng(0).uniform(0, 255, (1, H, W, 3)).astype(np.float32)
        x = mx.array(image)
        nchw = image.transpose(0, 3, 1, 2) / 255.0
        tune_convs(net, x)  # as `mlx-style bench` does: each convolution's strategy timed once, cached
        mlx_s = timed(lambda: mx.eval(net(x)), args.warmup, args.repeats)
        ort_s = timed(lambda: session.run(None, {"image": nchw, "style_weights": weights}), args.warmup, args.repeats)
        rows.append({"width": W, "height": H, "mlx_ms": 1000 * mlx_s, "ort_ms": 1000 * ort_s,
                     "mlx_over_ort": mlx_s / ort_s})
        print(f"{size:>10} {1000 * mlx_s:8.1f} {1000 * ort_s:8.1f} {mlx_s / ort_s:7.2f}×", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
