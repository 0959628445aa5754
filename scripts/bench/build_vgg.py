"""Write the loss network that ships inside the package: the Caffe VGG16 convolutions up to relu4_3, in float16.

    python scripts/convert_vgg.py --from PATH/vgg16_caffe_imagenet --preprocess caffe -o weights/vgg16_caffe.safetensors
    python -m scripts.bench.build_vgg weights/vgg16_caffe.safetensors

relu4_3 is the deepest layer the report's losses, ``--stable`` and AdaIN's encoder (relu4_1) use; the fifth block
(for ``layers`` studies to relu5_3) needs a converted file of its own (``convert-vgg``). The weights are
Simonyan & Zisserman's (CC BY 4.0); ``mlx_style/vgg16/NOTICE`` says what was changed.
"""

from __future__ import annotations

import argparse
import json

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style.io.weights import load_weights, save_weights
from mlx_style.io.vgg_weights import SHIPPED_VGG
from mlx_style.nn.vgg import layer_names

LAST_LAYER = "relu4_3"


def build(source: str, out=SHIPPED_VGG):
    arrays, meta = load_weights(source, kind="vgg")
    if meta.get("preprocess") != "caffe" or json.loads(meta["config"]).get("arch") != "vgg16":
        raise SystemExit(f"{source}: expected the Caffe VGG16 (convert-vgg --preprocess caffe)")
    names = layer_names("vgg16")
    keep = {i for i, name in enumerate(names[: names.index(LAST_LAYER)]) if name.startswith("conv")}
    kept = {k: v.astype(mx.float16) for k, v in arrays.items() if int(k.split(".")[1]) in keep}
    shipped = {key: meta[key] for key in ("kind", "architecture", "config", "preprocess", "recommended_loss_weights")}
    shipped.update(
        {
            "source": meta["source"],
            "layers": f"conv1_1 … conv4_3 (relu1_1 … {LAST_LAYER}); stored in float16, computed in float32",
            "licence": "CC BY 4.0: VGG16 weights by K. Simonyan and A. Zisserman (Very Deep Convolutional Networks "
            "for Large-Scale Image Recognition, ICLR 2015); see LICENSE-CC-BY-4.0.txt and NOTICE",
        }
    )
    return save_weights(out, kept, shipped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="the Caffe VGG16 converted by convert-vgg (float32, all 13 convolutions)")
    p.add_argument("--out", default=str(SHIPPED_VGG))
    args = p.parse_args(argv)
    out = build(args.source, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
