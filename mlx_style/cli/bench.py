"""``mlx-style bench``: time the style network (and PyTorch's twin); see ``bench.inference``."""

from __future__ import annotations

import argparse
import sys
from mlx_style.backend import keep_freed_memory
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.bench.inference import BenchConfig, COMPILE_CHOICES, FULL, QUICK, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlx-style bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", help=f"WIDTHxHEIGHT list (default {FULL['sizes']}; --quick: {QUICK['sizes']})")
    p.add_argument("--dtype", help="float32, float16, bfloat16, a comma list, or all (default all; --quick: float32)")
    p.add_argument("--compile", choices=COMPILE_CHOICES, default="both", help="time mx.compile'd, plain, or both")
    p.add_argument("--model", help="a style network .safetensors (default: a random-init report network)")
    p.add_argument("--warmup", type=int, help=f"untimed calls per row (default {FULL['warmup']})")
    p.add_argument("--repeats", type=int, help=f"timed calls per row (default {FULL['repeats']})")
    p.add_argument(
        "--tune",
        action="store_true",
        help="autotune the convolution strategy per layer shape first (mlx_style.nn.conv; cached)",
    )
    p.add_argument("--quick", action="store_true", help="256x256, float32, 1 warm-up, 3 repeats (for CPUs)")
    p.add_argument("--torch", action="store_true", help="also time PyTorch with the same weights (needs torch)")
    p.add_argument("--train", action="store_true", help="also time training steps (needs VGG weights)")
    p.add_argument("--vgg", default=BenchConfig.vgg, help="VGG weights for --train")
    p.add_argument("--train-batch", type=int, help="images per training step (default 4; --quick: 1)")
    p.add_argument("--train-size", type=int, help="training crop side (default 256; --quick: 128)")
    p.add_argument("--train-steps", type=int, help="timed training steps (default 5; --quick: 2)")
    p.add_argument(
        "--onnx",
        metavar="FILE|DIR|export",
        nargs="?",
        const="export",
        help="time a graph in onnxruntime beside MLX instead: an imported --model's original graph (the "
        "arbitrary pair: the folder holding both files), or bare (or 'export') the --model network (default: "
        "the report's) exported to ONNX on the fly",
    )
    p.add_argument("--style-image", help="with --onnx and the arbitrary pair: the style (default: a random picture)")
    p.add_argument("--json", help="write the results to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        run(BenchConfig(**vars(args)))
    except MlxStyleError as exc:
        return fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
