"""Building blocks written directly on MLX arrays: padding, normalisation, upsampling, convolution.

All arrays are NHWC. Each function is pure and differentiable; modules in ``transformer`` and ``vgg`` compose
them. Convolutions go through ``mlx_style.nn.conv.conv2d``, which picks the fastest equivalent strategy for the
layer shape (tuned once per device, cached; see that module).
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import mlx.nn as nn

from mlx_style.nn import conv as _conv
from mlx_style.backend import elementwise_max_pool, native_depthwise
from mlx_style.errors import UsageError


def _border_rows(x: mx.array, pad: int, axis: int, mode: str) -> tuple[list[mx.array], list[mx.array]]:
    """The ``pad`` slices that go before and after ``x`` along ``axis`` for reflect or edge padding."""
    n = x.shape[axis]

    def take(i):
        index = [slice(None)] * x.ndim
        index[axis] = slice(i, i + 1)
        return x[tuple(index)]

    if mode == "reflect":
        return [take(i) for i in range(pad, 0, -1)], [take(n - 2 - i) for i in range(pad)]
    return [take(0)] * pad, [take(n - 1)] * pad


def pad_spatial(x: mx.array, pad: int, mode: str = "reflect") -> mx.array:
    """Reflect or edge padding of the two spatial axes of NHWC ``x`` by ``pad``, as two concatenations.

    Equal to ``mx.pad(..., mode=mode)`` to the bit and faster on the CPU (``scripts/bench_ops.py``,
    docs/notes/performance_details.md), and its gradient is a sum of slices.
    """
    if pad == 0:
        return x
    if mode == "reflect" and pad >= min(x.shape[1], x.shape[2]):
        raise UsageError(
            f"[pad_spatial] reflect padding {pad} needs more than {pad} rows and columns, got {x.shape[1]}×{x.shape[2]}"
        )
    for axis in (1, 2):
        before, after = _border_rows(x, pad, axis, mode)
        x = mx.concatenate([*before, x, *after], axis=axis)
    return x


def reflect_pad(x: mx.array, pad: int) -> mx.array:
    """Reflection padding of the two spatial axes by ``pad`` (torch's ``ReflectionPad2d``)."""
    return pad_spatial(x, pad, "reflect")


def same_pad_amounts(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding for one axis: the extra pixel goes after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pad(x: mx.array, kernel: int, stride: int) -> mx.array:
    """Zero padding that makes a valid convolution equal TF's ``padding='SAME'``."""
    _, H, W, _ = x.shape
    ph, pw = same_pad_amounts(H, kernel, stride), same_pad_amounts(W, kernel, stride)
    if ph == (0, 0) and pw == (0, 0):
        return x
    return mx.pad(x, ((0, 0), ph, pw, (0, 0)))


def upsample_nearest(x: mx.array, scale: int = 2) -> mx.array:
    """Nearest-neighbour upsampling by an integer factor (torch's ``interpolate(mode='nearest')``)."""
    B, H, W, C = x.shape
    x = mx.broadcast_to(x[:, :, None, :, None, :], (B, H, scale, W, scale, C))
    return x.reshape(B, H * scale, W * scale, C)


@mx.custom_function
def _relu_and_mask(x: mx.array):
    return mx.maximum(x, 0), x > 0


@_relu_and_mask.vjp
def _relu_and_mask_vjp(primals, cotangents, outputs):
    return (cotangents[0] * outputs[1],)


def relu(x: mx.array) -> mx.array:
    """``max(x, 0)``, whose gradient (1 where x > 0, else 0, as torch's) is read from a 1-byte mask made in the
    forward pass, so the backward pass need not keep the float input alive as ``nn.relu``'s does. On the CPU
    backend a training step peaks lower than with ``nn.relu`` or with the gradient read from the output, with
    the same losses; on CUDA the saving did not show and the step's time was the same
    (docs/notes/performance_details.md)."""
    return _relu_and_mask(x)[0]


@mx.custom_function
def _max_pool_even(x: mx.array):
    return mx.maximum(mx.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]), mx.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


@_max_pool_even.vjp
def _max_pool_even_vjp(primals, cotangents, outputs):
    x = primals[0] if isinstance(primals, (list, tuple)) else primals
    y = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    g = cotangents[0] if isinstance(cotangents, (list, tuple)) else cotangents
    b, h, w, c = x.shape
    window = x.reshape(b, h // 2, 2, w // 2, 2, c)
    hit = window == y[:, :, None, :, None, :]
    return (mx.where(hit, g[:, :, None, :, None, :], 0).reshape(b, h, w, c),)


def max_pool_2x2(x: mx.array, elementwise: bool | None = None) -> mx.array:
    """2×2 max-pool, stride 2, NHWC; odd rows and columns are dropped (floor, as torch's ``max_pool2d(x, 2)``).

    Two formulations, the same values:

    - ``elementwise`` (the default on a GPU): the maximum of the four strided views, one fused pass, and a
      hand-written gradient that sends the cotangent to every input equal to its window's maximum, one fused
      pass. On a GPU far faster than ``mx.max`` over a reshape, for the pool alone and for the VGG16 forward
      and the loss's gradient.
    - ``mx.max`` over a 6-D reshape: the default on the CPU, where the elementwise form made the VGG16 forward
      and the training step slower (docs/notes/tried_and_not_kept.md).

    A window with tied maxima passes the full gradient to each tie in the elementwise form, where torch picks
    one; after a ReLU (as in VGG) the ties that occur are zeros, whose ReLU gradient is zero either way.
    ``elementwise=None`` picks by MLX's default device (Metal is not measured; it takes the GPU's choice).
    """
    b, h, w, c = x.shape
    if h < 2 or w < 2:
        raise UsageError(f"[max_pool_2x2] needs at least 2×2 pixels, got {h}×{w}")
    if h % 2 or w % 2:
        x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    if elementwise is None:
        elementwise = elementwise_max_pool()
    if elementwise:
        return _max_pool_even(x)
    return mx.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


@functools.lru_cache(maxsize=None)
def _instance_norm_fn(eps: float):
    """The affine instance norm for one ``eps`` as an ``mx.custom_function`` with a hand-written gradient.

    Forward: ``(x − mean)·(rstd·weight) + bias``, also returning ``mean`` and ``rstd`` (B, 1, 1, C), so the
    backward pass keeps only ``x`` (which it needs anyway) and two small arrays. The per-channel factors go
    through ``mx.contiguous``: inside ``mx.compile`` it stops the fusion of the small ``rsqrt`` and products
    into the full-size kernel, which otherwise recomputes them for every pixel and, on the CPU, makes the
    compiled norm + ReLU slower than the eager one (docs/notes/performance_details.md). The gradient is the closed
    form (as torch's), one fused pass for ``dx`` instead of MLX's autodiff through the mean, variance and broadcasts.
    """

    @mx.custom_function
    def norm(x, weight, bias):
        mean = mx.mean(x, axis=(1, 2), keepdims=True)
        centred = x - mean
        rstd = mx.contiguous(mx.rsqrt(mx.mean(centred * centred, axis=(1, 2), keepdims=True) + eps))
        return centred * mx.contiguous(rstd * weight) + bias, mean, rstd

    @norm.vjp
    def norm_vjp(primals, cotangents, outputs):
        # y = x̂·w + b with x̂ = (x − mean)·rstd. Per image and channel, over the n pixels:
        # dx = rstd·w·(g − Σg/n − x̂·Σ(g·x̂)/n), dw = Σ_batch Σ(g·x̂), db = Σ_batch Σg.
        x, weight, _ = primals
        g = cotangents[0]
        _, mean, rstd = outputs
        n = x.shape[1] * x.shape[2]
        sum_g = mx.sum(g, axis=(1, 2), keepdims=True)
        sum_gx = mx.sum((x - mean) * g, axis=(1, 2), keepdims=True) * rstd  # Σ(g·x̂)
        a = rstd * weight
        dx = mx.contiguous(a) * g - mx.contiguous(a * sum_g / n) - mx.contiguous(a * rstd * sum_gx / n) * (x - mean)
        return dx, mx.sum(sum_gx, axis=(0, 1, 2)), mx.sum(sum_g, axis=(0, 1, 2))

    return norm


def instance_norm(x: mx.array, weight: mx.array | None, bias: mx.array | None, eps: float) -> mx.array:
    """Normalise each image's channels over H and W (biased variance, as torch and TF do), then scale and shift.

    Shape: ``x`` ``(B, H, W, C)``; ``weight`` and ``bias`` ``(C,)`` or ``None`` (no affine transform).
    """
    # Statistics in float32: in float16 the variance of 0–255-scale activations overflows (inf, then NaN).
    xf = x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x
    c = x.shape[-1]
    weight = mx.ones((c,), xf.dtype) if weight is None else weight.astype(xf.dtype)
    bias = mx.zeros((c,), xf.dtype) if bias is None else bias.astype(xf.dtype)
    return _instance_norm_fn(float(eps))(xf, weight, bias)[0].astype(x.dtype)


class Conv2d(nn.Module):
    """A convolution with zero padding, OHWI weight, optional bias; same parameter names as ``nn.Conv2d``.

    Shape:
        - Input: ``(B, H, W, in_channels)``
        - Output: ``(B, (H + 2·padding − k) // stride + 1, …, out_channels)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        scale = math.sqrt(1.0 / (in_channels * kernel_size * kernel_size))
        self.weight = mx.random.uniform(-scale, scale, (out_channels, kernel_size, kernel_size, in_channels))
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))
        self.stride = stride
        self.padding = padding

    def grad_mode(self) -> bool | str:
        """What a differentiated graph needs of this layer: nothing in ``eval()`` mode, only the input gradient
        when the weight is frozen (the loss network), else both (``conv.conv2d``'s ``training``)."""
        if not self.training:
            return False
        return True if "weight" in self.trainable_parameters() else "input"

    def __call__(self, x: mx.array) -> mx.array:
        mode = self.grad_mode()
        _conv.TUNER.note(_conv.padded_shape(x.shape, self.padding), self.weight.shape, self.stride, x.dtype, mode)
        y = _conv.conv2d(x, self.weight, stride=self.stride, training=mode, padding=self.padding)
        if "bias" in self:
            y = y + self.bias
        return y


def depthwise_conv(x: mx.array, weight: mx.array, stride: int = 1, native: bool | None = None) -> mx.array:
    """A depthwise convolution (one filter per channel, no padding): on a GPU MLX's grouped ``mx.conv2d(x, weight,
    stride, groups=C)``; on the CPU, where MLX's grouped convolution is slow, the same as a sum of ``k²`` strided,
    scaled slices, several times faster there (``scripts/bench/bench_ops.py``). ``native`` overrides the choice
    (``backend.native_depthwise``).

    Shape: ``x`` ``(B, H, W, C)``; ``weight`` ``(C, k, k, 1)``; output ``(B, (H − k)//stride + 1, …, C)``.
    """
    _, H, W, C = x.shape
    k = weight.shape[1]
    if weight.shape != (C, k, k, 1):
        raise UsageError(f"[depthwise_conv] weight must be ({C}, k, k, 1) for {C} channels, got {weight.shape}")
    native = native_depthwise() if native is None else native
    if native:
        return mx.conv2d(x, weight, stride=stride, groups=C)
    return _depthwise_slices(x, weight, stride)


def strided_depthwise(x: mx.array, weight: mx.array, stride: int) -> mx.array:
    """The depthwise convolution as the sum of ``k²`` strided, scaled slices. ``depthwise_conv`` runs it compiled
    into one pass; eagerly it is one pass per product and per sum (``scripts/bench/bench_depthwise.py``)."""
    _, H, W, _ = x.shape
    k = weight.shape[1]
    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
    out = None
    for i in range(k):
        for j in range(k):
            term = (
                x[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :]
                * weight[:, i, j, 0]
            )
            out = term if out is None else out + term
    return out


_depthwise_slices = mx.compile(strided_depthwise)


def dilate(x: mx.array, stride: int) -> mx.array:
    """Insert ``stride − 1`` zeros between neighbouring pixels: ``(B, H, W, C)`` → ``(B, (H−1)·s+1, (W−1)·s+1, C)``."""
    if stride == 1:
        return x
    B, H, W, C = x.shape
    s = stride
    y = mx.pad(x[:, :, None, :, None, :], ((0, 0), (0, 0), (0, s - 1), (0, 0), (0, s - 1), (0, 0)))
    return y.reshape(B, H * s, W * s, C)[:, : (H - 1) * s + 1, : (W - 1) * s + 1, :]


def phase_taps(mode: str, kernel: int = 3, start: int = 1) -> tuple[tuple[int, tuple[tuple[int, ...], ...]], ...]:
    """Per output phase a ∈ {0, 1} of a ×2 layer, which rows of the 1-pixel-padded input z feed which taps.

    ``mode="nearest"``: nearest ×2 upsampling, 1-pixel padding, then a ``kernel``=3 convolution: output row
    2m + a, tap t reads upsampled row 2m + a − 1 + t, i.e. z row m + ⌊(a − 1 + t)/2⌋ + 1.
    ``mode="deconv"``: a stride-2 transposed convolution cropped from ``start`` (torch: k//2, TF 'SAME': 0):
    output row 2m + a gets tap t from input row m + (a + start − t)/2 when that is whole, z row one further.

    Returns, per phase, ``(offset, matrix)``: the phase's 1-D kernel is ``matrix @ taps`` (``matrix`` is
    span × kernel, 0/1) applied to z from row ``m + offset``.
    """
    phases = []
    for a in range(2):
        if mode == "nearest":
            rows = {t: (a - 1 + t) // 2 + 1 for t in range(kernel)}
        else:
            rows = {t: (a + start - t) // 2 + 1 for t in range(kernel) if (a + start - t) % 2 == 0}
        lo, hi = min(rows.values()), max(rows.values())
        matrix = [[int(rows.get(t) == lo + u) for t in range(kernel)] for u in range(hi - lo + 1)]
        phases.append((lo, tuple(map(tuple, matrix))))
    return tuple(phases)


def subpixel_conv(z: mx.array, weight: mx.array, mode: str, start: int = 1, training: bool | str = False) -> mx.array:
    """A ×2 upsampling convolution computed at the input's resolution, one small convolution per output phase.

    ``z`` is the input padded by one pixel on each side (``(B, H+2, W+2, C)``); the result is ``(B, 2H, 2W, O)``,
    equal to ``mode="nearest"``: nearest ×2 upsampling, padding by 1 (reflect, when z is edge-padded; zeros,
    when z is zero-padded) and the 3×3 convolution ``weight``; ``mode="deconv"``: the stride-2 transposed
    convolution with ``weight`` (``(out, k, k, in)``) cropped from ``start``, z zero-padded.
    Each of the four phases is a 2×2 (or smaller) convolution with summed taps (Odena et al.'s sub-pixel view of
    the same sums): 16 instead of 36 multiplies per input pixel for the nearest layer, 9 instead of 36 for
    the transposed one, and the upsampled map is never built.
    """
    B, Hz, Wz, _ = z.shape
    H, W = Hz - 2, Wz - 2
    phases = phase_taps(mode, weight.shape[1], start)
    outputs = []
    for ra, ma in phases:
        for cb, mb in phases:
            kernel = mx.einsum("ui,vj,oijc->ouvc", mx.array(ma, weight.dtype), mx.array(mb, weight.dtype), weight)
            window = z[:, ra : ra + H + len(ma) - 1, cb : cb + W + len(mb) - 1, :]
            _conv.TUNER.note(window.shape, kernel.shape, 1, z.dtype, training)
            outputs.append(_conv.conv2d(window, kernel, stride=1, training=training))
    y = mx.stack(outputs, axis=3).reshape(B, H, W, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(B, 2 * H, 2 * W, -1)


class ConvTranspose2d(nn.Module):
    """Transposed convolution, weight ``(out, kH, kW, in)``; ``align='torch'`` or ``'tf_same'`` for the crop.

    ``torch``: torch's ``ConvTranspose2d(padding=k//2, output_padding=stride-1)``, output ``stride·H``.
    ``tf_same``: TF's ``conv2d_transpose(padding='SAME')``, which keeps the first ``stride·H`` rows and columns
    of the full ``(H−1)·stride + k`` output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        bias: bool = True,
        align: str = "torch",
    ):
        super().__init__()
        if align not in ("torch", "tf_same"):
            raise UsageError(f"[ConvTranspose2d] align must be 'torch' or 'tf_same', got {align!r}")
        scale = math.sqrt(1.0 / (in_channels * kernel_size * kernel_size))
        self.weight = mx.random.uniform(-scale, scale, (out_channels, kernel_size, kernel_size, in_channels))
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))
        self.stride = stride
        self.align = align

    def __call__(self, x: mx.array) -> mx.array:
        _, H, W, _ = x.shape
        s, k = self.stride, self.weight.shape[1]
        start = k // 2 if self.align == "torch" else 0
        if s == 2 and k == 3:
            # One 2×2, 2×1, 1×2 or 1×1 convolution per output phase (subpixel_conv): 4× fewer multiplies than
            # convolving the zero-dilated input, which was itself far faster than mx.conv_transpose2d on the CPU.
            y = subpixel_conv(mx.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), self.weight, "deconv", start, self.training)
        else:
            # As a convolution of the zero-dilated input with the flipped kernel (any stride and kernel).
            x = mx.pad(dilate(x, s), ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
            _conv.TUNER.note(x.shape, self.weight.shape, 1, x.dtype, self.training)
            y = _conv.conv2d(x, self.weight[:, ::-1, ::-1, :], stride=1, training=self.training)
            y = y[:, start : start + s * H, start : start + s * W, :]
        if "bias" in self:
            y = y + self.bias
        return y
