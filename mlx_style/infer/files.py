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


from mlx_style.errors import UsageError
from mlx_style.infer.stylize import (
    DTYPES,
    load_network,
    network_shape,
    runs_tiled,
    stylize_array,
)
from mlx_style.infer.jobs import (  # noqa: F401  (StylizeConfig, Job, check_memory: where callers find them)
    MEMORY_SHARE,
    VIDEO_EXTENSIONS,
    Job,
    StylizeConfig,
    StylizeError,
    atomic_target,
    check_frame_memory,
    check_memory,
)
from mlx_style.infer.video_files import stylize_video_file
from mlx_style.io import video
from mlx_style.io.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image, save_image
from mlx_style.io.registry import default_model
from mlx_style.nn.transformer import TransformerNet


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
    single_file = out is not None and out.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS) and not out.is_dir()
    if single_file:
        if len(inputs) != 1 or Path(inputs[0]).is_dir():
            raise UsageError(
                f"-o {out} names one file but the inputs are several files or a folder: give a folder for -o"
            )
        if not sources:
            return [], problems
        if media_kind(sources[0][0]) != media_kind(out):
            raise UsageError(
                f"-o {out}: a {media_kind(sources[0][0])} input needs a "
                f"{media_kind(sources[0][0])} output file (e.g. {out.with_suffix(sources[0][0].suffix)})"
            )
        targets = [out]
    else:
        folder = out or Path("out")
        targets = [folder / (rel.with_suffix(".mp4") if media_kind(src) == "video" else rel) for src, rel in sources]
    jobs, seen = [], {}
    for (src, _), target in zip(sources, targets):
        if target.resolve() == src.resolve():
            raise UsageError(f"{src} would be overwritten by its own result: choose another -o")
        if target.resolve() in seen:
            raise UsageError(
                f"{seen[target.resolve()]} and {src} would both be written to {target}: "
                "stylise them into separate folders"
            )
        seen[target.resolve()] = src
        jobs.append(Job(src, target, media_kind(src)))
    return jobs, problems


def list_videos(folder: Path) -> list[Path]:
    """Videos under ``folder``, recursively, outside hidden folders (an unfinished video's segments live in one)."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


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
    result = stylize_array(
        net, image, config.size, config.scale, config.preserve_color, config.strength, config.tile_size
    )
    partial = atomic_target(job.target)
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
    mean = (
        f"; {1000 * sum(summary.image_seconds) / len(summary.image_seconds):.0f} ms per image"
        if summary.image_seconds
        else ""
    )
    failed = (
        f", {len(summary.failed)} failed ({', '.join(str(p) for p, _ in summary.failed[:5])}"
        f"{', …' if len(summary.failed) > 5 else ''})"
        if summary.failed
        else ""
    )
    log(f"done: {len(summary.done)} stylised{failed} in {total:.1f} s{mean}")
    return summary
