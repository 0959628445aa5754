"""Training throughput and peak memory: mlx_style's compiled step beside the same step in PyTorch.

    python -m scripts.bench.bench_train --image-size 128 --batch-size 4      # CPU-sized
    python -m scripts.bench.bench_train --image-size 256 --batch-size 8 --steps 1   # the report's step (slow on a CPU)
    python -m scripts.bench.bench_train --image-size 256 --batch-size 8 --steps 20 --vgg random   # a GPU, no VGG file

Run from the repository root (the ``scripts`` package is found there); the child processes it starts get the
repository on their ``PYTHONPATH``.

Both sides run the same step on the same device: the Table-1 network (same initial weights, copied from MLX),
VGG16 to relu4_3 from the same weight file, the same losses (content at relu3_3, Gram style at
relu1_2…relu4_3, isotropic TV, the VGG file's recommended weights), per-tensor gradient clipping and
bias-corrected Adam. Each framework runs in its own child process so its peak memory is its own: MLX reports
``mx.get_peak_memory()`` and both report the peak resident set size. The first step (MLX's kernel compilation,
PyTorch's warm-up) is not timed. PyTorch is needed only here (``pip install torch``); the package never imports it.

Device: MLX runs on its default device (the GPU on a Mac or with ``mlx[cuda]``), and PyTorch on the matching one
(``mps``, ``cuda``, else the CPU; ``--torch-device`` overrides). On a GPU, MLX's peak is ``mx.get_peak_memory()``
and PyTorch's ``torch.cuda.max_memory_allocated()``. ``--vgg random`` times with random VGG16 weights (to
relu4_3, Caffe preprocessing and loss weights) where no converted file is at hand: the step's cost does not
depend on the weights' values, but its losses then mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BenchConfig:
    image_size: int = 128  # CPU-sized; the report trains at 256
    batch_size: int = 4  # CPU-sized; the report uses 8
    steps: int = 3  # timed steps after the warm-up
    warmup: int = 1  # untimed steps (MLX compiles its kernels in the first)
    vgg: str = str(REPO / "weights" / "vgg16.safetensors")
    framework: str = "both"  # "mlx", "torch" or "both" (each in a child process)
    seed: int = 0
    compile: bool = True  # mx.compile the MLX step
    torch_device: str = "auto"  # "auto": the device matching MLX's default (mps, cuda, else cpu)
    rounds: int = 1  # alternate the children this many times (MLX, PyTorch, MLX, ...); each side's best round counts
    tune: bool = True  # autotune the MLX convolution strategies first, as `mlx-style train` does
    low_memory: bool | None = None  # MLX recomputes the residual blocks in the backward pass; None: as train does
    processes: int | None = None  # MLX's local processes, each with its share of the batch; None: as train decides


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB


def matching_torch_device(torch=None) -> str:
    """The PyTorch device that matches MLX's default one: ``cpu``, ``mps`` or ``cuda``, decided from MLX alone (the
    parent process imports no torch). Given ``torch``, also check that this PyTorch has it (RuntimeError if not)."""
    import mlx_style  # noqa: F401  (loads the fast BLAS before mlx.core)
    import mlx.core as mx

    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    device = "mps" if mx.metal.is_available() else "cuda"
    if torch is not None:
        available = torch.backends.mps.is_available() if device == "mps" else torch.cuda.is_available()
        if not available:
            raise RuntimeError(
                f"PyTorch {torch.__version__} has no {device} device to match MLX's {mx.default_device()}"
            )
    return device


def child_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``: a child started as
    ``python -m scripts.bench.bench_train`` then finds the ``scripts`` package whatever its working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def write_random_vgg(path: Path, seed: int) -> Path:
    """VGG16 to relu4_3 with random He-scaled weights and zero biases: activations keep their size through the
    layers (no vanishing values, no subnormals on a CPU), as with real weights."""
    import mlx_style  # noqa: F401
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_style.io.models import save_vgg
    from mlx_style.nn.vgg import VGG

    rng = np.random.default_rng(seed)
    arrays = {}
    for k, v in tree_flatten(VGG("vgg16", "caffe").parameters()):
        if int(k.split(".")[1]) > 21:  # features.21 is conv4_3
            continue
        if k.endswith("weight"):
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            arrays[k] = mx.array(rng.normal(0, np.sqrt(2 / fan_in), v.shape).astype(np.float32))
        else:
            arrays[k] = mx.zeros(v.shape)
    return save_vgg(path, arrays, "vgg16", "caffe", "random weights (scripts.bench.bench_train --vgg random)")


def write_inputs(config: BenchConfig, folder: Path) -> Path:
    """The shared starting point: MLX's initial network weights, a content batch and a style image."""
    import mlx_style  # noqa: F401  (loads the fast BLAS before mlx.core)
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_style.nn.transformer import TransformerNet

    mx.random.seed(config.seed)
    net = TransformerNet()
    rng = np.random.default_rng(config.seed)
    arrays = {f"net.{k}": np.asarray(v) for k, v in tree_flatten(net.parameters())}
    arrays["content"] = rng.uniform(0, 255, (config.batch_size, config.image_size, config.image_size, 3))
    arrays["style"] = rng.uniform(0, 255, (1, config.image_size, config.image_size, 3))
    path = folder / "inputs.npz"
    np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
    return path


