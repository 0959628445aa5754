"""``mlx-style export MODEL --format onnx -o FILE``: a style network for other runtimes; see ``io.onnx_export``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.io.onnx_export import DTYPES, export_onnx
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.registry import resolve_model

FORMATS = {"onnx": (".onnx",), "coreml": (".mlpackage",)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style export", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a style network: a .safetensors file, a name in weights/, or a built-in name")
    p.add_argument("--format", choices=tuple(FORMATS), default="onnx")
    p.add_argument("-o", "--output", required=True, help="the file to write (.onnx, or a .mlpackage folder)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="float16 halves the file (the weights); the graph computes in float32")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_suffix(args.output, FORMATS[args.format], "-o")
        path = resolve_model(args.model)
        check_not_an_input(args.output, [path], "-o")
        from mlx_style.infer.stylize import load_network

        net, meta = load_network(path)
        keep = {k: v for k, v in meta.items() if k in ("style", "style_sha256", "config", "source", "sha256",
                                                        "training_command", "style_licence", "licence")}
        extra = {"mlx_style_" + k: v for k, v in keep.items()}
        if args.format == "coreml":
            from mlx_style.io.coreml_export import SHAPES, export_coreml

            out = export_coreml(net, args.output, extra)
            sizes = ", ".join(f"{w}x{h}" for h, w in SHAPES[:6])
            print(f"wrote {out}: image in, image out (RGB), sizes {sizes}, … ({len(SHAPES)} in all)")
            return 0
        out = export_onnx(net, args.output, args.dtype, extra)
    except (MlxStyleError, ValueError) as exc:
        return fail(exc)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {args.dtype} weights): input 'image' and output "
          "'stylized', (1, 3, H, W) RGB 0-255, any H and W")
    return 0


if __name__ == "__main__":
    sys.exit(main())
