"""``mlx-style stylize`` (``python -m mlx_style.stylize``): stylise images, folders and videos; see ``infer.files``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.backend import keep_freed_memory
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.infer.files import StylizeConfig, run
from mlx_style.infer.signals import interrupt_on_termination
from mlx_style.infer.smoothing import DEFAULT_WEIGHT
from mlx_style.infer.stylize import DTYPES
from mlx_style.io.registry import DEFAULT_STYLE, NO_MODEL_HINT, style_listing


def build_parser() -> argparse.ArgumentParser:
    d = StylizeConfig()
    p = argparse.ArgumentParser(
        prog="mlx-style stylize",
        description=__doc__.splitlines()[0],
        epilog="Videos: H.264 (yuv420p, BT.709) in .mp4/.m4v/.mov/.mkv, VP9 in .webm, MJPEG in .avi, each frame at "
        "its source time, upright, with the source's sound. Exit status: 0 all done, 1 some inputs failed "
        "(the rest written) or a video was cut short or could not be written, 2 nothing done.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="images, folders of images (recursive), videos")
    p.add_argument(
        "--model",
        "-m",
        default=d.model,
        help="style network: a .safetensors file, a name in weights/, or a built-in style (default: "
        f"the built-in {DEFAULT_STYLE}; --list shows them all)",
    )
    p.add_argument(
        "--blend",
        dest="style",
        default=d.style,
        metavar="STYLE|BLEND",
        help="with a network of several styles: one by name or index (udnie, 7), or a blend (wave:0.5,udnie:0.5)",
    )
    p.add_argument("--style", dest="style", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument(
        "--style-image",
        action="append",
        default=d.style_images,
        metavar="PICTURE[:WEIGHT]",
        help="any picture as the style, through the arbitrary-style network that ships with the package; "
        "repeat it to mix styles, weights after a colon",
    )
    p.add_argument(
        "--style-strength",
        type=float,
        default=d.style_strength,
        metavar="0..1",
        help="with --style-image: 1 the picture's style, lower mixes in the photo's own (default 1)",
    )
    p.add_argument("--list", action="store_true", help="list the style networks a name can find, and exit")
    p.add_argument("-o", "--output", default=d.output, help="output file for one input, else a folder (default: out/)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=int,
        default=d.size,
        help="longer side the network runs at (default: the input's size); smaller = bigger strokes",
    )
    size.add_argument("--scale", type=float, default=d.scale, help="network resolution as a fraction of the input")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours, stylise luminance")
    p.add_argument("--strength", type=float, default=d.strength, help="0..1 blend with the input (default 1)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=d.dtype, help="network precision (default float32)")
    p.add_argument(
        "--smooth",
        type=float,
        nargs="?",
        const=DEFAULT_WEIGHT,
        default=d.smooth,
        metavar="WEIGHT",
        help="videos: blend each stylised frame with the previous one along the motion (steadier "
        f"texture); WEIGHT in [0, 1), default {DEFAULT_WEIGHT} as in the cam; 0: off",
    )
    p.add_argument(
        "--quality",
        type=int,
        default=d.quality,
        metavar="CRF",
        help="videos: CRF-like quality on x264's scale, lower is better and larger (default "
        "%(default)s, which looks like the source; +6 about halves the file)",
    )
    p.add_argument(
        "--no-audio",
        dest="audio",
        action="store_false",
        help="videos: leave the sound out (default: every audio stream of the source, copied)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="videos: continue from the finished part an interrupted run left next to the output "
        "(.NAME.partial/) instead of starting over; the result equals an uninterrupted run's",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=d.tile_size,
        help="images above TILE² pixels (at the network's resolution) run layer by layer in tiles: "
        "the same result with bounded memory (0: never; default: 512 on the CPU, on a GPU "
        "whole images up to what its memory holds)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(style_listing()) or f"no style networks: {NO_MODEL_HINT}")
        return 0
    if not args.inputs:
        parser.error("give at least one INPUT (an image, a folder or a video), or --list")
    keep_freed_memory()
    config = StylizeConfig(
        model=args.model,
        inputs=args.inputs,
        output=args.output,
        size=args.size,
        scale=args.scale,
        preserve_color=args.preserve_color,
        strength=args.strength,
        dtype=args.dtype,
        tile_size=args.tile_size,
        smooth=args.smooth,
        style=args.style,
        style_images=args.style_image,
        style_strength=args.style_strength,
        quality=args.quality,
        audio=args.audio,
        resume=args.resume,
    )
    try:
        with interrupt_on_termination():  # kill/timeout/closed terminal: unfinished outputs removed, as Ctrl-C
            summary = run(config)
    except MlxStyleError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print(
            "interrupted: the files listed above are complete; an unfinished video goes on with --resume",
            file=sys.stderr,
        )
        return 130
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
