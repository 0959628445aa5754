"""The network's non-convolution ops and its stages, MLX beside PyTorch: where the inference time goes.

    python -m scripts.bench.bench_ops                 # padding and instance norm at 256², then the per-stage profile
    python -m scripts.bench.bench_ops --size 128 --repeats 15

Padding: ``mx.pad(mode="reflect")`` (what the network used before) and ``ops.pad_spatial`` (what it uses) beside
``torch.nn.functional.pad(mode="reflect")``. Instance norm + ReLU: ``mx.var`` then normalise, scale and shift (the
previous formulation) and ``ops.instance_norm`` beside ``F.instance_norm`` + ReLU; then the same at batch 4 on the
training step's shapes (4 × size/2² × 32, …) under ``mx.compile``, as the step runs it, forward and with its
gradients, against the autodiff formulation ``ops.instance_norm`` replaced last. Stages: each stage of the
report's network (``conv1``, ``relu(in1)``, …, ``out``) timed alone on the previous stage's output, MLX with
tuned convolutions, then the same stage of its PyTorch twin (``mlx_style/bench/torch_twin.py``) with the same weights,
on the device matching MLX's. Medians in ms.
Device rows (``--device-only`` for these alone; on a GPU: ``--size 256 --batch 8``), compiled, forward and with
the gradient, on MLX's default device beside PyTorch on the matching one: VGG's 2×2 max-pool as ``mx.max`` over a
6-D reshape (the CPU default) and as the fused elementwise form with its hand-written gradient (the GPU default,
``ops.max_pool_2x2``), beside ``F.max_pool2d``; instance norm + ReLU as the package computes it and with its
statistics as matmuls with a row of ones (a candidate for the GPU, ``instance_norm_matmul_stats``), beside
``F.instance_norm``. PyTorch is needed only here (``pip install torch``). Run from the repository root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
import mlx.nn as nn

from mlx_style.backend import keep_freed_memory
from mlx_style.nn.conv import tune_convs
from mlx_style.nn.ops import instance_norm, max_pool_2x2, pad_spatial, relu
from mlx_style.nn.transformer import TransformerNet
from mlx_style.bench import torch_twin
from scripts.bench.bench_train import matching_torch_device


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def instance_norm_with_var(x, weight, bias, eps):
    """The formulation ``ops.instance_norm`` replaced: ``mx.var``, then normalise, then scale and shift."""
    mean = mx.mean(x, axis=(1, 2), keepdims=True)
    return (x - mean) * mx.rsqrt(mx.var(x, axis=(1, 2), keepdims=True) + eps) * weight + bias


def ops_rows(torch, size: int, repeats: int) -> list[tuple[str, float, float, float]]:
    F = torch.nn.functional
    rows = []
    for shape, pad in (((1, size, size, 32), 1), ((1, size, size, 32), 4), ((4, size // 2 + 2, size // 2 + 2, 64), 1)):
        x = mx.random.normal(shape)
        mx.eval(x)
        xt = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
        widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
        rows.append(
            (
                f"reflect pad {pad}, {'×'.join(map(str, shape))}",
                median_ms(lambda: mx.eval(mx.pad(x, widths, mode="reflect")), repeats),
                median_ms(lambda: mx.eval(pad_spatial(x, pad)), repeats),
                median_ms(lambda: F.pad(xt, (pad,) * 4, mode="reflect"), repeats),
            )
        )
    for shape in ((1, size, size, 32), (4, size // 2, size // 2, 64), (1, size // 4, size // 4, 128)):
        x = mx.random.normal(shape) * 30 + 50
        w, b = mx.random.normal(shape[-1:]), mx.random.normal(shape[-1:])
        mx.eval(x, w, b)
        xt = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
        wt, bt = torch.from_numpy(np.asarray(w)), torch.from_numpy(np.asarray(b))
        rows.append(
            (
                f"instance norm + ReLU, {'×'.join(map(str, shape))}",
                median_ms(lambda: mx.eval(nn.relu(instance_norm_with_var(x, w, b, 1e-5))), repeats),
                median_ms(lambda: mx.eval(nn.relu(instance_norm(x, w, b, 1e-5))), repeats),
                median_ms(lambda: F.relu(F.instance_norm(xt, weight=wt, bias=bt, eps=1e-5)), repeats),
            )
        )
    return rows


def instance_norm_autodiff(x, weight, bias, eps):
    """The formulation ``ops.instance_norm`` replaced next: the same arithmetic with MLX's autodiff gradient
    and nothing stopping ``mx.compile`` from fusing the per-channel factors into the full-size kernel."""
    mean = mx.mean(x, axis=(1, 2), keepdims=True)
    centred = x - mean
    return centred * (mx.rsqrt(mx.mean(centred * centred, axis=(1, 2), keepdims=True) + eps) * weight) + bias


def norm_comparison(
    torch, shapes, first, second, repeats: int, device: str = "cpu", label: str = "norm + ReLU", show_gap: bool = False
) -> list[tuple[str, float, float, float]]:
    """Instance norm + ReLU under ``mx.compile``, forward alone and with the gradients of x, weight and bias, for
    two MLX formulations (``first``, ``second``) beside PyTorch's (eager, autograd) on ``device``."""
    F = torch.nn.functional
    sync = getattr(torch, device).synchronize if device != "cpu" else (lambda: None)
    rows = []
    for shape in shapes:
        x = mx.random.normal(shape) * 30 + 50
        w, b, cot = mx.random.normal(shape[-1:]), mx.random.normal(shape[-1:]), mx.random.normal(shape)
        mx.eval(x, w, b, cot)
        xt, wt, bt, ct = (torch.from_numpy(np.asarray(a)).to(device) for a in (x, w, b, cot))
        xt, ct = (a.permute(0, 3, 1, 2).contiguous() for a in (xt, ct))
        for t in (xt, wt, bt):
            t.requires_grad_(True)

        def mlx_pair(norm):
            def fwd(a, wt_, bt_):
                return relu(norm(a, wt_, bt_, 1e-5))

            grad = mx.grad(lambda a, wt_, bt_: (fwd(a, wt_, bt_) * cot).sum(), argnums=(0, 1, 2))
            return mx.compile(fwd), mx.compile(grad)

        def torch_fwd():
            with torch.no_grad():
                F.relu(F.instance_norm(xt, weight=wt, bias=bt, eps=1e-5))
            sync()

        def torch_grad():
            torch.autograd.grad((F.relu(F.instance_norm(xt, weight=wt, bias=bt, eps=1e-5)) * ct).sum(), (xt, wt, bt))
            sync()

        (fwd_a, grad_a), (fwd_b, grad_b) = mlx_pair(first), mlx_pair(second)
        name = f"{label}, {'×'.join(map(str, shape))}"
        if show_gap:
            name += f" (Δ {float(mx.abs(fwd_a(x, w, b) - fwd_b(x, w, b)).max()):.0e})"
        rows.append(
            (
                name,
                median_ms(lambda: mx.eval(fwd_a(x, w, b)), repeats),
                median_ms(lambda: mx.eval(fwd_b(x, w, b)), repeats),
                median_ms(torch_fwd, repeats),
            )
        )
        rows.append(
            (
                f"  and its gradients, {'×'.join(map(str, shape))}",
                median_ms(lambda: mx.eval(grad_a(x, w, b)), repeats),
                median_ms(lambda: mx.eval(grad_b(x, w, b)), repeats),
                median_ms(torch_grad, repeats),
            )
        )
    return rows


