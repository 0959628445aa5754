"""``mlx-style layers``: the report's layer studies (Figures 3 and 9); see ``optim.layers``."""

from __future__ import annotations

import argparse
import sys
from mlx_style.backend import keep_freed_memory
from mlx_style.nn.losses import STYLE_LAYERS
from mlx_style.optim.gatys import parse_layers
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.optim.layers import FIGURE3_LAYERS, LayersConfig, run


def build_parser() -> argparse.ArgumentParser:
    d = LayersConfig()
    p = argparse.ArgumentParser(prog="mlx-style layers", description=__doc__.splitlines()[0])
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("-o", "--output", required=True, help="where to write the grid (.png, .jpg)")
    p.add_argument("--vgg", default=d.vgg, help="converted VGG weights (default: %(default)s)")
    p.add_argument("--size", type=int, default=d.size, help="longer side in px (default: %(default)s)")
    p.add_argument(
        "--iters",
        type=int,
        default=d.iters,
        help="L-BFGS iterations per layer (default: 100, or 60 with --auto-weights)",
    )
    p.add_argument(
        "--layers",
        type=parse_layers,
        default=d.layers,
        help="comma-separated (default: %s; with --auto-weights: %s)"
        % (",".join(FIGURE3_LAYERS), ",".join(STYLE_LAYERS)),
    )
    p.add_argument(
        "--auto-weights",
        action="store_true",
        help="derive style-layer weights from the fraction of each layer's loss left, print the train command",
    )
    p.add_argument(
        "--plot",
        default=d.plot,
        help="write the per-layer loss curves here (default with --auto-weights: OUTPUT_losses.png)",
    )
    p.add_argument("--columns", type=int, default=d.columns, help="tiles per grid row (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="noise seed (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        run(LayersConfig(**vars(args)))
    except MlxStyleError as exc:
        return fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
