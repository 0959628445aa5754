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

import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from mlx_style.backend import backend_name
from mlx_style.io.image import ImageError, load_image
from mlx_style.io.models import load_transformer, save_transformer
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.registry import resolve_model
from mlx_style.io.weights import WeightFileError, WeightWriteError, read_metadata, remove_partial_writes
from mlx_style.nn.losses import LossConfig
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.nn.vgg import CONVERT_HINT, load_vgg
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import LATEST, TrainConfig, TrainingError, TrainResult, loss_config
from mlx_style.training.data import (BatchIterator, DataPlan, plan_data, prepare)
from mlx_style.training.distributed import agree, broadcast_from_rank0, machine_memory_gb
from mlx_style.training.launch import local_processes
from mlx_style.training.motion import StableConfig, random_motion
from mlx_style.training.progress import JsonlLog, ProgressLine, format_progress, save_loss_curve, save_sample_grid
from mlx_style.training.step import all_finite, make_train_step, tune_step_convs
from mlx_style.training.styles import StylePlan, freeze_shared, plan_styles, start_from, style_grams


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


def load_sample_batch(paths: list[Path], size: int) -> np.ndarray | None:
    """The usable sample images as ``(N, size, size, 3)`` uint8 (unreadable ones left out), or None."""
    crops = []
    for path in paths:
        try:
            crops.append(prepare(load_image(path), size))
        except ImageError:
            continue
    return np.stack(crops) if crops else None


def stylize_samples(net: TransformerNet, samples: np.ndarray, blends=(None,)) -> list[list[np.ndarray]]:
    """Rows for a sample grid: the contents, then the network's outputs for each style blend (``None``: a
    single-style network), in eval mode, uncompiled."""
    net.eval()
    rows = [list(samples)]
    for blend in blends:
        out = net(mx.array(samples).astype(mx.float32), *(() if blend is None else (blend,)))
        rows.append(list(np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)))
    net.train()
    return rows


