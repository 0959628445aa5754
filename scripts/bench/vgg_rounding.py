"""What storing the shipped VGG16 in float16 changes: features and Gram matrices on real photos, against the
float32 weights it was rounded from (both computed in float32).

    python -m scripts.bench.vgg_rounding weights/vgg16_caffe_f32.safetensors PHOTOS/ --size 256 --count 16

Prints, per loss layer, the relative difference (‖a − b‖ / ‖b‖, mean over photos) of the activations and of the
Gram matrices, and the relative difference of the style and content losses between a photo and a painting.
"""

from __future__ import annotations

import argparse

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np

from mlx_style.io.image import center_crop, list_images, load_image, resize_shorter
from mlx_style.io.vgg_weights import SHIPPED_VGG, load_vgg
from mlx_style.nn.losses import gram_matrix

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def relative(a: mx.array, b: mx.array) -> float:
    return float(mx.sqrt(mx.sum((a - b) ** 2)) / mx.sqrt(mx.sum(b**2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("float32", help="the float32 Caffe VGG16 the shipped file was made from (convert-vgg)")
    p.add_argument("photos", help="a folder of photos (held out from training)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--count", type=int, default=16)
    args = p.parse_args(argv)
    reference, _ = load_vgg(args.float32)
    shipped, _ = load_vgg(SHIPPED_VGG)
    paths = list_images(args.photos)
    paths = paths[:: max(1, len(paths) // args.count)][: args.count]
    feats, grams, losses = {n: [] for n in LAYERS}, {n: [] for n in LAYERS}, []
    painting = None
    for path in paths:
        x = mx.array(
            center_crop(resize_shorter(load_image(path), args.size), args.size, args.size)[None].astype(np.float32)
        )
        a, b = shipped(x, LAYERS), reference(x, LAYERS)
        for n in LAYERS:
            feats[n].append(relative(a[n], b[n]))
            grams[n].append(relative(gram_matrix(a[n]), gram_matrix(b[n])))
        if painting is None:
            painting = (x, a, b)
            continue
        _, pa, pb = painting
        style = [
            sum(float(mx.sum((gram_matrix(f[n]) - gram_matrix(g[n])) ** 2)) for n in LAYERS)
            for f, g in ((a, pa), (b, pb))
        ]
        content = [float(mx.mean((f["relu3_3"] - g["relu3_3"]) ** 2)) for f, g in ((a, pa), (b, pb))]
        losses.append((abs(style[0] / style[1] - 1), abs(content[0] / content[1] - 1)))
    print(f"{len(paths)} photos at {args.size}², float16-stored vs float32 weights, both computed in float32\n")
    print("| layer | activations: relative difference | Gram matrices: relative difference |")
    print("|---|---|---|")
    for n in LAYERS:
        print(
            f"| {n} | {np.mean(feats[n]):.2e} (max {np.max(feats[n]):.2e}) | "
            f"{np.mean(grams[n]):.2e} (max {np.max(grams[n]):.2e}) |"
        )
    s, c = np.array(losses).T
    print(
        f"\nstyle loss between photo pairs: relative change {s.mean():.2e} (max {s.max():.2e}); "
        f"content loss: {c.mean():.2e} (max {c.max():.2e})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
