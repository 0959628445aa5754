"""Fast 2-D convolution for MLX on the CPU (valid, or zero-padded), with a per-layer-shape autotuner.

Why: on the CPU, ``mx.conv2d`` unfolds its input with copies whose inner runs are only C_in floats long, runs
its GEMM with as few as 3 output columns (9×9 32→3: far slower than torch), and differentiates through
strided/dilated convolutions (a stride-2 input gradient takes far longer than its forward). The strategies
here are the same sums rearranged so that copies move whole image rows and the products are large GEMMs:

- ``direct``: ``mx.conv2d`` itself (the reference; wins some stride-2 forwards).
- ``im2col``: gather the kH·kW shifted windows of the input (channel-major), one GEMM with K = kH·kW·C_in.
  Scratch ∝ C_in: wins when C_in < C_out (9×9 3→32, the stride-2 downsamplers).
- ``taps``: one GEMM of the input with all kH·kW·C_out taps, then sum the taps' shifted windows.
  Scratch ∝ C_out: wins when C_out ≤ C_in (9×9 32→3, the upsampling 3×3s).
- ``s2d``: a large stride-1 kernel (9×9) as a 3×3 one on s×s blocks of the input (space to depth, one output
  channel group per output phase), computed by ``winograd4``: nothing unfolded (the 9×9 3→32 first layer).
- ``winograd`` / ``winograd4``: F(2×2, 3×3) / F(4×4, 3×3) for 3×3 stride 1: 2.25× / 4× fewer multiplies
  (the loss network's 3×3 layers, the residual blocks). Their transforms are GEMMs with Kronecker matrices,
  so BLAS runs them on every core; the batch is folded into the GEMM columns.

Stride s > 1 is a polyphase split: each of the s² input phases sees a stride-1 convolution with the taps that
fall on it, so nothing is computed and thrown away. Gradients: gathering windows and summing shifted windows
are each other's adjoints, and a custom VJP (``nn.conv_windows.window_sums``) says so; MLX's own VJP of a slice
allocates a zero array the size of the whole input per window. Everything is differentiable MLX ops.

Choosing: ``tune()`` times the candidates for one layer shape, each followed by a bias and a ReLU as in the
networks (an output left as a transposed view costs its reader), eagerly, outside any trace, and caches the
winner in memory and in ``$MLX_STYLE_CACHE/conv_autotune.json`` (default ``~/.cache/mlx_style``): a
``ConvTuner`` (``nn.conv_tuning``); this module keeps the default one, ``TUNER``. The strategies themselves are in
``nn.conv_strategies``.
``conv2d(..., method="auto")`` only reads that cache, else a channel-count heuristic, so it is safe inside
``mx.compile`` and ``nn.value_and_grad``. ``MLX_STYLE_CONV=<method>`` or ``set_default_method()`` forces one::

    for x_shape, w_shape, stride in layer_shapes:        # once, eagerly, before compiling the step
        conv.tune(x_shape, w_shape, stride, training=True)
    y = conv.conv2d(x, w, stride, training=True) + bias   # inside the compiled, differentiated step

``padding=p`` zero-pads: ``direct`` passes it to ``mx.conv2d`` (cuDNN pads inside the kernel, faster on a GPU
than a padded copy; docs/notes/performance_details.md), the other strategies pad first; choices and tuning use
the padded shape.

Large temporaries (tens of MB) make MLX's small default CPU buffer cache (32 MB here) hand memory back to the
OS and fault it in again on every call; ``mx.set_cache_limit`` of a few GB makes the network's convolutions
markedly faster (``scripts/bench/bench_conv.py --cache-limit-mb``; docs/notes/performance_details.md). That is
the application's choice.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_style.backend import release_freed_memory
from mlx_style.nn.conv_strategies import (
    FLOAT32_ONLY,
    METHODS,
    WINOGRAD,
    candidates,
    check,
    heuristic,  # noqa: F401
    method_fn,
    padded_shape,
    scratch_bytes,
)
from mlx_style.nn.conv_tuning import (
    CACHE_FILE,
    CACHE_VERSION,
    ENV_CACHE,
    ENV_METHOD,
    MEMORY_FRACTION,  # noqa: F401
    ConvTuner,
    shape_key,
)
from mlx_style.errors import UsageError

TUNER = ConvTuner()  # the process's choices; tests and benchmarks may swap in their own
# ``direct`` with zero padding: pass it to mx.conv2d rather than materialising a padded copy (the only reason to
# turn it off is an A/B measurement of the two).
IMPLICIT_PADDING = True


def conv2d(
    x: mx.array, weight: mx.array, stride: int = 1, method: str = "auto", training: bool | str = False, padding: int = 0
) -> mx.array:
    """2-D convolution with zero padding, equal to ``mx.conv2d(x, weight, stride, padding)`` up to float rounding.

    Args:
        x: input, NHWC. For other padding (the style network reflect-pads), pad it first and leave ``padding`` 0.
        weight: kernel, OHWI (``nn.Conv2d``'s layout). No bias: callers add it.
        stride: the same stride on both spatial axes.
        method: ``"auto"`` (tuned choice, else heuristic; see ``choose``) or one of ``METHODS``.
        training: with ``"auto"``, prefer the choice tuned for forward+backward (``tune(..., training=True)``;
            ``"input"``: for the input gradient only, falling back to the ``True`` choice).
        padding: zeros added on each side of both spatial axes. Methods are chosen (and tuned) by the padded
            shape; ``direct`` hands the padding to ``mx.conv2d`` (cuDNN pads inside the kernel), the others
            pad first.

    Returns:
        The NHWC output. Its memory layout may be a transposed view; MLX ops accept it as is.

    Shape:
        - x: (N, H, W, C_in)
        - weight: (C_out, kH, kW, C_in)
        - output: (N, (H + 2·padding - kH) // stride + 1, (W + 2·padding - kW) // stride + 1, C_out)

    Raises:
        ValueError: "[conv2d] ..." for mismatched shapes, a kernel larger than the padded input, a bad stride
            or padding, or an unknown method.
    """
    check(x, weight, stride, padding)
    if method == "auto":
        method = TUNER.choose(padded_shape(x.shape, padding), weight.shape, stride, x.dtype, training)
    elif method not in METHODS:
        raise UsageError(f"[conv2d] unknown method {method!r}; expected 'auto' or one of {sorted(METHODS)}")
    if padding and method == "direct" and IMPLICIT_PADDING:
        return mx.conv2d(x, weight, stride=stride, padding=padding)
    if padding:
        x = mx.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return method_fn(method, stride)(x, weight)


def tune(
    x_shape,
    w_shape,
    stride: int = 1,
    dtype=mx.float32,
    training: bool | str = False,
    methods=None,
    repeats: int = 3,
    force: bool = False,
    save: bool = True,
) -> str:
    """``TUNER.tune``: time the strategies for one layer shape and remember the fastest (see ``ConvTuner.tune``)."""
    return TUNER.tune(x_shape, w_shape, stride, dtype, training, methods, repeats, force, save)


def choose(x_shape, w_shape, stride: int = 1, dtype=mx.float32, training: bool | str = False) -> str:
    """``TUNER.choose``: the strategy ``conv2d(..., method="auto")`` uses for this shape."""
    return TUNER.choose(x_shape, w_shape, stride, dtype, training)


def tuned_entry(x_shape, w_shape, stride: int = 1, dtype=mx.float32, training: bool | str = False) -> dict | None:
    return TUNER.tuned_entry(x_shape, w_shape, stride, dtype, training)


def set_default_method(method: str | None) -> None:
    TUNER.set_default_method(method)


def clear_tuning(delete_file: bool = False) -> None:
    TUNER.clear(delete_file)


def cache_path():
    return TUNER.cache_path()


def tune_convs(fn, *args) -> dict[tuple, str]:
    """Run ``fn(*args)`` once eagerly, then autotune every convolution shape it used (``TUNER.tune``).

    Each shape is tuned for what its layer does: forward only in ``eval()`` mode, forward and backward in
    training mode (a forward-only winner can be far slower backward), forward and the input gradient for a
    frozen layer in training mode (the loss network inside a training step). Call it before compiling a forward
    or a training step for a given input size; the choices are cached in memory and on disk, so later runs on
    the same device pay nothing. Returns ``{(x_shape, w_shape, stride): method}``.
    """
    with TUNER.recording() as shapes:
        mx.eval(fn(*args))
        shapes = list(dict.fromkeys(shapes))
    choices = {(xs, ws, s): TUNER.tune(xs, ws, s, dtype=dt, training=tr) for xs, ws, s, dt, tr in shapes}
    release_freed_memory()  # the candidates' temporaries (far larger than the step's) go back to the OS
    return choices
