"""How boldly each network of a painting paints: style and content distance on held-out photos, a fixed measure.

    python -m scripts.bench.builtin_quality --data ../shared/data/content/holdout \
        --styles-dir ../shared/data/styles --paintings wave udnie the_scream \
        --net builtin=mlx_style/styles/{style}.safetensors --net engstrom=weights/fst_{fst}.safetensors \
        --net arbitrary=weights/magenta_arbitrary.safetensors \
        --table runs/quality/baseline.md --grid runs/quality/baseline.jpg

Every network is measured by one loss network that no network here was trained for its numbers alone: the
converted Caffe VGG16 (``weights/vgg16.safetensors``; ``python scripts/convert_vgg.py --from
../shared/data/weights/vgg16_caffe_imagenet --preprocess caffe``). The photos are ``--count`` held-out photos,
sorted by name and evenly spaced, each resized to ``--size`` on its longer side; the painting is resized to
``--style-size`` on its longer side. With φ_j the VGG activation (H·W positions, C channels) and
``G_j(x) = φ_jᵀφ_j / (C·H·W)`` (``nn.losses.gram_matrix``):

- style = Σ_j ‖G_j(ŷ) − G_j(painting)‖²_F / ‖G_j(painting)‖²_F over relu1_2, relu2_2, relu3_3, relu4_3: each layer's
  squared Gram error relative to the painting's own Gram, so every layer counts alike and the number is scale-free
  (0 = the painting's statistics; a photo left as it is scores about 1 per layer).
- content = mean((φ(ŷ) − φ(photo))²) / E at relu3_3, with E the mean of mean(φ(photo)²) over the measured photos: the
  squared feature error relative to the photos' typical feature energy (0 = the photo). E is one constant for the
  photo set, not each photo's own energy, so a flat photo (a plane in a clear sky) does not swamp the mean.

``--net LABEL=SPEC`` (repeatable) gives the networks. In SPEC, ``{style}`` is the painting's name and ``{fst}``
the name of Engstrom's network of it (``scream`` for the_scream, ``wreck`` for the_shipwreck_of_the_minotaur);
``PATH#{style}`` picks a style of a multi-style network (a weight file or a training checkpoint). A network whose
file is missing is skipped for that painting; an arbitrary-style network gets the painting as its style image.
It prints and writes (``--table``) a markdown table of the means, with ratios to ``--reference`` (default the
label ``engstrom``), and per-photo tables; ``--json`` keeps every number; ``--grid`` a JPEG of the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.io.image import list_images, load_image, resize_max_side, to_batch
from mlx_style.io.weights import read_metadata
from mlx_style.nn.losses import STYLE_LAYERS, gram_matrix
from mlx_style.io.vgg_weights import load_vgg
from mlx_style.optim.layers import label_tile, make_grid

REPO = Path(__file__).resolve().parents[2]
FST_NAMES = {"the_scream": "scream", "the_shipwreck_of_the_minotaur": "wreck"}  # painting → Engstrom's folder
CONTENT_LAYER = "relu3_3"


def pick_photos(folder: Path, count: int) -> list[Path]:
    """``count`` photos of ``folder``, sorted by name and evenly spaced (first and last included)."""
    photos = sorted(list_images(folder), key=lambda p: p.name)
    if len(photos) < count:
        raise SystemExit(f"error: {folder} holds {len(photos)} images, fewer than --count {count}")
    return [photos[i] for i in np.round(np.linspace(0, len(photos) - 1, count)).astype(int)]


def load_checkpoint_network(path: Path, style: str | None):
    """A training checkpoint's network (``step_*.safetensors``), bound to ``style`` if it holds several."""
    from mlx_style.nn.multistyle import BlendedStyle, blend_weights
    from mlx_style.nn.transformer import TransformerConfig, TransformerNet
    from mlx_style.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    net = TransformerNet(TransformerConfig.from_json(checkpoint.metadata["config"]))
    net.load_weights(list(checkpoint.model.items()), strict=True)
    net.eval()
    if net.config.styles == 1:
        return net
    train = checkpoint.json("train_config")
    names = [Path(s).stem for s in train.get("styles") or [train["style"]]]
    if style is None:
        raise SystemExit(f"error: {path} holds {len(names)} styles: give PATH#STYLE")
    return BlendedStyle(net, blend_weights(style, net.config.styles, names))


