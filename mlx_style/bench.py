"""Measure inference (and optionally training) speed: ``python -m mlx_style.bench``.

Times the transformer network of Johnson et al. 2016 on the MLX default device at several frame sizes, dtypes,
compiled and not, and prints median and 95th-percentile latency and FPS. The network's speed does not depend on
its weights, so the default model is a randomly initialised report network (Table 1); ``--model`` times a style
network file instead. ``--torch`` times the same network with the same weights in PyTorch on the same device in
the same run (PyTorch is optional and imported only then) and prints the MLX/PyTorch time ratio per row.
``--train`` times training steps when VGG weights are present. ``--json FILE`` keeps the numbers.

The defaults (three sizes up to 1280×720, three dtypes, both compile modes, 20 repeats) suit a Mac GPU; on a CPU
a 1280×720 float32 frame takes seconds, so use ``--quick`` (256×256, float32, 3 repeats)::

    python -m mlx_style.bench --quick
    python -m mlx_style.bench --sizes 256x256,640x480 --dtype float32 --torch --repeats 5 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mlx_style import _blas
from mlx_style.device import backend_name
from mlx_style.memory import keep_freed_memory
from mlx_style.ops import tune_convs
from mlx_style.stylize import DTYPES, load_network
from mlx_style.transformer import TransformerConfig, TransformerNet, count_parameters
from mlx_style.weights import WeightFileError

COMPILE_CHOICES = ("both", "yes", "no")


@dataclass
class BenchConfig:
    """What to time; ``None`` fields take the ``--quick`` value when it is set, else the full default."""

    sizes: str | None = None  # "WxH,WxH" (width first); default "256x256,640x480,1280x720"
    dtype: str | None = None  # one dtype or "all"; default all three
    compile: str = "both"  # time the compiled forward, the plain one, or both
    model: str | None = None  # a style network file; None: a random-init report network
    warmup: int | None = None  # untimed calls before timing (the first also traces and compiles); default 3
    repeats: int | None = None  # timed calls per row; default 20
    quick: bool = False  # 256×256, float32, 1 warm-up, 3 repeats: minutes, not an hour, on a CPU
    torch: bool = False  # also time PyTorch with the same weights on the same device
    train: bool = False  # also time training steps (needs VGG weights)
    vgg: str = "weights/vgg16.safetensors"
    train_batch: int | None = None  # default 4 (quick: 1)
    train_size: int | None = None  # default 256 (quick: 128)
    train_steps: int | None = None  # timed steps after one warm-up step; default 5 (quick: 2)
    json: str | None = None  # write the results here
    tune: bool = False  # autotune conv strategies per layer shape before timing (cached on disk)


FULL = {"sizes": "256x256,640x480,1280x720", "dtype": "all", "warmup": 3, "repeats": 20,
        "train_batch": 4, "train_size": 256, "train_steps": 5}
QUICK = {"sizes": "256x256", "dtype": "float32", "warmup": 1, "repeats": 3,
         "train_batch": 1, "train_size": 128, "train_steps": 2}


class BenchError(ValueError):
    """A bad request; the message is one line saying what to pass instead."""


def resolve(config: BenchConfig) -> BenchConfig:
    """Fill the ``None`` fields from ``QUICK`` or ``FULL``."""
    table = QUICK if config.quick else FULL
    return BenchConfig(**{f.name: table[f.name] if getattr(config, f.name) is None and f.name in table
                          else getattr(config, f.name) for f in fields(config)})


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"256x256,640x480"`` → ``[(256, 256), (480, 640)]``: written width first, returned as ``(H, W)``."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise BenchError(f"bad --sizes entry {item.strip()!r}: use WIDTHxHEIGHT pairs, e.g. 640x480,1280x720")
        width, height = int(parts[0]), int(parts[1])
        if width < 1 or height < 1:
            raise BenchError(f"bad --sizes entry {item.strip()!r}: width and height must be positive")
        sizes.append((height, width))
    return sizes


def parse_dtypes(text: str) -> list[str]:
    names = list(DTYPES) if text == "all" else [t.strip() for t in text.split(",")]
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise BenchError(f"unknown --dtype {', '.join(unknown)}: choose from {', '.join(DTYPES)} or all")
    return names


def compile_modes(choice: str) -> list[bool]:
    if choice not in COMPILE_CHOICES:
        raise BenchError(f"unknown --compile {choice}: choose from {', '.join(COMPILE_CHOICES)}")
    return {"both": [False, True], "yes": [True], "no": [False]}[choice]


# ---------------------------------------------------------------------------------------------------------------
# Platform


def platform_info() -> dict:
    device = mx.default_device()
    try:
        name = mx.device_info().get("device_name", "")
    except Exception:  # older MLX, or a backend without device_info
        name = ""
    status = _blas.STATUS
    return {"device": f"{'gpu' if device.type == mx.DeviceType.gpu else 'cpu'}" + (f" ({name})" if name else ""),
            "backend": backend_name(), "mlx_version": mx.__version__, "mlx_style_version": mlx_style.__version__,
            "python": platform.python_version(), "machine": f"{platform.system()} {platform.machine()}",
            "blas": f"OpenBLAS {status.loaded}" if status.loaded else f"MLX bundled ({status.reason})"}


def summarise(times_s: list[float]) -> dict[str, float]:
    """Median and 95th-percentile latency in ms, and the FPS of the median."""
    ms = np.asarray(times_s, dtype=np.float64) * 1000
    p50 = float(np.percentile(ms, 50))
    return {"ms_p50": p50, "ms_p95": float(np.percentile(ms, 95)), "fps": 1000.0 / p50 if p50 > 0 else 0.0}


# ---------------------------------------------------------------------------------------------------------------
# MLX timing


def load_model(path: str | None) -> tuple[TransformerNet, str]:
    """The network to time and a label for it."""
    if path is None:
        mx.random.seed(0)
        net = TransformerNet(TransformerConfig())
        net.eval()
        return net, "random-init report network (Table 1)"
    try:
        net, _ = load_network(path)
    except WeightFileError as exc:
        raise BenchError(str(exc)) from None
    return net, Path(path).stem


def time_calls(fn, x: mx.array, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """``(first call s, [timed call s, …])``: the first call (trace and compile too) is one of the warm-ups."""
    start = time.perf_counter()
    mx.eval(fn(x))
    first = time.perf_counter() - start
    for _ in range(max(0, warmup - 1)):
        mx.eval(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn(x))
        times.append(time.perf_counter() - start)
    return first, times


def bench_mlx(net: TransformerNet, sizes, dtypes, modes, warmup: int, repeats: int, on_row=None,
              tune: bool = False) -> list[dict]:
    """One row per (size, dtype, compiled): ``height, width, dtype, compiled, ms_p50, ms_p95, fps, ms_first``.

    ``on_row(row)`` is called as each row is done (to print it, or to add the PyTorch timing).
    """
    params32 = tree_map(lambda a: a.astype(mx.float32), net.parameters())
    rows = []
    for dtype in dtypes:
        net.update(tree_map(lambda a: a.astype(DTYPES[dtype]), params32))
        mx.eval(net.parameters())
        for H, W in sizes:
            x = (mx.random.uniform(shape=(1, H, W, 3)) * 255).astype(DTYPES[dtype])
            mx.eval(x)
            if tune:
                net.eval()  # inference: tune the forward-only choices, which conv2d then uses
                tune_convs(net, x)  # times each conv strategy once per layer shape; cached on disk
            for compiled in modes:
                fn = mx.compile(net) if compiled else net  # a fresh compile: no trace carried between rows
                first, times = time_calls(fn, x, warmup, repeats)
                row = {"height": H, "width": W, "dtype": dtype, "compiled": compiled, **summarise(times),
                       "ms_first": first * 1000}
                rows.append(row)
                if on_row:
                    on_row(row)
    net.update(params32)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# PyTorch (optional): the same network, the same weights


def torch_device_name(torch) -> str | None:
    """The PyTorch device matching MLX's default device, or None when PyTorch lacks it."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "mps" if torch.backends.mps.is_available() else None
    return "cuda" if torch.cuda.is_available() else None


