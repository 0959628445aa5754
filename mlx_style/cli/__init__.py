"""The command surface: ``mlx-style <command>`` and ``python -m mlx_style <command>``.

Each command is one module here with ``build_parser()`` and ``main(argv=None) -> int``: it parses, builds a config
and calls the library. Exit status: 0 on success, 2 on bad usage or input, 1 on a failure mid-run, 130 when
interrupted.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {  # name -> (module, one line for the listing)
    "train": ("mlx_style.cli.train", "train a style network on a folder of photos"),
    "stylize": ("mlx_style.cli.stylize", "stylise images, folders and videos"),
    "cam": ("mlx_style.cli.cam", "live style transfer from a camera or a video"),
    "optimize": ("mlx_style.cli.optimize", "optimise one image for the perceptual loss (Gatys et al.)"),
    "layers": ("mlx_style.cli.layers", "style reconstructions per VGG layer, and layer weights for training"),
    "convert-vgg": ("mlx_style.cli.convert_vgg", "convert ImageNet VGG weights for the loss network"),
    "convert-fst": ("mlx_style.cli.convert_fst", "import Engstrom's pretrained style networks"),
    "convert-magenta": ("mlx_style.cli.convert_magenta", "import Magenta's any-style and 26-style networks (ONNX)"),
    "export": ("mlx_style.cli.export", "export a style network to ONNX (dynamic size, RGB 0-255 in and out)"),
    "hub": ("mlx_style.cli.hub", "share a style on the Hugging Face Hub (hub push); --model hf:user/name pulls it"),
    "flicker": ("mlx_style.cli.flicker", "how stable a stylised video is: warping error and static flicker"),
    "bench": ("mlx_style.cli.bench", "time the style network (beside PyTorch with --torch)"),
    "info": ("mlx_style.cli.info", "what mlx_style runs on: MLX, device, BLAS, weights found"),
    "studio": ("mlx_style.cli.studio", "the whole tool in a browser tab: stylise, live webcam, train, share"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: mlx-style <command> [options]   (or: python -m mlx_style <command>)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "mlx-style <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name in ("-V", "--version"):
        import mlx_style

        print(f"mlx_style {mlx_style.__version__}")
        return 0
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(name, rest)


def run_command(name: str, argv: list[str]) -> int:
    """Run command ``name`` (``train --method adain`` too: the train command reads its method itself)."""
    return importlib.import_module(COMMANDS[name][0]).main(argv)
