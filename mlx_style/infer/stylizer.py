"""The cam's stylising of one frame: a frame function compiled once per size (``Stylizer``), one camera frame to
the view shown (``stylise_frame``), its network started ahead of the window's key wait (``start_next``), and the
processing size a CPU can keep up with (``calibrate_size``). ``infer.live`` runs them over a camera or a video."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import mlx.core as mx
import numpy as np

from mlx_style.backend import cam_default_size, compile_inference
from mlx_style.infer.cam_controls import SIZE_STEPS, CamState
from mlx_style.infer.overlay import compose_view
from mlx_style.infer.color import keep_colors
from mlx_style.infer.smoothing import TemporalSmoother
from mlx_style.infer.stylize import to_uint8
from mlx_style.errors import UsageError

# On a CPU the processing size is measured at start-up (calibrate_size): CPUs differ by more than 10× in speed.
TARGET_FPS = 10.0  # what the CPU calibration aims for
FRAME_SHARE = 0.8  # of each frame's time the model may use; capture, resizing and display take the rest
COMPILE_CHOICES = ("auto", "yes", "no")


class Stylizer:
    """A style network with one forward per ``(H, W, dtype)``, compiled with ``mx.compile`` if asked.

    A compiled forward is traced once per input shape; later frames of that size reuse the graph. ``traces``
    counts the traces (the Python body of the forward runs only while tracing, or on every call uncompiled).
    """

    def __init__(self, net, compile: bool = True):
        """``net``: a frame function (``nn.style.FrameFunction``: any kind of network, bound to its style)."""
        self.net, self.compile = net, compile
        self.dtype = net.compute_dtype
        self.traces = 0
        self._forwards: dict[tuple, object] = {}

    def _forward(self, image: mx.array, *style: mx.array) -> mx.array:
        self.traces += 1
        image = image.astype(self.dtype)
        # the style (a blend, a picture's vector) is an input, so a compiled forward follows it as it changes
        stylised = self.net.apply_style(image, *style).astype(mx.float32)
        # round and convert on the device: a quarter of the bytes to copy back, and no work left for numpy
        return mx.clip(mx.round(stylised), 0, 255).astype(mx.uint8)

    def forward(self, height: int, width: int):
        """The function that stylises a ``(1, height, width, 3)`` uint8 batch (cached per size and dtype)."""
        key = (height, width, self.dtype)
        if key not in self._forwards:
            self._forwards[key] = mx.compile(self._forward) if self.compile else self._forward
        return self._forwards[key]

    def start(self, rgb: np.ndarray) -> mx.array:
        """Start stylising one uint8 RGB ``(H, W, 3)`` image (``mx.async_eval``) and return at once: the caller
        can wait on something else (the cam window's keys) while the device computes; ``finish`` collects it."""
        H, W, _ = rgb.shape
        image = mx.array(np.ascontiguousarray(rgb))[None]
        out = self.forward(H, W)(image, *self.net.style_inputs(image))
        mx.async_eval(out)
        return out

    def finish(self, out: mx.array, rgb: np.ndarray, preserve_color: bool = False) -> np.ndarray:
        """The uint8 RGB result of ``start(rgb)``; ``preserve_color`` keeps the input's chroma and stylises the
        luminance only (``stylize.keep_colors``)."""
        mx.eval(out)
        stylised = np.asarray(out[0])
        return to_uint8(keep_colors(stylised, rgb)) if preserve_color else stylised

    def __call__(self, rgb: np.ndarray, preserve_color: bool = False) -> np.ndarray:
        """Stylise one uint8 RGB ``(H, W, 3)`` image; returns uint8 RGB of the same size (``start`` + ``finish``)."""
        return self.finish(self.start(rgb), rgb, preserve_color)


@dataclass
class Started:
    """A frame whose network was started (``Stylizer.start``) before the cam window's key wait, which it then
    overlaps (Cocoa's ``waitKey`` sleeps at least 10 ms). Used only while what it was started with still holds
    (the stylizer, its style vector, the size, style and blend), so each frame's result is the serial loop's."""

    frame: object  # the capture.Frame it came from (None: a frame the loop already held)
    small: np.ndarray  # BGR at the processing size
    out: mx.array
    start: float  # time.perf_counter() when the network was started
    stylizer: Stylizer
    vector: object  # the picture-style vector it used (the playlist swaps it in place), or None
    settings: tuple  # (size, model index, blend)

    def holds(self, stylizer: Stylizer, state: CamState) -> bool:
        return (
            self.stylizer is stylizer
            and self.vector is getattr(stylizer.net, "vector", None)
            and self.settings == (state.size, state.model_index, state.blend)
        )


def start_frame(image: np.ndarray, stylizer: Stylizer, state: CamState, frame=None) -> Started:
    """Resize a BGR frame to the processing size and start the network on it."""
    H, W = processing_shape(image.shape[0], image.shape[1], state.size)
    small = cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA)
    start = time.perf_counter()
    out = stylizer.start(small[:, :, ::-1])
    return Started(
        frame,
        small,
        out,
        start,
        stylizer,
        getattr(stylizer.net, "vector", None),
        (state.size, state.model_index, state.blend),
    )


