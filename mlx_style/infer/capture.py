"""Video capture for the live cam: open a camera, file or stream, and read it in its own thread.

The reader thread hands frames to the consumer through a ``FrameSlot`` that holds one frame. For a camera the
latest frame wins: a slow model drops stale frames instead of building lag, and the count of dropped frames is
kept. For a video file the reader waits until the consumer has taken each frame, so every frame is processed in
order (``every_frame=True``); ``pace`` makes a file behave like a camera instead.

Nothing here blocks forever: a source that stops delivering frames closes the slot after ``lost_timeout``
seconds with a reason, and ``FrameSlot.get`` always takes a timeout.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlx_style.errors import MlxStyleError
from mlx_style.platform import camera_not_opened


class SourceError(MlxStyleError, RuntimeError):
    """A video source that cannot be opened or stopped delivering frames; the message says what to do."""


@dataclass(frozen=True)
class Frame:
    """One captured frame: BGR uint8 ``(H, W, 3)`` as OpenCV delivers it, its index and capture time."""

    image: np.ndarray
    index: int  # position in the source (0, 1, 2, …): gaps mean dropped frames
    time: float  # time.perf_counter() when it was read


@dataclass(frozen=True)
class SourceInfo:
    """What was opened: ``kind`` is "camera", "file" or "stream"; ``fps`` is 0 when the source does not say."""

    kind: str
    name: str
    width: int
    height: int
    fps: float
    frames: int = 0  # a file's frame count (0: unknown, or not a file)


class FrameSlot:
    """A one-frame mailbox between a producer thread and one consumer.

    ``put`` replaces an untaken frame (counted in ``dropped``) or, with ``wait=True``, waits until the consumer
    has taken it. ``close`` ends the stream: the consumer still gets a frame already in the slot, then ``None``.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.dropped = 0
        self.reason = ""  # why the slot was closed ("end of video", "camera lost …")
        self.failed = False  # closed because of an error, not a normal end

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: Frame, wait: bool = False) -> bool:
        """Offer a frame; returns False (and drops it) when the slot is closed."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: self._frame is None or self._closed)
            if self._closed:
                return False
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        """Take the frame, waiting up to ``timeout`` seconds; ``None`` on timeout or when closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout=timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()  # wakes a producer waiting for the slot to empty
            return frame

    def close(self, reason: str = "", failed: bool = False) -> None:
        """End the stream; the first reason given is kept."""
        with self._cond:
            if not self._closed:
                self._closed, self.reason, self.failed = True, reason, failed
            self._cond.notify_all()


