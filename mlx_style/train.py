"""Train a style network (Johnson et al. 2016, §3): ``python -m mlx_style.train --style wave.jpg --data DIR``.

Content images are resized so the shorter side is ``--image-size`` and centre-cropped square; batch 8, Adam
lr 1e-3, gradient clipping per parameter tensor, one epoch (or ``--iters N``). The perceptual loss reads a frozen
VGG whose weight file also supplies the default loss weights. A run leaves, under ``runs/<output stem>/``, a
JSON-lines log, a loss curve, sample grids and checkpoints, and writes the network to ``--output``.

Resumable: ``--resume`` continues from the latest checkpoint exactly (same losses and weights as an
uninterrupted run); Ctrl-C writes a checkpoint first. Data-parallel (``--batch-size`` is the global batch; each
process reads its share of it; only rank 0 writes): on a CPU the command starts one process per core by itself
(``--processes``, ``mlx_style.launch``), since MLX's CPU ops run on one core each; over several machines with
``mlx.launch --hostfile hosts.json --backend ring --python PYTHON -- -m mlx_style.train --style wave.jpg --data DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_style import checkpoint as ckpt
from mlx_style.memory import keep_freed_memory, resident_bytes
from mlx_style.data import (BatchIterator, DatasetError, ImageSource, check_dataset, file_list_digest, find_images,
                            prepare, steps_per_epoch)
from mlx_style.device import backend_name
from mlx_style.image import ImageError, list_images, load_image, resize_max_side, to_batch
from mlx_style.launch import auto_processes, launched, launcher_bytes, local_processes, run_local, usable_cores
from mlx_style.losses import STYLE_LAYERS, LossConfig, style_targets
from mlx_style.model_io import save_transformer
from mlx_style.progress import JsonlLog, ProgressLine, format_progress, save_loss_curve, save_sample_grid
from mlx_style.train_step import CLIP_MODES, all_finite, make_train_step, tune_step_convs
from mlx_style.transformer import NORMS, UPSAMPLES, TransformerConfig, TransformerNet
from mlx_style.vgg import CONVERT_HINT, DEFAULT_VGG_PATH, load_vgg
from mlx_style.weights import WeightFileError, file_sha256, read_metadata

LATEST = "latest"  # --resume without a path


# When training recomputes the residual blocks by default (``--low-memory``): per backend, the pixels of the batch held
# on one machine (images × pixels per image, over its processes) above which it does; None: never
# (docs/benchmarks.md). On a 2-core CPU recomputing costs one more forward pass of the blocks, 10-15% of a step, and
# saves 0.08 GB at 4 × 128² (where MLX stays below PyTorch's memory without it) and 0.26 GB at 4 × 256². With the
# CPU's default of two processes, whose second interpreter and loss network cost about 0.3 GB, 4 × 256² held 2.60 GB
# resident without it and 2.20 GB with it, against PyTorch's 2.53 GB, at 0.65× PyTorch's step time: hence 2 × 256².
# On CUDA (an H200) it cost 8-19% for 4.9-5.1 instead of 6.8 GB, within the 8 GB goal, so speed wins there. Metal is
# unmeasured: always, since a Mac's GPU shares the machine's memory.
RECOMPUTE_ABOVE_PIXELS = {"cpu": 2 * 256 * 256, "metal": 0, "cuda": None}


@dataclass
class TrainConfig:
    """Every setting of a training run; the CLI's defaults come from here."""

    style: str = ""  # the style image
    data: str | None = None  # folder of content photos (COCO); required
    vgg: str = str(DEFAULT_VGG_PATH)  # converted loss network (scripts/convert_vgg.py)
    image_size: int = 256  # content crops are image_size² (the report's 256)
    batch_size: int = 8  # the report's; the global batch over all processes, so results do not depend on them
    iters: int | None = None  # total steps; None: epochs × steps per epoch
    epochs: int = 1  # the report: one epoch of COCO train2017 (118k images, ~14.8k steps at batch 8)
    lr: float = 1e-3  # Adam, as Johnson
    clip: str = "tensor"  # per-tensor norm-1 clipping (the report); "global" or "none"
    content_weight: float | None = None  # None: from the VGG file's recommended_loss_weights
    style_weight: float | None = None
    tv_weight: float | None = None
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights (losses.LossConfig)
    style_layers: tuple[str, ...] = STYLE_LAYERS  # relu1_2, relu2_2, relu3_3, relu4_3
    content_layer: str = "relu3_3"
    style_size: int | None = None  # longer side of the style image; None: image_size (Johnson's choice)
    norm: str = "instance"
    upsample: str = "nearest"
    width: int = 32  # 16 gives the light network
    residual_blocks: int = 5
    subset: int | None = None  # train on N images only (chosen by the seed)
    seed: int = 0  # network initialisation and data order
    output: str | None = None  # None: weights/<style stem>.safetensors
    run_dir: str | None = None  # None: runs/<output stem>
    checkpoint_every: int = 1000  # steps; 0: only at the end and on Ctrl-C
    keep_checkpoints: int = 3
    resume: str | None = None  # a checkpoint path, or LATEST
    overwrite: bool = False  # start afresh even if --output or the run folder's checkpoints exist
    sample_every: int = 500  # steps; 0: none
    sample_images: str | None = None  # folder of sample content; None: hold out sample_count images of --data
    sample_count: int = 4
    log: str | None = None  # None: <run dir>/log.jsonl
    log_every: int = 10  # steps between progress lines (the only host reads of the losses)
    dtype: str = "float32"  # the loss network's dtype: float32 or bfloat16
    low_memory: bool | None = None  # recompute the residual blocks in the backward pass; None: see recomputes()
    min_side: int | None = None  # skip content images with a shorter side below this; None: image_size // 2
    prefetch: int = 2  # batches decoded ahead
    tune: bool = True  # autotune the convolution strategies for this batch shape first (cached on disk)
    compile: bool = True  # mx.compile the step (False: no start-up kernel compilation, for tiny CPU runs)
    processes: int | None = None  # processes on this machine (the CLI starts them); None: launch.auto_processes

    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path("weights") / f"{Path(self.style).stem}.safetensors"

    def recomputes(self, backend: str | None = None, processes: int = 1, local: int = 1) -> bool:
        """Whether the step recomputes the residual blocks (``--low-memory``).

        By default: with instance norm (batch norm's running statistics would be updated twice), when the pixels
        this machine holds, one process's share of the batch (``batch_size // processes``) times the ``local``
        processes on this machine, exceed the backend's ``RECOMPUTE_ABOVE_PIXELS`` (``backend``:
        ``mlx_style.device.backend_name()`` when None; an unknown backend always recomputes).
        """
        if self.low_memory is not None:
            return self.low_memory
        above = RECOMPUTE_ABOVE_PIXELS.get(backend or backend_name(), 0)
        pixels = self.batch_size // processes * local * self.image_size ** 2
        return self.norm == "instance" and above is not None and pixels > above

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.output_path().stem

    def log_path(self) -> Path:
        return Path(self.log) if self.log else self.run_path() / "log.jsonl"

    def network_config(self) -> TransformerConfig:
        return TransformerConfig(norm=self.norm, upsample=self.upsample, width=self.width,
                                 num_residual=self.residual_blocks)


