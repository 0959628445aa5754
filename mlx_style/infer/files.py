"""Stylising files: images, folders (recursive) and videos, each written atomically next to nothing it reads.

Exit status of a run (``RunSummary.exit_code``): 0 when every input was stylised; 1 when some failed (the rest are
written and the failures listed); 2 when nothing could be stylised.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from PIL import Image

from mlx_style import backend
from mlx_style.errors import MlxStyleError, UsageError
from mlx_style.infer.smoothing import DEFAULT_WEIGHT, TemporalSmoother
from mlx_style.infer.video_out import PartialVideo
from mlx_style.infer.stylize import (DTYPES, TILE_SIZE, largest_size_within, load_network, memory_needed,
                                     network_shape, runs_tiled, stylize_array)
from mlx_style.io import video
from mlx_style.io.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image, save_image
from mlx_style.io.registry import default_model
from mlx_style.nn.transformer import TransformerNet
from mlx_style.timing import format_duration

VIDEO_EXTENSIONS = tuple(video.VIDEO_CODECS)
# Of video per segment (io.video): what a kill can lose, and the longest keyframe interval (x264's own is 250 frames,
# 8–10 s; a keyframe every 4 s costs a few per cent of the file).
SEGMENT_SECONDS = 4.0
PROGRESS_SECONDS = 5.0  # between the progress lines of a video


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
    tile_size: int | None = TILE_SIZE  # images above tile_size² px (network size) run in tiles; None: the backend's
    smooth: float = DEFAULT_WEIGHT  # videos: temporal smoothing weight (infer.smoothing), as in the cam; 0: off
    style: str | None = None  # a multi-style network's style: an index (7) or a blend (3:0.5,12:0.5)
    style_images: list[str] | None = None  # an arbitrary-style network's style: pictures, PATH[:WEIGHT] each
    style_strength: float = 1.0  # with style_images: 1 the pictures' style, 0 the photo's own (Ghiasi)
    quality: int = video.DEFAULT_QUALITY  # videos: CRF-like, x264's scale: lower is better and larger
    audio: bool = True  # videos: every audio stream of the source, copied where the container takes it
    resume: bool = False  # videos: continue the finished segments an interrupted run left (.NAME.partial/)


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
            found = sorted(list_images(path) + list_videos(path))
            if not found:
                problems.append((path, "folder holds no images or videos"))
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
            raise UsageError(f"-o {out} names one file but the inputs are several files or a folder: "
                             "give a folder for -o")
        if not sources:
            return [], problems
        if media_kind(sources[0][0]) != media_kind(out):
            raise UsageError(f"-o {out}: a {media_kind(sources[0][0])} input needs a "
                             f"{media_kind(sources[0][0])} output file (e.g. {out.with_suffix(sources[0][0].suffix)})")
        targets = [out]
    else:
        folder = out or Path("out")
        targets = [folder / (rel.with_suffix(".mp4") if media_kind(src) == "video" else rel) for src, rel in sources]
    jobs, seen = [], {}
    for (src, _), target in zip(sources, targets):
        if target.resolve() == src.resolve():
            raise UsageError(f"{src} would be overwritten by its own result: choose another -o")
        if target.resolve() in seen:
            raise UsageError(f"{seen[target.resolve()]} and {src} would both be written to {target}: "
                             "stylise them into separate folders")
        seen[target.resolve()] = src
        jobs.append(Job(src, target, media_kind(src)))
    return jobs, problems


def list_videos(folder: Path) -> list[Path]:
    """Videos under ``folder``, recursively, outside hidden folders (an unfinished video's segments live in one)."""
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


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
    tiled = runs_tiled(net, h, w, config.tile_size)
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
    check_frame_memory(net, H, W, config, available)


def check_frame_memory(net: TransformerNet, H: int, W: int, config: StylizeConfig, available: int | None = None):
    """``check_memory`` for an ``H × W`` picture: an image, or every frame of a video (checked from its header)."""
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


def resume_settings(job: Job, config: StylizeConfig) -> dict:
    """What must not change between an interrupted run and its ``--resume``: the source and the network (as files)
    and every option that changes a frame."""
    def identity(path) -> list:
        stat = Path(path).stat()
        return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]

    model = identity(config.model) if config.model and Path(config.model).is_file() else config.model
    options = ("size", "scale", "preserve_color", "strength", "dtype", "tile_size", "smooth", "style",
               "style_images", "style_strength")
    return {"source": identity(job.source), "model": model, **{k: getattr(config, k) for k in options}}


