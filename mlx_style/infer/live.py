"""Live style transfer from a camera, video file or stream: ``python -m mlx_style.cam``.

Johnson et al. 2016's feed-forward network runs once per frame on the MLX default device (the GPU on a Mac),
through one forward per processing size, compiled with ``mx.compile`` on a GPU. Capture runs in its own thread
and hands over only the latest frame (``mlx_style.infer.capture``), so a slow model drops stale frames instead of
building lag.

With ``--style-image PICTURE|FOLDER`` the arbitrary-style network takes any picture as the style, and n/p step
through the pictures (``infer.playlist``; a folder is watched for new ones) while ``]``/``[`` blend in the next.

Keys (in the window): ``q``/Esc quit; ``n``/``p`` next/previous style among ``weights/*.safetensors``; space
toggles stylised / side by side with the original; ``s`` saves a PNG snapshot; ``+``/``-`` change the processing
resolution; ``c`` toggles colour preservation (stylise the luminance only).

The processing size (the longer side the network runs at) defaults to 512 on a GPU; on a CPU it is measured at
start-up: the largest step that reaches ``--target-fps`` (10). The overlay shows the choice.

Without a display (``--headless``) it reads ``--frames N`` frames, writes ``--output FILE.mp4`` and prints FPS and
latency percentiles. A video file is then processed frame by frame in order, as fast as the model goes (every
frame, none dropped), which makes runs repeatable; with a window, a file plays at its own frame rate and drops
stale frames like a camera (``--pacing`` overrides both)::

    python -m mlx_style.cam --model wave
    python -m mlx_style.cam --headless --source fox.mp4 --frames 60 --output fox_wave.mp4
    python -m mlx_style.cam --style-image paintings/
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import cv2
import mlx.core as mx
import numpy as np

from mlx_style.platform import window_close_detectable, window_flags
from mlx_style.errors import MlxStyleError
from mlx_style.infer.cam_config import CamConfig, CamError  # noqa: F401  (where callers find them)
from mlx_style.infer.cam_controls import CamState, FrameStats, describe_change, handle_key
from mlx_style.infer.capture import CaptureThread, FrameSlot, SourceInfo, open_source
from mlx_style.infer.playlist import PlaylistError, open_styles, resolve_models  # noqa: F401
from mlx_style.infer.overlay import draw_overlay, status_lines
from mlx_style.infer.smoothing import DEFAULT_WEIGHT, TemporalSmoother
from mlx_style.infer.stylize import DTYPES
from mlx_style.infer.terminal_keys import TerminalKeys
from mlx_style.infer.vcam import VirtualCameraLost, VirtualSettings, call_view, open_for_cam
from mlx_style.infer.stylizer import (
    COMPILE_CHOICES,
    FRAME_SHARE,
    TARGET_FPS,
    Stylizer,
    start_next,  # noqa: F401
    calibrate_size,  # noqa: F401
    live_size,
    processing_shape,
    stylise_frame,
    use_compile,
)
from mlx_style.infer.video_out import VideoOut, check_output_path, snapshot_path
from mlx_style.io.paths import check_not_an_input
from mlx_style.io.registry import NO_MODEL_HINT, available_models, default_model, resolve_model, resolve_style
from mlx_style.io.style_models import ARBITRARY_HINT, PICTURE_KINDS, load_style_model, model_kind
from mlx_style.io.weights import WeightFileError

# On a CPU the processing size is measured at start-up (calibrate_size): CPUs differ by more than 10× in speed.
PACINGS = ("auto", "every-frame", "realtime")
WINDOW = "mlx_style"


def check_display() -> None:
    """Fail with advice instead of letting Qt abort the process when there is no screen to show a window on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise CamError(
            "no display (DISPLAY is not set): run with --headless --output OUT.mp4, "
            "or start an X server (e.g. xvfb-run)"
        )


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class RunResult:
    """How a run ended: ``failed`` runs exit non-zero with ``reason``."""

    reason: str
    failed: bool
    stats: dict[str, float]
    dropped: int
    output_frames: int
    virtual: dict[str, float] | None = None  # what the virtual camera sent (VirtualCamera.stats)


def choose_size(config: CamConfig, stylizer: Stylizer, info: SourceInfo, log=print) -> tuple[int, str]:
    """``(processing size, how it was chosen)``: ``--size``, the GPU default, or measured on a CPU."""
    if config.size:
        return config.size, "--size"
    size, measured = live_size(stylizer, info.height or 480, info.width or 640, config.target_fps, config.smooth)
    if not measured:
        return size, "GPU default"
    timings = ", ".join(f"{s}: {1000 * t:.0f} ms" for s, t in measured.items())
    fits = measured[size] <= FRAME_SHARE / config.target_fps
    why = (
        f"the largest that reaches {config.target_fps:g} FPS on this CPU"
        if fits
        else f"the smallest step: none reaches {config.target_fps:g} FPS on this CPU now"
    )
    what = "model and smoothing" if config.smooth else "model"
    log(
        f"processing size {size}: {why} ({what} time per frame {timings}; the {what} may use {FRAME_SHARE:.0%} "
        "of a frame); --size sets it"
    )
    return size, f"auto {config.target_fps:g} FPS" if fits else "auto, smallest"


