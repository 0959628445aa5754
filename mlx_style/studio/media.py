"""The Stylise tab's work: photos stylised at once, a video in a background job that reports its progress and can
be cancelled. Both read uploads as ``mlx-style stylize`` reads files and refuse what it refuses (unreadable
files, images too large for the memory available); a video runs through the command's own pipeline
(``infer.files``: every frame at its timestamp, the sound kept, temporal smoothing on, written atomically).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlx_style.errors import MlxStyleError
from mlx_style.infer.files import StylizeConfig, check_config, check_frame_memory, plan_jobs, stylize_files
from mlx_style.io.image import save_image
from mlx_style.nn.style import FrameFunction
from mlx_style.studio.engine import Cancelled, Watched, stylise
from mlx_style.studio.paths import StudioError, load_upload_image, probe_upload_video
from mlx_style.timing import format_duration

_counter = itertools.count(1)
MAX_SIZE = 4096  # px, the largest processing size a request may ask for (the page offers up to 1536)


@dataclass
class Settings:
    """How a photo or video is stylised (the sliders of the page)."""

    size: int | None = 512  # longer side the network runs at; None: the input's own size
    keep_colours: bool = False  # stylise the luminance only
    strength: float = 1.0  # 1: fully stylised; 0: the input

    def config(self, **fields) -> StylizeConfig:
        """The ``mlx-style stylize`` settings these are (checked as the command checks them, and the size kept
        within what the page offers).

        Raises:
            StudioError: a size or strength out of range.
        """
        if self.size is not None and not 0 < self.size <= MAX_SIZE:
            raise StudioError(f"processing size must be 1..{MAX_SIZE}, got {self.size}")
        config = StylizeConfig(size=self.size, preserve_color=self.keep_colours, strength=self.strength, **fields)
        try:
            check_config(config)
        except ValueError as exc:
            raise StudioError(str(exc).replace("--size", "processing size").replace("--strength", "strength"))
        return config


@dataclass
class PhotoResult:
    name: str  # the upload's file name
    before: np.ndarray
    after: np.ndarray
    path: Path  # the stylised PNG, for download


def output_name(upload: str | Path, suffix: str, tag: str = "_styled") -> str:
    """A file name for a result: a counter and the upload's stem reduced to safe characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload).stem).strip("._") or "upload"
    return f"{next(_counter):04d}_{stem[:48]}{tag}{suffix}"


def stylise_photos(
    net: FrameFunction, uploads: list[str], settings: Settings, out_dir: Path, upload_root: Path | None = None
) -> list[PhotoResult]:
    """Stylise each uploaded picture into ``out_dir`` (PNG).

    Raises:
        StudioError: an upload that is not a readable picture or too large for memory at this size (its name and
            the reason; nothing is written for it, nor for those after it).
    """
    config = settings.config()
    results = []
    for upload in uploads:
        image = load_upload_image(upload, upload_root)
        H, W, _ = image.shape
        try:
            check_frame_memory(net, H, W, config)
        except MlxStyleError as exc:
            raise StudioError(f"{Path(upload).name}: {str(exc).replace('pass --size', 'set the processing size to')}")
        after = stylise(net, image, settings.size, settings.keep_colours, settings.strength)
        path = save_image(out_dir / output_name(upload, ".png"), after)
        results.append(PhotoResult(Path(upload).name, image, after, path))
    return results


class VideoJob:
    """One video stylised in a thread: ``progress()`` says how far, ``cancel()`` stops it (nothing is left)."""

    def __init__(
        self,
        net: FrameFunction,
        upload: str,
        settings: Settings,
        out_dir: Path,
        upload_root: Path | None = None,
        clock=time.monotonic,
    ):
        self.info = probe_upload_video(upload, upload_root)  # refused here, before any work, if unreadable
        self.source = Path(upload).resolve()
        self.name = Path(upload).name
        self.target = out_dir / output_name(upload, ".mp4")
        self.config = settings.config(inputs=[str(self.source)], output=str(self.target))
        self.net, self.clock = net, clock
        self.state, self.message, self.done = "waiting", "", 0
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"studio video {self.name}", daemon=True)
        self.started = clock()

    def start(self) -> "VideoJob":
        self.state = "running"
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def _on_frame(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        self.done += 1

    def _run(self) -> None:
        try:
            jobs, problems = plan_jobs(self.config.inputs, self.config.output)
            if problems:
                raise StudioError(f"{self.name}: {problems[0][1]}")
            summary = stylize_files(
                Watched(self.net, self._on_frame), jobs, self.config, log=lambda line: None, warn=lambda line: None
            )
            if summary.done:
                self.state = "done"
            elif self._cancel.is_set():
                self.state, self.message = "cancelled", "cancelled: nothing was kept"
            else:
                self.state, self.message = "failed", summary.failed[0][1] if summary.failed else "failed"
        except Exception as exc:  # noqa: BLE001  (a thread's last word: shown in the page, never a traceback)
            self.state, self.message = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def progress(self) -> tuple[float, str]:
        """``(fraction done, one line for the page)``."""
        total = max(1, self.info.frames)
        fraction = min(1.0, self.done / total)
        if self.state == "done":
            return 1.0, f"{self.name}: {self.done} frames stylised"
        if self.state in ("failed", "cancelled"):
            return fraction, f"{self.name}: {self.message}"
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        left = f", {format_duration((total - self.done) / rate)} left" if rate else ""
        return fraction, f"{self.name}: frame {self.done}/{total} ({fraction:.0%}){left}"
