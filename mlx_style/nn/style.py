"""The one interface of a style network ready to stylise (``io.style_models`` binds every kind to it).

A bound network is called like a single-style one, ``y = net(x)`` (RGB 0–255, NHWC), and splits that call in two
so the cam compiles the pure part once and feeds the style as an input: ``net.apply_style(x, *net.style_inputs(x))``
(a style vector or blend that changes while the cam runs needs no new trace). ``tiled_stages``/``tiled_style`` give
what ``nn.tiled.run_tiled`` computes layer by layer for large images, ``compute_dtype`` what its input is cast to.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten


class FrameFunction(nn.Module):
    """Defaults for a network that needs no style input and has no tiled forward."""

    def style_inputs(self, x: mx.array) -> tuple[mx.array, ...]:
        """The per-call style arguments of ``apply_style`` (a blend, a style vector), computed from ``x`` if needed."""
        return ()

    def apply_style(self, x: mx.array, *inputs: mx.array) -> mx.array:
        return self(x)

    def tiled_stages(self):
        """The network whose ``stages()`` ``nn.tiled`` walks, or None when there is no tiled forward."""
        return None

    def tiled_style(self, x: mx.array) -> mx.array | None:
        """The style argument of the tiled forward for the image ``x``."""
        return None

    @property
    def compute_dtype(self) -> mx.Dtype:
        """The dtype of the weights that first see the image: its input is cast to it."""
        return next((v.dtype for _, v in tree_flatten(self.parameters())), mx.float32)

    def baked(self) -> nn.Module:
        """This style as a network with no style input where the kind allows it (what export writes)."""
        return self
