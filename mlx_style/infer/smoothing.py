"""Temporal smoothing at inference (``cam --smooth``, ``stylize --smooth`` for videos).

Each new stylised frame is blended with the previous stylised frame warped by the optical flow of the *input*
frames (OpenCV's DIS, from the current input to the previous one), where the flow is trustworthy: a pixel whose
warped previous input does not match the current input (an occlusion, a wrong flow) takes the new frame alone,
and a frame most of whose pixels fail (a cut) starts again. The blend uses the previous *network output*, not the
previous blend: feeding the blend back (a running average) steadied more but blurred the texture frame after
frame, each warp resampling it again (docs/benchmarks.md, "Stability of stylised video").
"""

from __future__ import annotations

import cv2
import numpy as np

from mlx_style.infer.flicker import FlowEstimator, luma, warp
from mlx_style.errors import UsageError

DEFAULT_WEIGHT = 0.5  # share of the warped previous network output in a consistent pixel
OCCLUSION_LEVELS = 12.0  # luma difference between the current input and the warped previous one that marks a miss
CUT_FRACTION = 0.5  # above this share of missed pixels the frame is a cut: start again


class TemporalSmoother:
    """Stateful: call it once per frame, in order, with the input frame and its stylised version (both BGR or
    both RGB uint8, the same size).

    Args:
        weight: 0 disables smoothing, towards 1 keeps more of the past.
    """

    def __init__(self, weight: float = DEFAULT_WEIGHT, preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST):
        if not 0.0 <= weight < 1.0:
            raise UsageError(f"[TemporalSmoother] weight must be in [0, 1), got {weight}")
        self.weight = weight
        self.flow = FlowEstimator(preset)
        self.reset()

    def reset(self) -> None:
        self._input = self._gray = self._stylised = None
        self.cuts = 0

    def __call__(self, frame: np.ndarray, stylised: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != stylised.shape[:2]:
            raise UsageError(f"[TemporalSmoother] frame {frame.shape} and stylised {stylised.shape} differ in size")
        g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self.weight == 0 or self._gray is None or self._gray.shape != g.shape:
            return self._keep(frame, g, stylised)
        backward = self.flow(g, self._gray)
        missed = np.abs(luma(frame) - luma(warp(self._input, backward))) > OCCLUSION_LEVELS
        if missed.mean() > CUT_FRACTION:
            self.cuts += 1
            return self._keep(frame, g, stylised)
        mask = (~missed).astype(np.float32)
        mask = cv2.GaussianBlur(mask, (5, 5), 0)[..., None] * self.weight  # soft edges around misses
        previous = warp(self._stylised, backward).astype(np.float32)
        out = mask * previous + (1.0 - mask) * stylised.astype(np.float32)
        self._keep(frame, g, stylised)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _keep(self, frame: np.ndarray, g: np.ndarray, stylised: np.ndarray) -> np.ndarray:
        self._input, self._gray, self._stylised = frame, g, stylised
        return stylised
