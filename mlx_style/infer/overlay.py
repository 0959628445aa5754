"""What the live cam shows: the stylised view (alone or beside the original) and a text overlay.

Pure functions on BGR uint8 images (OpenCV's order); inputs are never modified.
"""

from __future__ import annotations

import cv2
import numpy as np


def compose_view(original: np.ndarray, stylised: np.ndarray, side_by_side: bool) -> np.ndarray:
    """The frame to show: ``stylised`` scaled to the original's size, or the original and it side by side."""
    H, W = original.shape[:2]
    if stylised.shape[:2] != (H, W):
        stylised = cv2.resize(stylised, (W, H), interpolation=cv2.INTER_LINEAR)
    if side_by_side:
        return np.concatenate([original, stylised], axis=1)
    return np.ascontiguousarray(stylised)


def status_lines(
    *,
    fps: float,
    latency_ms: float,
    processing: tuple[int, int],
    size_note: str,
    model: str,
    dtype: str,
    preserve_color: bool,
    dropped: int,
    smooth: float = 0.0,
) -> list[str]:
    """The overlay's text: rates, the processing resolution ``(H, W)`` and why, the model and the toggles."""
    H, W = processing
    lines = [
        f"{fps:5.1f} FPS   model {latency_ms:6.1f} ms",
        f"{W}x{H} ({size_note})   {dtype}   " + (f"smooth {smooth:g}" if smooth else "smooth off"),
        f"style: {model}" + ("   [colour kept]" if preserve_color else ""),
    ]
    if dropped:
        lines.append(f"dropped frames: {dropped}")
    return lines


def draw_overlay(image: np.ndarray, lines: list[str], scale: float = 0.5) -> np.ndarray:
    """A copy of ``image`` with ``lines`` in white on a dark box in the top-left corner."""
    out = image.copy()
    font, thickness, pad = cv2.FONT_HERSHEY_SIMPLEX, 1, 6
    sizes = [cv2.getTextSize(line, font, scale, thickness)[0] for line in lines]
    if not sizes:
        return out
    line_height = max(h for _, h in sizes) + pad
    box_w = min(out.shape[1], max(w for w, _ in sizes) + 2 * pad)
    box_h = min(out.shape[0], line_height * len(lines) + pad)
    # darken rather than paint over, so the picture stays visible under the text
    out[:box_h, :box_w] = (out[:box_h, :box_w] * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        y = pad + line_height * (i + 1) - pad // 2
        cv2.putText(out, line, (pad, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