def load_net(spec: str, painting: Path):
    """The network of ``spec`` (``PATH`` or ``PATH#STYLE``), bound to one style; None if the file is missing."""
    from mlx_style.infer.stylize import load_network

    path_text, _, style = spec.partition("#")
    path = Path(path_text)
    if not path.exists():
        return None
    kind = read_metadata(path).get("kind")
    if kind == "checkpoint":
        return load_checkpoint_network(path, style or None)
    if kind in ("arbitrary", "adain"):
        return load_network(path, style_images=str(painting))[0]
    return load_network(path, style=style or None)[0]


def relative_distances(
    vgg, output: np.ndarray, photo_features: mx.array, painting_grams: dict[str, mx.array], energy: float
) -> tuple[float, float, dict[str, float]]:
    """``(style, content, style per layer)`` of one stylised photo (see the module docstring)."""
    features = vgg(to_batch(output), (*STYLE_LAYERS, CONTENT_LAYER))
    per_layer = {}
    for name in STYLE_LAYERS:
        target = painting_grams[name]
        diff = gram_matrix(features[name]) - target
        per_layer[name] = mx.sum(diff * diff) / mx.sum(target * target)
    diff = features[CONTENT_LAYER] - photo_features
    content = mx.mean(diff * diff) / energy
    mx.eval(content, per_layer)
    per_layer = {k: v.item() for k, v in per_layer.items()}
    return sum(per_layer.values()), content.item(), per_layer


def measure(args: argparse.Namespace) -> dict:
    vgg, _ = load_vgg(args.vgg)
    photo_paths = pick_photos(args.data, args.count)
    photos = [resize_max_side(load_image(p), args.size) for p in photo_paths]
    photo_features = []
    for photo in photos:
        f = vgg(to_batch(photo), (CONTENT_LAYER,))[CONTENT_LAYER]
        mx.eval(f)
        photo_features.append(f)
    energy = float(np.mean([mx.mean(f * f).item() for f in photo_features]))  # E of the module docstring
    results = {
        "photos": [p.name for p in photo_paths],
        "size": args.size,
        "style_size": args.style_size,
        "paintings": {},
    }
    outputs = {}  # (painting, label) → list of stylised photos, for the grid
    for painting in args.paintings:
        picture = args.styles_dir / f"{painting}.jpg"
        image = resize_max_side(load_image(picture), args.style_size)
        feats = vgg(to_batch(image), STYLE_LAYERS)
        grams = {name: gram_matrix(feats[name]) for name in STYLE_LAYERS}
        mx.eval(grams)
        rows = {}
        for label, template in args.net:
            spec = template.format(style=painting, fst=FST_NAMES.get(painting, painting))
            net = load_net(spec, picture)
            if net is None:
                print(f"  {painting}/{label}: no {spec.partition('#')[0]}; skipped", file=sys.stderr)
                continue
            from mlx_style.infer.stylize import stylize_array

            per_photo, stylised = [], []
            for photo, pf in zip(photos, photo_features):
                out = stylize_array(net, photo, None, None, False, 1.0, args.tile)
                s, c, layers = relative_distances(vgg, out, pf, grams, energy)
                per_photo.append({"style": s, "content": c, "layers": layers})
                stylised.append(out)
            rows[label] = {
                "spec": spec,
                "style": float(np.mean([r["style"] for r in per_photo])),
                "content": float(np.mean([r["content"] for r in per_photo])),
                "per_photo": per_photo,
            }
            outputs[painting, label] = stylised
            print(
                f"  {painting:>30} {label:>12}: style {rows[label]['style']:.3f}  content {rows[label]['content']:.3f}",
                file=sys.stderr,
                flush=True,
            )
            del net
        results["paintings"][painting] = rows
    if args.grid:
        write_grid(args.grid, photos, outputs, args.grid_photos, args.grid_tile)
    return results


