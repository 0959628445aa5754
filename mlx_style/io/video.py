"""Video files, read and written through PyAV (FFmpeg's libraries, bundled in the ``av`` wheel): the one video layer.

Reading (``probe``, ``VideoReader``) gives upright RGB frames with their source timestamps. PyAV decodes but does
not turn a phone's portrait video upright (its display matrix), so the frames are rotated here.

Writing (``SegmentWriter``, ``join``) encodes H.264 in yuv420p with BT.709 tags (what browsers play) for
.mp4/.m4v/.mov/.mkv, VP9 for .webm and MJPEG for .avi, each frame at its source timestamp, and joins finished
segments with every audio stream of the source copied packet by packet. Segments make long runs resumable: each
starts with a keyframe and is a finished file, so a kill loses only the one under way, and a resumed run encodes the
same segments as an uninterrupted one (x264 is deterministic).

OpenCV stays for cameras and streams (``infer.capture``) and for image operations.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mlx_style.errors import MlxStyleError, RunFailure

DEFAULT_QUALITY = 18  # x264's CRF scale: 18 is its "visually lossless" point; each +6 about halves the file
VIDEO_CODECS = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".mkv": "h264", ".webm": "vp9", ".avi": "mjpeg"}
SLOW_FRAME_ENV = "MLX_STYLE_SLOW_FRAMES"  # tests: seconds to wait after each frame encoded, so a kill lands mid-run
UNSPECIFIED = 2  # FFmpeg's AVCOL_SPC_UNSPECIFIED
MOV_SUFFIXES = (".mp4", ".m4v", ".mov")


class VideoError(MlxStyleError, ValueError):
    """A file that cannot be read as a video; the message says why."""


class VideoCutShort(RunFailure):
    """A video that ended before the frame count its header gives (a download cut short, a damaged file)."""


class VideoWriteError(RunFailure):
    """A video that could not be written (a full disk, a folder without write permission)."""


def write_failure(target: str | Path, exc: OSError, note: str = "") -> VideoWriteError:
    """The one line a failed write gives: ``could not write TARGET: the disk is full`` (or the system's reason)."""
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    why = "the disk is full" if full else (getattr(exc, "strerror", None) or str(exc))
    return VideoWriteError(f"could not write {target}: {why}{note}")


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's headers say (nothing decoded)."""

    width: int  # as stored: a rotated video's frames come out with these swapped
    height: int
    rate: Fraction  # average frame rate
    time_base: Fraction  # of the video stream's timestamps
    frames: int  # the container's frame count, else estimated from duration × rate (``exact`` says which)
    exact: bool
    duration: float  # seconds
    codec: str
    audio: int  # audio streams

    @property
    def fps(self) -> float:
        return float(self.rate)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB uint8 ``(H, W, 3)``, upright; ``pts`` and ``duration`` in the stream's time base."""

    image: np.ndarray
    pts: int
    duration: int


def open_input(path: str | Path):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"not a video FFmpeg can read ({exc.strerror or exc})") from None


