"""Stylising files: images, folders (recursive) and videos, each written atomically next to nothing it reads.

Exit status of a run (``RunSummary.exit_code``): 0 when every input was stylised; 1 when some failed (the rest are
written and the failures listed); 2 when nothing could be stylised.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from PIL import Image

from mlx_style import backend
from mlx_style.errors import MlxStyleError
from mlx_style.infer.smoothing import DEFAULT_WEIGHT, TemporalSmoother
from mlx_style.infer.stylize import (DTYPES, TILE_SIZE, largest_size_within, load_network, memory_needed,
                                     network_shape, stylize_array)
from mlx_style.io.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image, save_image
from mlx_style.io.registry import default_model
from mlx_style.nn.transformer import TransformerNet

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
AUDIO_NOTE = ("audio is not carried over (OpenCV writes video only); to copy it back: "
              "ffmpeg -i STYLISED.mp4 -i ORIGINAL -map 0:v -map 1:a? -c:v copy OUT.mp4")


class StylizeError(MlxStyleError, RuntimeError):
    """One input that cannot be stylised; the message says why."""


@dataclass
class StylizeConfig:
    """Defaults of ``python -m mlx_style.stylize``; the flags are these fields in kebab-case."""

    model: str | None = None  # a transformer .safetensors (train one, or scripts/convert_fst.py --download)
    inputs: list[str] = field(default_factory=list)  # images, folders of images (recursive) and videos
    output: str | None = None  # a file for one input, else a folder; None: out/
    size: int | None = None  # longer side the network runs at; None: the input's own size
    scale: float | None = None  # or a fraction of the input size; strokes grow as this shrinks
    preserve_color: bool = False  # stylise the luminance only (Gatys et al. 2016, "Preserving color")
    strength: float = 1.0  # 1: the stylised image; 0: the input; between: a linear blend
    dtype: str = "float32"  # float16/bfloat16 halve memory on GPUs; on the CPU they are slower
    tile_size: int = TILE_SIZE  # images above tile_size² px (at the network's size) run in tiles
    smooth: float = DEFAULT_WEIGHT  # videos: temporal smoothing weight (infer.smoothing), as in the cam; 0: off
    style: str | None = None  # a multi-style network's style: an index (7) or a blend (3:0.5,12:0.5)
    style_images: list[str] | None = None  # an arbitrary-style network's style: pictures, PATH[:WEIGHT] each
    style_strength: float = 1.0  # with style_images: 1 the pictures' style, 0 the photo's own (Ghiasi)


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    target: Path
    kind: str  # "image" or "video"


def media_kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def plan_jobs(inputs: list[str], output: str | None) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Expand inputs (files, folders searched recursively for images) into jobs; returns ``(jobs, problems)``.

    ``output`` names a file when there is exactly one input file and it has a media suffix; otherwise it is a
    folder (default ``out/``) that mirrors folder inputs' structure. Raises ``ValueError`` for impossible plans.
    """
    sources: list[tuple[Path, Path]] = []  # (file, its path relative to the output folder)
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if not found:
                problems.append((path, "folder holds no images (videos must be named one by one)"))
            sources += [(p, p.relative_to(path)) for p in found]
        elif path.is_file():
            sources.append((path, Path(path.name)))
        else:
            problems.append((path, "no such file or folder"))
    out = Path(output) if output else None
    single_file = (out is not None and out.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)
                   and not out.is_dir())
    if single_file:
        if len(inputs) != 1 or Path(inputs[0]).is_dir():
            raise ValueError(f"-o {out} names one file but the inputs are several files or a folder: "
                             "give a folder for -o")
        if not sources:
            return [], problems
        if media_kind(sources[0][0]) != media_kind(out):
            raise ValueError(f"-o {out}: a {media_kind(sources[0][0])} input needs a "
                             f"{media_kind(sources[0][0])} output file (e.g. {out.with_suffix(sources[0][0].suffix)})")
        targets = [out]
    else:
        folder = out or Path("out")
        targets = [folder / (rel.with_suffix(".mp4") if media_kind(src) == "video" else rel) for src, rel in sources]
    jobs, seen = [], {}
    for (src, _), target in zip(sources, targets):
        if target.resolve() == src.resolve():
            raise ValueError(f"{src} would be overwritten by its own result: choose another -o")
        if target.resolve() in seen:
            raise ValueError(f"{seen[target.resolve()]} and {src} would both be written to {target}: "
                             "stylise them into separate folders")
        seen[target.resolve()] = src
        jobs.append(Job(src, target, media_kind(src)))
    return jobs, problems