def apply_style_keys(old: CamState, new: CamState, styles) -> CamState:
    """Carry a new style index or blend over to the playlist; a style that will not load leaves it as it was."""
    if (new.model_index, new.blend) != (old.model_index, old.blend):
        if not styles.select(new.model_index, new.blend):
            return replace(new, model_index=styles.index, blend=styles.blend)
        return replace(new, blend=styles.blend)
    return new


def show_and_read_keys(image: np.ndarray, state: CamState, styles) -> CamState:
    """Show ``image`` in the window, apply the key pressed (if any); a window closed with the mouse quits (where
    that can be seen: ``platform.window_close_detectable``; a minimised Cocoa window reads as closed)."""
    cv2.imshow(WINDOW, image)
    new = handle_key(state, cv2.waitKey(1))
    if window_close_detectable() and cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
        new = replace(new, quit=True)
    return apply_style_keys(state, new, styles)


def _pacing(config: CamConfig, info: SourceInfo) -> tuple[bool, float | None]:
    """``(every_frame, pace)`` for the capture thread."""
    if info.kind != "file":
        return False, None
    # a call is real time: a file sent to a virtual camera plays at its own rate, not at the model's
    auto = "every-frame" if config.headless and not config.virtual else "realtime"
    mode = config.pacing if config.pacing != "auto" else auto
    if mode == "every-frame":
        return True, None
    return False, 1.0 / info.fps if info.fps > 0 else 1.0 / 30