@dataclass
class TrainResult:
    """What a run did: ``status`` is ``done``, ``interrupted`` or ``diverged``."""

    status: str
    step: int
    output: Path | None = None
    checkpoint: Path | None = None
    records: list[dict] = field(default_factory=list)
    skipped: int = 0
    peak_memory_gb: float = 0.0  # MLX's memory in use at its peak
    resident_gb: float = 0.0  # the process's resident size at the end (MLX, Python, the data loader)


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says what to do."""


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop can finish its step and write a checkpoint; a second Ctrl-C aborts."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def loss_config(config: TrainConfig, vgg_meta: dict[str, str]) -> LossConfig:
    """Loss weights: the flags where given, else the VGG file's recommendation (right for its input scale)."""
    recommended = json.loads(vgg_meta.get("recommended_loss_weights", "{}"))
    weights = {}
    for key in ("content", "style", "tv"):
        value = getattr(config, f"{key}_weight")
        if value is None:
            if key not in recommended:
                raise TrainingError(f"{config.vgg} carries no recommended loss weights: pass --{key}-weight "
                                    "(or re-convert it with scripts/convert_vgg.py)")
            value = recommended[key]
        weights[f"{key}_weight"] = float(value)
    layer_weights = config.style_layer_weights or (1.0,) * len(config.style_layers)
    return LossConfig(content_layer=config.content_layer, style_layers=tuple(config.style_layers),
                      style_layer_weights=tuple(layer_weights), **weights)