def find_resume(config, folder: Path, say=lambda text: None) -> ckpt.Checkpoint | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to silently mix two runs. With
    ``--resume`` alone: the newest readable checkpoint (a damaged newer one is skipped with a warning)."""
    if config.resume is None:
        existing = ckpt.list_checkpoints(folder)
        if existing and not config.overwrite:
            raise TrainingError(f"{folder} already holds checkpoints of an earlier run (latest "
                                f"{existing[-1].name}): pass --resume to continue it, or --overwrite to start "
                                "again (its checkpoints will be deleted)")
        return None
    if config.resume == LATEST:
        found = ckpt.load_newest_readable(folder, say)
        if found is None:
            raise TrainingError(f"nothing to resume: no checkpoint in {folder}; run without --resume to start")
        return found
    return ckpt.load_checkpoint(config.resume)


def check_resumable(found: ckpt.Checkpoint, net_config: TransformerConfig, data: dict, style_sha256: str = "",
                    losses: LossConfig | None = None, allow_change: bool = False,
                    stable: StableConfig | None = None) -> None:
    """Refuse a resume whose network or data order would differ from the checkpoint's (it would not be exact), or
    whose style image, loss settings or temporal term (``stable``; a checkpoint that records none had it off)
    differ, unless ``allow_change`` (a deliberate change of recipe)."""
    if not allow_change:
        saved_style = found.metadata.get("style_sha256")
        if style_sha256 and saved_style and saved_style != style_sha256:
            raise TrainingError(f"{found.path.name} was trained on another style image "
                                f"({found.metadata.get('style', '?')}, sha256 {saved_style[:12]}…): resume with the "
                                "same --style, or pass --allow-change to continue on the new one")
        saved_losses = found.json("loss_config")
        if losses is not None and saved_losses:
            now = json.loads(json.dumps(asdict(losses)))
            changed = sorted(k for k in set(now) | set(saved_losses) if now.get(k) != saved_losses.get(k))
            if changed:
                what = ", ".join(f"{k} {saved_losses.get(k)!r} → {now.get(k)!r}" for k in changed[:3])
                raise TrainingError(f"{found.path.name} was trained with other loss settings ({what}): resume "
                                    "with the same loss flags, or pass --allow-change to continue with the new ones")
        saved_stable = found.json("stable") or StableConfig().record()
        if stable is not None and stable.record() != saved_stable:
            raise TrainingError(f"{found.path.name} was trained with another temporal term (--stable "
                                f"{describe_stable(saved_stable)}, now {describe_stable(stable.record())}): resume "
                                "with the same --stable flags, or pass --allow-change to continue with the new ones")
    if found.metadata.get("config") != net_config.to_json():
        raise TrainingError(f"{found.path} is of another network ({found.metadata.get('config')}); resume with "
                            "the same --norm/--upsample/--width/--residual-blocks")
    saved = found.json("data")
    for key in ("seed", "files", "files_digest", "global_batch", "image_size"):
        if saved.get(key) != data[key]:
            raise TrainingError(f"cannot resume {found.path} exactly: {key} was {saved.get(key)!r}, now "
                                f"{data[key]!r}; use the same --data/--subset/--seed/--batch-size/--image-size")


def describe_stable(record: dict) -> str:
    """``off``, or ``weight 100, shift 3, rotate 2, zoom 0.03, noise 3`` (a ``StableConfig.record()``)."""
    if not record.get("weight"):
        return "off"
    return ", ".join(k.replace("_", " ") if v is True else f"{k} {v:g}" if isinstance(v, (int, float))
                     else f"{k} {v!r}" for k, v in record.items())


def losses_finite(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "content", "style", "tv", "temporal") if k in record)


@dataclass
class RunWriter:
    """Everything a run leaves on disk: checkpoints, the JSON-lines log and loss curve, sample grids, the weights.

    Only rank 0 writes; on the other ranks every method does nothing (returns None).
    """

    def __init__(self, config: TrainConfig, plan: DataPlan, meta: dict[str, str], main_rank: bool,
                 resumed_step: int | None, line: ProgressLine, blends=(None,)):
        self.config, self.plan, self.meta, self.main_rank, self.line = config, plan, meta, main_rank, line
        self.blends = blends  # one sample row per trained style
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
            save_sample_grid(stylize_samples(net, self.samples, self.blends),
                             self.run_dir / "samples" / f"{name}.png")

    def weights(self, net: TransformerNet, step: int) -> Path | None:
        if not self.main_rank:
            return None
        save_loss_curve(self.log.records, self.log.path.with_name("loss.png"))
        return save_transformer(self.config.output_path(), net, {**self.meta, "steps": str(step)})


@dataclass
class Inputs:
    """What ``check_inputs`` read and checked: the styles, the data plan, the VGG file's metadata, the losses."""

    styles: StylePlan  # the pictures --style named (paths, or built-in pictures) and their network rows
    plan: DataPlan
    vgg_meta: dict[str, str]
    losses: LossConfig
    resume_from: ckpt.Checkpoint | None  # rank 0's checkpoint to continue from (None: a fresh run)
    init_from: TransformerNet | None = None  # --from: the network a fresh run starts from
    net_config: TransformerConfig | None = None  # the network trained (its style rows from the plan)


def build_networks(config: TrainConfig, inputs: Inputs):
    """The frozen VGG, the style Grams (computed once), a fresh network and its optimizer:
    ``(vgg, grams, net, optimizer)``. Adding styles to a trained network leaves only its norms trainable."""
    vgg, _ = load_vgg(config.vgg, {"float32": mx.float32, "bfloat16": mx.bfloat16}[config.dtype])
    grams = style_grams(vgg, inputs.styles, config.style_size or config.image_size, inputs.losses.style_layers)
    mx.eval(grams)
    mx.random.seed(config.seed)
    net = TransformerNet(inputs.net_config or config.network_config())
    if inputs.init_from is not None:  # fine-tune: the trained network's weights, in float32, then a fresh Adam
        start_from(net, inputs.init_from)
    if inputs.styles.freeze_shared:
        freeze_shared(net)
    net.train()
    # Bias-corrected Adam, as torch.optim.Adam and Lua's optim.adam that Johnson trained with.
    optimizer = optim.Adam(learning_rate=config.lr, bias_correction=True)
    optimizer.init(net.trainable_parameters())
    return vgg, grams, net, optimizer


