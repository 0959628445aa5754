"""The training-set iterator: a folder of photos → deterministic batches of square uint8 crops, prefetched.

Order: step ``s`` of a run reads positions ``[o, o + G)`` of epoch ``e``'s permutation (``G`` the global batch,
``e = s // steps_per_epoch``, ``o = (s % steps_per_epoch)·G``); the permutation comes from a numpy Generator
seeded with ``(seed, e)``. So the batch of any step is a pure function of ``(files, seed, step)``: resuming needs
only the step, and each of ``R`` distributed ranks reads its own ``G/R`` slots of the same global batch without
talking to the others. The last partial batch of an epoch is dropped (as Johnson's loader does).

Bad files: a file that does not decode (truncated, corrupt, not an image) or whose shorter side is under
``min_side`` is replaced by the next usable file of the same permutation (wrapping round), so the result stays
deterministic; each bad file is reported once through ``on_skip`` and counted. Finding them costs nothing up
front: ``check_dataset`` only proves that *one* file is usable before training starts (decoding all of COCO's
118k images first would take longer than many training runs); the rest are found as training reaches them.

Decoding, resizing and cropping run in a background thread (PIL releases the GIL while it works) feeding a
bounded queue, so the accelerator never waits on JPEG decoding once the queue is full.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from mlx_style.io.image import ImageError, center_crop, list_images, load_image, resize_shorter

if TYPE_CHECKING:
    from mlx_style.training.config import TrainConfig
from mlx_style.errors import MlxStyleError

COCO_HINT = (
    "get COCO with `python scripts/download_coco.py` (val2017, ~1 GB; `--split train2017` for the full "
    "~18 GB set) and pass `--data data/coco/val2017`"
)


class DatasetError(MlxStyleError, ValueError):
    """A content folder that cannot be trained on; the message says what to do."""


@dataclass(frozen=True)
class DataPosition:
    """Where a step's batch sits in the data order."""

    epoch: int
    offset: int  # index of the batch's first slot in the epoch's permutation


def prepare(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB of any size → ``(size, size, 3)``: shorter side resized to ``size``, then centre-cropped."""
    return center_crop(resize_shorter(image, size), size, size)


def find_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); raises ``DatasetError`` if the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no content folder at {folder}: {COCO_HINT}")
    return list_images(folder)


def file_list_digest(files: list[Path]) -> str:
    """A short fingerprint of the file list, so a resume can tell the data folder changed."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\0")
    return digest.hexdigest()[:16]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The data order of one epoch: a permutation of ``range(n)`` determined by ``(seed, epoch)`` alone."""
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)


def steps_per_epoch(num_files: int, global_batch: int) -> int:
    """Full batches in one pass over the files (the last partial batch is dropped)."""
    return num_files // global_batch


def position(step: int, steps_per_epoch: int, global_batch: int) -> DataPosition:
    """Which epoch and offset step ``step`` (0-based) reads."""
    return DataPosition(step // steps_per_epoch, (step % steps_per_epoch) * global_batch)


class ImageSource:
    """Loads training crops by index into ``files``, remembering and reporting files that cannot be used.

    Args:
        files: the image files, in a fixed order.
        image_size: side of the square crops.
        min_side: files whose shorter side is smaller are skipped (upscaling them more than ~2× teaches the
            network blurred content).
        on_skip: called once per bad file with ``(path, reason)``.
    """

    def __init__(
        self, files: list[Path], image_size: int, min_side: int, on_skip: Callable[[Path, str], None] | None = None
    ):
        self.files, self.image_size, self.min_side = list(files), image_size, min_side
        self.on_skip = on_skip
        self.bad: dict[int, str] = {}
        self._lock = threading.Lock()

    def try_load(self, index: int) -> np.ndarray | None:
        """The prepared crop of file ``index``, or None (recorded and reported once) when it is unusable."""
        if index in self.bad:
            return None
        path = self.files[index]
        try:
            image = load_image(path)
            if min(image.shape[:2]) < self.min_side:
                raise ImageError(
                    f"{path}: too small ({image.shape[1]}×{image.shape[0]}, shorter side under {self.min_side} px)"
                )
            return prepare(image, self.image_size)
        except Exception as exc:  # a bad file must never stop a long run: ImageError, PIL oddities, MemoryError
            reason = str(exc) if isinstance(exc, ImageError) else f"{path}: {type(exc).__name__}: {exc}"
            with self._lock:
                first = index not in self.bad
                self.bad[index] = reason
            if first and self.on_skip is not None:
                self.on_skip(path, reason)
            return None

    def load_at(self, order: np.ndarray, slot: int) -> np.ndarray:
        """The crop for ``order[slot]``, or for the next usable file after it in ``order`` (wrapping)."""
        n = len(order)
        for k in range(n):
            crop = self.try_load(int(order[(slot + k) % n]))
            if crop is not None:
                return crop
        raise DatasetError(
            f"none of the {n} content images could be used ({len(self.bad)} skipped): check the folder, or " + COCO_HINT
        )


def check_dataset(source: ImageSource, limit: int = 50) -> int:
    """Prove that training can start: return the index of the first usable file among the first ``limit``.

    Raises ``DatasetError`` naming the reasons when none of them is usable.
    """
    if not source.files:
        raise DatasetError(f"no images (jpg, jpeg, png, webp, bmp) in the content folder: {COCO_HINT}")
    for index in range(min(limit, len(source.files))):
        if source.try_load(index) is not None:
            return index
    reasons = "; ".join(list(source.bad.values())[:3])
    raise DatasetError(
        f"none of the first {min(limit, len(source.files))} content images is usable ({reasons}): "
        f"check the folder, or {COCO_HINT}"
    )


def shard_batch(source: ImageSource, order: np.ndarray, offset: int, batch: int, rank: int) -> np.ndarray:
    """This rank's ``batch`` crops of the global batch starting at ``offset``: ``(batch, S, S, 3)`` uint8."""
    start = offset + rank * batch
    return np.stack([source.load_at(order, start + i) for i in range(batch)])


