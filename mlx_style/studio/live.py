"""The Live tab: one browser tab's webcam stream, stylised frame by frame with the cam's temporal smoothing.

Each tab has its own ``LiveSession`` (its smoother, its last frame, its timings), so two tabs never interleave.
A frame that arrives while the network is busy (another tab's frame, a photo, a video) is dropped, not queued:
the page keeps showing the last stylised frame, and the lag never grows (as ``mlx-style cam`` hands over only
the latest frame).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable

import numpy as np

from mlx_style.infer.smoothing import DEFAULT_WEIGHT, TemporalSmoother
from mlx_style.infer.stylize import stylize_array
from mlx_style.infer.stylizer import live_size, processing_shape
from mlx_style.pixels import resize
from mlx_style.nn.style import FrameFunction
from mlx_style.studio.engine import compute

WINDOW = 30  # frames the FPS and latency are averaged over
# What the automatic size aims for. Lower than the cam's 10: each frame's round trip through the browser (capture,
# encoding, the page drawing it) takes part of every frame's time on the same CPU, whatever the network costs.
TARGET_FPS = 5.0


class LiveSession:
    """The state of one tab's stream."""

    def __init__(self, smooth_weight: float = DEFAULT_WEIGHT, clock=time.perf_counter):
        self.smoother = TemporalSmoother(smooth_weight)
        self.clock = clock
        self.last: np.ndarray | None = None  # the last stylised frame, at its processing size
        self.key: tuple | None = None  # what the last frame was stylised with: a change restarts the smoothing
        self.finished: deque[float] = deque(maxlen=WINDOW)
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.frames = self.dropped = 0
        self.auto_sizes: dict[tuple, int] = {}  # (network key, frame shape, smoothing) → the size measured for it
        self.size: int | None = None  # the processing size of the last frame
        self.auto = False  # whether it was chosen automatically

    def frame(
        self,
        rgb: np.ndarray,
        net: FrameFunction,
        key: tuple,
        size: int | None,
        keep_colours: bool = False,
        strength: float = 1.0,
        smooth: bool = True,
        auto_size: bool = False,
        network: Hashable = None,
    ) -> np.ndarray | None:
        """The stylised frame, or None when the network was busy and this frame is dropped.

        ``key`` names the style and settings (a change restarts the smoothing: no blend across two styles).
        ``auto_size`` ignores ``size`` for the cam's rule: the GPU default, or measured on this CPU for
        ``TARGET_FPS`` (``infer.stylizer.live_size``) once per ``network`` (default: ``key[0]``), frame shape and
        smoothing, while the frames that arrive meanwhile are dropped.
        """
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if not compute.acquire(blocking=False):
            self.dropped += 1
            return None
        try:
            if auto_size:
                size = self.measured_size(net, key[0] if network is None else network, rgb.shape[:2], smooth)
            self.size, self.auto = size, auto_size
            start = self.clock()
            # At the processing size, as the cam does: the network, then the smoothing's optical flow
            small = rgb if size is None else resize(rgb, *processing_shape(*rgb.shape[:2], size))
            out = stylize_array(net, small, preserve_color=keep_colours, strength=strength)
        finally:
            compute.release()
        if key != self.key or not smooth or (self.last is not None and self.last.shape != out.shape):
            self.smoother.reset()
            self.key = key
        if smooth:  # BGR, as the cam hands frames over: the smoother's luma and flow were tuned on it
            out = self.smoother(small[..., ::-1].copy(), out[..., ::-1].copy())[..., ::-1].copy()
        self.last = out
        out = resize(out, *rgb.shape[:2])  # back to the camera's size
        now = self.clock()
        self.latencies.append(now - start)
        self.finished.append(now)
        self.frames += 1
        return out

    def measured_size(self, net: FrameFunction, network: object, shape: tuple[int, int], smooth: bool) -> int:
        """The automatic processing size for ``network`` on frames of ``shape`` (measured once, then kept)."""
        cache_key = (network, shape, smooth)
        if cache_key not in self.auto_sizes:
            self.auto_sizes[cache_key], _ = live_size(
                lambda image: stylize_array(net, image),
                *shape,
                TARGET_FPS,
                smooth=DEFAULT_WEIGHT if smooth else 0.0,
                clock=self.clock,
            )
        return self.auto_sizes[cache_key]

    def fps(self) -> float:
        if len(self.finished) < 2:
            return 0.0
        span = self.finished[-1] - self.finished[0]
        return (len(self.finished) - 1) / span if span > 0 else 0.0

    def latency_ms(self) -> float:
        return 1000.0 * sum(self.latencies) / len(self.latencies) if self.latencies else 0.0

    def stats(self) -> str:
        """One line for the page: frames per second, the network's time per frame, frames dropped."""
        if not self.frames:
            return "waiting for the camera…"
        size = f"size {self.size or 'full'}" + (" (automatic)" if self.auto else "")
        return (
            f"{self.fps():.1f} fps · {self.latency_ms():.0f} ms a frame · {size} · {self.frames} shown, "
            f"{self.dropped} dropped while busy"
        )
