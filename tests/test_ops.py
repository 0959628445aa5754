"""conv.tune_convs: one eager run records every convolution shape, each is tuned once and then used."""

import json

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import pytest

from mlx_style.nn import conv
from mlx_style.backend import backend_name
from mlx_style.nn.conv import tune_convs
from mlx_style.nn.transformer import TransformerConfig, TransformerNet


@pytest.fixture
def cache(untuned_convs):
    return untuned_convs


def test_tune_convs_tunes_each_layer_shape_once_and_conv2d_uses_the_choice(cache):
    mx.random.seed(0)
    net = TransformerNet(TransformerConfig(width=4, num_residual=2))
    net.eval()
    x = mx.random.uniform(0, 255, (1, 24, 20, 3))
    choices = tune_convs(net, x)
    # conv1 9×9, two stride-2 downsamplers, residual 3×3s (one shape), two upsampling 3×3s, the 9×9 output conv.
    assert len(choices) == 7
    assert ((1, 32, 28, 3), (4, 9, 9, 3), 1) in choices
    for (x_shape, w_shape, stride), method in choices.items():
        assert method in conv.candidates(w_shape, stride)
        assert conv.choose(x_shape, w_shape, stride) == method
    saved = json.loads((cache / conv.CACHE_FILE).read_text())
    assert len(saved.get("entries", saved)) >= 7
    before = net(x)
    assert tune_convs(net, x) == choices  # cached: the same choices, nothing re-timed needlessly
    assert mx.allclose(net(x), before, rtol=1e-5, atol=1e-3)


# --- ×2 upsampling convolutions at the input's resolution (subpixel_conv) ----------------------------------------

import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402

from mlx_style.nn import ops  # noqa: E402
from mlx_style.nn.ops import phase_taps, reflect_pad, subpixel_conv, upsample_nearest  # noqa: E402


def _rand(shape, seed):
    return mx.random.normal(shape, key=mx.random.key(seed))


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 4, 4, 6), (1, 1, 3, 2)])
@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_subpixel_nearest_equals_upsample_pad_conv(shape, padding):
    x, w = _rand(shape, 1), _rand((4, 3, 3, shape[-1]), 2)
    up = upsample_nearest(x, 2)
    padded = reflect_pad(up, 1) if padding == "reflect" else mx.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = mx.conv2d(padded, w)
    z = mx.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if padding == "reflect" else "constant")
    got = subpixel_conv(z, w, "nearest")
    assert got.shape == expected.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
    assert mx.allclose(got, expected, atol=1e-5).item()


@pytest.mark.parametrize("start", [1, 0])  # torch's crop (k//2) and TF 'SAME' (0)
def test_subpixel_deconv_equals_conv_transpose(start):
    x, w = _rand((2, 5, 6, 3), 3), _rand((4, 3, 3, 3), 4)
    full = mx.conv_transpose2d(x, w, stride=2)  # (H−1)·2 + 3 rows
    expected = full[:, start : start + 10, start : start + 12, :]
    got = subpixel_conv(mx.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), w, "deconv", start)
    assert mx.allclose(got, expected, atol=1e-5).item()


