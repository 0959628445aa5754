"""``mlx-style flicker ORIGINAL STYLISED``: how stable a stylised video is (warping error, static flicker);
see ``infer.flicker``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.infer.flicker import STATIC_THRESHOLD, STILL_FLOW, compare
from mlx_style.io.paths import check_placeable
from mlx_style.io.weights import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style flicker", description=__doc__.splitlines()[0])
    p.add_argument("original", help="the video that was stylised (its motion is the reference)")
    p.add_argument("stylised", help="the stylised video")
    p.add_argument("--frames", type=int, default=None, help="compare the first N frames only")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.json:
            check_placeable(args.json, "--json")  # before minutes of optical flow, not after
        result = compare(args.original, args.stylised, args.frames)
    except MlxStyleError as exc:
        return fail(exc)
    for note in result.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    s, o = result["stylised"], result["original"]
    print(f"{'':<10} {'warping error':>14} {'static flicker':>15}   ({s['frames']} frames)")
    print(f"{'stylised':<10} {s['warping_error']:>14.5f} {s['static_flicker']:>15.3f}")
    print(f"{'original':<10} {o['warping_error']:>14.5f} {o['static_flicker']:>15.3f}   (the floor)")
    print(
        f"warping error: mean squared RGB difference (0-1) of the previous frame warped by the original's flow, "
        f"over consistent pixels; static flicker: mean |change| of luma (0-255) where the original changed "
        f"less than {STATIC_THRESHOLD:g} levels and moved less than {STILL_FLOW:g} px"
    )
    if args.json:
        try:
            atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
        except MlxStyleError as exc:
            return fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