def split_files(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """(training files, sample files): samples come from --sample-images, else the last few files of --data.

    Holding out the last ``sample_count`` files (sorted order) keeps the samples unseen by the network; folders
    of fewer than ``10·sample_count`` images are too small to spare them and share them with training.
    """
    if not config.data:
        raise DatasetError("no --data folder given: get COCO with `python scripts/download_coco.py` "
                           "and pass `--data data/coco/val2017`")
    files = find_images(config.data)
    if config.sample_images:
        samples = list_images(config.sample_images)[: config.sample_count]
    elif len(files) >= 10 * config.sample_count:
        files, samples = files[: -config.sample_count], files[-config.sample_count:]
    else:
        samples = files[: config.sample_count]
    if config.subset:
        chosen = np.random.Generator(np.random.PCG64(config.seed)).permutation(len(files))[: config.subset]
        files = [files[i] for i in sorted(chosen)]
    return files, samples


def load_sample_batch(paths: list[Path], size: int) -> np.ndarray | None:
    """The usable sample images as ``(N, size, size, 3)`` uint8 (unreadable ones left out), or None."""
    crops = []
    for path in paths:
        try:
            crops.append(prepare(load_image(path), size))
        except ImageError:
            continue
    return np.stack(crops) if crops else None


def stylize_samples(net: TransformerNet, samples: np.ndarray) -> list[list[np.ndarray]]:
    """Rows for a sample grid: the contents, then the network's outputs (eval mode, uncompiled)."""
    net.eval()
    out = net(mx.array(samples).astype(mx.float32))
    outputs = np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)
    net.train()
    return [list(samples), list(outputs)]


def resolve_resume(config: TrainConfig, folder: Path) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to silently mix two runs."""
    if config.resume is None:
        existing = ckpt.list_checkpoints(folder)
        if existing and not config.overwrite:
            raise TrainingError(f"{folder} already holds checkpoints of an earlier run (latest "
                                f"{existing[-1].name}): pass --resume to continue it, or --overwrite to start "
                                "again (its checkpoints will be deleted)")
        for path in existing:
            path.unlink()
        return None
    if config.resume == LATEST:
        path = ckpt.latest_checkpoint(folder)
        if path is None:
            raise TrainingError(f"nothing to resume: no checkpoint in {folder}; run without --resume to start")
        return path
    return Path(config.resume)


def check_resumable(found: ckpt.Checkpoint, net_config: TransformerConfig, data: dict) -> None:
    """Refuse a resume whose network or data order would differ from the checkpoint's (it would not be exact)."""
    if found.metadata.get("config") != net_config.to_json():
        raise TrainingError(f"{found.path} is of another network ({found.metadata.get('config')}); resume with "
                            "the same --norm/--upsample/--width/--residual-blocks")
    saved = found.json("data")
    for key in ("seed", "files", "files_digest", "global_batch", "image_size"):
        if saved.get(key) != data[key]:
            raise TrainingError(f"cannot resume {found.path} exactly: {key} was {saved.get(key)!r}, now "
                                f"{data[key]!r}; use the same --data/--subset/--seed/--batch-size/--image-size")