def test_subpixel_gradients_match_the_plain_composition():
    x, w = _rand((1, 4, 5, 3), 5), _rand((2, 3, 3, 3), 6)
    cot = _rand((1, 8, 10, 2), 7)

    def plain(x, w):
        return mx.sum(mx.conv2d(reflect_pad(upsample_nearest(x, 2), 1), w) * cot)

    def fast(x, w):
        return mx.sum(subpixel_conv(mx.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge"), w, "nearest") * cot)

    for a, b in zip(mx.grad(plain, argnums=(0, 1))(x, w), mx.grad(fast, argnums=(0, 1))(x, w)):
        assert mx.allclose(a, b, atol=1e-4).item()


def test_phase_taps_cover_every_tap_once_per_phase_pair():
    """Nearest: each phase reads 2 rows and uses all 3 taps; deconv: the 2 phases split the 3 taps."""
    for offset, matrix in phase_taps("nearest"):
        assert len(matrix) == 2 and [sum(col) for col in zip(*matrix)] == [1, 1, 1]
    for start in (0, 1):
        per_phase = [[sum(col) for col in zip(*matrix)] for _, matrix in phase_taps("deconv", 3, start)]
        assert [sum(col) for col in zip(*per_phase)] == [1, 1, 1]
        assert sorted(sum(p) for p in per_phase) == [1, 2]


@pytest.mark.parametrize("mode", ["reflect", "edge"])
@pytest.mark.parametrize("shape,pad", [((2, 5, 7, 3), 1), ((1, 9, 6, 4), 4), ((1, 3, 3, 2), 2)])
def test_pad_spatial_equals_mx_pad_and_its_gradient(mode, shape, pad):
    from mlx_style.nn.ops import pad_spatial

    x = _rand(shape, 8)
    widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    assert mx.array_equal(pad_spatial(x, pad, mode), mx.pad(x, widths, mode=mode)).item()
    cot = _rand((shape[0], shape[1] + 2 * pad, shape[2] + 2 * pad, shape[3]), 9)
    ours = mx.grad(lambda a: mx.sum(pad_spatial(a, pad, mode) * cot))(x)
    theirs = mx.grad(lambda a: mx.sum(mx.pad(a, widths, mode=mode) * cot))(x)
    assert mx.allclose(ours, theirs, atol=1e-5).item()


def test_reflect_pad_wider_than_the_image_is_a_clear_error():
    from mlx_style.nn.ops import pad_spatial

    with pytest.raises(ValueError, match="reflect padding 4"):
        pad_spatial(mx.zeros((1, 4, 8, 1)), 4)


def test_relu_and_its_gradient_match_numpy_including_zero():
    x = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.5], [5.0, -1e-30, 0.25, -7.0, 0.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(ops.relu(mx.array(x))), np.maximum(x, 0))
    cot = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    _, (grad,) = mx.vjp(lambda a: ops.relu(a), [mx.array(x)], [mx.array(cot)])
    np.testing.assert_array_equal(np.asarray(grad), np.where(x > 0, cot, 0))  # torch's: 0 at exactly 0
    for dtype in (mx.float16, mx.bfloat16):
        xh = mx.array(x).astype(dtype)  # 1e-30 flushes to 0 here
        y = mx.grad(lambda a: ops.relu(a).sum())(xh)
        expected = (np.asarray(xh.astype(mx.float32)) > 0).astype(np.float32)
        assert y.dtype == dtype and np.array_equal(np.asarray(y.astype(mx.float32)), expected)


@pytest.mark.skipif(
    backend_name() != "cpu",
    reason="a CPU-backend memory property: on CUDA (H200, MLX 0.32.4) the "
    "same comparison peaked 61 MB higher with the mask, not lower (docs/benchmarks.md); Metal unmeasured",
)
def test_relu_backward_keeps_a_mask_not_the_float_input(monkeypatch, untuned_convs):
    """The transformer's forward and backward (training mode): with nn.relu the backward pass keeps each ReLU's
    float input; ops.relu keeps a 1-byte mask instead, so the peak drops by about 3/4 of those inputs.

    The convolutions use the untuned heuristic (``untuned_convs``: an empty cache folder and tuning table):
    choices timed by earlier tests vary from run to run and move the peak (forcing ``direct`` or ``taps`` for every
    layer leaves it where the masks make no difference; the heuristic's choices save 7.9 of 10.6 MB)."""
    from mlx_style.nn import transformer

    mx.random.seed(0)
    net = TransformerNet(TransformerConfig())
    net.train()
    x = mx.random.uniform(0, 255, (2, 96, 96, 3))
    relu_inputs = []

    def counting_relu(a):
        relu_inputs.append(a.nbytes)
        return nn.relu(a)

    def peak(act):
        monkeypatch.setattr(transformer, "relu", act)
        step = nn.value_and_grad(net, lambda b: net(b).mean())
        mx.eval(step(x))
        mx.clear_cache()
        mx.reset_peak_memory()
        start = mx.get_active_memory()
        mx.eval(step(x))
        return mx.get_peak_memory() - start

    plain = peak(counting_relu)
    lean = peak(ops.relu)
    float_inputs = sum(relu_inputs) / 2  # two calls
    assert plain - lean >= 0.5 * float_inputs, ((plain - lean) / 1e6, float_inputs / 1e6)


def _instance_norm_reference(x, w, b, eps, g):
    """Float64 numpy: the norm's output and the gradients of sum(g · output) with respect to x, w and b."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    dxhat = g * w
    dx = (
        dxhat - dxhat.mean(axis=(1, 2), keepdims=True) - xhat * (dxhat * xhat).mean(axis=(1, 2), keepdims=True)
    ) / np.sqrt(var + eps)
    return xhat * w + b, dx, (g * xhat).sum(axis=(0, 1, 2)), g.sum(axis=(0, 1, 2))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 16, 12, 8)])
def test_instance_norm_and_its_hand_written_gradient_match_numpy(shape, compiled):
    rng = np.random.default_rng(1)
    x = rng.normal(40.0, 3.0, shape).astype(np.float32)  # a mean far from 0, as after a conv with bias
    w, b = rng.normal(size=(2, shape[-1])).astype(np.float32)
    g = rng.normal(size=shape).astype(np.float32)
    y_ref, *grads_ref = _instance_norm_reference(x, w, b, 1e-5, g)

    def loss(a, wt, bs):
        return (ops.instance_norm(a, wt, bs, 1e-5) * mx.array(g)).sum()

    grad = mx.grad(loss, argnums=(0, 1, 2))
    grad = mx.compile(grad) if compiled else grad
    y = ops.instance_norm(mx.array(x), mx.array(w), mx.array(b), 1e-5)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=0, atol=2e-5)
    for got, want in zip(grad(mx.array(x), mx.array(w), mx.array(b)), grads_ref):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_instance_norm_without_affine_and_in_half_precision():
    rng = np.random.default_rng(2)
    x = rng.normal(100.0, 20.0, (2, 6, 6, 4)).astype(np.float32)
    y_ref = _instance_norm_reference(x, 1.0, 0.0, 1e-3, np.zeros_like(x))[0]
    np.testing.assert_allclose(np.asarray(ops.instance_norm(mx.array(x), None, None, 1e-3)), y_ref, atol=2e-5)
    half = ops.instance_norm(mx.array(x).astype(mx.float16), None, None, 1e-3)
    assert half.dtype == mx.float16  # statistics in float32: the variance of 0–255 values overflows float16
    np.testing.assert_allclose(np.asarray(half.astype(mx.float32)), y_ref, atol=5e-3)


def _max_pool_reference(x, g):
    """numpy 2×2 max-pool (floor) and torch's gradient: each window's cotangent goes to its first maximum."""
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    win = x[:, : 2 * h2, : 2 * w2].reshape(b, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(b, h2, w2, c, 4)
    first = win.argmax(-1)
    grad = np.zeros_like(x)
    for k in range(4):
        di, dj = divmod(k, 2)
        grad[:, di : 2 * h2 : 2, dj : 2 * w2 : 2] += np.where(first == k, g, 0)
    return win.max(-1), grad


@pytest.mark.parametrize("elementwise", [True, False])
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 7, 9, 5), (3, 2, 2, 1)], ids=["even", "odd", "one-window"])
def test_max_pool_and_its_gradient_match_numpy(shape, compiled, elementwise):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(np.float32)  # continuous: no ties
    g = rng.normal(size=(shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
    y_ref, dx_ref = _max_pool_reference(x, g)
    pool = lambda a: ops.max_pool_2x2(a, elementwise)  # noqa: E731
    fn = mx.compile(pool) if compiled else pool
    np.testing.assert_array_equal(np.asarray(fn(mx.array(x))), y_ref)
    vjp = lambda a: mx.vjp(pool, [a], [mx.array(g)])[1][0]  # noqa: E731
    dx = (mx.compile(vjp) if compiled else vjp)(mx.array(x))
    np.testing.assert_array_equal(np.asarray(dx), dx_ref)


@pytest.mark.parametrize("elementwise", [True, False])
def test_max_pool_after_relu_has_torchs_gradient_even_with_ties(elementwise):
    """After a ReLU (VGG's order) the tied maxima that occur are zeros, and the ReLU's zero gradient there makes
    the every-tie rule of ``max_pool_2x2`` give exactly torch's first-maximum gradient."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    x[0, :2, :2, 0] = -1.0  # a whole window negative: four tied zeros after the ReLU
    g = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)
    _, dpool = _max_pool_reference(np.maximum(x, 0), g)
    dx_ref = np.where(x > 0, dpool, 0)
    _, (dx,) = mx.vjp(lambda a: ops.max_pool_2x2(ops.relu(a), elementwise), [mx.array(x)], [mx.array(g)])
    np.testing.assert_array_equal(np.asarray(dx), dx_ref)


def test_max_pool_picks_the_elementwise_form_on_a_gpu_only(monkeypatch):
    calls = []
    real = ops._max_pool_even
    monkeypatch.setattr(ops, "_max_pool_even", lambda x: (calls.append(x.shape), real(x))[1])
    x = mx.random.normal((1, 4, 4, 2))
    ops.max_pool_2x2(x)
    assert calls == ([(1, 4, 4, 2)] if mx.default_device().type == mx.DeviceType.gpu else [])
    ops.max_pool_2x2(x, elementwise=True)
    assert calls[-1] == (1, 4, 4, 2)


def test_max_pool_needs_two_pixels():
    with pytest.raises(ValueError, match=r"^\[max_pool_2x2\] needs at least 2×2"):
        ops.max_pool_2x2(mx.zeros((1, 1, 4, 2)))