class Progress:
    """A line every ``PROGRESS_SECONDS``: frames done, frames per second and the time left."""

    def __init__(self, total: int, done: int, log, clock=time.perf_counter):
        self.total, self.done, self.log, self.clock = total, done, log, clock
        self.start = self.last = clock()
        self.counted = 0

    def tick(self) -> None:
        self.done, self.counted = self.done + 1, self.counted + 1
        now = self.clock()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last, rate = now, self.counted / (now - self.start)
        left = self.total - self.done
        where = f"/{self.total} ({self.done / self.total:.0%})" if left > 0 else ""
        eta = f", {format_duration(left / rate)} left" if left > 0 else ""
        self.log(f"  frame {self.done}{where}: {rate:.2f} frames/s{eta}")


def stylize_video_file(net: TransformerNet, job: Job, config: StylizeConfig, log=print) -> str:
    """Stylise a video into ``job.target``: every frame upright at its source timestamp, with the source's sound
    (``io.video``); written in segments that ``--resume`` continues after an interruption. Returns a description.

    Raises ``VideoError`` (not a readable video; before any work), ``StylizeError`` (too large for memory),
    ``VideoCutShort`` (the file ended early), ``VideoWriteError`` (a full disk; ends the batch) and
    ``KeyboardInterrupt`` (the finished segments kept, the way to resume printed).
    """
    info = video.probe(job.source)
    check_frame_memory(net, info.height, info.width, config)
    encoder = video.video_encoder(job.target.suffix)
    sound = ("sound dropped (--no-audio)" if not config.audio else
             f"sound kept ({info.audio} stream{'s' if info.audio > 1 else ''})" if info.audio else "no sound")
    log(f"  {job.source}: {info.width}×{info.height}, {info.frames} frames at {info.fps:.3g} fps → {encoder} "
        f"quality {config.quality}, {sound}")
    partial, start = None, time.perf_counter()
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        partial = PartialVideo(job.target, resume_settings(job, config), max(1, round(SEGMENT_SECONDS * info.fps)),
                               encoder, config.quality, info.rate, info.time_base, config.resume, log)
        done_before = partial.done
        shape, damage = _stylize_frames(net, job, config, info, partial, log)
        _check_complete(partial.done, info, damage, config.resume)
        frames = partial.finish(job.source if config.audio else None)
    except BaseException as exc:  # the finished segments stay for --resume, and after Ctrl-C or a kill
        keep = config.resume or isinstance(exc, KeyboardInterrupt)
        if partial is not None:
            partial.stop(keep)
        kept = f"{partial.kept} finished frames kept in {partial.folder}" if partial and keep and partial.kept else ""
        if isinstance(exc, KeyboardInterrupt) and kept:
            log(f"  interrupted: {kept}; the same command with --resume continues from there")
        if isinstance(exc, OSError):  # a write (PyAV's errors are OSErrors too): a full disk, a read-only folder
            raise video.write_failure(job.target, exc, f" ({kept} for --resume)" if kept else "") from None
        raise
    rate = (frames - done_before) / (time.perf_counter() - start)
    resumed = f", {done_before} of them from the interrupted run" if done_before else ""
    return f"{shape[1]}×{shape[0]}, {frames} frames at {info.fps:.2f} fps ({rate:.2f} frames/s{resumed}), {sound}"


def _stylize_one(net: TransformerNet, rgb: np.ndarray, config: StylizeConfig, smoother) -> np.ndarray:
    out = stylize_array(net, rgb, config.size, config.scale, config.preserve_color, config.strength,
                        config.tile_size)
    if smoother is None:
        return out
    # BGR, as the cam hands it over: the smoother's luma and flow were tuned on OpenCV's channel order
    smoothed = smoother(np.ascontiguousarray(rgb[..., ::-1]), np.ascontiguousarray(out[..., ::-1]))
    return smoothed[..., ::-1]


