"""One table for every way of getting a style: single-style, multi-style, warm-started, AdaIN and imported networks.

    python -m scripts.bench.method_table --data ../shared/data/content/holdout --size 256 \
        --style wave=wave starry_night=starry_night la_muse=../shared/data/styles/la_muse.jpg ... \
        --single wave=wave la_muse=weights/scratch_la_muse.safetensors ... \
        --multi weights/multi6_la_muse.safetensors --adain weights/adain.safetensors \
        --arbitrary weights/magenta_arbitrary.safetensors --grid docs/training_methods.jpg \
        --grid-styles the_scream,la_muse --grid-image kodak_kodim08.png --json runs/method_table.json

Each network is measured on the styles it serves (a single-style network on its own; the multi-style network on
the styles it lists, by name; the picture-as-style networks on every style) with the same code
(``compare_training.evaluate``: the perceptual loss of the first single-style network's settings, the Grams of
the style picture at its longer side ``--size``) on every photo of ``--data``, centre-cropped to ``--size``².
It prints one markdown row per style and network kind (means over the photos), and a picture: for each grid
style, the photo, the painting, and each network's output side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.backend import keep_freed_memory
from mlx_style.infer.stylize import load_network, run_any_size, style_names, to_uint8
from mlx_style.io.image import list_images, load_image, resize_max_side, to_batch
from mlx_style.io.registry import resolve_model, resolve_style_image
from mlx_style.io.weights import read_metadata
from mlx_style.nn.losses import style_targets
from mlx_style.io.vgg_weights import default_vgg, load_vgg
from mlx_style.optim.layers import label_tile, make_grid
from mlx_style.training.data import prepare
from scripts.bench.compare_training import evaluate, loss_config_of


def pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep:
            raise SystemExit(f"error: {flag} takes NAME=VALUE, got {value!r}")
        out[name] = target
    return out


def networks_for(style: str, picture: Path, args) -> list[tuple[str, object]]:
    """``(kind, module)`` for each network that serves ``style``."""
    found = []
    single = pairs(args.single, "--single")
    if style in single:
        found.append(("single-style", load_network(resolve_model(single[style]))[0]))
    for path in args.multi:
        meta = read_metadata(resolve_model(path))
        if style in style_names(meta):
            found.append(("multi-style", load_network(resolve_model(path), style=style)[0]))
    for kind, paths in (("AdaIN", args.adain), ("Magenta (imported)", args.arbitrary)):
        for path in paths:
            found.append((kind, load_network(resolve_model(path), style_images=[str(picture)])[0]))
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", nargs="+", required=True, metavar="NAME=PICTURE", help="the styles, with their pictures")
    p.add_argument("--single", nargs="*", default=[], metavar="NAME=MODEL", help="single-style networks, per style")
    p.add_argument("--multi", nargs="*", default=[], help="multi-style networks (serve the styles they list)")
    p.add_argument("--adain", nargs="*", default=[], help="AdaIN networks (serve any style)")
    p.add_argument("--arbitrary", nargs="*", default=[], help="imported arbitrary-style networks (any style)")
    p.add_argument("--data", required=True, help="folder of held-out photos")
    p.add_argument("--vgg", default=default_vgg())
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--grid", help="write the side-by-side picture here")
    p.add_argument("--grid-styles", default="", help="comma-separated style names for the picture")
    p.add_argument("--grid-image", help="the photo of --data in the picture (default: the first)")
    p.add_argument("--grid-size", type=int, default=256)
    p.add_argument("--json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    styles = {name: resolve_style_image(picture) for name, picture in pairs(args.style, "--style").items()}
    first = next(iter(pairs(args.single, "--single").values()), None)
    if first is None:
        raise SystemExit("error: give at least one --single network (it sets the loss settings)")
    losses = loss_config_of(read_metadata(resolve_model(first)))
    vgg, _ = load_vgg(args.vgg)
    files = list_images(args.data)
    crops = [prepare(load_image(f), args.size) for f in files]
    grid_styles = [s for s in args.grid_styles.split(",") if s]
    grid_photo = prepare(load_image(next((f for f in files if f.name == args.grid_image), files[0])), args.grid_size)
    results, grid_rows = {}, []
    print(
        f"{len(files)} photos of {args.data} at {args.size}², loss weights content {losses.content_weight:g}, "
        f"style {losses.style_weight:g}, tv {losses.tv_weight:g}\n"
    )
    print("| style | network | total | content | style |\n|---|---|---|---|---|")
    for name, picture in styles.items():
        painting = load_image(picture)
        grams = style_targets(vgg, to_batch(resize_max_side(painting, args.size)), losses.style_layers)
        nets = networks_for(name, picture, args)
        row_tiles = [label_tile(grid_photo, "photo"), label_tile(prepare(painting, args.grid_size), name)]
        for kind, net in nets:
            net.eval()
            per_photo = evaluate(net, vgg, grams, losses, crops)
            means = {k: float(np.mean([r[k] for r in per_photo])) for k in ("loss", "content", "style", "tv")}
            results.setdefault(name, {})[kind] = means
            print(
                f"| {name} | {kind} | {means['loss']:.3g} | {means['content']:.3g} | {means['style']:.3g} |", flush=True
            )
            if name in grid_styles:
                row_tiles.append(label_tile(to_uint8(run_any_size(net, grid_photo)), kind))
            mx.clear_cache()
        if name in grid_styles:
            grid_rows.append(row_tiles)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"files": [f.name for f in files], "size": args.size, "results": results}, indent=1)
        )
    if args.grid and grid_rows:
        columns = max(len(r) for r in grid_rows)
        blank = Image.new("RGB", grid_rows[0][0].size, "white")
        grid = make_grid([t for r in grid_rows for t in r + [blank] * (columns - len(r))], columns)
        grid.save(args.grid, quality=88) if args.grid.lower().endswith((".jpg", ".jpeg")) else grid.save(args.grid)
        print(f"wrote {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
