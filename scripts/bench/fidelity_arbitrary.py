"""PSNR of the MLX arbitrary-style pair against onnxruntime running Magenta's graphs: the float graph (activation
quantisation removed: what the weights define) and the int8 graph as it ships, on held-out photos.

    python -m scripts.bench.fidelity_arbitrary --model weights/magenta_arbitrary.safetensors \
        --onnx ../shared/data/weights/magenta_onnx --photos ../shared/data/content/holdout/kodak_*.png \
        --styles ../shared/data/styles/{wave,starry_night,the_scream}.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style.io.style_models import load_style_model
from mlx_style.io.image import load_image, resize
from mlx_style.io.magenta import PREDICT_FILE, TRANSFORM_FILE, read_onnx
from mlx_style.io.onnx_graph import float_graph

SIDE = 384  # the published transformer graph's fixed size


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.fidelity_arbitrary", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--onnx", required=True, help="the folder (or wheel) holding both graphs")
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--styles", nargs="+", required=True)
    args = p.parse_args(argv)
    import onnxruntime as ort

    net = load_style_model(args.model).net
    graphs = {name: read_onnx(args.onnx, name)[0] for name in (PREDICT_FILE, TRANSFORM_FILE)}
    session = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])  # noqa: E731
    sessions = {
        "float": [session(float_graph(graphs[n])) for n in (PREDICT_FILE, TRANSFORM_FILE)],
        "int8": [session(graphs[n]) for n in (PREDICT_FILE, TRANSFORM_FILE)],
    }
    results = {kind: [] for kind in sessions}
    print(f"{'photo':<28} {'style':<16} {'vs float dB':>11} {'vs int8 dB':>10}")
    for style in args.styles:
        painting = resize(load_image(style), 256, 256)
        ours_vector = net.style_vector(painting, size=None)
        for photo in args.photos:
            content = resize(load_image(photo), SIDE, SIDE)
            ours = np.asarray(net(mx.array(content.astype(np.float32))[None], ours_vector)[0])
            row = []
            for kind, (predict, transform) in sessions.items():
                vector = predict.run(None, {"style_image": painting[None].astype(np.float32) / 255})[0]
                ref = (
                    transform.run(
                        None,
                        {
                            "content_image": content[None].astype(np.float32) / 255,
                            "mobilenet_conv/Conv/BiasAdd": vector,
                        },
                    )[0][0]
                    * 255
                )
                results[kind].append(psnr(ours, ref))
                row.append(results[kind][-1])
            print(f"{Path(photo).name:<28} {Path(style).stem:<16} {row[0]:11.1f} {row[1]:10.1f}")
    print(
        "min: "
        + ", ".join(f"vs {k} {min(v):.1f} dB" for k, v in results.items())
        + "; mean: "
        + ", ".join(f"vs {k} {np.mean(v):.1f} dB" for k, v in results.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