def start_next(slot, stylizer: Stylizer, state: CamState, mirror: bool) -> Started | None:
    """Take the frame waiting in ``slot`` (a ``capture.FrameSlot``), if any, and start the network on it."""
    frame = slot.get(timeout=0)
    if frame is None:
        return None
    return start_frame(cv2.flip(frame.image, 1) if mirror else frame.image, stylizer, state, frame)


def stylise_frame(
    image: np.ndarray,
    stylizer: Stylizer,
    state: CamState,
    smoother: TemporalSmoother | None = None,
    started: Started | None = None,
) -> tuple[np.ndarray, float, tuple]:
    """One camera frame (BGR) → ``(view to show, model seconds, processing (H, W))``; with a ``smoother``, the
    stylised frame is blended with the previous one along the motion, at the processing size. ``started``: the
    frame's network already started (``start_next``), used while it holds; its model seconds then include the
    key wait it overlapped."""
    if started is None or not started.holds(stylizer, state):
        started = start_frame(image, stylizer, state)
    stylised_rgb = stylizer.finish(started.out, started.small[:, :, ::-1], state.preserve_color)
    latency = time.perf_counter() - started.start
    stylised = np.ascontiguousarray(stylised_rgb[:, :, ::-1])
    if smoother is not None:
        stylised = smoother(started.small, stylised)
    return compose_view(image, stylised, state.side_by_side), latency, started.small.shape[:2]


def calibrate_size(
    stylizer: Stylizer,
    height: int,
    width: int,
    target_fps: float = TARGET_FPS,
    steps: tuple[int, ...] = SIZE_STEPS,
    clock=time.perf_counter,
    smooth: float = 0.0,
) -> tuple[int, dict[int, float]]:
    """The largest step whose model time fits ``FRAME_SHARE / target_fps`` for frames of ``height × width``.

    Steps are tried smallest first (one untimed call, then the mean of two timed calls) and the search stops at
    the first that is too slow, so it costs a few frames' time. With ``smooth`` the timed calls include the
    temporal smoothing (its optical flow), which the cam then runs on every frame. Returns
    ``(size, {size: seconds measured})``; the smallest step when none is fast enough.
    """
    budget = FRAME_SHARE / target_fps
    chosen, measured = steps[0], {}
    for size in steps:
        H, W = processing_shape(height, width, size)
        image = np.full((H, W, 3), 128, np.uint8)
        smoother = TemporalSmoother(smooth) if smooth else None

        def frame():
            out = stylizer(image)
            if smoother is not None:
                smoother(image, np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8)))

        frame()
        start = clock()
        frame()
        frame()
        measured[size] = (clock() - start) / 2
        if measured[size] > budget:
            break
        chosen = size
    return chosen, measured


def live_size(
    stylizer, height: int, width: int, target_fps: float = TARGET_FPS, smooth: float = 0.0, clock=time.perf_counter
) -> tuple[int, dict[int, float]]:
    """The processing size a live stream runs at without a size given (the cam, the studio's Live tab): the GPU
    default (``backend.cam_default_size``, nothing measured), else ``calibrate_size`` on this CPU."""
    if cam_default_size():
        return cam_default_size(), {}
    return calibrate_size(stylizer, height, width, target_fps, smooth=smooth, clock=clock)


def use_compile(choice: str, device: mx.Device | None = None) -> bool:
    """``auto`` compiles on a GPU only: on the CPU backend ``mx.compile`` builds its fused kernels with the C++
    compiler at the first frame of every size (seconds to a minute) and then ran no faster than the plain forward."""
    if choice not in COMPILE_CHOICES:
        raise UsageError(f"[use_compile] choice must be one of {COMPILE_CHOICES}, got {choice!r}")
    return choice == "yes" or (choice == "auto" and compile_inference(device))


def processing_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(H, W)`` with the longer side ``size``, the aspect ratio kept and both multiples of 4 (the network's
    stride) and at least 8, so no padding is spent inside the network."""
    scale = size / max(height, width)
    return (max(8, round(height * scale / 4) * 4), max(8, round(width * scale / 4) * 4))