def probe(path: str | Path) -> VideoInfo:
    """The video's size, rate, time base, frame count and audio streams; ``VideoError`` for a file that is not a
    video, has no video stream, or whose codec this FFmpeg cannot decode."""
    with open_input(path) as container:
        if not container.streams.video:
            raise VideoError("no video stream in it (audio only?)")
        stream = container.streams.video[0]
        context = stream.codec_context
        if context is None or not has_codec(context.name, "r"):
            what = context.name if context is not None else "an unknown codec"
            raise VideoError(f"its video codec ({what}) cannot be decoded by the FFmpeg in PyAV")
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / av.time_base if container.duration else 0.0
        exact = bool(stream.frames)
        frames = stream.frames if exact else round(duration * rate)
        return VideoInfo(
            context.width,
            context.height,
            Fraction(rate),
            Fraction(stream.time_base),
            frames,
            exact,
            duration,
            context.name,
            len(container.streams.audio),
        )


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as the source should be seen: RGB with its own colour matrix and range, turned upright."""
    # Untagged video: players assume BT.709 for HD and BT.601 below, and so does this.
    matrix = None if frame.colorspace != UNSPECIFIED else ("ITU709" if frame.height >= 720 else "ITU601")
    rgb = frame.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=frame.color_range or None)
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class VideoReader:
    """The frames of a video in order, as ``Frame``s; ``start_pts`` skips those before it (seeking to the keyframe
    before it first, and decoding from the start where the seek overshoots).

    A file that fails to decode part-way ends the iteration and sets ``damage`` to FFmpeg's reason.
    """

    def __init__(self, path: str | Path, start_pts: int | None = None):
        self.path, self.start_pts = Path(path), start_pts
        self.damage: str | None = None

    def __iter__(self):
        start = self.start_pts
        for seek in (True, False) if start is not None else (False,):
            with open_input(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # frame threads: several times faster on long videos
                if seek:
                    try:
                        container.seek(start, stream=stream)
                    except av.FFmpegError:
                        continue
                decoded = 0
                for frame in self._decode(container, stream):
                    if seek and not decoded and frame.pts > start:
                        break  # the seek landed after the frame wanted: decode from the start instead
                    decoded += 1
                    if start is None or frame.pts >= start:
                        yield frame
                if decoded or not seek:
                    return

    def _decode(self, container, stream):
        rate = stream.average_rate or Fraction(30)
        step = max(1, round(1 / (rate * stream.time_base)))  # one frame's duration in time-base units
        try:
            for index, frame in enumerate(container.decode(stream)):
                pts = frame.pts if frame.pts is not None else index * step
                yield Frame(upright_rgb(frame), pts, getattr(frame, "duration", 0) or step)
        except av.FFmpegError as exc:
            self.damage = exc.strerror or str(exc)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def has_codec(name: str, mode: str = "w") -> bool:
    """Whether this FFmpeg has an encoder (``w``) or a decoder (``r``) called ``name``."""
    try:
        av.codec.Codec(name, mode)
        return True
    except (av.FFmpegError, ValueError):
        return False


def video_encoder(suffix: str, platform: str = sys.platform) -> str:
    """The encoder for an output suffix: H.264 through the Mac's hardware encoder where this FFmpeg has it (fast,
    and the GPU is busy with the network anyway), else x264; VP9 for .webm, MJPEG for .avi."""
    codec = VIDEO_CODECS[suffix.lower()]
    if codec == "h264":
        return "h264_videotoolbox" if platform == "darwin" and has_codec("h264_videotoolbox") else "libx264"
    return {"vp9": "libvpx-vp9", "mjpeg": "mjpeg"}[codec]


def writable_size(encoder: str, width: int, height: int) -> tuple[int, int]:
    """The frame size an encoder can write: H.264 in yuv420p needs even sides (one pixel is added); the others keep
    any size."""
    if encoder in ("libx264", "h264_videotoolbox"):
        return width + width % 2, height + height % 2
    return width, height


def _configure(stream, encoder: str, quality: int) -> tuple[str, str, str]:
    """Set the encoder's quality and colour tags; returns ``(pixel format, colour matrix, range)`` to convert to."""
    context = stream.codec_context
    if encoder == "mjpeg":  # JPEG's own convention: BT.601, full range
        context.qscale = True
        context.global_quality = max(2, min(31, round(quality / 9)))
        stream.pix_fmt, context.colorspace, context.color_range = "yuvj420p", 6, 2  # SMPTE 170M, full range
        return "yuvj420p", "ITU601", "JPEG"
    if encoder == "libx264":
        context.options = {"crf": str(quality)}
    elif encoder == "libvpx-vp9":  # VP9's CRF scale sits about 8 above x264's for the same look
        context.options = {"crf": str(min(63, quality + 8)), "b": "0", "row-mt": "1", "cpu-used": "4"}
    else:  # VideoToolbox: constant quality 0–100 (Apple silicon); a rough map of the CRF scale
        context.qscale = True
        context.global_quality = max(1, min(100, 100 - 2 * quality))
    stream.pix_fmt = "yuv420p"
    context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709, as the frames are converted
    context.color_range = 1  # limited ("MPEG") range: what players expect of yuv420p
    return "yuv420p", "ITU709", "MPEG"


