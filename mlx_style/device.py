"""Which MLX backend this process computes on: ``backend_name()``."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx


def backend_name() -> str:
    """``"cpu"``, ``"metal"`` or ``"cuda"`` (``"gpu"`` for another GPU backend): where the default device runs."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    return "cuda" if cuda is not None and cuda.is_available() else "gpu"