def _atomic_target(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def stylize_image_file(net: TransformerNet, job: Job, config: StylizeConfig) -> str:
    """Stylise one image file into ``job.target``; returns a short description for the log.

    The memory it will need is estimated from the file's header first; an image that would not fit in the
    memory available is refused before it is decoded, with the ``--size`` that would fit.
    """
    check_memory(net, job.source, config)
    try:
        image = load_image(job.source)
    except ImageError as exc:
        raise StylizeError(str(exc).replace(f"{job.source}: ", "")) from None
    H, W, _ = image.shape
    h, w = network_shape(H, W, config.size, config.scale)
    result = stylize_array(net, image, config.size, config.scale, config.preserve_color, config.strength,
                           config.tile_size)
    partial = _atomic_target(job.target)
    try:
        save_image(partial, result)
        os.replace(partial, job.target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise StylizeError(f"cannot write {job.target} ({exc})") from None
    except BaseException:  # Ctrl-C or a termination signal mid-write: no half-written file left behind
        partial.unlink(missing_ok=True)
        raise
    tiled = config.tile_size > 0 and h * w > config.tile_size ** 2
    return f"{W}×{H} (network {w}×{h}{', tiled' if tiled else ''})"


MEMORY_SHARE = 0.8  # of the memory available that one image may take


def check_memory(net: TransformerNet, path: Path, config: StylizeConfig, available: int | None = None) -> None:
    """Refuse an image whose stylisation would not fit in memory (``StylizeError`` naming a ``--size`` that fits),
    reading only its header. Unreadable headers pass: ``load_image`` reports them."""
    try:
        with Image.open(path) as img:
            W, H = img.size
    except Exception:  # noqa: BLE001  (any header Pillow cannot read: left to load_image's clear message)
        return
    available = backend.available_memory_bytes() if available is None else available
    if not available:
        return
    h, w = network_shape(H, W, config.size, config.scale)
    need = memory_needed(net, H, W, h, w, config.tile_size)
    budget = int(MEMORY_SHARE * available)
    if need <= budget:
        return
    fits = largest_size_within(net, H, W, budget, config.tile_size)
    advice = f"pass --size {fits} (or smaller)" if fits else "use a machine with more memory"
    raise StylizeError(f"{W}×{H} at network size {w}×{h} needs about {need / 1e9:.1f} GB, and "
                       f"{available / 1e9:.1f} GB is available: {advice}")


def _fourcc(path: Path) -> str:
    return "MJPG" if path.suffix.lower() == ".avi" else "mp4v"  # both write and read back with this OpenCV


def stylize_video_file(net: TransformerNet, job: Job, config: StylizeConfig, log=print) -> str:
    """Stylise a video frame by frame at its own frame rate and size; returns a short description."""
    import cv2

    capture = cv2.VideoCapture(str(job.source))
    if not capture.isOpened():
        raise StylizeError("OpenCV cannot open it as a video")
    fps = capture.get(cv2.CAP_PROP_FPS)
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if not fps or not math.isfinite(fps) or fps <= 0:
        log(f"  {job.source}: no frame rate in the file; writing 30 fps")
        fps = 30.0
    partial = _atomic_target(job.target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    writer, frames, start, last_report = None, 0, time.perf_counter(), time.perf_counter()
    smoother = TemporalSmoother(config.smooth) if config.smooth else None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                H, W = frame.shape[:2]
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*_fourcc(job.target)), fps, (W, H))
                if not writer.isOpened():
                    raise StylizeError(f"OpenCV cannot write {job.target} ({_fourcc(job.target)})")
            rgb = np.ascontiguousarray(frame[..., ::-1])
            out = stylize_array(net, rgb, config.size, config.scale, config.preserve_color, config.strength,
                                config.tile_size)
            out = np.ascontiguousarray(out[..., ::-1])
            writer.write(smoother(frame, out) if smoother else out)
            frames += 1
            if time.perf_counter() - last_report > 5.0:
                rate = frames / (time.perf_counter() - start)
                left = f", about {(expected - frames) / rate:.0f} s left" if expected and expected > frames else ""
                log(f"  frame {frames}{'/' + str(expected) if expected else ''}: {rate:.2f} frames/s{left}")
                last_report = time.perf_counter()
        if writer is None:
            raise StylizeError("the video has no readable frames")
        writer.release()
        writer = None
        os.replace(partial, job.target)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
    elapsed = time.perf_counter() - start
    return f"{W}×{H}, {frames} frames at {fps:.2f} fps ({frames / elapsed:.2f} frames/s, no audio)"


@dataclass
class RunSummary:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    image_seconds: list[float] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return 0
        return 1 if self.done else 2


def stylize_files(net: TransformerNet, jobs: list[Job], config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """Run every job, logging one line each; a failing input is reported and skipped, never fatal."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    summary = RunSummary()
    if any(job.kind == "video" for job in jobs):
        log(f"note: {AUDIO_NOTE}")
        log(f"videos: temporal smoothing {config.smooth:g}" if config.smooth else "videos: temporal smoothing off")
    for index, job in enumerate(jobs, 1):
        start = time.perf_counter()
        try:
            if job.kind == "video":
                what = stylize_video_file(net, job, config, log)
            else:
                what = stylize_image_file(net, job, config)
        except (RuntimeError, ValueError, OSError) as exc:  # StylizeError, MLX and OpenCV failures
            summary.failed.append((job.source, str(exc)))
            warn(f"[{index}/{len(jobs)}] {job.source}: skipped: {exc}")
            continue
        seconds = time.perf_counter() - start
        summary.done.append(job.target)
        if job.kind == "image":
            summary.image_seconds.append(seconds)
        log(f"[{index}/{len(jobs)}] {job.source} → {job.target}  {what}  {seconds * 1000:.0f} ms")
    return summary


def check_config(config: StylizeConfig) -> None:
    """Refuse impossible settings before any work, with a ``ValueError`` naming the flag."""
    network_shape(1, 1, config.size, config.scale)
    if not 0.0 <= config.strength <= 1.0:
        raise ValueError(f"--strength must be between 0 and 1, got {config.strength}")
    if config.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {tuple(DTYPES)}, got {config.dtype!r}")
    if not 0.0 <= config.smooth < 1.0:
        raise ValueError(f"--smooth must be in [0, 1) (0: off), got {config.smooth}")
    if config.tile_size and config.tile_size < 64:
        raise ValueError(f"--tile-size must be 0 (never tile) or at least 64, got {config.tile_size}")


def run(config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """The whole command: load the model, plan the outputs, stylise everything, print a summary.

    Raises ``WeightFileError`` (model) or ``ValueError`` (arguments) before any file is written.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    check_config(config)
    jobs, problems = plan_jobs(config.inputs, config.output)
    model = config.model or default_model(arbitrary=bool(config.style_images))
    net, meta = load_network(model, config.dtype, config.style, config.style_images, config.style_strength)
    log(f"model {model} (style: {meta.get('style', 'unknown')}, {config.dtype})")
    start = time.perf_counter()
    summary = stylize_files(net, jobs, config, log, warn)
    for path, reason in problems:
        warn(f"{path}: skipped: {reason}")
    summary.failed = problems + summary.failed
    total = time.perf_counter() - start
    mean = (f"; {1000 * sum(summary.image_seconds) / len(summary.image_seconds):.0f} ms per image"
            if summary.image_seconds else "")
    failed = f", {len(summary.failed)} failed ({', '.join(str(p) for p, _ in summary.failed[:5])}" \
             f"{', …' if len(summary.failed) > 5 else ''})" if summary.failed else ""
    log(f"done: {len(summary.done)} stylised{failed} in {total:.1f} s{mean}")
    return summary

