"""Training checkpoints: everything needed to continue a run exactly, in one atomically written safetensors file.

A checkpoint ``<folder>/step_00001234.safetensors`` holds

- ``model.*``: the transformer's parameters (batch-norm running statistics included),
- ``optimizer.*``: the optimizer state tree (Adam's ``m`` and ``v`` per parameter, ``step``, ``learning_rate``),

and string metadata (``kind = "checkpoint"``): ``step``, the network ``config``, the ``train_config`` and the
``data`` position (seed, epoch, offset, file count and fingerprint), JSON-encoded.

Nothing else is random during training: the network's initial weights come from ``mx.random.seed(seed)`` and
are replaced by the checkpoint's, crops are centred (no random crop or flip) and each epoch's order is a pure
function of ``(seed, epoch)`` (see ``training.data``). So the seed and the step *are* the RNG state; no
generator state needs saving (MLX also offers no public way to set ``mx.random``'s key to a saved value).
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from mlx_style.errors import MlxStyleError
from mlx_style.io.weights import WeightFileError, check_and_load, load_weights, save_weights

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

KIND = "checkpoint"
LOCK_FILE = ".lock"  # in a run folder while a run uses it: holds the using process's id
_NAME = re.compile(r"^step_(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``step`` done, parameter and optimizer arrays, and the metadata strings."""

    path: Path
    step: int
    model: dict[str, mx.array]
    optimizer: dict[str, mx.array]
    metadata: dict[str, str]

    def json(self, key: str) -> dict:
        """A JSON metadata field (``train_config``, ``data``, ``config``) as a dict; {} when absent."""
        return json.loads(self.metadata.get(key, "{}"))


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.safetensors"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest step first (temporary files of interrupted writes ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(
    folder: str | Path, step: int, model: nn.Module, optimizer: optim.Optimizer, metadata: dict[str, str]
) -> Path:
    """Write the checkpoint of ``step`` atomically (a crash mid-write leaves the previous ones intact)."""
    arrays = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    meta = {**metadata, "kind": KIND, "step": str(step)}
    return save_weights(checkpoint_path(folder, step), arrays, meta)


def prune_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recent checkpoints (``keep ≤ 0`` keeps all); returns those deleted."""
    found = list_checkpoints(folder)
    if keep <= 0 or len(found) <= keep:
        return []
    doomed = found[:-keep]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify (format, kind, checksums, step) a checkpoint file; ``WeightFileError`` when unusable."""
    arrays, meta = load_weights(path, kind=KIND)
    try:
        step = int(meta["step"])
        for key in ("data", "config"):
            json.loads(meta.get(key, "{}"))
    except (KeyError, ValueError) as exc:
        raise WeightFileError(f"checkpoint {path} has unusable metadata ({exc})") from None
    if step < 0:
        raise WeightFileError(f"checkpoint {path} says step {step}")
    model = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
    optimizer = {k[len("optimizer.") :]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    return Checkpoint(Path(path), step, model, optimizer, meta)


def load_newest_readable(folder: str | Path, warn=None) -> Checkpoint | None:
    """The newest checkpoint in ``folder`` that reads and verifies; unreadable newer ones are skipped with a
    warning (a write cut short by a crash, a damaged disk). None when the folder holds no checkpoint.

    Raises:
        WeightFileError: checkpoints exist but none is readable (never a silent start from scratch).
    """
    found = list_checkpoints(folder)
    skipped = []
    for path in reversed(found):
        try:
            checkpoint = load_checkpoint(path)
        except WeightFileError as exc:
            skipped.append(path.name)
            if warn:
                warn(f"warning: skipping unreadable checkpoint {path.name}: {str(exc).replace(str(path), 'it')}")
            continue
        return checkpoint
    if found:
        raise WeightFileError(
            f"no readable checkpoint in {folder} ({', '.join(skipped)} are damaged): start again with --overwrite"
        )
    return None


def restore(checkpoint: Checkpoint, model: nn.Module, optimizer: optim.Optimizer) -> None:
    """Load the checkpoint into ``model`` and ``optimizer`` (strictly; call before compiling the step)."""
    check_and_load(model, checkpoint.model, where=f"checkpoint {checkpoint.path}")
    optimizer.init(model.trainable_parameters())
    expected = dict(tree_flatten(optimizer.state))
    if set(expected) != set(checkpoint.optimizer):
        raise WeightFileError(
            f"checkpoint {checkpoint.path} has optimizer state for another network or "
            "optimizer; start a new run (different --output) or resume with the same settings"
        )
    optimizer.state = tree_unflatten(list(checkpoint.optimizer.items()))
    optimizer.init(model.trainable_parameters())  # marks it initialised; every entry already exists


class RunInUse(MlxStyleError):
    """Another process is training in the same run folder."""


@contextmanager
def run_lock(run_dir: str | Path):
    """Hold ``run_dir``'s lock for a run, so a second run on the same folder (and output) is refused with one line
    instead of interleaving logs and replacing the other's weights. The kernel drops the lock when the process
    ends, even by ``kill -9``, so a stale lock file never blocks a later run."""
    run_dir = Path(run_dir)
    if fcntl is None:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()[:40] or "another process"
        handle.close()
        raise RunInUse(
            f"{run_dir} is in use by a training run ({holder}): wait for it to finish or stop it, or "
            "give this run another --output or --run-dir"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def check_run_free(run_dir: str | Path) -> None:
    """Raise ``RunInUse`` now if another process holds ``run_dir`` (said once, before processes are launched)."""
    if Path(run_dir).is_dir():
        with run_lock(run_dir):
            pass