class BatchIterator:
    """Yields ``(step, uint8 batch)`` for steps ``start_step … total_steps − 1``, prepared by a background thread.

    Args:
        source: where crops come from.
        seed: data-order seed.
        start_step, total_steps: the half-open range of steps to produce.
        global_batch: images per step over all ranks; ``batch = global_batch // world_size`` per rank.
        rank, world_size: this process's shard.
        prefetch: batches prepared ahead (bounded memory: ``prefetch·batch·S²·3`` bytes).
    """

    def __init__(
        self,
        source: ImageSource,
        seed: int,
        start_step: int,
        total_steps: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
    ):
        if global_batch % world_size:
            raise DatasetError(
                f"the batch size {global_batch} must be a multiple of the number of processes ({world_size})"
            )
        self.steps_per_epoch = steps_per_epoch(len(source.files), global_batch)
        if self.steps_per_epoch == 0:
            raise DatasetError(
                f"{len(source.files)} content images is fewer than one batch of {global_batch}: "
                f"lower --batch-size or add images ({COCO_HINT})"
            )
        self.source, self.seed, self.global_batch = source, seed, global_batch
        self.rank, self.batch = rank, global_batch // world_size
        self.start_step, self.total_steps = start_step, total_steps
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="mlx_style-data", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        order, order_epoch = None, -1
        try:
            for step in range(self.start_step, self.total_steps):
                pos = position(step, self.steps_per_epoch, self.global_batch)
                if pos.epoch != order_epoch:
                    order, order_epoch = epoch_permutation(len(self.source.files), self.seed, pos.epoch), pos.epoch
                batch = shard_batch(self.source, order, pos.offset, self.batch, self.rank)
                if not self._put((step, batch)):
                    return
        except BaseException as exc:  # hand the error to the consumer instead of dying silently
            self._put(exc)
            return
        self._put(None)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the background thread (safe to call twice)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "BatchIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def split_files(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """(training files, sample files): samples come from --sample-images, else the last few files of --data.

    Holding out the last ``sample_count`` files (sorted order) keeps the samples unseen by the network; folders
    of fewer than ``10·sample_count`` images are too small to spare them and share them with training.
    """
    if not config.data:
        raise DatasetError(
            "no --data folder given: get COCO with `python scripts/download_coco.py` "
            "and pass `--data data/coco/val2017`"
        )
    files = find_images(config.data)
    if config.sample_images:
        samples = list_images(config.sample_images)[: config.sample_count]
    elif len(files) >= 10 * config.sample_count:
        files, samples = files[: -config.sample_count], files[-config.sample_count :]
    else:
        samples = files[: config.sample_count]
    if config.subset:
        chosen = np.random.Generator(np.random.PCG64(config.seed)).permutation(len(files))[: config.subset]
        files = [files[i] for i in sorted(chosen)]
    return files, samples


@dataclass
class DataPlan:
    """The content images of a run and how they are read."""

    source: ImageSource
    sample_paths: list[Path]
    steps_per_epoch: int
    total_steps: int
    info: dict  # what a resume must find unchanged (stored in each checkpoint)
    skipped: list[str]


def plan_data(config: TrainConfig, say, split=split_files) -> DataPlan:
    """Find the images and prove one is usable, cheaply, before any heavy work (see this module's docstring).

    ``config``: a ``TrainConfig``, or another method's settings with the same data fields and an ``iters``;
    ``split(config)`` gives its (training files, sample files)."""
    files, sample_paths = split(config)
    skipped: list[str] = []

    def on_skip(path, reason):
        skipped.append(reason)
        say(f"skipping {reason}")

    min_side = config.min_side if config.min_side is not None else config.image_size // 2
    source = ImageSource(files, config.image_size, min_side, on_skip)
    check_dataset(source)
    per_epoch = steps_per_epoch(len(files), config.batch_size)
    if per_epoch == 0:
        raise DatasetError(
            f"{len(files)} content images is fewer than one batch of {config.batch_size}: lower "
            "--batch-size or add images"
        )
    total = config.iters if config.iters is not None else config.epochs * per_epoch
    info = {
        "seed": config.seed,
        "files": len(files),
        "files_digest": file_list_digest([p.relative_to(config.data) for p in files]),
        "global_batch": config.batch_size,
        "image_size": config.image_size,
    }
    return DataPlan(source, sample_paths, per_epoch, total, info, skipped)


def load_sample_batch(paths: list[Path], size: int) -> np.ndarray | None:
    """The usable sample images as ``(N, size, size, 3)`` uint8 (unreadable ones left out), or None."""
    crops = []
    for path in paths:
        try:
            crops.append(prepare(load_image(path), size))
        except ImageError:
            continue
    return np.stack(crops) if crops else None