def run_mlx(config: BenchConfig, inputs: Path) -> dict:
    import mlx_style  # noqa: F401
    import mlx.core as mx
    import mlx.optimizers as optim

    from mlx_style.training.launch import launcher_bytes, local_processes
    from mlx_style.nn.losses import LossConfig, recommended_weights, style_targets
    from mlx_style.training.config import TrainConfig
    from mlx_style.training.distributed import agree
    from mlx_style.training.step import make_train_step, tune_step_convs
    from mlx_style.nn.transformer import TransformerNet
    from mlx_style.backend import keep_freed_memory
    from mlx_style.io.vgg_weights import load_vgg

    malloc = keep_freed_memory()  # as every mlx_style command does
    group = mx.distributed.init()  # one rank of several when started with --processes N (as `mlx-style train`)
    rank, world = group.rank(), group.size()
    share = config.batch_size // world
    data = np.load(inputs)
    net = TransformerNet()
    net.load_weights([(k[4:], mx.array(data[k])) for k in data.files if k.startswith("net.")], strict=True)
    vgg, meta = load_vgg(config.vgg)
    w = recommended_weights(meta["preprocess"])
    losses = LossConfig(content_weight=w["content"], style_weight=w["style"], tv_weight=w["tv"])
    grams = style_targets(vgg, mx.array(data["style"]), losses.style_layers)
    optimizer = optim.Adam(learning_rate=1e-3, bias_correction=True)
    optimizer.init(net.trainable_parameters())
    if config.tune:  # as `mlx-style train` does before its first step (choices cached on disk; rank 0 first)
        if rank:
            agree(False, group)
        tune_step_convs(net, vgg, grams, losses, (share, config.image_size, config.image_size, 3))
        if not rank:
            agree(False, group)
    recompute = TrainConfig(
        style="", batch_size=config.batch_size, image_size=config.image_size, low_memory=config.low_memory
    ).recomputes(processes=world, local=local_processes())
    step = make_train_step(
        net,
        vgg,
        optimizer,
        grams,
        losses,
        "tensor",
        group=group if world > 1 else None,
        compile=config.compile,
        recompute=recompute,
    )
    batch = mx.array(data["content"][rank * share : (rank + 1) * share])
    mx.eval(grams, batch)
    losses_seen, times = [], []
    for i in range(config.warmup + config.steps):
        if i == config.warmup:
            mx.reset_peak_memory()
        t = time.perf_counter()
        loss, _ = step(batch)
        mx.eval(loss, net.parameters(), optimizer.state)
        times.append(time.perf_counter() - t)
        losses_seen.append(loss.item())
    name = (
        "mlx"
        + ("" if config.compile else " (uncompiled)")
        + (" (low memory)" if recompute else " (no low memory)")
        + ("" if malloc == "glibc" else f" [{malloc}]")
        + (f" ({world} processes)" if world > 1 else "")
    )
    peak, rss = mx.get_peak_memory() / 1e9, peak_rss_gb()
    if world > 1:  # the machine's total: every rank runs here, and the launcher too (its peak, counted by rank 0)
        rss += 0 if rank else launcher_bytes("VmHWM") / 1e9
        peak, rss = mx.distributed.all_sum(mx.array([peak, rss], mx.float32), group=group).tolist()
    return {
        "framework": name,
        "losses": losses_seen,
        "warmup_s": sum(times[: config.warmup]),
        "step_s": times[config.warmup :],
        "peak_memory_gb": peak,
        "peak_rss_gb": rss,
        "rank": rank,
    }


