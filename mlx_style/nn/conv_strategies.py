"""The convolution strategies: the same sums as ``mx.conv2d`` rearranged into whole-row copies and large GEMMs.

Pure functions of ``(x, w, stride)`` (NHWC input, OHWI weight, valid padding) with custom VJPs where MLX's own would
allocate per window; which one runs is chosen in ``nn.conv`` (see its docstring for what each strategy does and
when it wins). ``heuristic`` is the untuned choice, ``scratch_bytes`` a strategy's memory estimate.
"""

from __future__ import annotations

import functools
from functools import partial

import mlx.core as mx

from mlx_style.backend import conv_prefers_direct
from mlx_style.nn.conv_windows import check, out_size, padded_shape, phase_taps, planes, window_sums  # noqa: F401

# ------------------------------------------------------------------------------------------- strategies


def _direct(x: mx.array, w: mx.array, stride: int) -> mx.array:
    """``mx.conv2d``: the reference. Competitive forward on stride-2 layers; its backward is slow."""
    return mx.conv2d(x, w, stride=stride)


def _im2col(x: mx.array, w: mx.array, stride: int) -> mx.array:
    """Unfold the input into its kH·kW windows (channel-major planes), then one GEMM with K = kH·kW·C_in."""
    n, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    ho, wo = out_size(h, kh, stride), out_size(wd, kw, stride)
    if kh == kw == 1:  # a 1×1 conv is already a GEMM
        return x[:, ::stride, ::stride, :] @ w.reshape(o, c).T
    taps = [(p, i, j) for p, ij in phase_taps(kh, kw, stride) for i, j in ij]
    u = window_sums(planes(x, stride), tuple(((p, i // stride, j // stride),) for p, i, j in taps), ho, wo)
    wm = mx.stack([w[:, i, j, :] for _, i, j in taps], axis=1).reshape(o, -1)  # (O, T·C), u's K order
    # (O, K) @ (N, K, M): the cotangent of the unfolded matrix comes out contiguous in the backward pass.
    return (wm @ u.reshape(n, -1, ho * wo)).reshape(n, o, ho, wo).transpose(0, 2, 3, 1)


def _taps(x: mx.array, w: mx.array, stride: int) -> mx.array:
    """One GEMM of each input phase with its kH·kW·C_out taps, then the sum of the taps' shifted windows."""
    n, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    ho, wo = out_size(h, kh, stride), out_size(wd, kw, stride)
    if stride == 1:  # (N, C, H·W) as a transposed view of the NHWC input: BLAS reads it in place
        split, hp, wp = [x.reshape(n, h * wd, c).swapaxes(1, 2)], h, wd
    else:
        xp = planes(x, stride)
        hp, wp = xp.shape[-2:]
        split = [xp[:, p].reshape(n, c, hp * wp) for p in range(stride * stride)]
    out = None
    for p, ij in phase_taps(kh, kw, stride):
        wt = mx.stack([w[:, i, j, :] for i, j in ij]).reshape(-1, c)  # (T·O, C)
        # The product comes out channel-major, one (hp, wp) plane per tap and output channel, so the shifted
        # windows summed below are whole-row reads.
        y = (wt @ split[p]).reshape(n, len(ij), o, hp, wp)
        part = window_sums(y, (tuple((t, i // stride, j // stride) for t, (i, j) in enumerate(ij)),), ho, wo)
        out = part if out is None else out + part
    return out[:, 0].transpose(0, 2, 3, 1)


# Winograd F(m×m, 3×3) (Lavin & Gray 2016): B^T (input tile), G (kernel), A^T (output tile), per output size m.
_WINOGRAD = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ),
}


def _kron(rows) -> list[list[float]]:
    """``M ⊗ M`` for a small matrix given as rows: the 2-D transform ``M X Mᵀ`` acting on ``vec(X)``."""
    return [[a * b for a in ra for b in rb] for ra in rows for rb in rows]


def _gather_tiles(x: mx.array, m: int, th: int, tw: int) -> mx.array:
    """``(t², N, th, tw, C)``: element (r, q) of every (t = m+2)² tile at stride m, ``x[:, m·ty + r, m·tx + q]``.

    Forward: one stack of strided views (one copy, runs of C floats). Backward (a custom VJP: MLX's own would
    allocate a zero array the size of ``x`` per tile element): the adjoint of gathering the tiles from the
    stride-m phases of ``x`` (``window_sums``), then the phases interleaved back.
    """
    n, h, w, c = x.shape
    t = m + 2
    hp, wp = -(-h // m), -(-w // m)
    gather = tuple((((r % m) * m + q % m, r // m, (q // m) * c),) for r in range(t) for q in range(t))

    @mx.custom_function
    def forward(x):
        return mx.stack(
            [x[:, r : r + m * (th - 1) + 1 : m, q : q + m * (tw - 1) + 1 : m, :] for r in range(t) for q in range(t)]
        )

    @forward.vjp
    def backward(primals, cot, _out):
        # cot: (t², N, th, tw, C) -> the window sums' cotangent layout (1, t², N, th, tw·C)
        phases = mx.zeros((1, m * m, n, hp, wp * c), cot.dtype)  # shape only: never computed
        _, (dphases,) = mx.vjp(
            lambda p: window_sums(p, gather, th, tw * c), [phases], [cot.reshape(1, t * t, n, th, tw * c)]
        )
        dx = dphases.reshape(m, m, n, hp, wp, c).transpose(2, 3, 0, 4, 1, 5).reshape(n, hp * m, wp * m, c)
        return dx[:, :h, :w] if (hp * m, wp * m) != (h, w) else dx

    return forward(x)


def _winograd_tiles(x: mx.array, w: mx.array, m: int) -> mx.array:
    """3×3 stride-1 convolution by Winograd F(m×m, 3×3) on (m+2)² input tiles (stride m).

    Every step but the copies is a GEMM, which BLAS runs on all cores (MLX's elementwise CPU ops use one): the
    input, kernel and output transforms are products with Kronecker matrices (B⊗B)ᵀ, G⊗G and (A⊗A)ᵀ, and
    the batch is folded into the rows of the (m+2)² per-element GEMMs (N·tiles × C_in by C_in × C_out).
    Channels stay innermost throughout, so the two copies (the tile gather, ``_gather_tiles``, and the tiles
    back to NHWC) move runs of C floats, and the output comes out contiguous NHWC.
    Multiplies per output: 4 (m = 2) or 2.25 (m = 4) instead of 9; F(4×4) rounds to ~5e-6 relative.
    """
    n, h, wd, c = x.shape
    o = w.shape[0]
    t = m + 2
    ho, wo = h - 2, wd - 2
    th, tw = -(-ho // m), -(-wo // m)
    if (m * th + 2, m * tw + 2) != (h, wd):  # the last tiles reach past the input: zeros there
        x = mx.pad(x, [(0, 0), (0, m * th + 2 - h), (0, m * tw + 2 - wd), (0, 0)])
    tiles = _gather_tiles(x, m, th, tw).reshape(t * t, n * th * tw * c)
    bt, g, at = (mx.array(_kron(a), dtype=x.dtype) for a in _WINOGRAD[m])
    v = (bt @ tiles).reshape(t * t, n * th * tw, c)
    u = (g @ w.transpose(1, 2, 3, 0).reshape(9, c * o)).reshape(t * t, c, o)
    y = at @ (v @ u).reshape(t * t, n * th * tw * o)  # (m², N·th·tw·O)
    y = y.reshape(m, m, n, th, tw, o).transpose(2, 3, 0, 4, 1, 5).reshape(n, m * th, m * tw, o)
    return y[:, :ho, :wo] if (m * th, m * tw) != (ho, wo) else y


def _fallback(x: mx.array, w: mx.array, stride: int) -> mx.array:
    """taps or im2col, whichever has the smaller scratch: for kernels a specialised strategy does not cover."""
    return _im2col(x, w, stride) if w.shape[3] < w.shape[0] else _taps(x, w, stride)  # scratch ∝ C_in vs C_out


def _winograd_or_fallback(m: int):
    def method(x: mx.array, w: mx.array, stride: int) -> mx.array:
        if (w.shape[1], w.shape[2], stride) != (3, 3, 1):
            return _fallback(x, w, stride)
        return _winograd_tiles(x, w, m)

    method.__name__ = f"_winograd{m}"
    method.__doc__ = f"Winograd F({m}×{m}, 3×3) for 3×3 stride 1 (``_winograd_tiles``); else taps or im2col."
    return method


_winograd = _winograd_or_fallback(2)
_winograd4 = _winograd_or_fallback(4)


def _s2d(x: mx.array, w: mx.array, stride: int) -> mx.array:
    """A large stride-1 kernel as a 3×3 one on s×s blocks (space to depth), then ``winograd4``.

    Output pixel (s·a + u, s·b + v) reads input rows s·a + u + i (i < k): block rows a + d, d < 3, when
    s ≥ (k − 1)/2. So the k×k convolution is a 3×3 convolution of the blocked input (s²·C_in channels) with
    s²·C_out outputs, one per output phase (u, v), whose kernels are the k×k kernel shifted by (u, v) and cut
    into s×s blocks. It does (3s/k)² times the multiplies (1.78× for 9×9 with s = 4), but as a 3×3 layer with
    many channels Winograd F(4×4) takes 4× off that, and nothing is unfolded: the 9×9 3→32 layer's im2col
    copies 81 windows of the image. Other strides fall back to taps or im2col.
    """
    n, h, wd, c = x.shape
    o, k, kw, _ = w.shape
    if stride != 1 or k != kw or k < 5:
        return _fallback(x, w, stride)
    s = -(-(k - 1) // 2)
    span = 3 * s  # each phase's shifted kernel, k + s − 1 ≤ 3s taps, zero-padded to 3 whole blocks
    ho, wo = h - k + 1, wd - k + 1
    hb, wb = -(-ho // s) + 2, -(-wo // s) + 2
    if (hb * s, wb * s) != (h, wd):  # whole blocks (hb·s ≥ h since s ≥ (k − 1)/2); the zeros are never read
        x = mx.pad(x, [(0, 0), (0, hb * s - h), (0, wb * s - wd), (0, 0)])
    blocks = x.reshape(n, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hb, wb, s * s * c)
    kernel = mx.concatenate(
        [
            mx.pad(w, [(0, 0), (u, span - k - u), (v, span - k - v), (0, 0)])
            .reshape(o, 3, s, 3, s, c)
            .transpose(0, 1, 3, 2, 4, 5)
            .reshape(o, 3, 3, s * s * c)
            for u in range(s)
            for v in range(s)
        ]
    )  # (s²·O, 3, 3, s²·C): output channels ordered (u, v, o)
    y = _winograd_tiles(blocks, kernel, 4)  # (N, hb − 2, wb − 2, s²·O)
    a, b = y.shape[1], y.shape[2]
    y = y.reshape(n, a, b, s, s, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, a * s, b * s, o)
    return y[:, :ho, :wo]


METHODS = {
    "direct": _direct,
    "im2col": _im2col,
    "taps": _taps,
    "winograd": _winograd,
    "winograd4": _winograd4,
    "s2d": _s2d,
}
WINOGRAD = ("winograd", "winograd4")


FLOAT32_ONLY = ("winograd4", "s2d")  # F(4×4)'s transforms lose too much in float16 (7/255 off on a network)


def candidates(w_shape, stride: int = 1, dtype=mx.float32) -> list[str]:
    """The strategies worth timing for a kernel: winograd only for 3×3 stride 1, s2d only for square kernels of
    5 and more at stride 1 (elsewhere they are fallbacks), and F(4×4) Winograd (``FLOAT32_ONLY``) only in
    float32 or wider."""
    kernel = tuple(w_shape[1:3])
    half = dtype in (mx.float16, mx.bfloat16)
    return [
        m
        for m in METHODS
        if (m not in WINOGRAD or (kernel, stride) == ((3, 3), 1))
        and (m != "s2d" or (stride == 1 and kernel[0] == kernel[1] >= 5))
        and not (half and m in FLOAT32_ONLY)
    ]


@functools.lru_cache(maxsize=None)
def method_fn(name: str, stride: int):
    """The compiled strategy (one per name and stride; mx.compile retraces per shape): fuses the window sums."""
    return mx.compile(partial(METHODS[name], stride=stride))


# ------------------------------------------------------------------------------------------------ choice


def heuristic(
    x_shape,
    w_shape,
    stride: int = 1,
    training: bool | str = False,
    dtype=mx.float32,
    device: mx.Device | mx.DeviceType | None = None,
) -> str:
    """The untuned default, from the measured winners on the style network's layers (forward and training).

    On the CPU: 3×3 stride-1 with both channel counts ≥ 64: ``winograd4`` (4× fewer multiplies; it won nearly
    all the loss network and residual shapes timed, forward with either gradient; ``winograd`` in half
    precision). A large stride-1 kernel on few input channels (the 9×9 3→32 first layer): ``s2d`` (faster than
    im2col there, forward). Otherwise the rearrangement whose scratch (∝ C_in for ``im2col``, ∝ C_out for
    ``taps``) is smaller. ``direct`` is never the CPU default: its backward pass is far slower, and its forward
    wins only narrowly and only on some stride-2 layers, which ``tune()`` finds.

    On a GPU (``device`` defaults to MLX's default device): ``direct`` (cuDNN under MLX's CUDA backend), except
    the weight gradient of a large stride-1 kernel, where ``mx.conv2d`` unfolds the input: ``taps`` for the 9×9
    32→3 output layer, ``s2d`` for the 9×9 3→32 input layer, both faster than ``direct`` there and with far
    less memory (forward and both gradients; docs/benchmarks.md). ``direct`` won every other layer of the
    training step, and the others' compiled kernels take far longer to build at each new shape. Metal is not
    measured: ``tune()`` decides there.
    """
    del x_shape  # the measured crossovers depend on the channel counts only
    o, kh, kw, c = w_shape
    half = dtype in (mx.float16, mx.bfloat16)
    if conv_prefers_direct(device):
        if training is True and stride == 1 and kh == kw >= 5 and not half:
            return "taps" if o < c else "s2d"
        return "direct"
    if (kh, kw, stride) == (3, 3, 1) and min(o, c) >= 64:
        return "winograd" if half else "winograd4"
    if stride == 1 and kh == kw >= 5 and c < o and not half:
        return "s2d"
    return "im2col" if c < o else "taps"


def scratch_bytes(
    method: str, x_shape, w_shape, stride: int = 1, itemsize: int = 4, training: bool | str = False
) -> int:
    """Rough size of a strategy's largest temporaries, for skipping candidates that would not fit.

    ``im2col`` unfolds the input (∝ C_in), ``taps`` keeps one product plane per tap (∝ C_out),
    ``winograd``/``winograd4`` (m+2)²/m² transformed planes per input and output channel, before and after
    the transform GEMMs. Training holds a cotangent of the same
    size and a padded copy too, hence ×3 (measured peaks come out near or somewhat above this estimate).
    ``mx.conv2d`` unfolds the input forward and the padded cotangent for the input gradient (as measured).
    """
    n, h, w, c = x_shape
    o, kh, kw, _ = w_shape
    unfold = n * kh * kw * c * out_size(h, kh, stride) * out_size(w, kw, stride)
    per_tap = n * kh * kw * o * (h // stride + 1) * (w // stride + 1)
    # Winograd F(m): (m+2)²/m² transformed values per input and output value, twice (before and after the
    # transform GEMM).
    wino = {
        name: 2 * n * (m + 2) ** 2 * (c + o) * out_size(h, kh, stride) * out_size(w, kw, stride) // m**2
        for name, m in (("winograd", 2), ("winograd4", 4))
    }
    fallback = per_tap if c >= o else unfold  # taps / im2col, for kernels a strategy does not cover
    if (kh, kw, stride) != (3, 3, 1):
        wino = dict.fromkeys(wino, fallback)
    # s2d: winograd4 on the blocked input (the same number of values as the input and the output)
    wino["s2d"] = 2 * n * 36 * (c + o) * h * w // 16 if stride == 1 and kh == kw >= 5 else fallback
    if method == "direct":  # measured: its input gradient unfolds the cotangent, its weight gradient x
        return (unfold + per_tap if training else unfold) * itemsize
    size = {"im2col": unfold, "taps": per_tap, **wino}[method]
    return size * itemsize * (3 if training else 1)
