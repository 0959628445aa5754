"""What a training run shows and leaves behind: a progress line, a JSON-lines log, a loss-curve PNG, sample grids.

Everything here is plain Python, numpy and PIL (no matplotlib), and knows nothing about MLX or the network.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlx_style.io.weights import atomic_write
from mlx_style.timing import format_duration  # noqa: F401  (re-exported for the runner)
from mlx_style.errors import UsageError

SERIES_COLOURS = {
    "loss": (0, 0, 0),
    "content": (31, 119, 180),
    "style": (214, 39, 40),
    "tv": (44, 160, 44),
    "temporal": (148, 103, 189),
}
SERIES = ("loss", "content", "style", "tv")
OPTIONAL_SERIES = ("temporal",)  # drawn when the log has them (train --stable)


def format_progress(record: dict, total: int, eta_s: float) -> str:
    """One human line: step/total, throughput, ETA and the losses (the terms the method has: an AdaIN run has no tv,
    a ``--stable`` one a temporal term)."""
    terms = ", ".join(f"{k} {record[k]:.4g}" for k in SERIES[1:] + OPTIONAL_SERIES if k in record)
    return (
        f"step {record['step']}/{total}  {record['images_per_s']:.2f} img/s  ETA {format_duration(eta_s)}  "
        f"loss {record['loss']:.4g} ({terms})"
    )


class ProgressLine:
    """A single line rewritten in place on a terminal; one plain line per update otherwise (logs, pipes)."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._width = 0

    def update(self, text: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that stays (a warning, a checkpoint note), without breaking the updating line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def read_log(path: str | Path) -> list[dict]:
    """The records of a JSON-lines log (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class JsonlLog:
    """Appends one JSON record per line, flushed at once so a crash loses nothing.

    Args:
        path: the log file.
        keep_through_step: when resuming, records after this step are dropped first (they belong to steps that
            will be run again), so the log describes exactly one history. None starts a fresh log.
    """

    def __init__(self, path: str | Path, keep_through_step: int | None = None):
        self.path = Path(path)
        kept = (
            []
            if keep_through_step is None
            else [r for r in read_log(self.path) if r.get("step", 0) <= keep_through_step]
        )
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        self.records = kept

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.records.append(record)


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def plot_loss_curve(
    records: Iterable[dict], keys: tuple[str, ...] | None = None, size: tuple[int, int] = (720, 420)
) -> Image.Image:
    """A log-scale line chart of the logged losses against the step (the terms are unweighted).

    ``keys`` None: ``SERIES``, and those of ``OPTIONAL_SERIES`` that some record has."""
    records = [r for r in records if "step" in r]
    if keys is None:
        keys = SERIES + tuple(k for k in OPTIONAL_SERIES if any(k in r for r in records))
    W, H = size
    left, right, top, bottom = 70, 110, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    series = {
        k: [(r["step"], r[k]) for r in records if k in r and r[k] is not None and r[k] > 0 and math.isfinite(r[k])]
        for k in keys
    }
    values = [v for pts in series.values() for _, v in pts]
    steps = [s for pts in series.values() for s, _ in pts]
    draw.rectangle([left, top, W - right, H - bottom], outline="black")
    if not values:
        draw.text((left + 10, top + 10), "no losses logged yet", fill="black", font=font)
        return img
    s0, s1 = min(steps), max(max(steps), min(steps) + 1)
    ticks = _nice_log_ticks(min(values), max(values))
    y0, y1 = math.log10(ticks[0]), math.log10(ticks[-1]) if len(ticks) > 1 else math.log10(ticks[0]) + 1

    def xy(step: float, value: float) -> tuple[float, float]:
        x = left + (step - s0) / (s1 - s0) * (W - left - right)
        y = H - bottom - (math.log10(value) - y0) / (y1 - y0) * (H - top - bottom)
        return x, y

    for t in ticks:
        _, y = xy(s0, t)
        draw.line([left, y, W - right, y], fill=(225, 225, 225))
        draw.text((4, y - 6), f"{t:.0e}", fill="black", font=font)
    for step in sorted({round(s0 + frac * (s1 - s0)) for frac in (0.0, 0.5, 1.0)}):  # whole steps, each once
        x, _ = xy(step, ticks[0])
        draw.text((x - 10, H - bottom + 6), f"{step}", fill="black", font=font)
    draw.text(((W - right + left) // 2 - 10, H - 18), "step", fill="black", font=font)
    for i, (key, pts) in enumerate(series.items()):
        colour = SERIES_COLOURS.get(key, (128, 128, 128))
        if len(pts) > 1:
            draw.line([xy(s, v) for s, v in pts], fill=colour, width=2)
        elif pts:
            x, y = xy(*pts[0])
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.line([W - right + 10, top + 10 + 16 * i, W - right + 30, top + 10 + 16 * i], fill=colour, width=2)
        draw.text((W - right + 35, top + 4 + 16 * i), key, fill="black", font=font)
    return img


def save_loss_curve(records: Iterable[dict], path: str | Path) -> Path:
    img = plot_loss_curve(records)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def sample_grid(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Tile rows of equal-size uint8 HWC images (e.g. contents above, stylised below) with white gutters."""
    if not rows or not rows[0]:
        raise UsageError("[sample_grid] needs at least one image")
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            if image.shape[:2] != (h, w):
                raise UsageError(f"[sample_grid] image {i},{j} is {image.shape[:2]}, expected {(h, w)}")
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = image
    return grid


def save_sample_grid(rows: list[list[np.ndarray]], path: str | Path) -> Path:
    grid = Image.fromarray(sample_grid(rows))
    return atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
