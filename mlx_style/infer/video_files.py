"""Stylising one video file: frames in their source's order and timing, smoothed over time, written in finished
segments (``infer.video_out.PartialVideo``) that ``--resume`` continues, replacing the output only when whole."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mlx_style.infer.jobs import PROGRESS_SECONDS, SEGMENT_SECONDS, Job, StylizeConfig, check_frame_memory
from mlx_style.infer.smoothing import TemporalSmoother
from mlx_style.infer.stylize import stylize_array
from mlx_style.infer.video_out import PartialVideo
from mlx_style.io import video
from mlx_style.timing import format_duration


def resume_settings(job: Job, config: StylizeConfig) -> dict:
    """What must not change between an interrupted run and its ``--resume``: the source and the network (as files)
    and every option that changes a frame."""

    def identity(path) -> list:
        stat = Path(path).stat()
        return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]

    model = identity(config.model) if config.model and Path(config.model).is_file() else config.model
    options = (
        "size",
        "scale",
        "preserve_color",
        "strength",
        "dtype",
        "tile_size",
        "smooth",
        "style",
        "style_images",
        "style_strength",
    )
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


def stylize_video_file(net, job: Job, config: StylizeConfig, log=print) -> str:
    """Stylise a video into ``job.target``: every frame upright at its source timestamp, with the source's sound
    (``io.video``); written in segments that ``--resume`` continues after an interruption. Returns a description.

    Raises ``VideoError`` (not a readable video; before any work), ``StylizeError`` (too large for memory),
    ``VideoCutShort`` (the file ended early), ``VideoWriteError`` (a full disk; ends the batch) and
    ``KeyboardInterrupt`` (the finished segments kept, the way to resume printed).
    """
    info = video.probe(job.source)
    check_frame_memory(net, info.height, info.width, config)
    encoder = video.video_encoder(job.target.suffix)
    sound = (
        "sound dropped (--no-audio)"
        if not config.audio
        else f"sound kept ({info.audio} stream{'s' if info.audio > 1 else ''})"
        if info.audio
        else "no sound"
    )
    log(
        f"  {job.source}: {info.width}×{info.height}, {info.frames} frames at {info.fps:.3g} fps → {encoder} "
        f"quality {config.quality}, {sound}"
    )
    partial, start = None, time.perf_counter()
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        partial = PartialVideo(
            job.target,
            resume_settings(job, config),
            max(1, round(SEGMENT_SECONDS * info.fps)),
            encoder,
            config.quality,
            info.rate,
            info.time_base,
            config.resume,
            log,
        )
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


def _stylize_one(net, rgb: np.ndarray, config: StylizeConfig, smoother) -> np.ndarray:
    out = stylize_array(net, rgb, config.size, config.scale, config.preserve_color, config.strength, config.tile_size)
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
        log(
            f"  {W}×{H} has an odd side and H.264 in yuv420p (what browsers play) needs even ones: the video is "
            f"{w}×{h}, its last {'column' if w != W else 'row'}{' and row' if w != W and h != H else ''} repeated"
        )


def _check_complete(frames: int, info, damage: str | None, resume: bool) -> None:
    """Refuse a video that ended before its header's frame count (one frame of slack: containers' counts can
    include a frame an edit list hides)."""
    if frames == 0 and not damage and info.frames <= 1:
        raise video.VideoError("the video has no frames")
    short = frames < info.frames - 1 if info.exact else (damage is not None or frames < 0.9 * info.frames - 1)
    if short:
        of = f" of its {info.frames}" if info.exact else f" of about {info.frames}"
        kept = "; the finished segments are kept for --resume" if resume else "; nothing written"
        raise video.VideoCutShort(
            f"end of video after {frames}{of} frames (the file is cut short or damaged"
            f"{': ' + damage if damage else ''}){kept}"
        )
