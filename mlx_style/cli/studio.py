"""``mlx-style studio``: the whole tool in a browser tab (stylise, live webcam, train, share); see
``mlx_style.studio``. Needs the ``studio`` extra: ``pip install -e ".[studio]"``.

It listens on 127.0.0.1 only; ``--share-lan`` or ``--host`` serve other machines, and then need a password.
Folders typed in the page must lie in a ``--root`` (default: the current folder)::

    mlx-style studio
    mlx-style studio --root ~/photos --root ~/paintings --port 8080 --no-browser
    mlx-style studio --share-lan --password "$(cat ~/.studio-password)"
"""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError
from mlx_style.infer.signals import interrupt_on_termination
from mlx_style.studio.config import LAN_HOST, PASSWORD_ENV, StudioConfig

INSTALL_HINT = "the studio needs Gradio: pip install -e \".[studio]\" (or pip install 'gradio>=5')"


def build_parser() -> argparse.ArgumentParser:
    d = StudioConfig()
    p = argparse.ArgumentParser(
        prog="mlx-style studio",
        description=__doc__.splitlines()[0].replace("``", "`"),
        epilog="Exit status: 0 after Ctrl-C, 2 on bad settings or without Gradio.",
    )
    p.add_argument("--port", type=int, default=d.port, help="port to listen on (default %(default)s; 0: any free)")
    p.add_argument(
        "--no-browser",
        dest="open_browser",
        action="store_false",
        help="do not open the page in a browser (print its address only)",
    )
    serving = p.add_mutually_exclusive_group()
    serving.add_argument(
        "--host",
        default=d.host,
        help="address to listen on (default %(default)s: this machine only); another needs --password",
    )
    serving.add_argument(
        "--share-lan",
        action="store_true",
        help=f"listen on every interface ({LAN_HOST}): other machines of your network can use it, with --password",
    )
    p.add_argument(
        "--password",
        default=d.password,
        help=f"the login password (user: --user); required beyond this machine; or set {PASSWORD_ENV}",
    )
    p.add_argument("--user", default=d.user, help="the login name (default %(default)s)")
    p.add_argument(
        "--root",
        dest="roots",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose photos the page may use for training (repeatable; default: the current "
        "folder); paths typed in the page cannot leave these",
    )
    p.add_argument("--weights-dir", default=d.weights_dir, help="trained styles (default %(default)s/)")
    p.add_argument(
        "--runs-dir", default=d.runs_dir, help="run folders, shared with `mlx-style train` (default %(default)s/)"
    )
    p.add_argument("--vgg", default=d.vgg, help="the loss network for training (default: training's)")
    p.add_argument(
        "--max-file-size",
        default=d.max_file_size,
        help="largest upload (default %(default)s; e.g. 2gb for long videos)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = StudioConfig(
        host=LAN_HOST if args.share_lan else args.host,
        port=args.port,
        roots=tuple(args.roots),
        password=args.password,
        user=args.user,
        weights_dir=args.weights_dir,
        runs_dir=args.runs_dir,
        vgg=args.vgg,
        max_file_size=args.max_file_size,
        open_browser=args.open_browser,
    )
    try:
        from mlx_style.studio.config import check_serving
        from mlx_style.studio.paths import allowed_roots

        check_serving(config)  # before Gradio is imported: a refusal is instant
        allowed_roots(config.roots)
    except MlxStyleError as exc:
        return fail(exc)
    try:
        from mlx_style.studio.app import launch, serve_until_stopped
    except ImportError as exc:
        return fail(f"{INSTALL_HINT} ({exc})")
    try:
        demo, studio, url = launch(config)
    except (MlxStyleError, OSError) as exc:
        return fail(exc)
    print(f"mlx_style studio at {url}" + ("" if config.open_browser else " (open it in your browser)"))
    print("Ctrl-C stops it (a run in progress writes a checkpoint first)")
    try:
        with interrupt_on_termination():  # kill or a closed terminal: runs still stop with a checkpoint
            serve_until_stopped(demo, studio)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
