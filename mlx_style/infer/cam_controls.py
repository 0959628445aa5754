"""What the cam's keys control and how its frame rate is counted: pure functions, tested without a window.

Keys: ``q``/Esc quit; ``n``/``p`` next/previous style; ``]``/``[`` blend more/less of the next style (style
pictures); space side by side; ``s`` snapshot; ``+``/``-`` processing size; ``c`` colour preservation; ``t``
temporal smoothing on or off.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

# Processing resolutions (longer side) that +/- step through.
BLEND_STEP = 0.1  # what one press of ] or [ moves the blend with the next style
SIZE_STEPS = (64, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 960, 1280)
ESC = 27


def step_size(size: int, direction: int) -> int:
    """The next processing size in ``SIZE_STEPS`` up (``+1``) or down (``-1``) from ``size``, clamped."""
    if direction > 0:
        return next((s for s in SIZE_STEPS if s > size), max(size, SIZE_STEPS[-1]))
    return next((s for s in reversed(SIZE_STEPS) if s < size), min(size, SIZE_STEPS[0]))


@dataclass(frozen=True)
class CamState:
    """What the keys control. ``snapshot`` is a request the loop carries out and clears."""

    model_index: int = 0
    model_count: int = 1
    size: int = 256
    side_by_side: bool = False
    preserve_color: bool = False
    blend: float = 0.0  # of the next style mixed into the current one (style pictures only)
    smooth: bool = False  # temporal smoothing (its weight is the cam's --smooth, or the default when that is 0)
    snapshot: bool = False
    quit: bool = False


def handle_key(state: CamState, key: int) -> CamState:
    """The state after pressing ``key`` (``cv2.waitKey``'s code; -1 for none)."""
    if key < 0:
        return state
    char = chr(key & 0xFF).lower()
    if char == "q" or key & 0xFF == ESC:
        return replace(state, quit=True)
    if char in "np" and state.model_count > 0:
        shift = 1 if char == "n" else -1
        return replace(state, model_index=(state.model_index + shift) % state.model_count, blend=0.0)
    if char in "[]":
        step = BLEND_STEP if char == "]" else -BLEND_STEP
        return replace(state, blend=round(min(max(state.blend + step, 0.0), 1.0), 6))
    if char == " ":
        return replace(state, side_by_side=not state.side_by_side)
    if char == "s":
        return replace(state, snapshot=True)
    if char in "+=":  # = is + without shift on most keyboards
        return replace(state, size=step_size(state.size, +1))
    if char in "-_":
        return replace(state, size=step_size(state.size, -1))
    if char == "c":
        return replace(state, preserve_color=not state.preserve_color)
    if char == "t":
        return replace(state, smooth=not state.smooth)
    return state


def describe_change(old: CamState, new: CamState, style: str) -> str | None:
    """What a key changed, in a few words (the cam prints it when it has no window to show it), or None."""
    changes = []
    if (old.model_index, old.blend) != (new.model_index, new.blend):
        changes.append(f"style {style}")
    if old.size != new.size:
        changes.append(f"processing size {new.size}")
    if old.preserve_color != new.preserve_color:
        changes.append("colours kept" if new.preserve_color else "colours stylised")
    if old.smooth != new.smooth:
        changes.append("smoothing " + ("on" if new.smooth else "off"))
    if old.side_by_side != new.side_by_side:
        changes.append("side by side" if new.side_by_side else "stylised only")
    return ", ".join(changes) or None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


class FrameStats:
    """Frame intervals and model latencies; the overlay's recent FPS and the end-of-run percentiles.

    Percentiles cover the last ``history`` frames, so hours of cam keep the memory flat.
    """

    def __init__(self, window: int = 30, history: int = 20_000):
        self.window = window
        self.intervals: deque[float] = deque(maxlen=history)
        self.latencies: deque[float] = deque(maxlen=history)
        self._last: float | None = None
        self._frames = 0

    def add(self, now: float, latency: float) -> None:
        """Record a finished frame at time ``now`` (seconds) whose model call took ``latency`` seconds."""
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now
        self.latencies.append(latency)
        self._frames += 1

    @property
    def frames(self) -> int:
        return self._frames

    def recent_fps(self) -> float:
        recent = list(itertools.islice(self.intervals, max(0, len(self.intervals) - self.window), None))
        return len(recent) / sum(recent) if recent and sum(recent) > 0 else 0.0

    def summary(self) -> dict[str, float]:
        """FPS p50/p95 (1 / the median and the 95th-percentile frame interval: p95 is the rate 95 % of frames
        reach) and model latency p50/p95 in ms."""
        inv = lambda s: 1.0 / s if s > 0 else float("nan")  # noqa: E731
        return {
            "frames": self.frames,
            "fps_p50": inv(percentile(self.intervals, 50)),
            "fps_p95": inv(percentile(self.intervals, 95)),
            "latency_ms_p50": 1000 * percentile(self.latencies, 50),
            "latency_ms_p95": 1000 * percentile(self.latencies, 95),
        }
