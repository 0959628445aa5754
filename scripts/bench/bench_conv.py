"""Time every mlx_style.nn.conv strategy and torch's conv2d on the style network's layer shapes.

For each frame size (batch 1, forward) and for the training batch (forward + input and weight gradients) it
prints, per layer: each strategy's median time, torch's (skipped when torch is not importable), the winner, its
GFLOP/s and its ratio to torch, then the whole-network sums (×10 for the residual convs).

    python -m scripts.bench.bench_conv                # 256², 640×480 and batch 4 at 256² with gradients
    python -m scripts.bench.bench_conv --sizes 1280x720 --train-batch 0 --repeats 3

Run from the repository root (``mlx_style`` is imported first: it loads the fast BLAS before ``mlx.core``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import mlx_style  # before mlx.core: loads OpenBLAS
from mlx_style.nn import conv

import mlx.core as mx

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is only a yardstick
    torch = None

# (name, C_in, C_out, k, stride, scale of the input frame, how many such layers in the network)
LAYERS = [
    ("conv1 9x9 3->32", 3, 32, 9, 1, 1, 1),
    ("conv2 3x3/2 32->64", 32, 64, 3, 2, 1, 1),
    ("conv3 3x3/2 64->128", 64, 128, 3, 2, 2, 1),
    ("res 3x3 128->128", 128, 128, 3, 1, 4, 10),
    ("up1 3x3 128->64", 128, 64, 3, 1, 2, 1),
    ("up2 3x3 64->32", 64, 32, 3, 1, 1, 1),
    ("out 9x9 32->3", 32, 3, 9, 1, 1, 1),
]


def layer_shapes(frame_h, frame_w, batch):
    """(name, x_shape NHWC (reflect-padded), w_shape OHWI, stride, count) for one frame size."""
    for name, cin, cout, k, s, scale, count in LAYERS:
        h, w = frame_h // scale + 2 * (k // 2), frame_w // scale + 2 * (k // 2)
        yield name, (batch, h, w, cin), (cout, k, k, cin), s, count


def gflop(x_shape, w_shape, stride, training):
    n, h, w, _ = x_shape
    o, kh, kw, c = w_shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    return 2 * n * ho * wo * o * kh * kw * c * (3 if training else 1) / 1e9


def mlx_runner(method, x_shape, w_shape, stride, training):
    """A zero-argument callable that runs one forward (or forward + backward) and waits for it."""
    kx, kw, kc = mx.random.split(mx.random.key(0), 3)
    x, w = mx.random.normal(x_shape, key=kx), mx.random.normal(w_shape, key=kw) * 0.1
    if not training:
        fn = mx.compile(lambda x, w: conv.conv2d(x, w, stride, method))
        return lambda: mx.eval(fn(x, w))
    n, h, wd, _ = x_shape
    out_shape = (n, (h - w_shape[1]) // stride + 1, (wd - w_shape[2]) // stride + 1, w_shape[0])
    cot = mx.random.normal(out_shape, key=kc)

    def step(x, w, cot):
        out, grads = mx.vjp(lambda x, w: conv.conv2d(x, w, stride, method), [x, w], [cot])
        return out[0], grads[0], grads[1]

    fn = mx.compile(step)
    mx.eval(x, w, cot)
    return lambda: mx.eval(fn(x, w, cot))


def torch_runner(x_shape, w_shape, stride, training):
    n, h, w, c = x_shape
    o, kh, kw, _ = w_shape
    x, wt = torch.randn(n, c, h, w), torch.randn(o, c, kh, kw) * 0.1
    if not training:

        def fwd():
            with torch.no_grad():
                F.conv2d(x, wt, stride=stride)

        return fwd
    x.requires_grad_(True)
    wt.requires_grad_(True)
    cot = torch.randn_like(F.conv2d(x.detach(), wt.detach(), stride=stride))

    def fwd_bwd():
        x.grad = wt.grad = None
        F.conv2d(x, wt, stride=stride).backward(cot)

    return fwd_bwd


def time_all(runners, repeats, slow_ms):
    """(median, min) ms per runner, and whether it was timed only once.

    Each runner is warmed up twice (the first run compiles), then timed in its own block after a short pause:
    interleaving MLX and torch runs measured each slower, as one library's idle worker threads spin while
    the other works. One whose second warm-up exceeded ``slow_ms`` and 10× the fastest is not repeated.
    """
    first = {}
    for name, run in runners.items():
        run()
        t0 = time.perf_counter()
        run()
        first[name] = (time.perf_counter() - t0) * 1e3
    fastest = min(first.values())
    once = {n for n, t in first.items() if t > slow_ms and t > 10 * fastest}
    samples = {n: [first[n]] for n in once}
    for name, run in runners.items():
        if name in once:
            continue
        time.sleep(0.3)
        samples[name] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {n: (statistics.median(v), min(v), n in once) for n, v in samples.items()}


def bench(title, shapes, training, args):
    print(f"\n## {title}: median / min ms per strategy")
    cols = list(conv.METHODS) + (["torch"] if torch is not None else [])
    print(
        f"{'layer':20} {'input NHWC':16} {'GFLOP':>6} "
        + " ".join(f"{c:>13}" for c in cols)
        + f" {'winner':>8} {'GFLOP/s':>7} {'vs torch':>8}"
    )
    total = {c: 0.0 for c in cols + ["best"]}
    complete = {c: True for c in cols}
    for name, x_shape, w_shape, stride, count in shapes:
        runners, skipped = {}, []
        limit = conv.MEMORY_FRACTION * mx.get_memory_limit()
        for m in conv.candidates(w_shape, stride):
            if conv.scratch_bytes(m, x_shape, w_shape, stride, 4, training) > limit:
                skipped.append(m)  # would crowd out the other processes: conv.tune skips it too
            else:
                runners[m] = mlx_runner(m, x_shape, w_shape, stride, training)
        if torch is not None:
            runners["torch"] = torch_runner(x_shape, w_shape, stride, training)
        res = time_all(runners, args.repeats, args.slow_ms)
        gf = gflop(x_shape, w_shape, stride, training)
        mlx_ms = {m: res[m][0] for m in conv.METHODS if m in res}
        best = min(mlx_ms, key=mlx_ms.get)
        cells = []
        for c in cols:
            if c not in res:
                cells.append(f"{'mem' if c in skipped else '-':>13}")
                complete[c] = False
                continue
            med, low, once = res[c]
            cells.append(f"{med:7.1f}/{low:5.0f}" if not once else f"{med:12.0f}*")
            total[c] += count * med
        total["best"] += count * mlx_ms[best]
        ratio = f"{mlx_ms[best] / res['torch'][0]:7.2f}x" if torch is not None else "       -"
        shape = "x".join(map(str, x_shape))
        print(
            f"{name:20} {shape:16} {gf:6.2f} " + " ".join(cells) + f" {best:>8} {gf / mlx_ms[best] * 1e3:7.0f} {ratio}",
            flush=True,
        )
    cells = " ".join(f"{total[c]:13.1f}" if complete[c] else f"{'(partial)':>13}" for c in cols)
    print(
        f"{'network (10x res)':20} {'':16} {'':6} "
        + cells
        + f" {total['best']:8.1f}"
        + (f" {'':7} {total['best'] / total['torch']:7.2f}x" if torch is not None else "")
    )
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256x256,640x480", help="frames WxH, batch 1, forward only")
    p.add_argument("--train-batch", type=int, default=4, help="batch for forward+backward at 256² (0: skip)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slow-ms", type=float, default=1000.0, help="time once what is this slow and 10x the best")
    p.add_argument(
        "--cache-limit-mb", type=int, default=0, help="mx.set_cache_limit before timing (0: keep MLX's default)"
    )
    p.add_argument("--layers", default="", help="comma-separated substrings of layer names to keep")
    args = p.parse_args()
    if args.cache_limit_mb:
        mx.set_cache_limit(args.cache_limit_mb << 20)
    old = mx.set_cache_limit(mx.get_memory_limit())
    mx.set_cache_limit(old)
    print(
        f"mlx {mx.__version__} ({mx.default_device()}), BLAS: {mlx_style._blas.STATUS.loaded}, "
        f"buffer cache limit {old / 2**20:.0f} MB; torch {torch.__version__ if torch else 'not installed'}"
        f"{f' ({torch.get_num_threads()} threads)' if torch else ''}; {args.repeats} runs after warm-up "
        f"(* = timed once: too slow; mem = skipped, temporaries too large; - = not applicable); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    keep = [s for s in args.layers.split(",") if s]

    def pick(shapes):
        return [s for s in shapes if not keep or any(k in s[0] for k in keep)]

    for size in filter(None, args.sizes.split(",")):
        fw, fh = map(int, size.lower().split("x"))
        bench(f"{fw}x{fh}, batch 1, forward", pick(layer_shapes(fh, fw, 1)), False, args)
    if args.train_batch:
        bench(
            f"256x256, batch {args.train_batch}, forward + backward (dx, dw)",
            pick(layer_shapes(256, 256, args.train_batch)),
            True,
            args,
        )


if __name__ == "__main__":
    main()