def build_torch_net(torch, config: TransformerConfig):
    """A PyTorch module computing exactly ``TransformerNet(config)``, with the same parameter names (NCHW)."""
    nn, F = torch.nn, torch.nn.functional

    def same_amounts(size, k, s):  # TF 'SAME': the odd pixel goes after
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def pad(x, k, s):
        if config.padding == "reflect":
            return F.pad(x, (k // 2,) * 4, mode="reflect") if k // 2 else x
        (top, bottom), (left, right) = same_amounts(x.shape[2], k, s), same_amounts(x.shape[3], k, s)
        return F.pad(x, (left, right, top, bottom))

    class Norm(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))
            if config.norm == "batch":
                self.register_buffer("running_mean", torch.zeros(c))
                self.register_buffer("running_var", torch.ones(c))

        def forward(self, x):
            if config.norm == "batch":  # eval mode, as the MLX network runs
                return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                    config.norm_eps)
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=config.norm_eps)

    class Conv(nn.Module):  # holds ``conv2d`` so names match MLX's ``conv1.conv2d.weight``
        def __init__(self, cin, cout, k, s, transposed=False, upsample=False):
            super().__init__()
            cls = nn.ConvTranspose2d if transposed else nn.Conv2d
            self.conv2d = cls(cin, cout, k, s, bias=config.conv_bias)
            self.k, self.s, self.transposed, self.upsample = k, s, transposed, upsample

        def forward(self, x):
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if not self.transposed:
                return self.conv2d(pad(x, self.k, self.s))
            H, W = x.shape[2:]
            y = self.conv2d(x)  # the full (H−1)·2 + 3 output, cropped like MLX's ConvTranspose2d
            start = self.k // 2 if config.padding == "reflect" else 0
            return y[:, :, start:start + 2 * H, start:start + 2 * W]

    def Upsample(cin, cout):  # noqa: N802  (a layer: nearest ×2 then a padded conv, or a transposed conv)
        if config.upsample == "deconv":
            return Conv(cin, cout, 3, 2, transposed=True)
        return Conv(cin, cout, 3, 1, upsample=True)

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.in1, self.conv2, self.in2 = Conv(c, c, 3, 1), Norm(c), Conv(c, c, 3, 1), Norm(c)

        def forward(self, x):
            return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3 = config.width, 2 * config.width, 4 * config.width
            self.conv1, self.in1 = Conv(3, c1, 9, 1), Norm(c1)
            self.conv2, self.in2 = Conv(c1, c2, 3, 2), Norm(c2)
            self.conv3, self.in3 = Conv(c2, c3, 3, 2), Norm(c3)
            self.res = nn.ModuleList([Residual(c3) for _ in range(config.num_residual)])
            self.deconv1, self.in4 = Upsample(c3, c2), Norm(c2)
            self.deconv2, self.in5 = Upsample(c2, c1), Norm(c1)
            self.deconv3 = Conv(c1, 3, 9, 1)
            if getattr(config, "final_norm", False):
                self.in6 = Norm(3)

        def forward(self, x):
            H, W = x.shape[2:]
            Hp, Wp = max(8, -(-H // 4) * 4), max(8, -(-W // 4) * 4)
            if (Hp, Wp) != (H, W):
                x = F.pad(x, (0, Wp - W, 0, Hp - H), mode="replicate")
            y = F.relu(self.in1(self.conv1(x)))
            y = F.relu(self.in2(self.conv2(y)))
            y = F.relu(self.in3(self.conv3(y)))
            for block in self.res:
                y = block(y)
            y = F.relu(self.in4(self.deconv1(y)))
            y = F.relu(self.in5(self.deconv2(y)))
            y = self.deconv3(y)
            if hasattr(self, "in6"):
                y = self.in6(y)
            if config.output == "tanh":
                y = torch.tanh(y) * 150.0 + 127.5
            return y[:, :, :H, :W]

    return Net()


def is_transposed_weight(name: str, config: TransformerConfig) -> bool:
    """Whether parameter ``name`` is a transposed conv's weight: MLX (out, kH, kW, in), torch (in, out, kH, kW)."""
    return config.upsample == "deconv" and name.rsplit(".", 1)[0] in ("deconv1.conv2d", "deconv2.conv2d")


def torch_layout(name: str, array: np.ndarray, config: TransformerConfig) -> np.ndarray:
    """One MLX parameter in the PyTorch module's layout: conv OHWI → OIHW, transposed conv → (in, out, kH, kW)."""
    if array.ndim != 4:
        return array
    a = array.transpose(3, 0, 1, 2) if is_transposed_weight(name, config) else array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)


def torch_state_from_mlx(net: TransformerNet) -> dict[str, np.ndarray]:
    """MLX parameters → the PyTorch module's (same names and layouts, ``torch_layout``)."""
    return {name: torch_layout(name, np.asarray(value.astype(mx.float32)), net.config)
            for name, value in tree_flatten(net.parameters())}


def make_torch_net(net: TransformerNet):
    """``(torch module, torch module's device name, torch)`` with ``net``'s weights, or raise ImportError."""
    import torch

    device = torch_device_name(torch)
    if device is None:
        raise ImportError(f"PyTorch has no device matching MLX's {mx.default_device()}")
    module = build_torch_net(torch, net.config)
    state = {k: torch.from_numpy(v) for k, v in torch_state_from_mlx(net).items()}
    module.load_state_dict(state, strict=True)
    return module.eval().to(device), device, torch


def torch_max_difference(net: TransformerNet, module, torch, device: str, size=(64, 48)) -> float:
    """max |MLX − PyTorch| on one random float32 image (0–255 scale): the two really are the same network."""
    H, W = size
    x = np.random.default_rng(0).uniform(0, 255, (1, H, W, 3)).astype(np.float32)
    mlx_out = np.asarray(net(mx.array(x)))
    with torch.inference_mode():
        torch_out = module(torch.from_numpy(x.transpose(0, 3, 1, 2)).to(device)).float().cpu().numpy()
    return float(np.max(np.abs(mlx_out - torch_out.transpose(0, 2, 3, 1))))


def bench_torch(module, torch, device: str, H: int, W: int, dtype: str, warmup: int, repeats: int) -> dict:
    """``ms_p50, ms_p95, fps`` for the PyTorch module (synchronising the device around each call)."""
    tdtype = getattr(torch, dtype)
    module = module.to(tdtype)
    sync = {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}.get(device, lambda: None)
    x = (torch.rand(1, 3, H, W, device=device) * 255).to(tdtype)
    with torch.inference_mode():
        for _ in range(max(1, warmup)):
            module(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            sync()
            times.append(time.perf_counter() - start)
    module.to(torch.float32)
    return summarise(times)


# ---------------------------------------------------------------------------------------------------------------
# Training (optional)


def bench_train(config: BenchConfig, log=print) -> dict:
    """Training images/s with the trainer's own compiled step, or ``{"skipped": reason}``."""
    if not Path(config.vgg).exists():
        return {"skipped": f"no VGG weights at {config.vgg}: run `python scripts/convert_vgg.py`"}
    try:
        import mlx.optimizers as optim

        from mlx_style.losses import style_targets
        from mlx_style.train import TrainConfig, loss_config
        from mlx_style.train_step import make_train_step
        from mlx_style.vgg import load_vgg
    except ImportError as exc:
        return {"skipped": f"the trainer is not available here ({exc})"}
    B, S, steps = config.train_batch, config.train_size, config.train_steps
    vgg, meta = load_vgg(config.vgg)
    losses = loss_config(TrainConfig(), meta)
    rng = np.random.default_rng(0)
    grams = style_targets(vgg, mx.array(rng.uniform(0, 255, (1, S, S, 3)).astype(np.float32)), losses.style_layers)
    mx.random.seed(0)
    net = TransformerNet(TransformerConfig())
    net.train()
    optimizer = optim.Adam(learning_rate=1e-3)
    optimizer.init(net.trainable_parameters())
    # the trainer's own step, compiled (unless --compile no) and recomputing (or not) as the trainer decides here
    step = make_train_step(net, vgg, optimizer, grams, losses, compile=config.compile != "no",
                           recompute=TrainConfig(batch_size=B, image_size=S).recomputes())
    batch = mx.array(rng.integers(0, 256, (B, S, S, 3), dtype=np.uint8))
    state = [net.state, optimizer.state]
    log(f"training: batch {B} × {S}², 1 warm-up step + {steps} timed, in this one process (on a CPU "
        "`python -m mlx_style.train` runs one process per core: scripts/bench_train.py times that) ...")
    start = time.perf_counter()
    mx.eval(step(batch), state)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        mx.eval(step(batch), state)
        times.append(time.perf_counter() - start)
    s_p50 = float(np.median(times))
    return {"batch": B, "size": S, "steps": steps, "compiled": config.compile != "no",
            "s_per_step_p50": s_p50, "s_first_step": first,
            "images_per_s": B / s_p50, "peak_memory_gb": mx.get_peak_memory() / 1e9}


# ---------------------------------------------------------------------------------------------------------------
# Report


def format_row(row: dict) -> str:
    text = (f"{row['width']:>5}x{row['height']:<5} {row['dtype']:<9} {'yes' if row['compiled'] else 'no':<8} "
            f"{row['ms_p50']:9.1f} {row['ms_p95']:9.1f} {row['fps']:7.2f} {row['ms_first']:9.0f}")
    if "torch_ms_p50" in row:
        text += f" {row['torch_ms_p50']:10.1f} {row['mlx_over_torch']:9.2f}"
    elif "torch_error" in row:
        text += f"   torch: {row['torch_error']}"
    return text


HEADER = (f"{'size':>11} {'dtype':<9} {'compiled':<8} {'p50 ms':>9} {'p95 ms':>9} {'FPS':>7} {'first ms':>9}")
TORCH_HEADER = f" {'torch p50':>10} {'MLX/torch':>9}"


def run(config: BenchConfig, log=print) -> dict:
    """Run the benchmark; returns the results (the ``--json`` content)."""
    config = resolve(config)
    sizes, dtypes, modes = parse_sizes(config.sizes), parse_dtypes(config.dtype), compile_modes(config.compile)
    if config.warmup < 0 or config.repeats < 1:
        raise BenchError("--warmup must be ≥ 0 and --repeats ≥ 1")
    info = platform_info()
    net, label = load_model(config.model)
    log(f"mlx_style bench: MLX {info['mlx_version']} on {info['device']}, backend {info['backend']}, "
        f"BLAS {info['blas']}")
    log(f"model: {label}, {count_parameters(net) / 1e6:.2f} M parameters; warm-up {config.warmup}, "
        f"repeats {config.repeats}")
    results = {**info, "model": label, "model_config": asdict(net.config), "warmup": config.warmup,
               "repeats": config.repeats, "infer": [], "torch": None, "train": None}

    torch_parts = None
    if config.torch:
        try:
            module, device, torch = make_torch_net(net)
            diff = torch_max_difference(net, module, torch, device)
            results["torch"] = {"version": torch.__version__, "device": device, "threads": torch.get_num_threads(),
                                "max_abs_diff_float32": diff}
            log(f"PyTorch {torch.__version__} on {device} ({torch.get_num_threads()} threads): same weights, "
                f"max |MLX − PyTorch| = {diff:.2g} (0–255 scale) at 48x64 float32")
            torch_parts = (module, torch, device)
        except ImportError as exc:
            results["torch"] = {"skipped": str(exc)}
            log(f"PyTorch skipped: {exc}")

    torch_cache = {}

    def on_row(row: dict) -> None:
        if torch_parts:
            key = (row["height"], row["width"], row["dtype"])
            if key not in torch_cache:
                try:
                    torch_cache[key] = bench_torch(*torch_parts, row["height"], row["width"], row["dtype"],
                                                   config.warmup, config.repeats)
                except Exception as exc:  # e.g. a dtype PyTorch has no kernel for on this device
                    torch_cache[key] = {"error": str(exc).splitlines()[0][:80]}
            timing = torch_cache[key]
            if "error" in timing:
                row["torch_error"] = timing["error"]
            else:
                row.update(torch_ms_p50=timing["ms_p50"], torch_ms_p95=timing["ms_p95"], torch_fps=timing["fps"],
                           mlx_over_torch=row["ms_p50"] / timing["ms_p50"])
        log(format_row(row))

    log(HEADER + (TORCH_HEADER if torch_parts else ""))
    results["infer"] = bench_mlx(net, sizes, dtypes, modes, config.warmup, config.repeats, on_row,
                                 tune=config.tune)
    if torch_parts:
        log("MLX/torch: median MLX time over median PyTorch time (above 1: MLX is slower)")

    if config.train:
        results["train"] = bench_train(config, log)
        t = results["train"]
        log(f"training: {t['skipped']}" if "skipped" in t else
            f"training: {t['images_per_s']:.2f} images/s (batch {t['batch']} × {t['size']}², "
            f"{t['s_per_step_p50']:.2f} s/step, first step {t['s_first_step']:.1f} s, "
            f"peak memory {t['peak_memory_gb']:.1f} GB)")
    if config.json:
        Path(config.json).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json).write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {config.json}")
    return results


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx_style.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", help=f"WIDTHxHEIGHT list (default {FULL['sizes']}; --quick: {QUICK['sizes']})")
    p.add_argument("--dtype", help="float32, float16, bfloat16, a comma list, or all (default all; --quick: float32)")
    p.add_argument("--compile", choices=COMPILE_CHOICES, default="both", help="time mx.compile'd, plain, or both")
    p.add_argument("--model", help="a style network .safetensors (default: a random-init report network)")
    p.add_argument("--warmup", type=int, help=f"untimed calls per row (default {FULL['warmup']})")
    p.add_argument("--repeats", type=int, help=f"timed calls per row (default {FULL['repeats']})")
    p.add_argument("--tune", action="store_true",
                   help="autotune the convolution strategy per layer shape first (mlx_style.conv; cached)")
    p.add_argument("--quick", action="store_true", help="256x256, float32, 1 warm-up, 3 repeats (for CPUs)")
    p.add_argument("--torch", action="store_true", help="also time PyTorch with the same weights (needs torch)")
    p.add_argument("--train", action="store_true", help="also time training steps (needs VGG weights)")
    p.add_argument("--vgg", default=BenchConfig.vgg, help="VGG weights for --train")
    p.add_argument("--train-batch", type=int, help="images per training step (default 4; --quick: 1)")
    p.add_argument("--train-size", type=int, help="training crop side (default 256; --quick: 128)")
    p.add_argument("--train-steps", type=int, help="timed training steps (default 5; --quick: 2)")
    p.add_argument("--json", help="write the results to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        run(BenchConfig(**vars(args)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