def compiled_norm_rows(torch, size: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """Instance norm + ReLU as a training step runs it on the CPU (batch 4, the step's widths): the autodiff
    formulation ``ops.instance_norm`` replaced, then ``ops.instance_norm``, then PyTorch."""
    shapes = ((4, size // 2, size // 2, 32), (4, size // 4, size // 4, 64), (4, size // 8, size // 8, 128))
    return norm_comparison(torch, shapes, instance_norm_autodiff, instance_norm, repeats, label="compiled norm + ReLU")


def pool_rows(torch, size: int, batch: int, repeats: int, device: str) -> list[tuple[str, float, float, float]]:
    """VGG's 2×2 max-pool on its three input shapes: ``mx.max`` form, fused form, PyTorch; compiled MLX."""
    F = torch.nn.functional
    sync = getattr(torch, device).synchronize if device != "cpu" else (lambda: None)
    rows = []
    for shape in ((batch, size, size, 64), (batch, size // 2, size // 2, 128), (batch, size // 4, size // 4, 256)):
        x = mx.maximum(mx.random.normal(shape), 0)  # after a ReLU, as in VGG
        cot = mx.random.normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
        mx.eval(x, cot)
        xt = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous().to(device).requires_grad_(True)
        ct = torch.from_numpy(np.asarray(cot)).permute(0, 3, 1, 2).contiguous().to(device)

        def forms(elementwise):
            def pool(a):
                return max_pool_2x2(a, elementwise)

            return mx.compile(pool), mx.compile(lambda a: mx.vjp(pool, [a], [cot]))

        (fwd_max, grad_max), (fwd_fused, grad_fused) = forms(False), forms(True)

        def torch_fwd():
            with torch.no_grad():
                F.max_pool2d(xt, 2)
            sync()

        def torch_grad():
            torch.autograd.grad(F.max_pool2d(xt, 2), xt, ct)
            sync()

        label = "×".join(map(str, shape))
        rows.append(
            (
                f"2×2 max-pool, {label}",
                median_ms(lambda: mx.eval(fwd_max(x)), repeats),
                median_ms(lambda: mx.eval(fwd_fused(x)), repeats),
                median_ms(torch_fwd, repeats),
            )
        )
        rows.append(
            (
                f"  and its gradient, {label}",
                median_ms(lambda: mx.eval(grad_max(x)), repeats),
                median_ms(lambda: mx.eval(grad_fused(x)), repeats),
                median_ms(torch_grad, repeats),
            )
        )
    return rows


def instance_norm_matmul_stats(x, weight, bias, eps):
    """A candidate for MLX's GPU backends, not used by the package: the per-image channel statistics as products
    with a row of ones (a GEMV, bandwidth-bound in cuBLAS) instead of ``mx.mean`` over H and W, which MLX 0.32.4's
    CUDA backend ran at 0.18 ms for 8 × 128² × 64 (PyTorch's whole norm: 0.10 ms). Gradient by autodiff."""
    b, h, w, c = x.shape
    n = h * w
    ones = mx.ones((1, n), x.dtype)
    rows = x.reshape(b, n, c)
    centred = rows - (ones @ rows) / n
    rstd = mx.rsqrt((ones @ (centred * centred)) / n + eps)
    return (centred * (rstd * weight) + bias).reshape(b, h, w, c)


def norm_rows(torch, size: int, batch: int, repeats: int, device: str) -> list[tuple[str, float, float, float]]:
    """Instance norm + ReLU on the style network's three widths on MLX's default device: ``ops.instance_norm``
    (the package's), the matmul-statistics candidate, PyTorch on ``device``."""
    shapes = ((batch, size, size, 32), (batch, size // 2, size // 2, 64), (batch, size // 4, size // 4, 128))
    return norm_comparison(torch, shapes, instance_norm, instance_norm_matmul_stats, repeats, device, show_gap=True)


def stages(net, relu, module_list):
    """``(name, callable)`` per stage of a TransformerNet or its PyTorch twin (same attribute names but for the
    residual blocks, ``module_list``: MLX's ``net.res``, the twin's ``res1`` …)."""
    out = [
        ("conv1", net.conv1),
        ("in1 + ReLU", lambda v: relu(net.in1(v))),
        ("conv2", net.conv2),
        ("in2 + ReLU", lambda v: relu(net.in2(v))),
        ("conv3", net.conv3),
        ("in3 + ReLU", lambda v: relu(net.in3(v))),
    ]
    out += [(f"res{i}", block) for i, block in enumerate(module_list)]
    out += [
        ("up1", net.deconv1),
        ("in4 + ReLU", lambda v: relu(net.in4(v))),
        ("up2", net.deconv2),
        ("in5 + ReLU", lambda v: relu(net.in5(v))),
        ("out", net.deconv3),
    ]
    return out


def stage_rows(torch, size: int, repeats: int, device: str) -> list[tuple[str, float, float]]:
    net = TransformerNet()
    net.eval()
    x = mx.random.uniform(0, 255, (1, size, size, 3))
    mx.eval(x)
    tune_convs(net, x)
    module = torch_twin.twin_of(torch, net, device)
    blocks = [getattr(module, f"res{i}") for i in range(1, len(net.res) + 1)]
    sync = getattr(torch, device).synchronize if device != "cpu" else (lambda: None)
    torch.set_grad_enabled(False)
    ours = []
    y = x
    for name, fn in stages(net, nn.relu, net.res):
        ours.append((name, median_ms(lambda: mx.eval(fn(y)), repeats)))
        y = fn(y)
        mx.eval(y)
    theirs = []
    yt = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous().to(device)
    for name, fn in stages(module, torch.nn.functional.relu, blocks):
        theirs.append(median_ms(lambda: (fn(yt), sync()), repeats))
        yt = fn(yt)
    return [(name, a, b) for (name, a), b in zip(ours, theirs)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="square frame side (default %(default)s)")
    p.add_argument("--repeats", type=int, default=9, help="timed runs per row, median (default %(default)s)")
    p.add_argument("--batch", type=int, default=4, help="images in the device rows (default %(default)s)")
    p.add_argument(
        "--device-only",
        action="store_true",
        help="only the rows that run on MLX's default device "
        "beside PyTorch on the matching one (max-pool, instance norm); the op rows use PyTorch's CPU",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: this benchmark compares against PyTorch: pip install torch", file=sys.stderr)
        return 1
    keep_freed_memory()
    print(
        f"MLX {mx.__version__} on {mx.default_device()}, PyTorch {torch.__version__} ({torch.get_num_threads()} "
        f"threads); median of {args.repeats}, ms"
    )
    try:
        device = matching_torch_device(torch)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"\n{'op (' + str(mx.default_device()) + ', PyTorch on ' + device + ')':44} {'mx.max':>11} "
        f"{'fused':>9} {'PyTorch':>9} {'fused/torch':>12}"
    )
    for name, plain, fused, theirs in pool_rows(torch, args.size, args.batch, args.repeats, device):
        print(f"{name:44} {plain:11.2f} {fused:9.2f} {theirs:9.2f} {fused / theirs:12.2f}")
    print(f"\n{'instance norm, compiled':44} {'package':>11} {'matmul':>9} {'PyTorch':>9} {'package/torch':>14}")
    for name, ours, candidate, theirs in norm_rows(torch, args.size, args.batch, args.repeats, device):
        print(f"{name:44} {ours:11.2f} {candidate:9.2f} {theirs:9.2f} {ours / theirs:14.2f}")
    if args.device_only:
        return 0
    print(f"\n{'op':44} {'MLX before':>11} {'MLX now':>9} {'PyTorch':>9} {'now/torch':>10}")
    for name, before, now, theirs in ops_rows(torch, args.size, args.repeats) + compiled_norm_rows(
        torch, args.size, args.repeats
    ):
        print(f"{name:44} {before:11.2f} {now:9.2f} {theirs:9.2f} {now / theirs:10.2f}")
    rows = stage_rows(torch, args.size, args.repeats, device)
    print(f"\n{'stage at ' + str(args.size) + '²':20} {'MLX':>8} {'PyTorch':>8} {'MLX − PyTorch':>14}")
    for name, ours, theirs in rows:
        print(f"{name:20} {ours:8.1f} {theirs:8.1f} {ours - theirs:+14.1f}")
    total_ours, total_theirs = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"{'sum':20} {total_ours:8.1f} {total_theirs:8.1f} {total_ours - total_theirs:+14.1f}  "
        f"(MLX / PyTorch {total_ours / total_theirs:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
