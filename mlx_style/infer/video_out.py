"""What the cam and ``stylize`` write: videos (through ``io.video``) and the cam's PNG snapshots.

``VideoOut`` is the cam's ``--output``; ``PartialVideo`` is a stylised video written in segments into a hidden
folder next to its target, so that an interrupted run keeps what it finished and ``stylize --resume`` goes on from
there. Both replace an existing file only with a finished video that reads back with every frame written.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mlx_style.errors import MlxStyleError
from mlx_style.io import video, video_join
from mlx_style.io.paths import check_suffix


class ResumeError(MlxStyleError, ValueError):
    """An unfinished video that cannot be continued with the settings given."""


def snapshot_path(folder: str | Path, model: str, now: float | None = None) -> Path:
    """``folder/mlx_style-<model>-<YYYYmmdd-HHMMSS-mmm>.png``; ``model`` is the style's name as the overlay shows
    it (``wave``, ``multi: udnie``, ``wave → udnie 40%``), kept to letters, digits, ``.``, ``-`` and ``_``."""
    model = re.sub(r"[^\w.-]+", "_", model.split(" → ")[0]).strip("_") or "style"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    return Path(folder) / f"mlx_style-{model}-{stamp}.png"


def check_output_path(path: str | Path) -> str:
    """The encoder for ``path`` from its suffix; ``OutputPathError`` for a suffix no encoder here writes."""
    return video.video_encoder(check_suffix(path, video.VIDEO_CODECS, "--output"))


def partial_file(target: Path) -> Path:
    """``dir/.STEM.partial.SUFFIX``: where a video is written until it is finished and read back."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def finish_file(written: Path, target: Path, frames: int) -> None:
    """Move ``written`` onto ``target`` once it reads back with ``frames`` frames (else ``VideoWriteError``)."""
    found = video.count_frames(written)
    if found != frames:
        raise video.VideoWriteError(f"could not write {target}: it reads back with {found} of its {frames} frames")
    os.replace(written, target)


class VideoOut:
    """The cam's ``--output``: views (BGR) at a fixed frame rate; the first view fixes the size, later ones (side by
    side toggled) are scaled to it, since a video's frame size cannot change. Frames go to a hidden partial file
    that ``close`` moves into place, so an existing file at ``path`` is only replaced by a finished video. A failed
    write raises ``VideoWriteError`` (one line, exit 1) and removes the partial file."""

    def __init__(self, path: str | Path, fps: float):
        self.encoder = check_output_path(path)
        self.path, self.fps = Path(path), fps
        self.partial = partial_file(self.path)
        self.frames = 0
        self._writer: video.SegmentWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, view: np.ndarray) -> None:
        size = (view.shape[1], view.shape[0])
        try:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 → 30000/1001
                # frame n at n / rate: the cam writes at a constant rate, which every container (AVI too) holds
                self._writer = video.SegmentWriter(
                    self.partial, self.encoder, video.DEFAULT_QUALITY, rate, 1 / rate, *size
                )
                self._size = size
            if size != self._size:
                view = cv2.resize(view, self._size, interpolation=cv2.INTER_AREA)
            self._writer.write(view[..., ::-1], self.frames, 1)
        except OSError as exc:
            self._discard()
            raise video.write_failure(self.path, exc) from None
        self.frames += 1

    def close(self) -> None:
        """Finish the video and move it into place (nothing is written when no frame came)."""
        if self._writer is None:
            return
        try:
            self._writer.close()
            self._writer = None
            finish_file(self.partial, self.path, self.frames)
        except OSError as exc:
            self._discard()
            raise video.write_failure(self.path, exc) from None
        except MlxStyleError:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.partial.unlink(missing_ok=True)


def add_source_audio(path: str | Path, source: str | Path, frames: int) -> str:
    """Give the cam's output the sound of its source file when it holds every frame of it (played in order, none
    dropped); returns what was done, for the log. The video is remuxed, not encoded again."""
    path = Path(path)
    try:
        info = video.probe(source)
    except video.VideoError:
        return "no sound added (the source is not a file FFmpeg reads)"
    if not info.audio:
        return "the source has no sound"
    if not info.exact or frames != info.frames:
        return f"no sound added: {frames} of the source's {info.frames} frames were written"
    joined = partial_file(path)
    try:
        video_join.join([path], joined, Path(source))
        finish_file(joined, path, frames)
    except OSError as exc:
        raise video.write_failure(path, exc, " (the video without sound is kept)") from None
    finally:
        joined.unlink(missing_ok=True)
    return f"sound of {source} added ({info.audio} stream{'s' if info.audio > 1 else ''})"


SEGMENT_SUFFIX = ".mp4"  # segments: MP4 keeps any time base exactly (matroska rounds to 1 ms), for every codec here


