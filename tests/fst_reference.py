"""An independent numpy implementation of Engstrom's fast-style-transfer network, read straight from ml5 files.

Written from the format description in ``../shared/data/weights/fast_style_transfer_ml5/README.md`` and
lengstrom/fast-style-transfer's ``src/transform.py`` (TF semantics), without importing mlx_style, so the tests
can check the converter and ``TransformerNet`` against something that shares none of their code:

- ``manifest.json`` maps ``Variable``, ``Variable_1`` … ``Variable_47`` (creation order) to a raw little-endian
  float32 file and its shape; each layer creates conv weight (HWIO), then IN shift, then IN scale.
- conv2d: TF ``padding='SAME'`` (zeros; the odd extra pixel goes after), no bias.
- conv2d_transpose: filter ``[h, w, out, in]``, stride 2, SAME, output ``2·H``: the gradient of a SAME conv,
  i.e. ``out[2i + k] += x[i] · w[k]`` for the full ``2H + 1`` result, keeping rows/columns ``0 … 2H − 1``.
- instance norm after every conv (the output conv too): ``scale · (x − mean) / sqrt(var + 1e-3) + shift``.
- ReLU after every conv except the second of each residual block and the output conv.
- output ``tanh(x) · 150 + 127.5``; input RGB in 0–255 as Engstrom's ``evaluate.py`` feeds it.

Runs in float64. Any height and width work here, as in TF, but the output has ``4·ceil(ceil(H/2)/2)`` rows
(the transposed convs double whatever the strided convs left); tests use multiples of 4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

EPS = 1e-3


def read_variables(folder: str | Path) -> list[np.ndarray]:
    """The 48 variables in creation order (``Variable``, ``Variable_1``, …), as float64 arrays."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(manifest, key=lambda n: 0 if n == "Variable" else int(n.rsplit("_", 1)[1]))
    out = []
    for name in names:
        entry = manifest[name]
        raw = np.fromfile(folder / entry["filename"], dtype="<f4")
        out.append(raw.reshape(entry["shape"]).astype(np.float64))
    return out


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_same(x: np.ndarray, w_hwio: np.ndarray, stride: int) -> np.ndarray:
    """TF conv2d, SAME padding, ``x`` (H, W, Cin), ``w`` (kh, kw, Cin, Cout): a sum over kernel taps."""
    H, W, _ = x.shape
    kh, kw, _, cout = w_hwio.shape
    (pt, pb), (pl, pr) = same_padding(H, kh, stride), same_padding(W, kw, stride)
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    Ho, Wo = math.ceil(H / stride), math.ceil(W / stride)
    out = np.zeros((Ho * Wo, cout))
    for i in range(kh):
        # one kernel row at a time as a matmul over (kw · Cin) stacked taps: few large BLAS calls
        taps = [xp[i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride] for j in range(kw)]
        cols = np.concatenate(taps, axis=-1).reshape(Ho * Wo, -1)
        out += cols @ w_hwio[i].reshape(-1, cout)
    out = out.reshape(Ho, Wo, cout)
    return out


def conv2d_transpose_same(x: np.ndarray, w_hwoi: np.ndarray, stride: int) -> np.ndarray:
    """TF conv2d_transpose, SAME, output ``stride·H``; ``w`` is TF's ``[h, w, out, in]``: scatter each tap."""
    H, W, _ = x.shape
    kh, kw, cout, _ = w_hwoi.shape
    full = np.zeros(((H - 1) * stride + kh, (W - 1) * stride + kw, cout))
    flat = np.ascontiguousarray(x).reshape(H * W, -1)
    for i in range(kh):
        for j in range(kw):
            tap = (flat @ w_hwoi[i, j].T).reshape(H, W, cout)
            full[i : i + stride * (H - 1) + 1 : stride, j : j + stride * (W - 1) + 1 : stride] += tap
    # SAME for the matching forward conv of a (stride·H)-row input pads (kh − stride) rows, the smaller half
    # before: that is where the kept window starts in the full result.
    top = max(kh - stride, 0) // 2
    left = max(kw - stride, 0) // 2
    return full[top : top + stride * H, left : left + stride * W]


def instance_norm(x: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=(0, 1), keepdims=True)
    var = x.var(axis=(0, 1), keepdims=True)
    return scale * (x - mean) / np.sqrt(var + EPS) + shift


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def forward(variables: list[np.ndarray], image: np.ndarray) -> np.ndarray:
    """Stylise one RGB image ``(H, W, 3)`` in 0–255; returns float64 ``(H', W', 3)`` in about 0–255."""
    v = iter(variables)

    def conv(x, stride, use_relu=True):
        w, shift, scale = next(v), next(v), next(v)
        y = instance_norm(conv2d_same(x, w, stride), shift, scale)
        return relu(y) if use_relu else y

    def deconv(x):
        w, shift, scale = next(v), next(v), next(v)
        return relu(instance_norm(conv2d_transpose_same(x, w, 2), shift, scale))

    x = np.asarray(image, dtype=np.float64)
    x = conv(x, 1)
    x = conv(x, 2)
    x = conv(x, 2)
    for _ in range(5):
        x = x + conv(conv(x, 1), 1, use_relu=False)
    x = deconv(x)
    x = deconv(x)
    x = conv(x, 1, use_relu=False)
    if next(v, None) is not None:
        raise ValueError("more variables than Engstrom's network has")
    return np.tanh(x) * 150.0 + 127.5
