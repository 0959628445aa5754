"""One prepared benchmark run for a lent GPU machine whose time is short: MLX beside its peers, JSON out.

    python -m scripts.bench.gpu_session --out gpu.json            # the real run (sizes of docs/benchmarks.md)
    python -m scripts.bench.gpu_session --smoke --out smoke.json  # every part at tiny sizes, on any device

Prints the device and versions, warms MLX's kernel cache (NVRTC builds are cached on disk, under
``MLX_PTX_CACHE_DIR`` or the temporary folder, so later processes load them), then runs, each part in its own
process with its own deadline (a failure or a slow part costs that part only; the JSON is rewritten after each),
the issue's goals first:

- ``train``: ``scripts.bench.bench_train``'s step, MLX and PyTorch in alternating child processes, 8 × 256²,
  random VGG16 (the cost does not depend on the weights): time per step and peak memory for both;
- ``infer``: ``mlx-style bench --torch`` (``bench.inference.run``): the report's network, MLX against its PyTorch
  twin in the same process, 256², 640×480, 1280×720, 1920×1080, compiled, float32, bfloat16, float16;
- ``imported``: Magenta's 26-style network and arbitrary pair imported into MLX (``io.magenta``) against their
  original graphs in onnxruntime (``bench.imported.compare_imported``, as ``mlx-style bench --onnx``: the
  CUDA provider when onnxruntime has one, else its CPU, as the JSON says), and the 26-style graph in PyTorch
  through ``onnx2torch`` (carried) on the GPU.

Every ratio is MLX's time (or memory) over the peer's. Parts share ``--budget`` seconds: each ends by its share's
cumulative deadline, so time a part leaves unused goes to the next. The default budget leaves the device tool's
600 s command limit room for the installs of ``scripts/gpu_session.sh``.

On the device machine (no internet; its ``python3`` holds PyTorch, onnx, onnxruntime, numpy, pillow, OpenCV,
huggingface-hub and the CUDA 13 libraries that ``mlx-cuda-13`` links; ``mlx`` and ``mlx-cuda-13`` travel as
wheels). The wheel of ``mlx-cuda-13`` is larger than what one call may carry beside the working tree, so it goes
in parts, one call each, while the machine stays warm (its idle release is short: make the calls back to back):

1. Here: ``bash scripts/gpu_session.sh prepare`` downloads the wheels to ``$TMPDIR``, splits ``mlx-cuda-13`` into
   ``gpu_carry/1``, ``gpu_carry/2`` (30 MiB each) and puts the last part, the ``mlx`` and ``onnx2torch`` wheels, the
   sha256 sums, the commit and the Magenta ONNX files into ``gpu_carry/3``; it adds ``/gpu_carry/`` to
   ``.git/info/exclude`` (an ignored folder travels only when ``carry`` names it) and prints each call's size.
2. ``run(command="bash scripts/gpu_session.sh stash", carry=["gpu_carry/1"], timeout_s=120)``
3. ``run(command="bash scripts/gpu_session.sh stash", carry=["gpu_carry/2"], timeout_s=120)``
4. ``run(command="bash scripts/gpu_session.sh", carry=["gpu_carry/3"], timeout_s=560)``: joins and checks the
   wheel, installs (``--no-deps``), runs this script into ``$OUT/gpu.json`` with its log beside it.
5. ``give_back()``; the numbers go to ``docs/benchmarks.md`` with the card, the versions and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Each part's share of the budget, in the order they run (the goals' training step before inference); a part
# ends by the sum of the shares up to it, so time unused carries over.
SHARES = {"info": 0.04, "warm": 0.30, "train": 0.22, "infer": 0.28, "imported": 0.16}
MIN_PART_S = 30  # no part gets less (within the budget): a busy machine takes seconds to import the frameworks
MAGENTA_DIRS = (REPO / "gpu_carry" / "3" / "magenta_onnx", REPO.parent / "shared" / "data" / "weights" / "magenta_onnx")


@dataclass
class SessionConfig:
    sizes: str = "256x256,640x480,1280x720,1920x1080"  # the GPU table of docs/benchmarks.md
    dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16")  # the goals' dtypes first: a cut run keeps them
    compile: str = "auto"  # "auto": compiled on a GPU, plain on a CPU (backend.compile_inference)
    warmup: int = 3  # untimed calls per row, as the documented bench command
    repeats: int = 20
    train_size: int = 256  # the report's step, the goal
    train_batch: int = 8
    train_steps: int = 20  # timed steps: a GPU step takes tens of ms, a child's start seconds
    train_warmup: int = 3  # the first compiles
    train_rounds: int = 2  # MLX, PyTorch, MLX, PyTorch: each side's best round counts
    train_processes: int | None = None  # None: as `mlx-style train` decides (1 on a GPU)
    imported_warmup: int = 2  # fewer calls for the imported networks: their peer may run on the CPU
    imported_repeats: int = 10
    magenta: str | None = None  # folder of the Magenta ONNX files; None: the carried copy, else ../shared


SMOKE = {
    "sizes": "32x32",
    "warmup": 1,
    "repeats": 2,
    "imported_warmup": 1,
    "imported_repeats": 2,
    "train_size": 32,
    "train_batch": 2,
    "train_steps": 1,
    "train_warmup": 1,
    "train_rounds": 1,
    "train_processes": 1,
}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# The parts: each runs in its own process and calls save(result) whenever it has something worth keeping.


def part_info(cfg: SessionConfig, save) -> None:
    import mlx_style  # noqa: F401  (BLAS before mlx.core)
    import mlx.core as mx

    from mlx_style.bench.inference import platform_info

    info = platform_info()
    with contextlib.suppress(Exception):
        info["device_info"] = {
            k: v if isinstance(v, (int, float, str)) else str(v) for k, v in mx.device_info().items()
        }
    info["env"] = {k: os.environ.get(k) for k in ("MLX_ENABLE_TF32", "MLX_PTX_CACHE_DIR", "MLX_STYLE_COMMIT")}
    info["packages"] = {
        n: package_version(n)
        for n in (
            "mlx",
            "mlx-cuda-13",
            "mlx-cpu",
            "torch",
            "onnx",
            "onnxruntime",
            "onnxruntime-gpu",
            "onnx2torch",
            "numpy",
        )
    }
    if importlib.util.find_spec("torch"):
        import torch

        cuda = torch.cuda.is_available()
        info["torch"] = {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_available": cuda,
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "cudnn": torch.backends.cudnn.version() if cuda else None,
        }
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    save(info)
    print(
        f"MLX {info['mlx_version']} on {info['device']} (backend {info['backend']}), Python {info['python']}, "
        f"{info['machine']}; packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    )
    print(
        f"PyTorch: {info.get('torch')}; onnxruntime providers: {info.get('onnxruntime_providers')}; "
        f"nvidia-smi: {info.get('nvidia_smi', 'absent')}",
        flush=True,
    )


def bench_config(cfg: SessionConfig, dtype: str, warmup: int, repeats: int, torch: bool):
    from mlx_style.backend import compile_inference
    from mlx_style.bench.inference import BenchConfig

    compiled = cfg.compile if cfg.compile != "auto" else ("yes" if compile_inference() else "no")
    return BenchConfig(sizes=cfg.sizes, dtype=dtype, compile=compiled, warmup=warmup, repeats=repeats, torch=torch)


def train_config(cfg: SessionConfig, steps: int, warmup: int):
    from scripts.bench import bench_train

    return bench_train.BenchConfig(
        image_size=cfg.train_size,
        batch_size=cfg.train_batch,
        steps=steps,
        warmup=warmup,
        vgg="random",
        tune=False,
        processes=cfg.train_processes,
        torch_device=bench_train.matching_torch_device(),
    )


@contextlib.contextmanager
def training_inputs(config):
    """The random VGG16 and the shared starting point of ``bench_train``, in a temporary folder."""
    from scripts.bench import bench_train

    with tempfile.TemporaryDirectory() as tmp:
        config.vgg = str(bench_train.write_random_vgg(Path(tmp) / "vgg16_random.safetensors", config.seed))
        yield bench_train.write_inputs(config, Path(tmp))


def part_warm(cfg: SessionConfig, save) -> None:
    """The later parts' shapes and dtypes once each, MLX alone, the training step first (the goal's): NVRTC builds
    the kernels here and caches them on disk, so the timed parts' first calls load them."""
    from mlx_style.backend import keep_freed_memory
    from mlx_style.bench import inference as benchmark
    from scripts.bench import bench_train

    keep_freed_memory()
    config = train_config(cfg, steps=1, warmup=1)
    start = time.perf_counter()
    with training_inputs(config) as inputs:
        result = bench_train.run_child(config, "mlx", inputs)
    if result is None:
        raise RuntimeError("the MLX training child failed (its error is printed above)")
    out = {"train_s": time.perf_counter() - start, "train_first_step_s": result["warmup_s"]}
    save(out)
    start = time.perf_counter()
    rows = benchmark.run(bench_config(cfg, ",".join(cfg.dtypes), warmup=1, repeats=1, torch=False))["infer"]
    out["infer_s"] = time.perf_counter() - start
    out["infer_first_ms"] = {f"{r['width']}x{r['height']} {r['dtype']}": r["ms_first"] for r in rows}
    save(out)


