"""Where a training step's time goes, part by part, MLX beside PyTorch (the gap analysis behind bench_train).

    python scripts/bench_train_parts.py                      # batch 4 × 128², VGG16 from weights/vgg16.safetensors
    python scripts/bench_train_parts.py --image-size 256 --batch-size 2

Parts: the transformer's forward, its forward + backward (against a fixed cotangent), VGG to relu4_3 on the
output, VGG to the content layer on the content, the loss gradient through VGG with respect to the output (both
VGG passes, the losses, the backward), and the whole loss and gradient. MLX tunes its convolutions for the step
first, as ``mlx_style.train`` does; PyTorch runs the same parts on its twin network (``scripts/torch_twin.py``)
with the same weights. Best of ``--repeats`` after one warm-up, MLX and PyTorch alternating run by run, in ms.
Both run in one process, so on Linux the glibc heap settings of ``mlx_style.memory.keep_freed_memory`` apply to
PyTorch's allocations here too (``MLX_STYLE_MALLOC=mlx`` leaves malloc at its defaults); ``bench_train.py`` runs
each framework in its own process. Needs ``pip install torch safetensors``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_twin  # noqa: E402  (puts the repository on sys.path)

import mlx_style  # noqa: E402,F401  (fast BLAS before mlx.core)
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_style.losses import LossConfig, perceptual_loss, recommended_weights, style_targets  # noqa: E402
from mlx_style.memory import keep_freed_memory  # noqa: E402
from mlx_style.train_step import make_loss_fn, tune_step_convs  # noqa: E402
from mlx_style.transformer import TransformerConfig, TransformerNet  # noqa: E402
from mlx_style.vgg import DEFAULT_VGG_PATH, load_vgg  # noqa: E402


def run_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def interleaved_best(ours: dict, theirs: dict, repeats: int) -> tuple[dict, dict]:
    """Best of ``repeats`` per part, MLX and PyTorch alternating run by run (after one warm-up each), so that
    a slower spell of this shared machine lands on both sides of a ratio instead of one."""
    best_ours, best_theirs = {}, {}
    for name in ours:
        ours[name]()
        theirs[name]()
        for _ in range(repeats):
            best_ours[name] = min(best_ours.get(name, float("inf")), run_ms(ours[name]))
            best_theirs[name] = min(best_theirs.get(name, float("inf")), run_ms(theirs[name]))
    return best_ours, best_theirs


def mlx_parts(vgg_path: str, content: np.ndarray, style: np.ndarray) -> tuple[dict, dict]:
    vgg, meta = load_vgg(vgg_path)
    w = recommended_weights(meta["preprocess"])
    losses = LossConfig(content_weight=w["content"], style_weight=w["style"], tv_weight=w["tv"])
    mx.random.seed(0)
    net = TransformerNet()
    x = mx.array(content)
    grams = style_targets(vgg, mx.array(style), losses.style_layers)
    mx.eval(x, grams)
    tune_step_convs(net, vgg, grams, losses, x.shape)
    y = net(x)
    mx.eval(y)
    layer = losses.content_layer
    content_features = vgg(x, (layer,))[layer]
    mx.eval(content_features)

    def vgg_loss(output):
        return perceptual_loss(vgg, output, x, grams, losses, mx.stop_gradient(vgg(x, (layer,))[layer]))[0]

    def transformer_dot(params):
        net.update(params)
        return mx.sum(net(x) * y)

    loss_and_grad = nn.value_and_grad(net, make_loss_fn(net, vgg, grams, losses))
    vgg_grad, net_grad = mx.grad(vgg_loss), mx.grad(transformer_dot)
    params = net.trainable_parameters()
    parts = {
        "transformer forward": lambda: mx.eval(net(x)),
        "transformer forward + backward": lambda: mx.eval(net_grad(params)),
        "VGG forward to relu4_3 (output)": lambda: mx.eval(vgg(y, losses.style_layers)),
        f"VGG forward to {layer} (content)": lambda: mx.eval(vgg(x, (layer,))),
        "loss gradient through VGG": lambda: mx.eval(vgg_grad(y)),
        "whole loss and gradient": lambda: mx.eval(loss_and_grad(x)),
    }
    arrays = {k: np.asarray(v) for k, v in tree_flatten(net.parameters())}
    return parts, {"net": arrays, "losses": losses}


def torch_parts(vgg_path: str, content: np.ndarray, style: np.ndarray, shared: dict) -> dict:
    import torch

    losses = shared["losses"]
    net = torch_twin.net_from_mlx(torch, shared["net"], TransformerConfig())
    vgg, _ = torch_twin.load_torch_vgg(torch, vgg_path)
    grams = torch_twin.style_grams(torch, vgg, style, losses.style_layers)
    loss_fn = torch_twin.make_loss(torch, vgg, grams, losses)
    x = torch.from_numpy(content).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        y = net(x)
    layer = losses.content_layer

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    def vgg_grad():
        out = y.detach().requires_grad_(True)
        loss_fn(out, x)[0].backward()

    def net_grad():
        net.zero_grad()
        (net(x) * y).sum().backward()

    def whole():
        net.zero_grad()
        loss_fn(net(x), x)[0].backward()

    parts = {
        "transformer forward": no_grad(lambda: net(x)),
        "transformer forward + backward": net_grad,
        "VGG forward to relu4_3 (output)": no_grad(lambda: vgg(y, losses.style_layers)),
        f"VGG forward to {layer} (content)": no_grad(lambda: vgg(x, (layer,))),
        "loss gradient through VGG": vgg_grad,
        "whole loss and gradient": whole,
    }
    return parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per part after a warm-up (best counts)")
    p.add_argument("--vgg", default=str(DEFAULT_VGG_PATH))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.vgg).exists():
        print(f"error: no VGG weights at {args.vgg}: run `python scripts/convert_vgg.py`", file=sys.stderr)
        return 1
    keep_freed_memory()
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (args.batch_size, args.image_size, args.image_size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (1, args.image_size, args.image_size, 3)).astype(np.float32)
    ours, shared = mlx_parts(args.vgg, content, style)
    ours, theirs = interleaved_best(ours, torch_parts(args.vgg, content, style, shared), args.repeats)
    print(f"batch {args.batch_size} × {args.image_size}², best of {args.repeats}, ms")
    print(f"{'part':36} {'MLX':>9} {'PyTorch':>9} {'MLX/PyTorch':>12}")
    for name, ms in ours.items():
        print(f"{name:36} {ms:9.0f} {theirs[name]:9.0f} {ms / theirs[name]:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