def container_options(path: Path, time_base: Fraction) -> dict:
    if path.suffix.lower() == ".avi":  # shifting for the copied sound's priming would push frame 1 a slot late
        return {"avoid_negative_ts": "disabled"}
    if path.suffix.lower() not in MOV_SUFFIXES:
        return {}
    # The movie timescale holds edit lists (a stream that starts after 0): at the default 1 ms they round the
    # timestamps; the stream's own timescale keeps them exact. faststart: browsers play it while it downloads.
    options = {"movflags": "+faststart"}
    if time_base.numerator == 1 and 0 < time_base.denominator < 2**31:
        options["movie_timescale"] = str(time_base.denominator)
    return options


def mux(container, packets) -> None:
    """Every write to a video file goes through here (tests inject a full disk by replacing it)."""
    for packet in packets:
        container.mux(packet)


class SegmentWriter:
    """Encodes RGB frames at their timestamps (in ``time_base``) into one video file at ``path``, with ``encoder``
    (``video_encoder``) at ``quality`` (CRF-like); ``rate`` is a hint to its rate control. Odd sizes are padded to
    ``writable_size`` by repeating the edge. Any write raises ``OSError`` (a full disk): the caller removes the file.
    """

    def __init__(
        self, path: str | Path, encoder: str, quality: int, rate: Fraction, time_base: Fraction, width: int, height: int
    ):
        self.path, self.time_base, self.frames = Path(path), time_base, 0
        self.width, self.height = writable_size(encoder, width, height)
        self.container = av.open(str(self.path), "w", options=container_options(self.path, time_base))
        try:
            self.stream = self.container.add_stream(encoder, rate=rate)
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.time_base = self.stream.codec_context.time_base = time_base
            self.pix_fmt, self.matrix, self.range = _configure(self.stream, encoder, quality)
        except BaseException:
            self.container.close()
            raise
        self.delay = float(os.environ.get(SLOW_FRAME_ENV) or 0)
        self._durations: dict[int, int] = {}  # by pts, until the encoder hands the frame's packet back

    def write(self, rgb: np.ndarray, pts: int, duration: int = 0) -> None:
        H, W = rgb.shape[:2]
        if (W, H) != (self.width, self.height):
            rgb = np.pad(rgb, ((0, self.height - H), (0, self.width - W), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.range)
        # the given time base, not the stream's: a muxer may change that when it writes its header (MP4: below
        # 1/10000 it takes a multiple)
        frame.pts, frame.time_base = pts, self.time_base
        self._durations[pts] = duration
        mux(self.container, self._timed(self.stream.encode(frame)))
        self.frames += 1
        if self.delay:
            time.sleep(self.delay)

    def close(self) -> int:
        """Flush the encoder and finish the file; returns the frames written."""
        mux(self.container, self._timed(self.stream.encode(None)))
        self.container.close()
        return self.frames

    def _timed(self, packets):
        # Each packet carries its frame's own duration: MP4 ends a track at the latest pts + duration, and the
        # encoder's guess (its dts steps) makes a variable-rate video end early.
        for packet in packets:
            packet.duration = self._durations.pop(packet.pts, 0) or packet.duration
            yield packet

    def abort(self) -> None:
        """Close without caring whether the file is whole (the caller removes it)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001  (a full disk may fail the trailer too: the file is discarded anyway)
            pass


def count_frames(path: str | Path) -> int:
    """The video packets in a file (one per frame), read without decoding: the check that a written file is whole."""
    with open_input(path) as container:
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size)
