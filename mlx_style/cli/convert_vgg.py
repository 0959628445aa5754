"""``mlx-style convert-vgg``: convert ImageNet VGG weights for the loss network; see ``io.vgg_convert``."""

from __future__ import annotations

import argparse
import sys
from mlx_style.io.image import PREPROCESSING
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.io.weights import load_weights
from mlx_style.io.vgg_convert import ConvertConfig, convert


def build_parser() -> argparse.ArgumentParser:
    d = ConvertConfig()
    p = argparse.ArgumentParser(prog="mlx-style convert-vgg", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=("vgg16", "vgg19"), default=d.arch)
    p.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        default=d.source,
        help="local torchvision/timm-format .safetensors, .npz or .pth, or a folder holding one (offline)",
    )
    p.add_argument(
        "--preprocess",
        choices=PREPROCESSING,
        default=d.preprocess,
        help="what the weights expect (default: from the file's metadata, else torchvision)",
    )
    p.add_argument(
        "-o", "--output", dest="out", default=d.out, help="output path (default: weights/<arch>.safetensors)"
    )
    p.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ConvertConfig(arch=args.arch, source=args.source, preprocess=args.preprocess, out=args.out)
    try:
        out = convert(config)
    except MlxStyleError as exc:
        return fail(exc)
    _, meta = load_weights(out)
    size_mb = out.stat().st_size / 1e6
    print(
        f"wrote {out} ({size_mb:.1f} MB): {config.arch}, preprocess={meta['preprocess']}, "
        f"recommended loss weights {meta['recommended_loss_weights']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
