"""``mlx-style export MODEL --format onnx|coreml -o FILE``: a style network for other runtimes; see
``mlx_style.api.export``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.api import EXPORT_SUFFIXES, export
from mlx_style.io.onnx_export import DTYPES
from mlx_style.io.paths import check_suffix


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style export", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a style network: a .safetensors file, a name in weights/, or a built-in name")
    p.add_argument("--format", choices=tuple(EXPORT_SUFFIXES), default="onnx")
    p.add_argument("-o", "--output", required=True, help="the file to write (.onnx, or a .mlpackage folder)")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="float16 halves the file (the weights); the graph computes in float32",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_suffix(args.output, EXPORT_SUFFIXES[args.format], "-o")  # before the model is even looked up
        out = export(args.model, args.output, args.format, args.dtype)
    except MlxStyleError as exc:
        return fail(exc)
    if args.format == "coreml":
        from mlx_style.io.coreml_export import SHAPES

        sizes = ", ".join(f"{w}x{h}" for h, w in SHAPES[:6])
        print(f"wrote {out}: image in, image out (RGB), sizes {sizes}, … ({len(SHAPES)} in all)")
        return 0
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {args.dtype} weights): input 'image' and output "
        "'stylized', (1, 3, H, W) RGB 0-255, any H and W"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