def part_infer(cfg: SessionConfig, save) -> None:
    from mlx_style.backend import keep_freed_memory
    from mlx_style.bench import inference as benchmark

    keep_freed_memory()
    out = {"rows": []}
    for dtype in cfg.dtypes:  # one run per dtype: a cut-short part keeps the dtypes done
        result = benchmark.run(bench_config(cfg, dtype, cfg.warmup, cfg.repeats, torch=True))
        out.update({k: result[k] for k in ("model", "warmup", "repeats", "torch")})
        out["rows"] += result["infer"]
        save(out)


def torch_training_missing() -> str | None:
    missing = [n for n in ("torch", "safetensors") if importlib.util.find_spec(n) is None]
    return f"PyTorch's training step needs {' and '.join(missing)}" if missing else None


def part_train(cfg: SessionConfig, save) -> None:
    from scripts.bench import bench_train

    config = train_config(cfg, cfg.train_steps, cfg.train_warmup)
    missing = torch_training_missing()
    out = {
        "batch": config.batch_size,
        "size": config.image_size,
        "steps": config.steps,
        "warmup": config.warmup,
        "vgg": "random",
        "torch_device": config.torch_device,
        "mlx": None,
        "torch": {"skipped": missing} if missing else None,
    }
    with training_inputs(config) as inputs:
        for round_ in range(max(cfg.train_rounds, 1)):
            for name in ("mlx",) if missing else ("mlx", "torch"):
                result = bench_train.run_child(config, name, inputs)
                if result is None:
                    raise RuntimeError(f"the {name} training child failed (its error is printed above)")
                result["ms_per_step"] = median_ms(result["step_s"])
                print(bench_train.summarise(result, config), flush=True)
                if out[name] is None or result["ms_per_step"] < out[name]["ms_per_step"]:
                    out[name] = result
                out["rounds"] = round_ + 1
                if out["torch"] and "ms_per_step" in out["torch"]:
                    mlx, peer = out["mlx"], out["torch"]
                    on_device = mlx["peak_memory_gb"] and peer["peak_memory_gb"]
                    key = "peak_memory_gb" if on_device else "peak_rss_gb"
                    out.update(
                        mlx_over_torch_time=mlx["ms_per_step"] / peer["ms_per_step"],
                        mlx_over_torch_memory=mlx[key] / peer[key],
                        memory_measure=key,
                    )
                save(out)