def broadcast_from_rank0(net: TransformerNet, optimizer: optim.Optimizer, step: int, group) -> int:
    """Give every rank rank 0's network, optimizer state and step (only rank 0 reads checkpoints).

    An ``all_sum`` to which the other ranks contribute zeros; exact, since x + 0 = x.
    """
    if group.size() == 1:
        return step
    keep = group.rank() == 0

    def share(x):
        return mx.distributed.all_sum(x if keep else mx.zeros_like(x), group=group)

    def share_tree(tree):
        # In key order: every rank must issue the same collectives in the same order, and a restored optimizer
        # state lists its entries in the checkpoint file's order, not in the order a fresh one has them.
        return tree_unflatten([(k, share(v)) for k, v in sorted(tree_flatten(tree), key=lambda item: item[0])])

    net.update(share_tree(net.parameters()))
    optimizer.state = share_tree(optimizer.state)
    optimizer.init(net.trainable_parameters())
    step = int(share(mx.array(step)).item())
    mx.eval(net.parameters(), optimizer.state)
    return step


def agree(flag: bool, group) -> bool:
    """True on every rank if it is true on any, so all ranks stop after the same step."""
    if group.size() == 1:
        return flag
    return bool(mx.distributed.all_sum(mx.array(int(flag)), group=group).item())


def losses_finite(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "content", "style", "tv"))


@dataclass
class DataPlan:
    """The content images of a run and how they are read."""

    source: ImageSource
    sample_paths: list[Path]
    steps_per_epoch: int
    total_steps: int
    info: dict  # what a resume must find unchanged (stored in each checkpoint)
    skipped: list[str]


def plan_data(config: TrainConfig, say) -> DataPlan:
    """Find the images and prove one is usable, cheaply, before any heavy work (see ``mlx_style.data``)."""
    files, sample_paths = split_files(config)
    skipped: list[str] = []

    def on_skip(path, reason):
        skipped.append(reason)
        say(f"skipping {reason}")

    min_side = config.min_side if config.min_side is not None else config.image_size // 2
    source = ImageSource(files, config.image_size, min_side, on_skip)
    check_dataset(source)
    per_epoch = steps_per_epoch(len(files), config.batch_size)
    if per_epoch == 0:
        raise DatasetError(f"{len(files)} content images is fewer than one batch of {config.batch_size}: lower "
                           "--batch-size or add images")
    total = config.iters if config.iters is not None else config.epochs * per_epoch
    info = {"seed": config.seed, "files": len(files),
            "files_digest": file_list_digest([p.relative_to(config.data) for p in files]),
            "global_batch": config.batch_size, "image_size": config.image_size}
    return DataPlan(source, sample_paths, per_epoch, total, info, skipped)


class RunWriter:
    """Everything a run leaves on disk: checkpoints, the JSON-lines log and loss curve, sample grids, the weights.

    Only rank 0 writes; on the other ranks every method does nothing (returns None).
    """

    def __init__(self, config: TrainConfig, plan: DataPlan, meta: dict[str, str], main_rank: bool,
                 resumed_step: int | None, line: ProgressLine):
        self.config, self.plan, self.meta, self.main_rank, self.line = config, plan, meta, main_rank, line
        self.run_dir = config.run_path()
        self.folder = self.run_dir / "checkpoints"
        self.log = JsonlLog(config.log_path(), keep_through_step=resumed_step) if main_rank else None
        self.samples = (load_sample_batch(plan.sample_paths, config.image_size)
                        if main_rank and config.sample_every else None)

    def checkpoint(self, step: int, net: TransformerNet, optimizer: optim.Optimizer) -> Path | None:
        if not self.main_rank:
            return None
        per_epoch, batch = self.plan.steps_per_epoch, self.config.batch_size
        data = {**self.plan.info, "next_step": step, "epoch": step // per_epoch,
                "offset": (step % per_epoch) * batch}
        path = ckpt.save_checkpoint(self.folder, step, net, optimizer, {**self.meta, "data": json.dumps(data)})
        ckpt.prune_checkpoints(self.folder, self.config.keep_checkpoints)
        save_loss_curve(self.log.records, self.log.path.with_name("loss.png"))
        return path

    def record(self, record: dict) -> None:
        if not self.main_rank:
            return
        self.log.write(record)
        remaining = (self.plan.total_steps - record["step"]) * self.config.batch_size / record["images_per_s"]
        self.line.update(format_progress(record, self.plan.total_steps, remaining))

    def sample_grid(self, name: str, net: TransformerNet) -> None:
        if self.samples is not None:
            save_sample_grid(stylize_samples(net, self.samples), self.run_dir / "samples" / f"{name}.png")

    def weights(self, net: TransformerNet, step: int) -> Path | None:
        if not self.main_rank:
            return None
        save_loss_curve(self.log.records, self.log.path.with_name("loss.png"))
        return save_transformer(self.config.output_path(), net, {**self.meta, "steps": str(step)})


