"""``mlx-style hub push MODEL user/name``: share a style on the Hugging Face Hub; see ``infer.sharing``.
``--model hf:user/name[@revision]`` anywhere a model is accepted pulls it back."""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.infer.signals import interrupt_on_termination
from mlx_style.io.registry import resolve_model
from mlx_style.infer.sharing import default_samples, push, style_picture_for
from mlx_style.io.weights import read_metadata


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style hub", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    q = sub.add_parser("push", help="upload a style network with a model card")
    q.add_argument("model", help="a style network: a path, a name in weights/, or a built-in name")
    q.add_argument("repo", help="USER/NAME on the Hub")
    q.add_argument(
        "--style-image",
        default=None,
        help="the style picture for the card (default: the built-in one); for a network that takes any "
        "picture as its style, also the style of the samples",
    )
    q.add_argument(
        "--samples",
        nargs="*",
        default=None,
        metavar="PHOTO",
        help="photos stylised for the card (default: three of the built-in pictures)",
    )
    q.add_argument("--onnx", action="store_true", help="also upload the ONNX export (model.onnx)")
    q.add_argument("--private", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interrupt_on_termination():  # kill or a closed terminal: the temporary copy removed, as on Ctrl-C
            path = resolve_model(args.model)
            picture = style_picture_for(read_metadata(path), args.style_image)
            samples = args.samples if args.samples is not None else default_samples(picture)
            url = push(path, args.repo, style_picture=picture, samples=samples, onnx=args.onnx, private=args.private)
    except MlxStyleError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("interrupted: the push did not finish (its temporary files are removed); run it again", file=sys.stderr)
        return 130
    print(f"pushed {path.name} to {args.repo} ({url}); use it with --model hf:{args.repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
