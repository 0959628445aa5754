"""Compare trained style networks on held-out photos: the training losses, measured alike, and a picture grid.

    python -m scripts.bench.compare_training weights/cmp_mlx_wave128.safetensors weights/cmp_torch_wave128.safetensors \
        --labels MLX,PyTorch --style ../shared/data/styles/wave.jpg --data ../shared/data/content/holdout \
        --size 128 --grid docs/training_mlx_vs_torch.jpg --grid-images kodak_kodim08.png,kodak_kodim03.png

Every network is measured with the same code (``mlx_style.nn.losses.perceptual_loss``, the same VGG file, the loss
layers and weights the first network was trained with, the style Grams at ``--style-size``) on every image of
``--data``, each resized and centre-cropped to ``--size``² as training prepares its crops. It prints the mean of
each term per network and, per pair, on how many photos the first has the lower total. The grid shows the
chosen photos (centre-cropped to ``--grid-size``²) beside each network's output. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.training.data import prepare
from mlx_style.io.image import list_images, load_image, resize_max_side, to_batch
from mlx_style.optim.layers import label_tile, make_grid
from mlx_style.nn.losses import LossConfig, perceptual_loss, style_targets
from mlx_style.backend import keep_freed_memory
from mlx_style.infer.stylize import load_network, run_any_size, to_uint8
from mlx_style.io.vgg_weights import default_vgg, load_vgg


def loss_config_of(meta: dict[str, str]) -> LossConfig:
    data = json.loads(meta.get("loss_config", "{}"))
    if not data:
        raise SystemExit("error: the first network's file has no loss_config: it was not trained by mlx_style")
    data["style_layers"] = tuple(data["style_layers"])
    data["style_layer_weights"] = tuple(data["style_layer_weights"])
    return LossConfig(**data)


def network_and_style(spec: str) -> tuple[str, str, str | None]:
    """``(path, dtype, style)`` for ``PATH`` or ``PATH#STYLE`` (a style of a multi-style network, by name)."""
    path, _, style = spec.partition("#")
    return path, "float32", style or None


def evaluate(net, vgg, grams, losses: LossConfig, images: list[np.ndarray]) -> list[dict[str, float]]:
    """Per image: the unweighted terms and the weighted total, as the training log reports them."""
    rows = []
    for image in images:
        content = to_batch(image)
        total, terms = perceptual_loss(vgg, net(content), content, grams, losses)
        mx.eval(total, terms)
        rows.append({"loss": total.item(), **{k: v.item() for k, v in terms.items()}})
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "nets",
        nargs="+",
        help="transformer weight files (the first sets the loss configuration); "
        "PATH#STYLE picks a style of a multi-style network",
    )
    p.add_argument("--labels", help="comma-separated names for the networks (default: file stems)")
    p.add_argument("--style", required=True)
    p.add_argument("--data", required=True, help="folder of held-out photos")
    p.add_argument("--vgg", default=default_vgg())
    p.add_argument("--size", type=int, default=128, help="crop side for the losses (the training size)")
    p.add_argument("--style-size", type=int, help="longer side of the style image (default: --size)")
    p.add_argument("--grid", help="write the side-by-side picture here (.jpg or .png)")
    p.add_argument("--grid-images", default="", help="comma-separated file names from --data (default: first 4)")
    p.add_argument("--grid-size", type=int, default=256, help="side of each (square) grid tile")
    p.add_argument("--json", help="write per-image losses here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    loaded = [load_network(*network_and_style(path)) for path in args.nets]
    labels = args.labels.split(",") if args.labels else [Path(p).stem for p in args.nets]
    if len(labels) != len(loaded):
        raise SystemExit(f"error: {len(labels)} labels for {len(loaded)} networks")
    losses = loss_config_of(loaded[0][1])
    vgg, _ = load_vgg(args.vgg)
    style = resize_max_side(load_image(args.style), args.style_size or args.size)
    grams = style_targets(vgg, to_batch(style), losses.style_layers)
    files = list_images(args.data)
    photos = [load_image(f) for f in files]
    crops = [prepare(p, args.size) for p in photos]
    results = {}
    for label, (net, _) in zip(labels, loaded):
        net.eval()
        results[label] = evaluate(net, vgg, grams, losses, crops)
    print(
        f"{len(files)} photos of {args.data} at {args.size}², loss weights content {losses.content_weight:g} "
        f"style {losses.style_weight:g} tv {losses.tv_weight:g}"
    )
    print(f"{'network':>12} {'total':>12} {'content':>12} {'style':>12} {'tv':>12}")
    for label, rows in results.items():
        means = {k: float(np.mean([r[k] for r in rows])) for k in ("loss", "content", "style", "tv")}
        print(f"{label:>12} {means['loss']:12.5g} {means['content']:12.5g} {means['style']:12.5g} {means['tv']:12.5g}")
    first = labels[0]
    for other in labels[1:]:
        wins = sum(a["loss"] < b["loss"] for a, b in zip(results[first], results[other]))
        print(f"{first} has the lower total than {other} on {wins} of {len(files)} photos")
    if args.json:
        Path(args.json).write_text(json.dumps({"files": [f.name for f in files], "results": results}, indent=1))
    if args.grid:
        names = [n for n in args.grid_images.split(",") if n] or [f.name for f in files[:4]]
        by_name = {f.name: photo for f, photo in zip(files, photos)}
        tiles = []
        for name in names:
            if name not in by_name:
                raise SystemExit(f"error: {name} is not in {args.data}")
            photo = prepare(by_name[name], args.grid_size)  # square crops: tiles of one size
            tiles.append(label_tile(photo, name))
            for label, (net, _) in zip(labels, loaded):
                tiles.append(label_tile(to_uint8(run_any_size(net, photo)), label))
        grid = make_grid(tiles, 1 + len(loaded))
        grid.save(args.grid, quality=88) if args.grid.lower().endswith((".jpg", ".jpeg")) else grid.save(args.grid)
        print(f"wrote {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