@dataclass
class Inputs:
    """What ``check_inputs`` read and checked: the style image, the data plan, the VGG file's metadata, the losses."""

    style_image: np.ndarray
    plan: DataPlan
    vgg_meta: dict[str, str]
    losses: LossConfig


def build_networks(config: TrainConfig, inputs: Inputs):
    """The frozen VGG, the style Grams (computed once), a fresh network and its optimizer:
    ``(vgg, grams, net, optimizer)``."""
    vgg, _ = load_vgg(config.vgg, {"float32": mx.float32, "bfloat16": mx.bfloat16}[config.dtype])
    style_batch = to_batch(resize_max_side(inputs.style_image, config.style_size or config.image_size))
    grams = style_targets(vgg, style_batch, inputs.losses.style_layers)
    mx.eval(grams)
    mx.random.seed(config.seed)
    net = TransformerNet(config.network_config())
    net.train()
    # Bias-corrected Adam, as torch.optim.Adam and Lua's optim.adam that Johnson trained with.
    optimizer = optim.Adam(learning_rate=config.lr, bias_correction=True)
    optimizer.init(net.trainable_parameters())
    return vgg, grams, net, optimizer


# MLX's CUDA backend builds each fused kernel of the compiled step with NVRTC on first use and caches it on disk:
# on a fresh H100 the batch 8 × 256² step's first run was still building after 170 s (docs/benchmarks.md).
KERNEL_BUILD_NOTE = ("the first step builds MLX's CUDA kernels: it can take minutes on a machine that has not run "
                     "this step before (they are cached on disk for later runs)")


def check_inputs(config: TrainConfig, processes: int, say, main_rank: bool = True) -> Inputs:
    """Read and check every input before any heavy work, so that a bad one fails in seconds with one line.

    The CLI runs it once before starting several processes, so that an error is reported once; it reads only the
    VGG file's header (the launcher stays small while the ranks train), and ``load_vgg`` checks the tensors.
    """
    if config.batch_size % processes:
        raise TrainingError(f"--batch-size {config.batch_size} must be a multiple of the {processes} processes "
                            "(--processes)")
    if config.low_memory and config.norm == "batch":
        raise TrainingError("--low-memory needs --norm instance: recomputing a batch-norm network's forward "
                            "would update its running statistics twice per step")
    style_image = load_image(Path(config.style))
    if not Path(config.vgg).exists():
        raise WeightFileError(f"no VGG weights at {config.vgg}: {CONVERT_HINT}, or pass --vgg PATH")
    plan = plan_data(config, say)
    if main_rank and config.resume is None and config.output_path().exists() and not config.overwrite:
        raise TrainingError(f"{config.output_path()} already exists: pass --resume to continue its run, choose "
                            "another --output, or pass --overwrite to replace it")
    try:
        vgg_meta = read_metadata(config.vgg)
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"{config.vgg} is not a readable safetensors file ({exc}): {CONVERT_HINT}")
    return Inputs(style_image, plan, vgg_meta, loss_config(config, vgg_meta))


def machine_memory_gb(group, local: int) -> tuple[float, float]:
    """This process's peak MLX memory and resident size in GB; when all ranks share this machine, summed over them,
    the resident size with the launcher's (``launch.run_local``) too."""
    peak, resident = mx.get_peak_memory() / 1e9, resident_bytes() / 1e9
    if group.size() > 1 and local == group.size():
        if group.rank() == 0:
            resident += launcher_bytes() / 1e9
        total = mx.distributed.all_sum(mx.array([peak, resident], mx.float32), group=group).tolist()
        peak, resident = total
    return peak, resident


