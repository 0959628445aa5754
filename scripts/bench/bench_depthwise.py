"""The style predictor (MobileNetV2) with its depthwise convolutions as eager strided slices and as the compiled
one-pass form ``ops.depthwise_conv`` uses on the CPU, alternated in one process.

    python -m scripts.bench.bench_depthwise --repeats 15

Prints the median ms of each form and their ratio (compiled / eager). Needs the shipped ``magenta_arbitrary``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

import mlx_style.nn.arbitrary as arbitrary
from mlx_style.backend import keep_freed_memory
from mlx_style.infer.stylize import load_network
from mlx_style.nn import ops
from mlx_style.nn.conv import tune_convs


def eager_slices(x, weight, stride=1, native=None):
    """The same slices, one op at a time (the form before compiling)."""
    return ops.strided_depthwise(x, weight, stride)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="the painting's side (the predictor's input)")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    keep_freed_memory()
    rng = np.random.default_rng(0)
    net, _ = load_network("magenta_arbitrary", style_images=[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)])
    predictor = net.net.predictor
    x = mx.array(rng.uniform(0, 255, (1, args.size, args.size, 3)).astype(np.float32))
    tune_convs(predictor, x)
    forms = {"eager slices": eager_slices, "compiled slices": ops.depthwise_conv}
    times = {name: [] for name in forms}
    for name, form in forms.items():  # warm up each form (the compiled one builds its kernels)
        arbitrary.depthwise_conv = form
        for _ in range(3):
            mx.eval(predictor(x))
    for _ in range(args.repeats):
        for name, form in forms.items():
            arbitrary.depthwise_conv = form
            start = time.perf_counter()
            mx.eval(predictor(x))
            times[name].append(time.perf_counter() - start)
    arbitrary.depthwise_conv = ops.depthwise_conv
    ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    print(f"style predictor at {args.size}²: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    print(f"compiled / eager: {ms['compiled slices'] / ms['eager slices']:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