def torch_graph_peer(path: Path):
    """``bind(inputs) -> call``: the same graph converted op by op to PyTorch (``onnx2torch``), on the GPU when MLX is
    on one: a GPU peer where onnxruntime has no CUDA provider."""
    import onnx
    import onnx2torch
    import torch
    from mlx_style.backend import on_gpu

    device = "cuda" if on_gpu() and torch.cuda.is_available() else "cpu"
    module = onnx2torch.convert(onnx.load(str(path))).eval().to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def bind(inputs: list):
        tensors = [torch.from_numpy(v).to(device) for v in inputs]

        def call():
            with torch.inference_mode():
                module(*tensors)
            sync()

        return call

    return bind, f"torch {torch.__version__} via onnx2torch ({device})"


def magenta_dir(cfg: SessionConfig) -> Path:
    found = [Path(cfg.magenta)] if cfg.magenta else [d for d in MAGENTA_DIRS if d.is_dir()]
    if not found or not (found[0] / "multistyle26.onnx").exists():
        raise FileNotFoundError(
            f"no multistyle26.onnx in {cfg.magenta or ' or '.join(map(str, MAGENTA_DIRS))}: "
            "pass --magenta DIR (the folder of ../shared/data/weights/magenta_onnx)"
        )
    return found[0]


