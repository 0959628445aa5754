"""Be the camera in a video call: the cam's stylised frames sent to a virtual camera (``mlx-style cam --virtual``).

``pyvirtualcam`` does the sending: the OBS virtual camera on macOS and Windows (OBS installed; on a Mac its virtual
camera started and stopped once), v4l2loopback on Linux (``sudo modprobe v4l2loopback devices=1 exclusive_caps=1``).
It is GPL-2.0, so it stays an optional extra (``pip install -e ".[vcam]"``), imported only when a camera is opened.
The mirror choice (``VirtualSettings.mirror``) follows what call apps do; the end-of-run line gives the call's rate.

A call wants a steady frame rate and size whatever the model does, so ``VirtualCamera`` owns a sender thread that
ticks at the camera's fps (pyvirtualcam's ``sleep_until_next_frame``) and sends the latest frame from a one-frame
slot: a model slower than the call repeats its last frame, a faster one has frames replaced; neither stalls the call
nor builds lag. Frames are fitted to the camera's size (letterboxed when the aspect differs: side by side stays
whole). The pyvirtualcam call sits behind ``open_camera`` (a factory), so tests and the studio can pass another::

    camera = VirtualCamera(1280, 720, 30)   # raises VirtualCameraError (one line, exit 2) when there is none
    camera.send(frame_rgb)                  # any size, uint8 RGB; raises VirtualCameraLost (exit 1) once it failed
    camera.close()
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from mlx_style.errors import MlxStyleError, RunFailure
from mlx_style.infer.overlay import draw_overlay

DEFAULT_FPS = 30.0  # when the source does not say its rate (many cameras and streams report 0)
INSTALL_EXTRA = 'pip install -e ".[vcam]"'
NULL_BACKEND = "null"  # sends nowhere, at the real pace: for measuring what a call would receive


class VirtualCameraError(MlxStyleError, RuntimeError):
    """No virtual camera to send to (the extra not installed, no device, a bad setting); exit 2, before the loop."""


class VirtualCameraLost(RunFailure, RuntimeError):
    """The virtual camera stopped taking frames mid-run (exit 1): the cam ends with this one line."""


@dataclass
class VirtualSettings:
    """What ``--virtual`` sends: the cam's ``CamConfig.virtual`` (None: no virtual camera)."""

    fps: float | None = None  # the call's frame rate; None: the source's, or DEFAULT_FPS when it does not say
    size: tuple[int, int] | None = None  # (width, height) the call sees; None: the capture size
    device: str | None = None  # /dev/videoN (v4l2loopback) or a camera name; None: the first one found
    backend: str | None = None  # pyvirtualcam's backend (v4l2loopback, obs, unitycapture); None: any
    # The call sees the true picture by default, whatever --mirror does to the preview: Zoom, Meet and Teams mirror
    # the self-view themselves and send the others the unmirrored picture, so text reads the right way round.
    mirror: bool = False
    overlay: bool = False  # the FPS overlay in the call too (off: the call sees only the picture)


def setup_hint(platform: str | None = None) -> str:
    """How to get a virtual camera on this platform, in one sentence."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return (
            "install OBS Studio 30+ (obsproject.com), click Start Virtual Camera then Stop Virtual Camera once "
            f"and quit OBS; {INSTALL_EXTRA}"
        )
    if platform.startswith("win"):
        return f"install OBS Studio (obsproject.com; keep its own virtual camera stopped); {INSTALL_EXTRA}"
    return (
        f"sudo modprobe v4l2loopback devices=1 exclusive_caps=1 (package v4l2loopback-dkms); {INSTALL_EXTRA}; "
        "--device /dev/videoN picks one of several"
    )


def open_pyvirtualcam(width: int, height: int, fps: float, backend: str | None, device: str | None):
    """The seam: a ``pyvirtualcam.Camera`` taking uint8 RGB frames (``send``, ``sleep_until_next_frame``,
    ``close``, ``device``). Raises ``ImportError`` without the extra, and pyvirtualcam's own errors."""
    import pyvirtualcam
    from pyvirtualcam import camera as pvc

    if backend == NULL_BACKEND:
        pyvirtualcam.register_backend(NULL_BACKEND, NullBackend)
    if backend is not None and backend not in pvc.BACKENDS:  # pyvirtualcam would raise a bare KeyError
        names = ", ".join(sorted(set(pvc.BACKENDS) | {NULL_BACKEND}))
        raise ValueError(f"no backend {backend!r} here (this platform has: {names})")
    return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device, backend=backend)