class CaptureThread(threading.Thread):
    """Reads ``capture`` (anything with OpenCV's ``read() -> (ok, image)``) into a ``FrameSlot``.

    Args:
        capture: an opened ``cv2.VideoCapture`` or an object with the same ``read``.
        slot: where frames go.
        every_frame: wait for the consumer before reading the next frame (video files), instead of dropping.
        end_on_failure: the first failed read is the end of the source (a file); otherwise reads are retried
            until they have failed for ``lost_timeout`` seconds (a camera unplugged, a stream gone).
        lost_timeout: seconds of failed reads after which the source counts as lost.
        pace: seconds between frames to keep (a file read at its own rate); ``None`` reads as fast as possible.
        label: how messages name the source ("camera 0").
        loop: at the end of a file, start it again (``--loop``: soak tests, installations).
        expected_frames: the file's frame count, when known: a file that ends before it says it was cut short.
    """

    def __init__(
        self,
        capture,
        slot: FrameSlot,
        *,
        every_frame: bool = False,
        end_on_failure: bool = False,
        lost_timeout: float = 2.0,
        pace: float | None = None,
        label: str = "the source",
        loop: bool = False,
        expected_frames: int | None = None,
    ):
        super().__init__(name="mlx_style-capture", daemon=True)  # daemon: a read stuck in a driver never blocks exit
        self.capture, self.slot = capture, slot
        self.every_frame, self.end_on_failure = every_frame, end_on_failure
        self.lost_timeout, self.pace, self.label = lost_timeout, pace, label
        self.loop, self.expected_frames = loop, expected_frames
        self.frames_read = 0
        self.loops = 0
        self._stop_event = threading.Event()

    def _rewind(self) -> bool:
        """Back to the first frame of a file; False where the source cannot seek."""
        import cv2

        try:
            return bool(self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0))
        except Exception:  # noqa: BLE001  (a capture without seeking: the loop ends instead)
            return False

    def _end_reason(self, frames_in_pass: int) -> str:
        if self.frames_read == 0:
            return f"{self.label} gave no frames"
        if self.expected_frames and 0 < frames_in_pass < self.expected_frames - 1:
            return (
                f"end of video after {frames_in_pass} of its {self.expected_frames} frames (the file is cut "
                "short or damaged)"
            )
        return "end of video"

    def stop(self) -> None:
        self._stop_event.set()
        self.slot.close("stopped")

    def run(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # a driver or decoder error must end the stream, not leave the consumer waiting
            self.slot.close(f"reading {self.label} failed ({exc})", failed=True)

    def _read_loop(self) -> None:
        failing_since = None
        next_due = time.perf_counter()
        while not self._stop_event.is_set():
            ok, image = self.capture.read()
            if not ok or image is None:
                if self.end_on_failure:
                    in_this_pass = self.frames_read - self.loops * (self.expected_frames or 0)
                    if self.loop and in_this_pass > 0 and self._rewind():
                        self.loops += 1
                        continue
                    self.slot.close(self._end_reason(in_this_pass), failed=self.frames_read == 0)
                    return
                now = time.perf_counter()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since >= self.lost_timeout:
                    what = "stopped delivering frames" if self.frames_read else "delivered no frames"
                    self.slot.close(f"{self.label} {what} for {self.lost_timeout:g} s", failed=True)
                    return
                time.sleep(0.01)
                continue
            failing_since = None
            frame = Frame(image, self.frames_read, time.perf_counter())
            self.frames_read += 1
            if not self.slot.put(frame, wait=self.every_frame):
                return
            if self.pace:
                next_due += self.pace
                delay = next_due - time.perf_counter()
                if delay > 0:
                    self._stop_event.wait(delay)
                else:
                    next_due = time.perf_counter()  # fell behind: do not burst to catch up


def parse_source(source: str) -> tuple[str, int | str]:
    """``"0"`` → ("camera", 0); ``"rtsp://…"`` → ("stream", url); anything else → ("file", path)."""
    text = str(source).strip()
    if text.isdigit():
        return "camera", int(text)
    if "://" in text:
        return "stream", text
    return "file", text


def open_source(source: str, width: int | None = None, height: int | None = None, open_timeout: float = 5.0):
    """Open a camera index, video file or stream URL with OpenCV; returns ``(capture, SourceInfo)``.

    ``width``/``height`` are requests to a camera or stream (the driver picks the nearest mode it has).
    Raises ``SourceError`` with a one-line message when the source cannot be opened.
    """
    import cv2

    kind, target = parse_source(source)
    if kind == "file" and not Path(target).is_file():
        raise SourceError(
            f"no video file at {target}: check the path, or pass a camera index (--source 0) or a stream URL"
        )
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # OpenCV prints each backend's failure; one message is ours
    try:
        if kind == "stream":
            ms = int(open_timeout * 1000)  # without these FFmpeg may wait 30 s or more on a dead URL
            capture = cv2.VideoCapture(
                target, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            )
        else:
            capture = cv2.VideoCapture(target)
    finally:
        logging.setLogLevel(previous)
    if not capture.isOpened():
        capture.release()
        if kind == "camera":
            raise SourceError(camera_not_opened(target))  # on macOS, first of all the camera permission
        if kind == "stream":
            raise SourceError(
                f"cannot open stream {target} (waited up to {open_timeout:g} s): check the URL and the network"
            )
        raise SourceError(f"cannot read video {target}: not a video OpenCV can decode (try an .mp4 or .avi)")
    if kind != "file":
        if width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    info = SourceInfo(
        kind,
        f"camera {target}" if kind == "camera" else str(target),
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
        max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) if kind == "file" else 0,
    )
    return capture, info
