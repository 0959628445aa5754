"""The same computations on MLX's GPU stream and its CPU stream: how far does the GPU's float32 drift?

    python -m scripts.bench.check_gpu --model weights/wave.safetensors --image photo.jpg
    MLX_ENABLE_TF32=0 python -m scripts.bench.check_gpu ...     # CUDA: strict float32 instead of TF32

Prints (1) a style network's output on a photo, GPU against CPU (max and mean absolute difference, 0–255), and
writes the GPU's picture with ``--save``; (2) one training batch's loss and gradients (random VGG16 to relu4_3,
the Caffe loss weights; ``--vgg`` for real weights), GPU against CPU. Without a GPU both sides run on the CPU and
the differences are 0. Measured on an H200 in docs/notes/performance_details.md. Run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_style.io.image import load_image, save_image
from mlx_style.nn.losses import LossConfig, recommended_weights, style_targets
from mlx_style.infer.stylize import load_network
from mlx_style.training.step import make_loss_fn
from mlx_style.nn.transformer import TransformerNet
from mlx_style.io.vgg_weights import load_vgg
from scripts.bench import bench_train  # its random VGG


def on_both(fn):
    """``(gpu_result, cpu_result)`` of ``fn()`` as numpy (the GPU side is the CPU when there is no GPU)."""
    gpu = mx.gpu if mx.default_device().type == mx.DeviceType.gpu else mx.cpu
    out = []
    for device in (gpu, mx.cpu):
        with mx.stream(device):
            result = fn()
            mx.eval(result)
            out.append(result)
    return out


def network_difference(model: str, image: str, save: str | None) -> dict:
    net, _ = load_network(model)
    x = load_image(image).astype(np.float32)
    H, W = (x.shape[0] // 4) * 4, (x.shape[1] // 4) * 4
    a, b = (np.asarray(y) for y in on_both(lambda: net(mx.array(x[None, :H, :W]))))
    if save:
        save_image(save, np.clip(a[0], 0, 255).astype(np.uint8))
    return {"max": float(np.abs(a - b).max()), "mean": float(np.abs(a - b).mean()), "shape": (H, W)}


def gradient_difference(vgg_path: str, size: int = 128, batch: int = 2) -> dict:
    vgg, meta = load_vgg(vgg_path)
    w = recommended_weights(meta["preprocess"])
    config = LossConfig(content_weight=w["content"], style_weight=w["style"], tv_weight=w["tv"])
    rng = np.random.default_rng(0)
    content = mx.array(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    style = mx.array(rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32))
    mx.random.seed(0)
    model = TransformerNet()

    def loss_and_grads():
        grams = style_targets(vgg, style, config.style_layers)
        (loss, _), grads = nn.value_and_grad(model, make_loss_fn(model, vgg, grams, config))(content)
        return loss, dict(tree_flatten(grads))

    (lg, gg), (lc, gc) = on_both(loss_and_grads)
    norm = {k: float(np.linalg.norm(np.asarray(v))) for k, v in gc.items()}
    rel = {k: float(np.linalg.norm(np.asarray(gg[k] - gc[k]))) / max(norm[k], 1e-30) for k in gc}
    return {
        "loss_gpu": lg.item(),
        "loss_cpu": lc.item(),
        "loss_rel": abs(lg.item() - lc.item()) / abs(lc.item()),
        "grad_rel_median": float(np.median(list(rel.values()))),
        "grad_rel_max": max(rel.values()),
        "grad_worst": max(rel, key=rel.get),
        "tensors": len(rel),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a style network file (e.g. weights/wave.safetensors)")
    p.add_argument("--image", required=True, help="a photo")
    p.add_argument("--vgg", default="random", help="VGG weights for the gradient check (default: random)")
    p.add_argument("--save", help="write the GPU's stylised picture here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = mx.device_info()
    print(f"MLX {mx.__version__}, default device {mx.default_device()} ({info.get('device_name', '?')})")
    n = network_difference(args.model, args.image, args.save)
    print(
        f"style network at {n['shape'][1]}x{n['shape'][0]}: GPU − CPU max {n['max']:.4g}, mean {n['mean']:.3g} (0–255)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        vgg = args.vgg if args.vgg != "random" else bench_train.write_random_vgg(Path(tmp) / "vgg.safetensors", 0)
        g = gradient_difference(str(vgg))
    print(
        f"training batch: loss GPU {g['loss_gpu']:.7g} CPU {g['loss_cpu']:.7g} (rel {g['loss_rel']:.2g}); "
        f"gradients over {g['tensors']} tensors: median rel {g['grad_rel_median']:.2g}, worst "
        f"{g['grad_rel_max']:.2g} ({g['grad_worst']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