class NullBackend:
    """A pyvirtualcam backend that takes every frame and shows it to no one (``--virtual-backend null``)."""

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self._device = device or "null"

    def send(self, frame):
        pass

    def close(self):
        pass

    def device(self):
        return self._device

    def native_fourcc(self):
        return None


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """``frame`` scaled to fit ``width × height`` with its aspect kept, centred on black (unchanged if it fits)."""
    H, W = frame.shape[:2]
    if (W, H) == (width, height):
        return frame
    scale = min(width / W, height / H)
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(frame, (w, h), interpolation=interpolation)
    if (w, h) == (width, height):
        return scaled
    out = np.zeros((height, width) + frame.shape[2:], frame.dtype)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = scaled
    return out


def call_view(view_bgr: np.ndarray, unmirror: bool, overlay: list[str] | None = None) -> np.ndarray:
    """The cam's view (BGR, as OpenCV shows it) as the call gets it: RGB, flipped back when the preview is mirrored,
    with the overlay's ``lines`` drawn after the flip so they read the right way round."""
    image = cv2.flip(view_bgr, 1) if unmirror else view_bgr
    if overlay:
        image = draw_overlay(image, overlay)
    return np.ascontiguousarray(image[:, :, ::-1])


class VirtualCamera:
    """A virtual camera fed at a steady ``fps`` from whatever rate ``send`` is called at.

    Args:
        width, height: the frames the call sees; ``send`` fits any frame to them.
        fps: the rate the call sees; the last frame is repeated when ``send`` is slower.
        backend, device: pyvirtualcam's backend and device (None: the first that works).
        mirror: flip every frame horizontally.
        open_camera: the factory behind the seam (``open_pyvirtualcam`` when None).

    Raises ``VirtualCameraError`` with one line saying what to install when there is no camera to open.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        backend: str | None = None,
        device: str | None = None,
        mirror: bool = False,
        *,
        open_camera=None,
    ):
        if width < 2 or height < 2 or width % 2 or height % 2:  # YUV 4:2:0 (OBS, most call apps) needs even sizes
            raise VirtualCameraError(
                f"a virtual camera's size must be even and at least 2x2 (--virtual-size), got {width}x{height}"
            )
        if not fps > 0:
            raise VirtualCameraError(f"a virtual camera's frame rate must be positive (--virtual-fps), got {fps:g}")
        self.width, self.height, self.fps, self.mirror = width, height, float(fps), mirror
        self._camera = self._open(open_camera or open_pyvirtualcam, backend, device)
        self.device = str(getattr(self._camera, "device", device) or device or "the virtual camera")
        self.frames_sent = 0  # what the call received, repeats included
        self.frames_new = 0  # of those, frames it had not had before
        self.error: str | None = None  # why the sender stopped (the camera lost)
        self._first_sent = self._last_sent = 0.0  # perf_counter of the first and the latest frame sent
        self._latest: np.ndarray | None = None
        self._fresh = False
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mlx_style-vcam", daemon=True)
        self._thread.start()

    def _open(self, open_camera, backend, device):
        try:
            return open_camera(self.width, self.height, self.fps, backend, device)
        except ImportError as exc:
            if exc.name != "pyvirtualcam":  # installed, but its native part for this system would not load
                raise VirtualCameraError(
                    f"pyvirtualcam is installed but does not load here ({exc}): reinstall it with {INSTALL_EXTRA}"
                ) from None
            raise VirtualCameraError(
                f"--virtual needs pyvirtualcam (GPL-2.0, an optional extra): {INSTALL_EXTRA}, "
                f"then {setup_hint().replace('; ' + INSTALL_EXTRA, '')}"
            ) from None
        except Exception as exc:  # pyvirtualcam raises RuntimeError per backend, ValueError on a bad size
            what = f"virtual camera {device}" if device else "a virtual camera"
            reason = " / ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
            raise VirtualCameraError(
                f"cannot open {what} ({reason}); it may be missing or another program may be "
                f"sending to it: {setup_hint()}"
            ) from None

    def send(self, frame_rgb: np.ndarray) -> None:
        """Hand over the newest frame (uint8 RGB ``(H, W, 3)``, any size); returns at once, copying it.

        Raises ``VirtualCameraLost`` once the camera has failed.
        """
        if self.error:
            raise VirtualCameraLost(self.error)
        if frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(
                f"[VirtualCamera] frames must be uint8 (H, W, 3) RGB, got {frame_rgb.dtype} {frame_rgb.shape}"
            )
        frame = fit_frame(frame_rgb, self.width, self.height)
        frame = np.ascontiguousarray(frame[:, ::-1] if self.mirror else frame)
        if frame is frame_rgb:
            frame = frame.copy()  # the caller may reuse its buffer
        with self._cond:
            self._latest, self._fresh = frame, True
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._stopped)
        try:
            while not self._stopped:
                with self._cond:
                    frame, fresh, self._fresh = self._latest, self._fresh, False
                self._camera.send(frame)
                self._last_sent = time.perf_counter()
                self._first_sent = self._first_sent or self._last_sent
                self.frames_sent += 1
                self.frames_new += fresh
                self._camera.sleep_until_next_frame()
        except Exception as exc:  # the device went away, OBS quit, the driver refused a frame
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.error = f"the virtual camera {self.device} stopped taking frames ({reason})"

    @property
    def repeats(self) -> int:
        """Frames the call got twice or more because the model had nothing newer."""
        return self.frames_sent - self.frames_new

    def stats(self) -> dict[str, float]:
        """Frames sent and new, and the rates the call received them at (frames per second between the first
        frame sent and the latest)."""
        seconds = self._last_sent - self._first_sent
        rate = lambda n: (n - 1) / seconds if seconds > 0 and n > 1 else float("nan")  # noqa: E731
        return {
            "frames_sent": self.frames_sent,
            "frames_new": self.frames_new,
            "repeats": self.repeats,
            "seconds": seconds,
            "fps_sent": rate(self.frames_sent),
            "fps_new": rate(self.frames_new),
        }

    def close(self) -> None:
        """Stop the sender and release the camera (safe to call twice)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        camera, self._camera = self._camera, None
        if camera is not None and not self._thread.is_alive():  # never close under a send stuck in the driver
            camera.close()

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def open_for_cam(
    settings: VirtualSettings, width: int, height: int, source_fps: float, log=print, open_camera=None
) -> VirtualCamera:
    """The cam's virtual camera: ``settings`` over the capture's size and rate (``call_view`` undoes the preview's
    ``--mirror``; ``settings.mirror`` flips what the call sees)."""
    W, H = settings.size or (width, height)
    if settings.size is None:
        W, H = W - W % 2, H - H % 2  # an odd capture size: one column or row less
    fps = settings.fps or (source_fps if source_fps > 0 else DEFAULT_FPS)
    camera = VirtualCamera(
        W, H, fps, settings.backend, settings.device, mirror=settings.mirror, open_camera=open_camera
    )
    seen = "a mirror image" if settings.mirror else "the unmirrored picture"
    log(
        f"virtual camera {camera.device}: {W}x{H} at {fps:g} FPS, {seen}, overlay "
        + ("on" if settings.overlay else "off")
    )
    return camera


def format_stats(stats: dict[str, float]) -> str:
    """One line for the end of a run: what the call received."""
    return (
        f"virtual camera: {stats['frames_sent']} frames sent at {stats['fps_sent']:.1f} FPS, "
        f"{stats['frames_new']} of them new ({stats['fps_new']:.1f} FPS), {stats['repeats']} repeats"
    )
