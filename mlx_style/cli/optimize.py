"""``mlx-style optimize``: Gatys et al.'s image optimisation; see ``optim.gatys``."""

from __future__ import annotations

import argparse
import sys
from mlx_style.optim import lbfgs
from mlx_style.backend import keep_freed_memory
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.optim.gatys import INITS, OPTIMIZERS, OptimizeConfig, parse_layers, parse_weights, run


def build_parser() -> argparse.ArgumentParser:
    d = OptimizeConfig()
    p = argparse.ArgumentParser(prog="mlx-style optimize", description=__doc__.splitlines()[0])
    p.add_argument("--content", required=True, help="content photo")
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("-o", "--output", required=True, help="where to write the result (.png, .jpg)")
    p.add_argument("--vgg", default=d.vgg, help="converted VGG weights (default: %(default)s)")
    p.add_argument(
        "--size",
        type=int,
        default=d.size,
        help="longer side of the content image in px, 0 keeps it (default: %(default)s)",
    )
    p.add_argument(
        "--style-size",
        type=int,
        default=d.style_size,
        help="longer side of the style image in px (default: the content's)",
    )
    p.add_argument("--iters", type=int, default=d.iters, help="iterations (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help="L-BFGS: trial step along its direction (default 1); Adam: step size in grey levels (default 4)",
    )
    p.add_argument("--init", choices=INITS, default=d.init, help="start from the content photo or from noise")
    p.add_argument(
        "--content-weight",
        type=float,
        default=d.content_weight,
        help="λ_content (default: the VGG file's recommended weight)",
    )
    p.add_argument("--style-weight", type=float, default=d.style_weight, help="λ_style (default: as above)")
    p.add_argument("--tv-weight", type=float, default=d.tv_weight, help="λ_tv (default: as above)")
    p.add_argument("--content-layer", default=d.content_layer, help="(default: %(default)s)")
    p.add_argument(
        "--style-layers",
        type=parse_layers,
        default=d.style_layers,
        help="comma-separated (default: %s)" % ",".join(d.style_layers),
    )
    p.add_argument(
        "--style-layer-weights",
        type=parse_weights,
        default=d.style_layer_weights,
        help="comma-separated, one per style layer (default: 1 each), e.g. 0.7,0.3,0.03,0.03",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="noise seed (default: %(default)s)")
    p.add_argument(
        "--save-every",
        type=int,
        default=d.save_every,
        metavar="N",
        help="also write OUTPUT_<iter>.ext every N iterations (default: only the end)",
    )
    p.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        metavar="N",
        help="print the loss terms every N iterations (default: %(default)s)",
    )
    p.add_argument("--history-size", type=int, default=d.history_size, help="L-BFGS memory (default: %(default)s)")
    p.add_argument(
        "--line-search",
        choices=lbfgs.LINE_SEARCHES,
        default=d.line_search,
        help="L-BFGS line search (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    config = OptimizeConfig(**vars(args))
    try:
        result = run(config)
    except MlxStyleError as exc:
        return fail(exc)
    return 130 if result.stopped == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