def part_imported(cfg: SessionConfig, save) -> None:
    """``bench.imported.compare_imported`` (as ``mlx-style bench --onnx``) for both Magenta networks, and the
    26-style graph in PyTorch through ``onnx2torch`` where that is installed."""
    import numpy as np

    from mlx_style.backend import keep_freed_memory
    from mlx_style.bench.inference import parse_sizes
    from mlx_style.bench.imported import compare_imported, median_seconds
    from mlx_style.infer.stylize import load_network
    from mlx_style.io import magenta

    keep_freed_memory()
    source, sizes = magenta_dir(cfg), parse_sizes(cfg.sizes)
    warmup, repeats = cfg.imported_warmup, cfg.imported_repeats
    out = {"source": str(source)}
    with tempfile.TemporaryDirectory() as tmp:
        multi = magenta.import_multistyle(source / "multistyle26.onnx", Path(tmp) / "magenta26.safetensors")
        out["multistyle26"] = compare_imported(multi, source / "multistyle26.onnx", sizes, warmup, repeats)
        save(out)
        try:
            bind, out["multistyle26"]["torch_graph"] = torch_graph_peer(source / "multistyle26.onnx")
        except ImportError as exc:
            out["multistyle26"]["torch_graph"] = f"skipped: {exc}"
        else:
            weights = np.asarray(load_network(multi, style=7)[0].style_weights, np.float32)  # compare_imported's
            rng = np.random.default_rng(0)
            for row in out["multistyle26"]["rows"]:
                image = rng.uniform(0, 1, (1, 3, row["height"], row["width"])).astype(np.float32)
                row["torch_graph_ms"] = 1e3 * median_seconds(bind([image, weights]), warmup, repeats)
                row["mlx_over_torch_graph"] = row["mlx_ms"] / row["torch_graph_ms"]
                save(out)
        if getattr(magenta, "import_arbitrary", None) is None:
            out["arbitrary"] = "skipped: mlx_style.io.magenta has no importer for the arbitrary pair"
        else:
            pair = magenta.import_arbitrary(source, Path(tmp) / "magenta_arbitrary.safetensors")
            out["arbitrary"] = compare_imported(pair, source, sizes, warmup, repeats)
        save(out)


PARTS = {"info": part_info, "warm": part_warm, "infer": part_infer, "train": part_train, "imported": part_imported}


# ---------------------------------------------------------------------------------------------------------------
# The driver: one child process per part, each in its own process group so a deadline stops its children too.


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the grandchildren (training children) too
    proc.wait()


def run_part(name: str, deadline: float, passthrough: list[str], folder: Path) -> dict:
    """Run one part in a child process until ``deadline`` (``time.monotonic``): its status, time and result."""
    path = folder / f"{name}.json"
    left = deadline - time.monotonic()
    if left < 1:
        return {"status": "skipped", "reason": "no time left in the budget"}
    print(f"\n=== {name} (at most {left:.0f} s)", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.gpu_session", "--part", name, "--part-json", str(path), *passthrough],
        cwd=REPO,
        env=child_env(),
        start_new_session=True,
    )
    try:
        proc.wait(timeout=left)
        status = "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        status = "timeout"
    finally:
        if proc.returncode is None:
            stop_group(proc)
    record = {
        "status": status,
        "seconds": round(time.monotonic() - start, 2),
        "budget_s": round(left, 1),
        "returncode": proc.returncode,
    }
    if path.exists():
        result = json.loads(path.read_text())
        if "error" in result:
            record["error"] = result.pop("error")
        record["result"] = result
    print(f"=== {name}: {status} in {record['seconds']:.1f} s", flush=True)
    return record