# MLX's CUDA backend builds each fused kernel of the compiled step with NVRTC on first use and caches it on disk:
# on a fresh machine the first step waits minutes for it (docs/benchmarks.md).
KERNEL_BUILD_NOTE = ("the first step builds MLX's CUDA kernels: it can take minutes on a machine that has not run "
                     "this step before (they are cached on disk for later runs)")


def load_init_network(config: TrainConfig) -> tuple[TransformerNet, dict[str, str]]:
    """The network ``--from`` names (a path, a name in weights/ or a built-in) and its metadata, checked to be of
    the architecture this run trains (its number of styles aside: ``training.styles``)."""
    try:
        net, meta = load_transformer(resolve_model(config.init_from))
    except WeightFileError as exc:
        raise TrainingError(f"--from: {exc}") from None
    theirs, ours = asdict(net.config), asdict(config.network_config(styles=net.config.styles))
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs[k]!r}" for k in theirs if theirs[k] != ours[k])
        raise TrainingError(f"--from {config.init_from} is another network ({diff}); pass the same --norm, "
                            "--upsample, --width and --residual-blocks, or start without --from")
    return net, meta


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
    output = config.output_path()
    check_suffix(output, (".safetensors",), "--output")
    check_not_an_input(output, [*config.style_list(), config.vgg, config.resume if config.resume != LATEST else None],
                       "--output")
    if len(config.style_list()) > 1 and config.norm != "instance":
        raise TrainingError("several styles in one network need --norm instance (a scale and shift per style)")
    try:  # read even on --resume: the rows of a multi-style network's styles come from it
        init, init_meta = load_init_network(config) if config.init_from else (None, {})
    except TrainingError as exc:
        if config.resume is None:
            raise
        raise TrainingError(f"{exc}; resuming a run started with --from needs that network (a fine-tune of a "
                            "single-style network also resumes without --from)") from None
    styles = plan_styles(config.style_list(), config.style_size or config.image_size, init, init_meta,
                         config.train_all)
    if not Path(config.vgg).exists():
        raise WeightFileError(f"no VGG weights at {config.vgg}: {CONVERT_HINT}, or pass --vgg PATH")
    plan = plan_data(config, say)
    if main_rank and config.resume is None and output.exists() and not config.overwrite:
        raise TrainingError(f"{output} already exists: pass --resume to continue its run, choose "
                            "another --output, or pass --overwrite to replace it")
    try:
        vgg_meta = read_metadata(config.vgg)
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"{config.vgg} is not a readable safetensors file ({exc}): {CONVERT_HINT}")
    if vgg_meta.get("kind") != "vgg":
        raise WeightFileError(f"{config.vgg} holds a {vgg_meta.get('kind', 'unknown')!r} network, not VGG weights: "
                              f"{CONVERT_HINT}, or pass --vgg PATH")
    losses = loss_config(config, vgg_meta)
    try:
        stable = config.stable()
    except ValueError as exc:
        raise TrainingError(f"--stable: {str(exc).removeprefix('[StableConfig] ')}") from None
    net_config = config.network_config(styles.network_styles)
    found = None
    if main_rank:  # only rank 0 (and the launcher's check) reads checkpoints; the others receive its state
        found = find_resume(config, config.run_path() / "checkpoints", say)
        if found:
            check_resumable(found, net_config, plan.info, styles.sha256(), losses, config.allow_change, stable)
    return Inputs(styles, plan, vgg_meta, losses, found, init if found is None else None, net_config)


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
    inputs = check_inputs(config, world, say, main_rank)
    plan, vgg_meta, losses = inputs.plan, inputs.vgg_meta, inputs.losses
    found = inputs.resume_from
    if main_rank:
        folder = config.run_path() / "checkpoints"
        for path in remove_partial_writes(folder) + remove_partial_writes(config.output_path().parent):
            say(f"removed {path}, left by a write that was cut short")
        if found is None and config.overwrite:
            for path in ckpt.list_checkpoints(folder):
                path.unlink()

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
        tune_step_convs(net, vgg, grams, losses, (config.batch_size // world, config.image_size, config.image_size, 3),
                        inputs.styles.style_rows())
        if main_rank:
            agree(False, group)
        say(f"convolution strategies tuned for batch {config.batch_size // world} × {config.image_size}² in "
            f"{time.perf_counter() - began:.1f} s (cached for later runs)")
    recompute = config.recomputes(processes=world, local=local)  # what this machine holds of the batch
    stable = config.stable()
    styles = inputs.styles
    step_fn = make_train_step(net, vgg, optimizer, grams, losses, config.clip, group, config.compile,
                              recompute=recompute, stable=stable, style_rows=styles.style_rows())
    meta = {"config": inputs.net_config.to_json(), "train_config": json.dumps(config.shareable()),
            "loss_config": json.dumps(asdict(losses)), "stable": json.dumps(stable.record()),
            "style": (f"{styles.network_styles} styles: " + ", ".join(r["name"] for r in styles.records)
                      if styles.multi else styles.paths[0].name),
            "style_sha256": styles.sha256(), "vgg": vgg_meta.get("source", Path(config.vgg).name),
            "vgg_preprocess": vgg_meta.get("preprocess", "")}
    if styles.multi:  # what stylize --style NAME and the cam's style keys read
        meta["styles"] = json.dumps(styles.records)
    if inputs.init_from is not None:
        meta["started_from"] = resolve_model(config.init_from).name
    out = RunWriter(config, plan, meta, main_rank, start if found else None, line, styles.sample_blends())
    total = plan.total_steps
    say(f"training {config.output_path()} on {len(plan.source.files)} images ({plan.steps_per_epoch} steps/epoch), "
        f"steps {start}→{total}, batch {config.batch_size} × {config.image_size}², {world} process(es); loss "
        f"weights content {losses.content_weight:g}, style {losses.style_weight:g}, tv {losses.tv_weight:g}"
        + (f", temporal {stable.weight:g} (--stable: shift ±{stable.shift:g} px, rotation ±{stable.rotate:g}°, "
           f"zoom ±{100 * stable.zoom:g}%, noise σ {stable.noise:g}"
           + (", fixed target" if stable.fixed_target else "") + ")" if stable.on else "") + "; "
        + ("residual blocks recomputed (--low-memory); " if recompute else "")
        + (f"{len(styles.rows)} of its {styles.network_styles} styles in turn ({', '.join(styles.names())})"
           + ("; only their norms train (--train-all: every weight)" if styles.freeze_shared else "") + "; "
           if styles.multi else "")
        + f"run folder {out.run_dir}" + (f"; resumed from {found.path}" if found else ""))
    if config.compile and backend_name() == "cuda":
        say(KERNEL_BUILD_NOTE)

    result = TrainResult("done", start, checkpoint=found.path if found else None)
    try:
        return _run_steps(config, result, found, out, step_fn, net, optimizer, plan, group, local, line, say,
                          stable, styles)
    except WeightWriteError as exc:  # a full disk or lost permissions: stop cleanly, say how to continue
        line.close()
        last = result.checkpoint or "none yet"
        say(f"error: {exc}; training stopped. The last good checkpoint is {last}: make room, then run the same "
            "command with --resume")
        result.status, result.records = "failed", out.log.records if out.log else []
        return result


def _run_steps(config, result, found, out, step_fn, net, optimizer, plan, group, local, line, say,
               stable: StableConfig, styles: StylePlan) -> TrainResult:
    """The steps of ``train`` from ``result.step`` on, with logging, samples and checkpoints."""
    world, start, total = group.size(), result.step, plan.total_steps
    share = config.batch_size // world
    saved_step = start
    if found is None:
        result.checkpoint = out.checkpoint(0, net, optimizer)  # a good state to fall back on from the start
    window_start, window_steps = time.perf_counter(), 0
    with StopFlag() as stop, BatchIterator(plan.source, config.seed, start, total, config.batch_size,
                                           group.rank(), world, config.prefetch) as batches:
        for step_index, batch in batches:
            step = step_index + 1
            # With --stable, this rank's images' motions: a function of (seed, step, image), never of the run's past
            motion = (random_motion(config.seed, step_index, share, config.image_size, config.image_size, stable,
                                    first=group.rank() * share) if stable.on else None)
            style = styles.step_style(step_index)  # several styles: in turn, a function of the step
            total_loss, terms = step_fn(mx.array(batch), motion, style)  # the step's host→MLX transfers
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
                          "peak_memory_gb": peak_gb, "resident_gb": resident_gb,
                          **({} if style is None else {"style_index": style})}
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