def run_torch(config: BenchConfig, inputs: Path) -> dict:
    import mlx_style  # noqa: F401  (loads the fast BLAS before mlx.core)
    import torch

    from mlx_style.nn.losses import LossConfig
    from mlx_style.nn.transformer import TransformerConfig
    from mlx_style.bench import torch_twin  # the same VGG, losses and clipping as mlx_style, in PyTorch

    device = config.torch_device
    sync = {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}.get(device, lambda: None)
    data = np.load(inputs)
    net = torch_twin.net_from_mlx(
        torch, {k[4:]: data[k] for k in data.files if k.startswith("net.")}, TransformerConfig()
    ).to(device)
    vgg, meta = torch_twin.load_torch_vgg(torch, config.vgg, device)
    weights = json.loads(meta["recommended_loss_weights"])
    losses = LossConfig(content_weight=weights["content"], style_weight=weights["style"], tv_weight=weights["tv"])
    grams = torch_twin.style_grams(torch, vgg, data["style"], losses.style_layers, device)
    loss_fn = torch_twin.make_loss(torch, vgg, grams, losses)
    content = torch.from_numpy(data["content"]).permute(0, 3, 1, 2).contiguous().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses_seen, times = [], []
    for i in range(config.warmup + config.steps):
        if i == config.warmup and device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_fn(net(content), content)
        loss.backward()
        torch_twin.clip_per_tensor_(torch, net, "tensor")
        optimizer.step()
        sync()
        times.append(time.perf_counter() - t)
        losses_seen.append(loss.item())
    peak = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None
    name = "torch" + ("" if device == "cpu" else f" ({device})")
    return {
        "framework": name,
        "losses": losses_seen,
        "warmup_s": sum(times[: config.warmup]),
        "step_s": times[config.warmup :],
        "peak_memory_gb": peak,
        "peak_rss_gb": peak_rss_gb(),
        "threads": torch.get_num_threads(),
        "device": device,
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if device == "cuda" else None,
    }


def summarise(result: dict, config: BenchConfig) -> str:
    step = float(np.median(result["step_s"]))
    source = "mx.get_peak_memory" if result["framework"].startswith("mlx") else "torch.cuda.max_memory_allocated"
    mem = f"{result['peak_memory_gb']:.2f} GB ({source})" if result["peak_memory_gb"] else "—"
    return (
        f"{result['framework']:>16}: {step:7.2f} s/step  {config.batch_size / step:6.2f} img/s  "
        f"warm-up {result['warmup_s']:6.1f} s  peak {mem}, peak RSS {result['peak_rss_gb']:.2f} GB  "
        f"losses {', '.join(f'{v:.5g}' for v in result['losses'])}"
    )