def write_grid(path: Path, photos: list[np.ndarray], outputs: dict, rows: int, tile: int) -> None:
    """One row per photo (the first ``rows``, evenly spaced): the photo, then every painting × network."""
    chosen = np.round(np.linspace(0, len(photos) - 1, min(rows, len(photos)))).astype(int)
    columns = 1 + len(outputs)

    def fit(image):
        return resize_max_side(image, tile) if max(image.shape[:2]) != tile else image

    def padded(image):
        image = fit(image)
        canvas = np.full((tile, tile, 3), 255, np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image
        return canvas

    tiles = []
    for i in chosen:
        tiles.append(label_tile(padded(photos[i]), "photo"))
        for (painting, label), images in outputs.items():
            tiles.append(label_tile(padded(images[i]), f"{painting[:14]} {label}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(tiles, columns).save(path, format="JPEG", quality=88)
    print(f"wrote {path}", file=sys.stderr)


def markdown(results: dict, reference: str) -> str:
    lines = [
        f"Held-out photos: {', '.join(results['photos'])} (longer side {results['size']} px; painting "
        f"{results['style_size']} px). Style: Σ relative squared Gram error over relu1_2/2_2/3_3/4_3; content: "
        "squared error at relu3_3 over the photos' mean feature energy (Caffe VGG16). Lower is better; ratios "
        f"are to `{reference}`.",
        "",
        "| painting | network | style | content | style ÷ ref | content ÷ ref |",
        "|---|---|---|---|---|---|",
    ]
    for painting, rows in results["paintings"].items():
        ref = rows.get(reference)
        for label, row in rows.items():
            ratio = f"{row['style'] / ref['style']:.2f} | {row['content'] / ref['content']:.2f}" if ref else "— | —"
            lines.append(f"| {painting} | {label} | {row['style']:.3f} | {row['content']:.3f} | {ratio} |")
    lines += ["", "Per photo (style / content):", ""]
    labels = [(p, label) for p, rows in results["paintings"].items() for label in rows]
    lines.append("| photo | " + " | ".join(f"{p} {label}" for p, label in labels) + " |")
    lines.append("|---" * (len(labels) + 1) + "|")
    for i, name in enumerate(results["photos"]):
        cells = [
            f"{results['paintings'][p][label]['per_photo'][i]['style']:.2f} / "
            f"{results['paintings'][p][label]['per_photo'][i]['content']:.2f}"
            for p, label in labels
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_net(text: str) -> tuple[str, str]:
    label, sep, spec = text.partition("=")
    if not sep or not label or not spec:
        raise argparse.ArgumentTypeError(f"--net {text!r}: expected LABEL=PATH (PATH may hold {{style}}, {{fst}})")
    return label, spec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared/data/content/holdout",
        help="held-out photos (default: ../shared/data/content/holdout beside the repository)",
    )
    p.add_argument(
        "--styles-dir",
        type=Path,
        default=REPO.parent / "shared/data/styles",
        help="the paintings, <name>.jpg (default: ../shared/data/styles)",
    )
    p.add_argument("--paintings", nargs="+", default=["wave", "udnie", "the_scream"])
    p.add_argument(
        "--net",
        type=parse_net,
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="a network per painting; {style}, {fst} and #STYLE as in the module docstring",
    )
    p.add_argument("--reference", default="engstrom", help="the label the ratios are taken to")
    p.add_argument("--vgg", type=Path, default=REPO / "weights/vgg16.safetensors", help="Caffe VGG16 (converted)")
    p.add_argument("--count", type=int, default=8, help="photos, evenly spaced in name order")
    p.add_argument("--size", type=int, default=384, help="longer side of each photo")
    p.add_argument("--style-size", type=int, default=384, help="longer side of the painting")
    p.add_argument("--tile", type=int, default=1024, help="stylise in tiles above this side (same result)")
    p.add_argument("--table", type=Path, help="write the markdown table here")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--grid", type=Path, help="write a JPEG grid of the outputs here")
    p.add_argument("--grid-photos", type=int, default=4, help="photos (rows) in the grid")
    p.add_argument("--grid-tile", type=int, default=192, help="side of each grid tile")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.vgg.exists():
        raise SystemExit(
            f"error: no VGG weights at {args.vgg}: run `python scripts/convert_vgg.py --from "
            "../shared/data/weights/vgg16_caffe_imagenet --preprocess caffe`"
        )
    if read_metadata(args.vgg).get("preprocess") != "caffe":
        raise SystemExit(
            f"error: {args.vgg} is not the Caffe VGG16: the measure is fixed to it "
            "(python scripts/convert_vgg.py --from ../shared/data/weights/vgg16_caffe_imagenet "
            "--preprocess caffe)"
        )
    results = measure(args)
    table = markdown(results, args.reference)
    print(table)
    for path, text in ((args.table, table), (args.json, json.dumps(results, indent=1))):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