def run(config: CamConfig, capture=None, info: SourceInfo | None = None, log=print, on_frame=None) -> RunResult:
    """Run the cam until a quit key, ``config.frames``, the end of a file or a lost source.

    Args:
        config: what to run.
        capture: an opened capture (anything with OpenCV's ``read``/``release``) to use instead of opening
            ``config.source``; ``info`` then describes it.
        log: where progress lines go.
        on_frame: called after every frame with ``(model seconds, frames dropped so far)``; returning True stops
            the run (``scripts/bench/soak_cam.py`` measures long runs with it).

    Raises ``CamError`` / ``SourceError`` before the loop starts (no model, no source, no display).
    """
    config.check()
    if config.dtype not in DTYPES:
        raise CamError(f"unknown --dtype {config.dtype}: choose one of {', '.join(DTYPES)}")
    if config.output:
        check_output_path(config.output)
        check_not_an_input(config.output, [config.source, config.model], "--output")
    if not config.headless:
        check_display()
    if config.compile not in COMPILE_CHOICES:
        raise CamError(f"unknown --compile {config.compile}: choose one of {', '.join(COMPILE_CHOICES)}")
    compile = use_compile(config.compile)
    try:
        styles = open_styles(config, lambda net: Stylizer(net, compile))
    except PlaylistError as exc:
        raise CamError(str(exc)) from None
    if capture is None:
        capture, info = open_source(config.source, config.width, config.height)
    info = info or SourceInfo("camera", str(config.source), 0, 0, 0.0)
    try:  # before the size is measured: a missing virtual camera fails at once
        vcam = (
            open_for_cam(config.virtual, info.width or 640, info.height or 480, info.fps, log)
            if config.virtual
            else None
        )
    except MlxStyleError:
        capture.release()
        raise
    keys = TerminalKeys()  # without a window, the keys come from the terminal (when it is one)
    size, size_note = choose_size(config, styles.stylizer, info, log)
    state = CamState(
        model_index=styles.index,
        model_count=len(styles),
        size=size,
        side_by_side=config.side_by_side,
        preserve_color=config.preserve_color,
        smooth=config.smooth > 0,
    )

    slot = FrameSlot()
    every_frame, pace = _pacing(config, info)
    reader = CaptureThread(
        capture,
        slot,
        every_frame=every_frame,
        end_on_failure=info.kind == "file",
        lost_timeout=config.lost_timeout,
        pace=pace,
        label=info.name,
        loop=config.loop and info.kind == "file",
        expected_frames=info.frames or None,
    )
    stats, reason, failed = FrameStats(), "", False
    smoother = TemporalSmoother(config.smooth or DEFAULT_WEIGHT)  # used while state.smooth (key t)
    smoothing_for = None
    video = VideoOut(config.output, info.fps if info.fps > 0 else 30.0) if config.output else None
    compiled = " compiled" if compile else ""
    log(
        f"{info.name}: {info.width}x{info.height} at {info.fps:g} FPS; style {styles.name}, "
        f"{config.dtype}{compiled} on {mx.default_device()}, processing size {size} ({size_note}), "
        + (f"smoothing {config.smooth:g}" if config.smooth else "smoothing off")
    )
    if not config.headless:
        cv2.namedWindow(WINDOW, window_flags())  # AUTOSIZE: follows side by side; on Qt no toolbar either
    ahead = None  # the next frame, its network started before the window's key wait (stylizer.start_next)
    reader.start()
    try:
        if config.headless and config.virtual:
            keys.start()
        while True:
            frame = ahead.frame if ahead is not None else slot.get(timeout=config.lost_timeout)
            if frame is None:
                if slot.closed:
                    reason, failed = slot.reason, slot.failed
                else:  # the reader is stuck inside read(): a driver that neither delivers nor fails
                    reason, failed = f"{info.name} delivered no frame for {config.lost_timeout:g} s", True
                break
            image = cv2.flip(frame.image, 1) if config.mirror else frame.image
            styles.refresh()  # a style folder: pictures added or removed since
            state = replace(state, model_index=styles.index, model_count=len(styles))
            if (styles.name, state.size, state.smooth) != smoothing_for:
                smoother.reset()  # another style or size, or smoothing just turned on: nothing to blend with
                smoothing_for = (styles.name, state.size, state.smooth)
            view, latency, shape = stylise_frame(
                image, styles.stylizer, state, smoother if state.smooth else None, ahead
            )
            ahead = None
            if video:
                video.write(view)
            if vcam is not None:
                lines = (
                    None
                    if not config.virtual.overlay
                    else status_lines(
                        fps=stats.recent_fps(),
                        latency_ms=1000 * latency,
                        processing=shape,
                        size_note=size_note,
                        model=styles.name,
                        dtype=config.dtype,
                        preserve_color=state.preserve_color,
                        dropped=slot.dropped,
                        smooth=smoother.weight if state.smooth else 0.0,
                    )
                )
                try:
                    vcam.send(call_view(view, config.mirror, lines))
                except VirtualCameraLost as exc:
                    reason, failed = str(exc), True
                    break
            stats.add(time.perf_counter(), latency)
            if on_frame is not None and on_frame(latency, slot.dropped):
                reason = "stopped by the caller"
                break
            if state.snapshot:
                path = snapshot_path(config.snapshot_dir, styles.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), view)
                log(f"saved {path}")
                state = replace(state, snapshot=False)
            if not config.headless:
                lines = status_lines(
                    fps=stats.recent_fps(),
                    latency_ms=1000 * latency,
                    processing=shape,
                    size_note=size_note if state.size == size else "+/-",
                    model=styles.name,
                    dtype=config.dtype,
                    preserve_color=state.preserve_color,
                    dropped=slot.dropped,
                    smooth=smoother.weight if state.smooth else 0.0,
                )
                ahead = start_next(slot, styles.stylizer, state, config.mirror)  # computes during the key wait
                state = show_and_read_keys(draw_overlay(view, lines), state, styles)
                if state.quit:
                    reason = "quit"
                    break
            if keys.active:
                new = apply_style_keys(state, handle_key(state, keys.read()), styles)
                if change := describe_change(state, new, styles.name):
                    log(change)  # no window to show it in
                state = new
                if state.quit:
                    reason = "quit"
                    break
            if config.frames and stats.frames >= config.frames:
                reason = f"{config.frames} frames done"
                break
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP under interrupt_on_termination (named)
        reason = f"interrupted ({exc})" if str(exc) else "interrupted"
    finally:
        keys.restore()
        if vcam is not None:
            vcam.close()
        reader.stop()
        reader.join(timeout=1.0)
        if not reader.is_alive():
            capture.release()
        # else: the reader is stuck inside a driver call; releasing the capture under it is a use-after-free in
        # OpenCV, so it is left to the process exit (the reader is a daemon thread)
        if video:
            video.close()
        if not config.headless:
            cv2.destroyAllWindows()
    return RunResult(
        reason,
        failed,
        stats.summary(),
        slot.dropped,
        video.frames if video else 0,
        vcam.stats() if vcam is not None else None,
    )


def format_summary(result: RunResult) -> str:
    s = result.stats
    if not s["frames"]:
        return "no frames processed"
    fps = f"FPS p50 {s['fps_p50']:.1f}, p95 {s['fps_p95']:.1f}" if s["frames"] > 1 else "FPS n/a (one frame)"
    return (
        f"{s['frames']} frames, {result.dropped} dropped; {fps}; "
        f"model latency p50 {s['latency_ms_p50']:.1f} ms, p95 {s['latency_ms_p95']:.1f} ms"
    )