def run_child(config: BenchConfig, name: str, inputs: Path) -> dict | None:
    """One framework's run in a fresh process; its JSON result, or None (with the error printed)."""
    child = [
        sys.executable,
        "-m",
        "scripts.bench.bench_train",
        "--inputs",
        str(inputs),
        "--framework",
        name,
        *(
            f"--{k.replace('_', '-')}={v}"
            for k, v in asdict(config).items()
            if k in ("image_size", "batch_size", "steps", "warmup", "vgg", "torch_device")
        ),
    ]
    if not config.compile:
        child.append("--no-compile")
    if not config.tune:
        child.append("--no-tune")
    if config.low_memory is not None:
        child.append("--low-memory" if config.low_memory else "--no-low-memory")
    if name == "mlx" and config.processes is not None:
        child.append(f"--processes={config.processes}")
    done = subprocess.run(child, capture_output=True, text=True, env=child_env())
    if done.returncode:
        print(f"error: the {name} run failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first")
    p.add_argument("--vgg", default=d.vgg, help="converted VGG16 weights, or 'random' (timing only)")
    p.add_argument(
        "--torch-device",
        default=d.torch_device,
        help="PyTorch's device (default: the one matching MLX's default device)",
    )
    p.add_argument("--framework", choices=("mlx", "torch", "both"), default=d.framework)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="run the MLX step uncompiled")
    p.add_argument("--no-tune", dest="tune", action="store_false", help="use the untuned conv heuristic")
    p.add_argument(
        "--low-memory",
        dest="low_memory",
        action="store_const",
        const=True,
        default=d.low_memory,
        help="MLX recomputes the residual blocks (train --low-memory; default: as train decides)",
    )
    p.add_argument(
        "--no-low-memory",
        dest="low_memory",
        action="store_const",
        const=False,
        help="MLX keeps the residual blocks' activations (train --no-low-memory)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=d.rounds,
        help="run the frameworks' children alternately this many times; each side's fastest round "
        "counts (a slower spell of a shared machine then lands on both sides)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=d.processes,
        metavar="N",
        help="MLX runs as N local processes, each with its share of the batch (train --processes; "
        "default: as train decides, 2 on a 2-core CPU)",
    )
    p.add_argument("--inputs", help=argparse.SUPPRESS)  # set for the child processes
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = BenchConfig(**{k: v for k, v in vars(args).items() if k in BenchConfig.__dataclass_fields__})
    if config.vgg != "random" and not Path(config.vgg).exists():
        print(
            f"error: no VGG weights at {config.vgg}: run `python scripts/convert_vgg.py`, or time with --vgg random",
            file=sys.stderr,
        )
        return 1
    if args.inputs:  # a child: run one framework, print one JSON line
        if config.framework == "mlx":
            from mlx_style.backend import backend_name, processes_for_training
            from mlx_style.training.launch import launched, run_local, usable_cores

            processes = config.processes or processes_for_training(backend_name(), config.batch_size, usable_cores())
            if processes > 1 and not launched():  # as `mlx-style train`: its ranks share the batch
                return run_local(
                    processes,
                    ["-m", "scripts.bench.bench_train", *(sys.argv[1:] if argv is None else argv)],
                    env=child_env(),
                )
        result = (run_mlx if config.framework == "mlx" else run_torch)(config, Path(args.inputs))
        if not result.get("rank"):
            print(json.dumps(result))
        return 0
    frameworks = ("mlx", "torch") if config.framework == "both" else (config.framework,)
    if config.torch_device == "auto":
        config.torch_device = matching_torch_device()
    print(
        f"training step, batch {config.batch_size} × {config.image_size}², {config.steps} timed step(s) after "
        f"{config.warmup} warm-up; MLX on its default device, PyTorch on {config.torch_device}",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if config.vgg == "random":
            config.vgg = str(write_random_vgg(Path(tmp) / "vgg16_random.safetensors", config.seed))
            print("VGG16: random weights (timing only; the losses mean nothing)", flush=True)
        inputs = write_inputs(config, Path(tmp))
        for _ in range(max(config.rounds, 1)):
            for name in frameworks:
                result = run_child(config, name, inputs)
                if result is None:
                    return 1
                print(summarise(result, config), flush=True)
                if name not in results or np.median(result["step_s"]) < np.median(results[name]["step_s"]):
                    results[name] = result
    if len(results) == 2:
        ratio = float(np.median(results["mlx"]["step_s"]) / np.median(results["torch"]["step_s"]))
        print(
            f"MLX step time / PyTorch step time: {ratio:.2f}× (best of {max(config.rounds, 1)} round(s) each; "
            f"first-step loss MLX "
            f"{results['mlx']['losses'][0]:.6g} vs PyTorch {results['torch']['losses'][0]:.6g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
