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

import json
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
from mlx.utils import tree_map

from mlx_style import _blas
from mlx_style.backend import backend_name
from mlx_style.nn.conv import tune_convs
from mlx_style.bench.training import bench_train
from mlx_style.infer.stylize import DTYPES, load_network
from mlx_style.nn.transformer import TransformerConfig, TransformerNet, count_parameters
from mlx_style.io.weights import WeightFileError
from mlx_style.errors import MlxStyleError

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
    onnx: str | None = None  # an imported network's original graph, or EXPORT: time it in onnxruntime beside MLX
    style_image: str | None = None  # the arbitrary-style network's style for --onnx (default: a random picture)


FULL = {
    "sizes": "256x256,640x480,1280x720",
    "dtype": "all",
    "warmup": 3,
    "repeats": 20,
    "train_batch": 4,
    "train_size": 256,
    "train_steps": 5,
}
QUICK = {
    "sizes": "256x256",
    "dtype": "float32",
    "warmup": 1,
    "repeats": 3,
    "train_batch": 1,
    "train_size": 128,
    "train_steps": 2,
}


class BenchError(MlxStyleError, ValueError):
    """A bad request; the message is one line saying what to pass instead."""


def resolve(config: BenchConfig) -> BenchConfig:
    """Fill the ``None`` fields from ``QUICK`` or ``FULL``."""
    table = QUICK if config.quick else FULL
    return BenchConfig(
        **{
            f.name: table[f.name] if getattr(config, f.name) is None and f.name in table else getattr(config, f.name)
            for f in fields(config)
        }
    )


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
    return {
        "device": f"{'gpu' if device.type == mx.DeviceType.gpu else 'cpu'}" + (f" ({name})" if name else ""),
        "backend": backend_name(),
        "mlx_version": mx.__version__,
        "mlx_style_version": mlx_style.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "blas": f"OpenBLAS {status.loaded}" if status.loaded else f"MLX bundled ({status.reason})",
    }


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


def bench_mlx(
    net: TransformerNet, sizes, dtypes, modes, warmup: int, repeats: int, on_row=None, tune: bool = False
) -> list[dict]:
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
                row = {
                    "height": H,
                    "width": W,
                    "dtype": dtype,
                    "compiled": compiled,
                    **summarise(times),
                    "ms_first": first * 1000,
                }
                rows.append(row)
                if on_row:
                    on_row(row)
    net.update(params32)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Report


def format_row(row: dict) -> str:
    text = (
        f"{row['width']:>5}x{row['height']:<5} {row['dtype']:<9} {'yes' if row['compiled'] else 'no':<8} "
        f"{row['ms_p50']:9.1f} {row['ms_p95']:9.1f} {row['fps']:7.2f} {row['ms_first']:9.0f}"
    )
    if "torch_ms_p50" in row:
        text += f" {row['torch_ms_p50']:10.1f} {row['mlx_over_torch']:9.2f}"
    elif "torch_error" in row:
        text += f"   torch: {row['torch_error']}"
    return text


EXPORT = "export"  # --onnx: the --model network itself, exported to ONNX on the fly

HEADER = f"{'size':>11} {'dtype':<9} {'compiled':<8} {'p50 ms':>9} {'p95 ms':>9} {'FPS':>7} {'first ms':>9}"
TORCH_HEADER = f" {'torch p50':>10} {'MLX/torch':>9}"


def run(config: BenchConfig, log=print) -> dict:
    """Run the benchmark; returns the results (the ``--json`` content)."""
    config = resolve(config)
    sizes, dtypes, modes = parse_sizes(config.sizes), parse_dtypes(config.dtype), compile_modes(config.compile)
    if config.warmup < 0 or config.repeats < 1:
        raise BenchError("--warmup must be ≥ 0 and --repeats ≥ 1")
    if config.onnx:
        from mlx_style.bench.imported import compare_exported, compare_imported
        from mlx_style.io.registry import takes_picture

        if config.onnx == EXPORT:
            if config.model and takes_picture(config.model):
                raise BenchError(
                    f"{config.model} takes any picture as its style and has no ONNX export of its own: for "
                    "Magenta's, give --onnx DIR, the folder of the original graphs it was converted from"
                )
            net, label = load_model(config.model)
            results = compare_exported(net, label, sizes, config.warmup, config.repeats, log=log)
        elif not config.model:
            raise BenchError(
                "--onnx FILE compares an imported network: give it with --model (bare --onnx exports --model, "
                "or the report's network)"
            )
        else:
            results = compare_imported(
                config.model, config.onnx, sizes, config.warmup, config.repeats, style_image=config.style_image, log=log
            )
        if config.json:
            Path(config.json).write_text(json.dumps(results, indent=1))
        return results
    info = platform_info()
    net, label = load_model(config.model)
    log(
        f"mlx_style bench: MLX {info['mlx_version']} on {info['device']}, backend {info['backend']}, "
        f"BLAS {info['blas']}"
    )
    log(
        f"model: {label}, {count_parameters(net) / 1e6:.2f} M parameters; warm-up {config.warmup}, "
        f"repeats {config.repeats}"
    )
    results = {
        **info,
        "model": label,
        "model_config": asdict(net.config),
        "warmup": config.warmup,
        "repeats": config.repeats,
        "infer": [],
        "torch": None,
        "train": None,
    }

    torch_parts = None
    if config.torch:
        from mlx_style.bench.torch_speed import bench_torch, make_torch_net, torch_max_difference

        try:
            module, device, torch = make_torch_net(net)
            diff = torch_max_difference(net, module, torch, device)
            results["torch"] = {
                "version": torch.__version__,
                "device": device,
                "threads": torch.get_num_threads(),
                "max_abs_diff_float32": diff,
            }
            log(
                f"PyTorch {torch.__version__} on {device} ({torch.get_num_threads()} threads): same weights, "
                f"max |MLX − PyTorch| = {diff:.2g} (0–255 scale) at 48x64 float32"
            )
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
                    torch_cache[key] = bench_torch(
                        *torch_parts, row["height"], row["width"], row["dtype"], config.warmup, config.repeats
                    )
                except Exception as exc:  # e.g. a dtype PyTorch has no kernel for on this device
                    torch_cache[key] = {"error": str(exc).splitlines()[0][:80]}
            timing = torch_cache[key]
            if "error" in timing:
                row["torch_error"] = timing["error"]
            else:
                row.update(
                    torch_ms_p50=timing["ms_p50"],
                    torch_ms_p95=timing["ms_p95"],
                    torch_fps=timing["fps"],
                    mlx_over_torch=row["ms_p50"] / timing["ms_p50"],
                )
        log(format_row(row))

    log(HEADER + (TORCH_HEADER if torch_parts else ""))
    results["infer"] = bench_mlx(net, sizes, dtypes, modes, config.warmup, config.repeats, on_row, tune=config.tune)
    if torch_parts:
        log("MLX/torch: median MLX time over median PyTorch time (above 1: MLX is slower)")

    if config.train:
        results["train"] = bench_train(config, log)
        t = results["train"]
        log(
            f"training: {t['skipped']}"
            if "skipped" in t
            else f"training: {t['images_per_s']:.2f} images/s (batch {t['batch']} × {t['size']}², "
            f"{t['s_per_step_p50']:.2f} s/step, first step {t['s_first_step']:.1f} s, "
            f"peak memory {t['peak_memory_gb']:.1f} GB)"
        )
    if config.json:
        Path(config.json).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json).write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {config.json}")
    return results


# ---------------------------------------------------------------------------------------------------------------
# CLI
