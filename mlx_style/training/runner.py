"""One training runner for every method (the shape of mlx-lm's ``tuner/trainer.py``): ``mlx-style train``.

A method (``training.johnson``: one style, several, ``--stable``; ``training.adain``) is a ``Method``: it checks its
inputs, builds the network that learns and its optimizer, and supplies its step, its batches, its metadata, its
sample rows and its weight file. ``run`` owns everything else:

- the run folder's lock (``checkpoint.run_lock``) and the one rule for what is in it (``find_resume``: ``--resume``,
  ``--overwrite`` or a fresh folder), with the checks that make a resume exact (the data order here, the rest the
  method's ``resume_check``);
- leftovers of writes cut short, restoring a checkpoint, and giving every rank rank 0's state (data-parallel runs
  through ``mx.distributed``: only rank 0 reads checkpoints and writes);
- the steps, with Ctrl-C/SIGTERM (``StopFlag``: the step finishes and a checkpoint is written), the JSON-lines log and
  progress line, a loss that becomes NaN or Inf, checkpoints on their cadence (atomic, ``io.weights``), sample grids,
  a full disk or lost permissions (``WeightWriteError``: the message says how to continue), and the final write.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mlx_style.backend import backend_name
from mlx_style.io.weights import WeightWriteError, remove_partial_writes
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import LATEST, TrainingError, TrainResult
from mlx_style.training.data import BatchIterator, DataPlan, load_sample_batch
from mlx_style.training.distributed import agree, broadcast_from_rank0, machine_memory_gb
from mlx_style.training.launch import local_processes
from mlx_style.training.progress import JsonlLog, ProgressLine, format_progress, save_loss_curve, save_sample_grid
from mlx_style.training.step import all_finite

# MLX's CUDA backend builds each fused kernel of the compiled step with NVRTC on first use and caches it on disk:
# on a fresh machine the first step waits minutes for it (docs/benchmarks.md).
KERNEL_BUILD_NOTE = (
    "the first step builds MLX's CUDA kernels: it can take minutes on a machine that has not run "
    "this step before (they are cached on disk for later runs)"
)
DATA_KEYS = ("seed", "files", "files_digest", "global_batch", "image_size")  # what fixes the data order


class Method:
    """What a training method supplies to ``run``.

    ``config`` holds the settings every method has: ``run_path()``, ``output_path()``, ``log_path()``, ``resume``,
    ``overwrite``, ``batch_size``, ``seed``, ``prefetch``, ``log_every``, ``checkpoint_every``, ``keep_checkpoints``,
    ``sample_every``, ``image_size``, ``compile``. ``check`` sets ``plan`` (the content images) and
    ``style_names``; ``build`` sets ``model`` (what learns, and what checkpoints hold) and ``optimizer``.
    """

    distributed = False  # whether it trains as several processes (its step averages the gradients over them)
    divergence_hint = "Lower --lr"  # what to change when the loss becomes NaN or Inf
    data_flags = "--data/--seed/--batch-size/--image-size"  # the flags that fix the data order

    def __init__(self, config):
        self.config = config
        self.plan: DataPlan | None = None
        self.style_names: list[str] = []
        self.model: nn.Module | None = None
        self.optimizer: optim.Optimizer | None = None

    def check(self, say, world: int, main_rank: bool) -> None:
        """Read and check every input cheaply, before any heavy work, so a bad one fails in seconds with one line."""
        raise NotImplementedError

    def resume_check(self, found: ckpt.Checkpoint) -> None:
        """Refuse (``TrainingError``) a checkpoint this run would not continue exactly, naming what changed."""
        raise NotImplementedError

    def build(self, found: ckpt.Checkpoint | None) -> None:
        """The network that learns and its optimizer, seeded; ``run`` then restores ``found`` (rank 0's) into them."""
        raise NotImplementedError

    def prepare_step(self, group, say) -> None:
        """Build the step (tuned, compiled) once the state is restored and shared."""
        raise NotImplementedError

    def batches(self, start: int, group) -> BatchIterator:
        """This rank's content batches from step ``start`` on (``data.BatchIterator``)."""
        c, plan = self.config, self.plan
        return BatchIterator(
            plan.source, c.seed, start, plan.total_steps, c.batch_size, group.rank(), group.size(), c.prefetch
        )

    def step(self, step_index: int, batch: np.ndarray) -> tuple[mx.array, dict[str, mx.array]]:
        """Train on ``batch`` (step ``step_index``, 0-based): ``(total, {term: loss})``, not yet evaluated."""
        raise NotImplementedError

    def record(self, step_index: int) -> dict:
        """What the log records of this step besides the losses, the rate and the memory."""
        return {}

    def metadata(self) -> dict[str, str]:
        """What every checkpoint and the weight file carry (the network's ``config`` included)."""
        raise NotImplementedError

    def describe(self, start: int, world: int) -> str:
        """The opening line: what trains on what, and how."""
        raise NotImplementedError

    def samples(self, images: np.ndarray) -> list[list[np.ndarray]]:
        """Rows for a sample grid: ``images`` (held-out photos), then the network's outputs."""
        raise NotImplementedError

    def save(self, metadata: dict[str, str]) -> Path:
        """Write the trained network to ``config.output_path()``."""
        raise NotImplementedError


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


def find_resume(config, folder: Path, say=lambda text: None) -> ckpt.Checkpoint | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to silently mix two runs. With
    ``--resume`` alone: the newest readable checkpoint (a damaged newer one is skipped with a warning)."""
    if config.resume is None:
        existing = ckpt.list_checkpoints(folder)
        if existing and not config.overwrite:
            raise TrainingError(
                f"{folder} already holds checkpoints of an earlier run (latest "
                f"{existing[-1].name}): pass --resume to continue it, or --overwrite to start "
                "again (its checkpoints will be deleted)"
            )
        return None
    if config.resume == LATEST:
        found = ckpt.load_newest_readable(folder, say)
        if found is None:
            raise TrainingError(f"nothing to resume: no checkpoint in {folder}; run without --resume to start")
        return found
    return ckpt.load_checkpoint(config.resume)


def check_run(method: Method, say, world: int = 1, main_rank: bool = True) -> ckpt.Checkpoint | None:
    """Check the method's inputs, then apply the one rule to the run folder: rank 0's checkpoint to continue from
    (checked to continue this run exactly), or None for a fresh run (and on the other ranks, which receive rank 0's
    state). The CLI calls it once before it starts several processes, so that an error is reported once."""
    if world > 1 and not method.distributed:
        raise TrainingError(f"this method trains in one process, not {world}: start it without mlx.launch")
    method.check(say, world, main_rank)
    if not main_rank:
        return None
    config = method.config
    output = config.output_path()
    if config.resume is None and output.exists() and not config.overwrite:
        raise TrainingError(
            f"{output} already exists: pass --resume to continue its run, choose "
            "another --output, or pass --overwrite to replace it"
        )
    found = find_resume(config, config.run_path() / "checkpoints", say)
    if found is not None:
        saved = found.json("data")
        for key in DATA_KEYS:  # the batches of step s are a function of these and s alone (training.data)
            if saved.get(key) != method.plan.info[key]:
                raise TrainingError(
                    f"cannot resume {found.path} exactly: {key} was {saved.get(key)!r}, now "
                    f"{method.plan.info[key]!r}; use the same {method.data_flags}"
                )
        method.resume_check(found)
    return found


def losses_finite(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "content", "style", "tv", "temporal") if k in record)


class RunWriter:
    """Everything a run leaves on disk: checkpoints, the JSON-lines log and loss curve, sample grids, the weights.

    Only rank 0 writes; on the other ranks every method does nothing (returns None).
    """

    def __init__(self, method: Method, main_rank: bool, resumed_step: int | None, line: ProgressLine):
        self.method, self.config, self.main_rank, self.line = method, method.config, main_rank, line
        self.run_dir = self.config.run_path()
        self.folder = self.run_dir / "checkpoints"
        self.meta = method.metadata()
        self.log = JsonlLog(self.config.log_path(), keep_through_step=resumed_step) if main_rank else None
        self.images = (
            load_sample_batch(method.plan.sample_paths, self.config.image_size)
            if main_rank and self.config.sample_every
            else None
        )

    def records(self) -> list[dict]:
        return self.log.records if self.log else []

    def checkpoint(self, step: int) -> Path | None:
        if not self.main_rank:
            return None
        plan, batch = self.method.plan, self.config.batch_size
        data = {
            **plan.info,
            "next_step": step,
            "epoch": step // plan.steps_per_epoch,
            "offset": (step % plan.steps_per_epoch) * batch,
        }
        path = ckpt.save_checkpoint(
            self.folder, step, self.method.model, self.method.optimizer, {**self.meta, "data": json.dumps(data)}
        )
        ckpt.prune_checkpoints(self.folder, self.config.keep_checkpoints)
        save_loss_curve(self.log.records, self.log.path.with_name("loss.png"))
        return path

    def record(self, record: dict) -> None:
        if not self.main_rank:
            return
        self.log.write(record)
        total = self.method.plan.total_steps
        remaining = (total - record["step"]) * self.config.batch_size / record["images_per_s"]
        self.line.update(format_progress(record, total, remaining))

    def sample_grid(self, name: str) -> None:
        if self.images is not None:
            save_sample_grid(self.method.samples(self.images), self.run_dir / "samples" / f"{name}.png")

    def weights(self, step: int) -> Path | None:
        if not self.main_rank:
            return None
        save_loss_curve(self.log.records, self.log.path.with_name("loss.png"))
        return self.method.save({**self.meta, "steps": str(step)})


def run(method: Method, line: ProgressLine | None = None, say=None, on_step=None) -> TrainResult:
    """Run (or continue) ``method``'s training; returns what happened (``config.TrainResult``).

    ``line`` shows progress (default: a ``ProgressLine`` on stderr); ``say`` prints a message line (default: through
    ``line``); ``on_step(step)`` is called after each step (tests). Raises ``MlxStyleError`` subclasses
    (``TrainingError``, ``DatasetError``, ``ImageError``, ``WeightFileError``, each saying what to do) before any
    heavy work when an input is missing or unusable, and ``RunInUse`` when another process trains in the same run
    folder.
    """
    group = mx.distributed.init()
    main_rank = group.rank() == 0
    with ckpt.run_lock(method.config.run_path()) if main_rank else contextlib.nullcontext():
        return _run(method, group, line or ProgressLine(), say, on_step)


def _run(method: Method, group, line: ProgressLine, say, on_step) -> TrainResult:
    main_rank, world, config = group.rank() == 0, group.size(), method.config
    say = (say or line.message) if main_rank else (lambda text: None)
    found = check_run(method, say, world, main_rank)
    if main_rank:
        folder = config.run_path() / "checkpoints"
        for path in remove_partial_writes(folder) + remove_partial_writes(config.output_path().parent):
            say(f"removed {path}, left by a write that was cut short")
        if found is None and config.overwrite:
            for path in ckpt.list_checkpoints(folder):
                path.unlink()

    method.build(found)
    start = 0
    if found:
        ckpt.restore(found, method.model, method.optimizer)
        start = found.step
    start = broadcast_from_rank0(method.model, method.optimizer, start, group)
    if start > method.plan.total_steps:
        raise TrainingError(
            f"the checkpoint is at step {start}, past --iters {method.plan.total_steps}: pass a larger --iters"
        )
    method.prepare_step(group, say)
    out = RunWriter(method, main_rank, start if found else None, line)
    say(
        f"{method.describe(start, world)}; run folder {out.run_dir}" + (f"; resumed from {found.path}" if found else "")
    )
    if config.compile and backend_name() == "cuda":
        say(KERNEL_BUILD_NOTE)

    result = TrainResult("done", start, checkpoint=found.path if found else None, styles=method.style_names)
    try:
        return _run_steps(method, result, found is None, out, group, line, say, on_step)
    except WeightWriteError as exc:  # a full disk or lost permissions: stop cleanly, say how to continue
        line.close()
        say(
            f"error: {exc}; training stopped. The last good checkpoint is {result.checkpoint or 'none yet'}: "
            f"{exc.remedy}, then run the same command with --resume"
        )
        result.status, result.records = "failed", out.records()
        return result


def _run_steps(
    method: Method, result: TrainResult, fresh: bool, out: RunWriter, group, line: ProgressLine, say, on_step
) -> TrainResult:
    """The steps from ``result.step`` on, with logging, samples and checkpoints, then the final write."""
    config, plan = method.config, method.plan
    world, local, total = group.size(), local_processes(), plan.total_steps
    saved_step = result.step
    if fresh:
        result.checkpoint = out.checkpoint(0)  # a good state to fall back on from the start
    window_start, window_steps = time.perf_counter(), 0
    with StopFlag() as stop, method.batches(result.step, group) as batches:
        for step_index, batch in batches:
            step = step_index + 1
            total_loss, terms = method.step(step_index, batch)
            mx.eval(total_loss, terms, method.model.parameters(), method.optimizer.state)
            window_steps += 1
            # Ranks agree on stopping through a collective: every step when all share this machine (a loopback
            # collective costs ~1 ms), else only at log steps (no per-step sync between machines).
            stopping = (world == local or step % config.log_every == 0) and agree(stop.signum is not None, group)
            due_checkpoint = bool(config.checkpoint_every) and step % config.checkpoint_every == 0
            if step % config.log_every == 0 or step == total or due_checkpoint or stopping:
                now = time.perf_counter()
                peak_gb, resident_gb = machine_memory_gb(group, local)
                record = {
                    "step": step,
                    "loss": total_loss.item(),
                    **{k: v.item() for k, v in terms.items()},
                    "images_per_s": window_steps * config.batch_size / (now - window_start),
                    "peak_memory_gb": peak_gb,
                    "resident_gb": resident_gb,
                    **method.record(step_index),
                }
                window_start, window_steps = now, 0
                if not losses_finite(record) or not all_finite(method.model.parameters()):
                    line.close()
                    say(
                        f"error: the loss became {record['loss']} by step {step}: training stopped and nothing "
                        f"more was written; the last good checkpoint is {result.checkpoint}. "
                        f"{method.divergence_hint} and continue from it with --resume"
                    )
                    result.status, result.records = "diverged", out.records()
                    return result
                out.record(record)
            if config.sample_every and step % config.sample_every == 0:
                out.sample_grid(f"step_{step:08d}")
            if due_checkpoint or stopping:
                result.checkpoint, saved_step = out.checkpoint(step), step
            result.step = step
            if on_step is not None:
                on_step(step)
            if stopping:
                line.close()
                say(
                    f"interrupted after step {step}: wrote {result.checkpoint}; continue with the same command "
                    "plus --resume"
                )
                result.status = "interrupted"
                break
    line.close()
    result.skipped = len(plan.skipped)
    result.peak_memory_gb, result.resident_gb = machine_memory_gb(group, local)
    result.records = out.records()
    if result.status == "done":
        if saved_step != result.step:
            result.checkpoint = out.checkpoint(result.step)  # a larger --iters can continue from here
        out.sample_grid("final")
        result.output = out.weights(result.step)
        if plan.skipped:
            say(f"{len(plan.skipped)} unusable images were skipped (listed above)")
    return result