def _stylize_frames(net, job: Job, config: StylizeConfig, info, partial: PartialVideo, log):
    """Every frame after ``partial.done``, into ``partial``; returns ``(frame shape, the reader's damage)``.

    A resumed run decodes from the last finished frame: stylised again, it gives the temporal smoother the state an
    uninterrupted run had there (the smoother keeps the previous input and network output, nothing older).
    """
    smoother = TemporalSmoother(config.smooth) if config.smooth else None
    reader = video.VideoReader(job.source, partial.last_pts)
    progress, shape = Progress(info.frames, partial.done, log), None
    for frame in reader:
        if partial.last_pts is not None and frame.pts <= partial.last_pts:
            if smoother is not None:
                _stylize_one(net, frame.image, config, smoother)
            continue
        if shape is None:
            shape = frame.image.shape
            _say_size(shape, partial.encoder, log)
        partial.write(_stylize_one(net, frame.image, config, smoother), frame.pts, frame.duration)
        progress.tick()
    return shape or (info.height, info.width), reader.damage


def _say_size(shape: tuple, encoder: str, log) -> None:
    H, W = shape[:2]
    w, h = video.writable_size(encoder, W, H)
    if (w, h) != (W, H):
        log(f"  {W}×{H} has an odd side and H.264 in yuv420p (what browsers play) needs even ones: the video is "
            f"{w}×{h}, its last {'column' if w != W else 'row'}{' and row' if w != W and h != H else ''} repeated")


def _check_complete(frames: int, info, damage: str | None, resume: bool) -> None:
    """Refuse a video that ended before its header's frame count (one frame of slack: containers' counts can
    include a frame an edit list hides)."""
    if frames == 0 and not damage and info.frames <= 1:
        raise video.VideoError("the video has no frames")
    short = frames < info.frames - 1 if info.exact else (damage is not None or frames < 0.9 * info.frames - 1)
    if short:
        of = f" of its {info.frames}" if info.exact else f" of about {info.frames}"
        kept = "; the finished segments are kept for --resume" if resume else "; nothing written"
        raise video.VideoCutShort(f"end of video after {frames}{of} frames (the file is cut short or damaged"
                                  f"{': ' + damage if damage else ''}){kept}")


@dataclass
class RunSummary:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    image_seconds: list[float] = field(default_factory=list)
    mid_run: bool = False  # a failure after the work started (a video cut short): 1, as in every command

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return 0
        return 1 if self.done or self.mid_run else 2


def stylize_files(net: TransformerNet, jobs: list[Job], config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """Run every job, logging one line each; a failing input is reported and skipped, never fatal."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    summary = RunSummary()
    if any(job.kind == "video" for job in jobs):
        log(f"videos: temporal smoothing {config.smooth:g}" if config.smooth else "videos: temporal smoothing off")
    for index, job in enumerate(jobs, 1):
        start = time.perf_counter()
        try:
            if job.kind == "video":
                what = stylize_video_file(net, job, config, log)
            else:
                what = stylize_image_file(net, job, config)
        except (RuntimeError, ValueError, OSError, video.VideoCutShort) as exc:  # StylizeError, MLX, OpenCV, PyAV
            summary.failed.append((job.source, str(exc)))
            summary.mid_run |= isinstance(exc, video.VideoCutShort)
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
        raise UsageError(f"--strength must be between 0 and 1, got {config.strength}")
    if config.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {tuple(DTYPES)}, got {config.dtype!r}")
    if not 0.0 <= config.smooth < 1.0:
        raise UsageError(f"--smooth must be in [0, 1) (0: off), got {config.smooth}")
    if config.tile_size and config.tile_size < 64:
        raise UsageError(f"--tile-size must be 0 (never tile) or at least 64, got {config.tile_size}")
    if not 0 <= config.quality <= 51:
        raise UsageError(f"--quality must be in 0..51 (x264's CRF scale; lower is better), got {config.quality}")


def run(config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """The whole command: load the model, plan the outputs, stylise everything, print a summary.

    Raises ``WeightFileError`` (model) or ``ValueError`` (arguments) before any file is written.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    check_config(config)
    jobs, problems = plan_jobs(config.inputs, config.output)
    model = config.model or default_model(arbitrary=bool(config.style_images))
    net, meta = load_network(model, config.dtype, config.style, config.style_images, config.style_strength)
    config = replace(config, model=str(model))  # a --resume checks that the network is the same file
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