class PartialVideo:
    """A video written in segments of ``segment_frames`` frames into ``.NAME.partial/`` beside its target.

    Each segment is encoded to a temporary file and renamed when finished, so after Ctrl-C, ``kill`` or ``kill -9``
    the folder holds whole segments only. ``settings`` (the source, the network, every option that changes a frame)
    are stored with them: ``resume`` continues a folder made with the same settings only.

    Args:
        target: the video to produce.
        settings: JSON-able; what must match for a resume (the encoding is added to it).
        encoder, quality, rate, time_base: as ``io.video.SegmentWriter`` takes them.
        resume: continue the folder's segments; otherwise an old folder is removed (``log`` says so).
    Attributes:
        done: frames written (at the start: those of the finished segments); the next ``write`` is frame ``done``.
        last_pts: at the start, the timestamp of frame ``done - 1`` (None at 0): a resumed run decodes from it.
    """

    def __init__(
        self,
        target: Path,
        settings: dict,
        segment_frames: int,
        encoder: str,
        quality: int,
        rate: Fraction,
        time_base: Fraction,
        resume: bool,
        log=print,
    ):
        self.target, self.segment_frames = Path(target), segment_frames
        self.encoder, self.encoding = encoder, (encoder, quality, rate, time_base)
        self.folder = self.target.with_name(f".{self.target.name}.partial")
        self.settings = {
            **settings,
            "segment_frames": segment_frames,
            "encoder": encoder,
            "quality": quality,
            "rate": str(rate),
            "time_base": str(time_base),
        }
        self.done, self.last_pts, self.segments = 0, None, []
        self._writer: video.SegmentWriter | None = None
        if self.folder.exists():
            self._reuse(resume, log)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "settings.json").write_text(json.dumps(self.settings, indent=1, sort_keys=True))

    def _reuse(self, resume: bool, log) -> None:
        try:
            stored = json.loads((self.folder / "settings.json").read_text())
        except (OSError, ValueError):
            stored = None
        if not resume or stored is None:  # None: killed before it stored anything
            why = "no --resume" if not resume else "nothing finished in it"
            log(f"  removing the unfinished {self.folder.name} ({why}): starting from the first frame")
            shutil.rmtree(self.folder)
            return
        if stored != self.settings:
            changed = sorted(k for k in self.settings if stored.get(k) != self.settings[k])
            raise ResumeError(
                f"cannot resume {self.folder.name}: it was made with other settings "
                f"({', '.join(changed)}); run without --resume to start over"
            )
        for temp in self.folder.glob("*.tmp*"):  # a segment a kill cut short
            temp.unlink()
        for index in itertools.count():
            segment = self.folder / f"{index:05d}{SEGMENT_SUFFIX}"
            if not segment.exists() or self._frames_in(segment) != self.segment_frames:
                break
            self.segments.append(segment)
        for stale in set(self.folder.glob(f"*{SEGMENT_SUFFIX}")) - set(self.segments):
            stale.unlink()  # after a gap or a damaged segment: encoded again
        self.done = len(self.segments) * self.segment_frames
        if self.segments:
            self.last_pts = last_pts(self.segments[-1], Fraction(self.settings["time_base"]))
        count = len(self.segments)
        log(
            f"  resuming after frame {self.done} ({count} finished segment{'s' if count != 1 else ''} in "
            f"{self.folder.name})"
        )

    @property
    def kept(self) -> int:
        """Frames in finished segments: what an interruption keeps."""
        return len(self.segments) * self.segment_frames

    @staticmethod
    def _frames_in(segment: Path) -> int:
        try:
            return video.count_frames(segment)
        except video.VideoError:
            return -1

    def write(self, rgb: np.ndarray, pts: int, duration: int) -> None:
        """Frame ``done``; a segment is finished (renamed into place) when it holds ``segment_frames``."""
        if self._writer is None:
            temp = self.folder / f"{len(self.segments):05d}.tmp{SEGMENT_SUFFIX}"
            self._writer = video.SegmentWriter(temp, *self.encoding, rgb.shape[1], rgb.shape[0])
        self._writer.write(rgb, pts, duration)
        self.done += 1
        if self._writer.frames == self.segment_frames:
            self._close_segment()

    def _close_segment(self) -> None:
        writer, self._writer = self._writer, None
        writer.close()
        segment = self.folder / f"{len(self.segments):05d}{SEGMENT_SUFFIX}"
        os.replace(writer.path, segment)
        self.segments.append(segment)

    def finish(self, source: Path | None) -> int:
        """Join the segments (with ``source``'s sound, if given) into the target, replacing it only with a video
        that reads back whole, and remove the folder; returns the frames written."""
        if self._writer is not None:
            self._close_segment()
        joined = partial_file(self.target)
        try:
            video_join.join(self.segments, joined, source)
            finish_file(joined, self.target, self.done)
        finally:
            joined.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        return self.done

    def stop(self, keep: bool) -> None:
        """After a failure or an interruption: drop the segment under way; keep the finished ones (for ``--resume``)
        or remove the folder."""
        if self._writer is not None:
            self._writer.abort()
            Path(self._writer.path).unlink(missing_ok=True)
            self._writer = None
        partial_file(self.target).unlink(missing_ok=True)
        if not keep:
            shutil.rmtree(self.folder, ignore_errors=True)


def last_pts(segment: Path, time_base: Fraction) -> int:
    """The latest timestamp in a segment, in ``time_base`` units (the segment's own may differ)."""
    with video.open_input(segment) as container:
        stamps = [p.pts * p.time_base for p in container.demux(container.streams.video[0]) if p.pts is not None]
    return round(max(stamps) / time_base)