def commit() -> str | None:
    if os.environ.get("MLX_STYLE_COMMIT"):
        return os.environ["MLX_STYLE_COMMIT"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None
    return None


def summary(parts: dict) -> list[str]:
    """The ratios, one line each."""
    lines = []
    for r in parts.get("infer", {}).get("result", {}).get("rows", []):
        peer = (
            f"PyTorch {r['torch_ms_p50']:.2f} ms, MLX/PyTorch {r['mlx_over_torch']:.2f}×"
            if "mlx_over_torch" in r
            else r.get("torch_error", "no PyTorch")
        )
        lines.append(f"infer {r['width']}x{r['height']} {r['dtype']}: MLX {r['ms_p50']:.2f} ms, {peer}")
    train = parts.get("train", {}).get("result", {})
    if train.get("mlx"):
        line = f"train {train['batch']} × {train['size']}²: MLX {train['mlx']['ms_per_step']:.1f} ms/step"
        if "mlx_over_torch_time" in train:
            line += (
                f", PyTorch {train['torch']['ms_per_step']:.1f} ms/step, time "
                f"{train['mlx_over_torch_time']:.2f}×, memory ({train['memory_measure']}) "
                f"{train['mlx_over_torch_memory']:.2f}×"
            )
        lines.append(line)
    imported = parts.get("imported", {}).get("result", {})
    for name in ("multistyle26", "arbitrary"):
        result = imported.get(name) if isinstance(imported.get(name), dict) else {}
        for r in result.get("rows", []) + ([result["predictor"]] if "predictor" in result else []):
            ratios = ", ".join(f"MLX/{k[9:]} {v:.2f}×" for k, v in r.items() if k.startswith("mlx_over_"))
            where = r.get("size") or f"{r['width']}x{r['height']}"
            lines.append(f"{name} {'predictor ' * ('size' in r)}{where}: MLX {r['mlx_ms']:.2f} ms, {ratios}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.gpu_session", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_session.json", help="the JSON, rewritten after each part")
    p.add_argument("--smoke", action="store_true", help="every part at tiny sizes, on whatever device (seconds)")
    p.add_argument("--budget", type=float, help="seconds for all parts together (default 420; --smoke: 120)")
    p.add_argument("--parts", default=",".join(SHARES), help=f"a comma list of {', '.join(SHARES)}")
    p.add_argument(
        "--magenta",
        help="the folder of the Magenta ONNX files (default: gpu_carry/3/magenta_onnx, "
        "else ../shared/data/weights/magenta_onnx)",
    )
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # set for the child processes
    p.add_argument("--part-json", help=argparse.SUPPRESS)
    return p


def session_config(args) -> SessionConfig:
    cfg = SessionConfig(magenta=args.magenta)
    return replace(cfg, **SMOKE) if args.smoke else cfg


def run_child_part(args) -> int:
    path, last = Path(args.part_json), {}

    def save(data: dict) -> None:
        last.clear()
        last.update(data)
        write_json(path, data)

    try:
        PARTS[args.part](session_config(args), save)
    except Exception:  # noqa: BLE001  (recorded in the JSON; the driver goes on with the next part)
        traceback.print_exc()
        write_json(path, {**last, "error": traceback.format_exc().strip().splitlines()[-1][:500]})
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.part:
        return run_child_part(args)
    names = [n.strip() for n in args.parts.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHARES]
    if unknown:
        print(f"error: unknown --parts {', '.join(unknown)}: choose from {', '.join(SHARES)}", file=sys.stderr)
        return 2
    budget = args.budget or (120.0 if args.smoke else 420.0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    passthrough = ["--smoke"] * args.smoke + (["--magenta", args.magenta] if args.magenta else [])
    t0, total = time.monotonic(), sum(SHARES[n] for n in names)
    results = {
        "command": ["python", "-m", "scripts.bench.gpu_session", *(sys.argv[1:] if argv is None else argv)],
        "smoke": args.smoke,
        "budget_s": budget,
        "commit": commit(),
        "config": asdict(session_config(args)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parts": {},
    }
    share = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            share += SHARES[name] / total
            deadline = min(t0 + budget, max(t0 + budget * share, time.monotonic() + MIN_PART_S))
            results["parts"][name] = run_part(name, deadline, passthrough, Path(folder))
            results["elapsed_s"] = round(time.monotonic() - t0, 2)
            write_json(out, results)
    print("\n" + "\n".join(summary(results["parts"])))
    print(
        "parts: "
        + ", ".join(f"{n} {p['status']}" for n, p in results["parts"].items())
        + f"; {results['elapsed_s']:.0f} s; wrote {out}"
    )
    return 0 if all(p["status"] == "ok" for p in results["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
