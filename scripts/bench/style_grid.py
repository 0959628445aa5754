"""A labelled grid of photos through style networks, for the README and docs/.

    python -m scripts.bench.style_grid --photos kodim03.png kodim08.png --models wave starry_night the_scream \
        --size 256 -o docs/builtin_styles.jpg
    python -m scripts.bench.style_grid --photos kodim03.png --models weights/magenta26.safetensors \
        --styles 0-25 --columns 9 --size 160 -o docs/magenta26_styles.jpg
    python -m scripts.bench.style_grid --photos kodim03.png --models weights/magenta_arbitrary.safetensors \
        --style-images hokusai.jpg "hokusai.jpg:0.5,vangogh.jpg:0.5" vangogh.jpg -o docs/arbitrary_blend.jpg

Each row is a photo: the photo itself, then one tile per model (or per ``--styles`` entry of a multi-style
network: indices, ranges ``a-b`` and blends ``3:0.5,12:0.5``, separated by spaces; or per ``--style-images``
entry of the arbitrary-style network: a picture, or a blend ``a.jpg:0.7,b.jpg:0.3``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

from mlx_style.infer.stylize import load_network, stylize_array
from mlx_style.io.image import center_crop, load_image, resize_shorter
from mlx_style.optim.layers import label_tile, make_grid


def expand_styles(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if "-" in item and ":" not in item:
            a, b = item.split("-")
            out += [str(i) for i in range(int(a), int(b) + 1)]
        else:
            out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.style_grid", description=__doc__.splitlines()[0])
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--styles", nargs="*", default=None, help="styles of a multi-style network (one model)")
    p.add_argument(
        "--style-images",
        nargs="*",
        default=None,
        help="pictures (or blends a.jpg:0.7,b.jpg:0.3) for the arbitrary-style network (one model)",
    )
    p.add_argument("--size", type=int, default=256, help="tiles are size² crops; the networks run at this size")
    p.add_argument("--columns", type=int, default=None)
    p.add_argument("--labels", default=None, help="comma-separated tile labels, one per model (default: the style)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    nets = []
    if args.style_images:
        from mlx_style.infer.stylize import style_name

        for entry in args.style_images:
            specs = entry.split(",")
            nets.append((style_name(specs).replace("_", " "), load_network(args.models[0], style_images=specs)[0]))
    elif args.styles:
        for style in expand_styles(args.styles):
            nets.append((f"style {style}", load_network(args.models[0], style=style)[0]))
    else:
        labels = args.labels.split(",") if args.labels else [None] * len(args.models)
        for model, label in zip(args.models, labels):
            net, meta = load_network(model)
            nets.append((label or Path(meta.get("style", model)).stem.replace("_", " "), net))
    tiles = []
    for photo in args.photos:
        image = center_crop(resize_shorter(load_image(photo), args.size), args.size, args.size)
        tiles.append(label_tile(image, Path(photo).stem.split("_")[-1]))
        tiles += [label_tile(stylize_array(net, image), label) for label, net in nets]
    grid = make_grid(tiles, args.columns or len(nets) + 1)
    grid.save(args.output, quality=88) if args.output.endswith((".jpg", ".jpeg")) else grid.save(args.output)
    print(f"wrote {args.output} ({grid.size[0]}×{grid.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
