"""``mlx-style convert-fst``: import Engstrom's pretrained style networks; see ``io.fst``."""

from __future__ import annotations

import argparse
import sys
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.io.fst import ConvertFstConfig, LICENSE_NOTE, ML5_COMMIT, ML5_REPO, STYLES, convert_fst


def build_parser() -> argparse.ArgumentParser:
    d = ConvertFstConfig()
    p = argparse.ArgumentParser(
        prog="mlx-style convert-fst",
        description=__doc__.splitlines()[0],
        epilog=f"Styles: {', '.join(STYLES)}. Licence of the networks: {LICENSE_NOTE}.",
    )
    p.add_argument("folder", nargs="?", metavar="FOLDER", help="a local ml5 style folder (manifest.json + files)")
    p.add_argument(
        "--download",
        choices=(*STYLES, "all"),
        default=d.download,
        help=f"fetch a style from {ML5_REPO} at commit {ML5_COMMIT[:8]}, then convert it",
    )
    p.add_argument(
        "-o", "--output", dest="out", default=d.out, help="output file (default: weights/<style>.safetensors)"
    )
    p.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--name", default=d.name, help="style name stored in the file (default: the folder's name)")
    p.add_argument("--cache-dir", default=d.cache_dir, help="where downloads are kept (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.folder is None) == (args.download is None):
        parser.error("give either an ml5 FOLDER or --download NAME")
    config = ConvertFstConfig(
        folder=args.folder, download=args.download, out=args.out, name=args.name, cache_dir=args.cache_dir
    )
    try:
        written = convert_fst(config)
    except MlxStyleError as exc:
        return fail(exc)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); licence: {LICENSE_NOTE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
