"""Where a training step's time goes, part by part, MLX beside PyTorch (the gap analysis behind bench_train).

    python -m scripts.bench.bench_train_parts                # batch 4 × 128², VGG16 from weights/vgg16.safetensors
    python -m scripts.bench.bench_train_parts --image-size 256 --batch-size 2
    python -m scripts.bench.bench_train_parts --image-size 256 --batch-size 8 --vgg random --compile --repeats 10  # GPU

Parts: the transformer's forward, its forward + backward (against a fixed cotangent), VGG to relu4_3 on the
output, VGG to the content layer on the content, the loss gradient through VGG with respect to the output (both
VGG passes, the losses, the backward), and the whole loss and gradient. MLX tunes its convolutions for the step
first, as ``mlx-style train`` does; PyTorch runs the same parts on its twin network (``mlx_style/bench/torch_twin.py``)
with the same weights, on the device matching MLX's (``cuda`` or ``mps`` beside MLX's GPU; synchronised per run).
``--compile`` times MLX's parts under ``mx.compile`` (as training runs them); ``--vgg random`` uses random VGG16
weights (``bench_train``'s) where no converted file is at hand. The last row recomputes the residual blocks
(``--low-memory``). Best of ``--repeats`` after one warm-up, MLX and PyTorch alternating run by run, in ms.
Both run in one process, so on Linux the glibc heap settings of ``mlx_style.backend.keep_freed_memory`` apply to
PyTorch's allocations here too (``MLX_STYLE_MALLOC=mlx`` leaves malloc at its defaults); ``bench_train`` runs
each framework in its own process. Needs ``pip install torch safetensors``. Run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_style.nn.losses import LossConfig, perceptual_loss, recommended_weights, style_targets
from mlx_style.backend import keep_freed_memory
from mlx_style.training.step import make_loss_fn, tune_step_convs
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.vgg_weights import default_vgg, load_vgg
from scripts.bench import bench_train, torch_twin


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


def mlx_parts(vgg_path: str, content: np.ndarray, style: np.ndarray, compile: bool = False) -> tuple[dict, dict]:
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

    def maybe_compile(fn, state=None):
        if not compile:
            return fn
        return mx.compile(fn, inputs=state, outputs=state) if state is not None else mx.compile(fn)

    arrays = {k: np.asarray(v) for k, v in tree_flatten(net.parameters())}  # before make_loss_fn sets recompute
    loss_and_grad = maybe_compile(nn.value_and_grad(net, make_loss_fn(net, vgg, grams, losses)), net.state)
    recomputed = TransformerNet()
    recomputed.update(net.parameters())
    loss_and_grad_recomputed = maybe_compile(
        nn.value_and_grad(recomputed, make_loss_fn(recomputed, vgg, grams, losses, recompute=True)), recomputed.state
    )
    vgg_grad, net_grad = maybe_compile(mx.grad(vgg_loss)), maybe_compile(mx.grad(transformer_dot), net.state)
    forward = maybe_compile(lambda a: net(a), net.state)
    vgg_style = maybe_compile(lambda a: vgg(a, losses.style_layers))
    vgg_content = maybe_compile(lambda a: vgg(a, (layer,)))
    params = net.trainable_parameters()
    parts = {
        "transformer forward": lambda: mx.eval(forward(x)),
        "transformer forward + backward": lambda: mx.eval(net_grad(params)),
        "VGG forward to relu4_3 (output)": lambda: mx.eval(vgg_style(y)),
        f"VGG forward to {layer} (content)": lambda: mx.eval(vgg_content(x)),
        "loss gradient through VGG": lambda: mx.eval(vgg_grad(y)),
        "whole loss and gradient": lambda: mx.eval(loss_and_grad(x)),
        "the same, residual blocks recomputed": lambda: mx.eval(loss_and_grad_recomputed(x)),
    }
    return parts, {"net": arrays, "losses": losses}


def torch_parts(vgg_path: str, content: np.ndarray, style: np.ndarray, shared: dict, device: str = "cpu") -> dict:
    import torch

    losses = shared["losses"]
    net = torch_twin.net_from_mlx(torch, shared["net"], TransformerConfig()).to(device)
    vgg, _ = torch_twin.load_torch_vgg(torch, vgg_path, device)
    grams = torch_twin.style_grams(torch, vgg, style, losses.style_layers, device)
    loss_fn = torch_twin.make_loss(torch, vgg, grams, losses)
    x = torch.from_numpy(content).permute(0, 3, 1, 2).contiguous().to(device)
    sync = {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}.get(device, lambda: None)
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
        "the same, residual blocks recomputed": whole,  # PyTorch keeps its activations: the same run
    }

    def synced(fn):
        def run():
            fn()
            sync()

        return run

    return {name: synced(fn) for name, fn in parts.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per part after a warm-up (best counts)")
    p.add_argument("--vgg", default=default_vgg(), help="converted VGG16 weights, or 'random' (timing only)")
    p.add_argument("--compile", action="store_true", help="time MLX's parts under mx.compile, as training runs them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.vgg != "random" and not Path(args.vgg).exists():
        print(
            f"error: no VGG weights at {args.vgg}: run `python scripts/convert_vgg.py`, or time with --vgg random",
            file=sys.stderr,
        )
        return 1
    keep_freed_memory()
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (args.batch_size, args.image_size, args.image_size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (1, args.image_size, args.image_size, 3)).astype(np.float32)
    device = bench_train.matching_torch_device()
    with tempfile.TemporaryDirectory() as tmp:
        vgg_path = (
            str(bench_train.write_random_vgg(Path(tmp) / "vgg16_random.safetensors", 0))
            if args.vgg == "random"
            else args.vgg
        )
        ours, shared = mlx_parts(vgg_path, content, style, args.compile)
        ours, theirs = interleaved_best(ours, torch_parts(vgg_path, content, style, shared, device), args.repeats)
    print(
        f"batch {args.batch_size} × {args.image_size}², MLX on {mx.default_device()} "
        f"({'compiled' if args.compile else 'eager'}), PyTorch on {device}, best of {args.repeats}, ms"
    )
    print(f"{'part':36} {'MLX':>9} {'PyTorch':>9} {'MLX/PyTorch':>12}")
    for name, ms in ours.items():
        print(f"{name:36} {ms:9.2f} {theirs[name]:9.2f} {ms / theirs[name]:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
