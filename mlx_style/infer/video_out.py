"""What the cam writes: its stylised video (``--output``) and PNG snapshots."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from mlx_style.errors import RunFailure

from mlx_style.io.paths import check_suffix

WRITER_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}  # avc1 is missing in pip wheels


def snapshot_path(folder: str | Path, model: str, now: float | None = None) -> Path:
    """``folder/mlx_style-<model>-<YYYYmmdd-HHMMSS-mmm>.png``; ``model`` is the style's name as the overlay shows
    it (``wave``, ``multi: udnie``, ``wave → udnie 40%``), kept to letters, digits, ``.``, ``-`` and ``_``."""
    model = re.sub(r"[^\w.-]+", "_", model.split(" → ")[0]).strip("_") or "style"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    return Path(folder) / f"mlx_style-{model}-{stamp}.png"


def check_output_path(path: str | Path) -> str:
    """The fourcc for ``path`` from its suffix; ``CamError`` for a suffix no codec here writes."""
    return WRITER_CODECS[check_suffix(path, WRITER_CODECS, "--output")]


class VideoOut:
    """Writes views to a video file; the first view fixes the size, later ones (side by side toggled) are scaled
    to it, since a video's frame size cannot change. Frames go to a hidden partial file that ``close`` renames
    into place, so an existing file at ``path`` is only replaced by a finished video."""

    def __init__(self, path: str | Path, fps: float):
        self.fourcc = check_output_path(path)
        self.path, self.fps = Path(path), fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, view: np.ndarray) -> None:
        size = (view.shape[1], view.shape[0])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise RunFailure(f"cannot write video {self.path} with codec {self.fourcc}: check the folder is "
                               "writable")
            self._size = size
        if size != self._size:
            view = cv2.resize(view, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(view)
        self.frames += 1

    def close(self) -> None:
        """Finish the video and move it into place (nothing is written when no frame came)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self.partial, self.path)