def train(config: TrainConfig, stream=None) -> TrainResult:
    """Run (or continue) training as configured; returns what happened.

    Raises ``TrainingError``, ``DatasetError``, ``ImageError`` or ``WeightFileError`` (each with a message saying
    what to do) before any heavy work when an input is missing or unusable.
    """
    group = mx.distributed.init()
    main_rank, world = group.rank() == 0, group.size()
    line = ProgressLine(stream)
    say = line.message if main_rank else (lambda text: None)

    local = local_processes()
    style_path = Path(config.style)
    inputs = check_inputs(config, world, say, main_rank)
    plan, vgg_meta, losses = inputs.plan, inputs.vgg_meta, inputs.losses
    found = None
    if main_rank:  # only rank 0 reads checkpoints; the others receive its state below
        resume_path = resolve_resume(config, config.run_path() / "checkpoints")
        found = ckpt.load_checkpoint(resume_path) if resume_path else None
        if found:
            check_resumable(found, config.network_config(), plan.info)

    vgg, grams, net, optimizer = build_networks(config, inputs)
    start = 0
    if found:
        ckpt.restore(found, net, optimizer)
        optimizer.learning_rate = config.lr  # a new --lr on resume is a deliberate change
        start = found.step
    start = broadcast_from_rank0(net, optimizer, start, group)
    if config.tune:
        began = time.perf_counter()
        if not main_rank:
            agree(False, group)  # a barrier: rank 0 tunes alone (undisturbed timings); the others read its cache
        tune_step_convs(net, vgg, grams, losses, (config.batch_size // world, config.image_size, config.image_size, 3))
        if main_rank:
            agree(False, group)
        say(f"convolution strategies tuned for batch {config.batch_size // world} × {config.image_size}² in "
            f"{time.perf_counter() - began:.1f} s (cached for later runs)")
    recompute = config.recomputes(processes=world, local=local)  # what this machine holds of the batch
    step_fn = make_train_step(net, vgg, optimizer, grams, losses, config.clip, group, config.compile,
                              recompute=recompute)
    meta = {"config": config.network_config().to_json(), "train_config": json.dumps(asdict(config)),
            "loss_config": json.dumps(asdict(losses)), "style": style_path.name,
            "style_sha256": file_sha256(style_path), "vgg": vgg_meta.get("source", config.vgg),
            "vgg_preprocess": vgg_meta.get("preprocess", "")}
    out = RunWriter(config, plan, meta, main_rank, start if found else None, line)
    total = plan.total_steps
    say(f"training {config.output_path()} on {len(plan.source.files)} images ({plan.steps_per_epoch} steps/epoch), "
        f"steps {start}→{total}, batch {config.batch_size} × {config.image_size}², {world} process(es); loss "
        f"weights content {losses.content_weight:g}, style {losses.style_weight:g}, tv {losses.tv_weight:g}; "
        + ("residual blocks recomputed (--low-memory); " if recompute else "")
        + f"run folder {out.run_dir}" + (f"; resumed from {found.path}" if found else ""))
    if config.compile and backend_name() == "cuda":
        say(KERNEL_BUILD_NOTE)

    result = TrainResult("done", start, checkpoint=found.path if found else None)
    saved_step = start
    if found is None:
        result.checkpoint = out.checkpoint(0, net, optimizer)  # a good state to fall back on from the start
    window_start, window_steps = time.perf_counter(), 0
    with StopFlag() as stop, BatchIterator(plan.source, config.seed, start, total, config.batch_size,
                                           group.rank(), world, config.prefetch) as batches:
        for step_index, batch in batches:
            step = step_index + 1
            total_loss, terms = step_fn(mx.array(batch))  # the step's one host→MLX transfer
            mx.eval(total_loss, terms, net.parameters(), optimizer.state)
            window_steps += 1
            # Ranks agree on stopping through a collective: every step when all share this machine (a loopback
            # collective costs ~1 ms), else only at log steps (no per-step sync between machines).
            stopping = ((world == local or step % config.log_every == 0)
                        and agree(stop.signum is not None, group))
            due_checkpoint = bool(config.checkpoint_every) and step % config.checkpoint_every == 0
            if step % config.log_every == 0 or step == total or due_checkpoint or stopping:
                now = time.perf_counter()
                peak_gb, resident_gb = machine_memory_gb(group, local)
                record = {"step": step, "loss": total_loss.item(), **{k: v.item() for k, v in terms.items()},
                          "images_per_s": window_steps * config.batch_size / (now - window_start),
                          "peak_memory_gb": peak_gb, "resident_gb": resident_gb}
                window_start, window_steps = now, 0
                if not losses_finite(record) or not all_finite(net.parameters()):
                    line.close()
                    say(f"error: the loss became {record['loss']} by step {step}: training stopped and nothing "
                        f"more was written; the last good checkpoint is {result.checkpoint}. Lower --lr or "
                        "--style-weight and continue from it with --resume")
                    result.status, result.records = "diverged", out.log.records if out.log else []
                    return result
                out.record(record)
            if config.sample_every and step % config.sample_every == 0:
                out.sample_grid(f"step_{step:08d}", net)
            if due_checkpoint or stopping:
                result.checkpoint, saved_step = out.checkpoint(step, net, optimizer), step
            result.step = step
            if stopping:
                line.close()
                say(f"interrupted after step {step}: wrote {result.checkpoint}; continue with the same command "
                    "plus --resume")
                result.status = "interrupted"
                break
    line.close()
    result.skipped = len(plan.skipped)
    result.peak_memory_gb, result.resident_gb = machine_memory_gb(group, local)
    result.records = out.log.records if out.log else []
    if result.status == "done":
        if saved_step != result.step:
            result.checkpoint = out.checkpoint(result.step, net, optimizer)  # a larger --iters can continue
        out.sample_grid("final", net)
        result.output = out.weights(net, result.step)
        if plan.skipped:
            say(f"{len(plan.skipped)} unusable content images were skipped (listed above)")
    return result


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.7,0.3,0.03,0.03, got {text!r}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _processes(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more) or auto, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    summary = __doc__.splitlines()[0].replace("``", "`")
    p = argparse.ArgumentParser(prog="python -m mlx_style.train", description=summary)
    g = p.add_argument_group("data")
    g.add_argument("--style", required=True, help="the style image")
    g.add_argument("--data", default=d.data, help="folder of content photos, searched recursively (COCO: "
                   "`python scripts/download_coco.py`)")
    g.add_argument("--image-size", type=int, default=d.image_size, help="side of the square content crops")
    g.add_argument("--style-size", type=int, default=d.style_size,
                   help="longer side of the style image (default: --image-size, as Johnson)")
    g.add_argument("--subset", type=int, default=d.subset, metavar="N", help="train on N images only")
    g.add_argument("--min-side", type=int, default=d.min_side, metavar="PX",
                   help="skip content images whose shorter side is below PX (default: half of --image-size)")
    g.add_argument("--sample-images", default=d.sample_images, metavar="DIR",
                   help="content images for the sample grids (default: the last few of --data, held out)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    g.add_argument("--iters", type=int, default=d.iters, help="total steps (default: --epochs epochs)")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    g.add_argument("--clip", choices=CLIP_MODES, default=d.clip,
                   help="gradient clipping: per tensor to norm 1 (the report's), global norm 1, or none")
    g.add_argument("--seed", type=int, default=d.seed, help="network initialisation and data order")
    g = p.add_argument_group("loss (weights default to the VGG file's recommended_loss_weights)")
    g.add_argument("--vgg", default=d.vgg, help="converted VGG weights (scripts/convert_vgg.py)")
    g.add_argument("--content-weight", type=float, default=d.content_weight)
    g.add_argument("--style-weight", type=float, default=d.style_weight)
    g.add_argument("--tv-weight", type=float, default=d.tv_weight)
    g.add_argument("--style-layers", type=_names, default=d.style_layers, help="e.g. relu1_2,relu2_2,relu3_3,relu4_3")
    g.add_argument("--style-layer-weights", type=_floats, default=d.style_layer_weights,
                   help="one per style layer, e.g. 0.7,0.3,0.03,0.03 (default: equal)")
    g.add_argument("--content-layer", default=d.content_layer)
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default=d.dtype, help="the loss network's dtype")
    g.add_argument("--low-memory", action="store_const", const=True, default=d.low_memory,
                   help="recompute the style network's residual blocks in the backward pass: the same result with "
                        "less memory and 10-15%% more time on a CPU (batch 8 × 256²: 3.4 instead of 3.9 GB in use; "
                        "5 instead of 6.8 GB on CUDA, 8-19%% slower). The default with --norm instance on a Mac's "
                        "GPU, and on a CPU above 2 × 256² pixels a batch on this machine; never by default on CUDA")
    g.add_argument("--no-low-memory", dest="low_memory", action="store_const", const=False,
                   help="keep the residual blocks' activations instead")
    g.add_argument("--no-tune", dest="tune", action="store_false",
                   help="skip timing the convolution strategies for this batch shape (first run of a size: ~1 min)")
    g.add_argument("--no-compile", dest="compile", action="store_false",
                   help="run the step uncompiled (skips the one-off kernel compilation; slower steps)")
    g.add_argument("--processes", type=_processes, default=d.processes, metavar="N|auto",
                   help="train as N processes on this machine, each with its share of the batch and of the cores "
                        "(MLX's CPU ops run on one core each: on a 2-core CPU two processes took 0.7× the time). "
                        "auto (default): on the CPU backend the largest divisor of --batch-size up to the cores "
                        "(at most 8); 1 on a GPU")
    g = p.add_argument_group("network")
    g.add_argument("--norm", choices=NORMS, default=d.norm)
    g.add_argument("--upsample", choices=UPSAMPLES, default=d.upsample)
    g.add_argument("--width", type=int, default=d.width, help="channels of the first layer (16: light network)")
    g.add_argument("--residual-blocks", type=int, default=d.residual_blocks)
    g = p.add_argument_group("output and resuming")
    g.add_argument("--output", default=d.output, help="default: weights/<style stem>.safetensors")
    g.add_argument("--run-dir", default=d.run_dir, help="log, samples, checkpoints (default: runs/<output stem>)")
    g.add_argument("--log", default=d.log, help="JSON-lines log (default: <run dir>/log.jsonl)")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between progress lines")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (0: end and Ctrl-C only)")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K")
    g.add_argument("--resume", nargs="?", const=LATEST, default=d.resume, metavar="PATH",
                   help="continue a run: from PATH, or without one from the latest checkpoint of --output")
    g.add_argument("--overwrite", action="store_true",
                   help="start again even if --output exists or the run folder has checkpoints (they are replaced)")
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids (0: none)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    config = config_from_args(args)
    for name in ("image_size", "batch_size", "log_every"):
        if getattr(config, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        processes = config.processes or auto_processes(backend_name(), config.batch_size, usable_cores())
        if processes > 1 and not launched():
            check_inputs(config, processes, lambda text: None)  # report a bad input once, not once per process
            return run_local(processes, ["-m", "mlx_style.train", *(sys.argv[1:] if argv is None else argv)])
        result = train(config)
    except (DatasetError, ImageError, WeightFileError, TrainingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aborted by a second Ctrl-C: no checkpoint written for the current step", file=sys.stderr)
        return 130
    if result.status == "diverged":
        return 1
    if result.status == "interrupted":
        return 130
    if result.output is not None:
        last = result.records[-1] if result.records else {}
        print(f"wrote {result.output} after {result.step} steps (last loss {last.get('loss', float('nan')):.4g}, "
              f"{last.get('images_per_s', 0):.2f} img/s, peak memory {result.peak_memory_gb:.2f} GB in use, "
              f"{result.resident_gb:.2f} GB resident, "
              f"{result.skipped} unusable images skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
