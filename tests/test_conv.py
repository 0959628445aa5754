"""Tests for mlx_style.conv: every strategy equals mx.conv2d and a numpy reference (forward and gradients);
the tuner's choice, cache file and forcing; the 'auto' path inside mx.compile and gradient transforms."""

import json

import mlx_style  # noqa: E402,F401  (before mlx.core: loads the fast BLAS)
from mlx_style.nn import conv, conv_tuning  # noqa: E402

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# (N, H, W, C_in, C_out, k, stride): stride 2 and 3, 1×1, 9×9, few output channels, batch 2, non-square.
SHAPES = [
    (1, 8, 8, 3, 4, 3, 1),
    (2, 9, 11, 3, 5, 3, 2),
    (1, 10, 13, 6, 3, 3, 2),
    (2, 14, 12, 3, 8, 9, 1),
    (1, 12, 15, 8, 3, 9, 1),
    (2, 7, 9, 5, 6, 1, 1),
    (1, 9, 8, 4, 2, 1, 2),
    (1, 13, 11, 2, 3, 5, 3),
    (1, 6, 7, 16, 1, 3, 1),
    (1, 8, 10, 3, 2, 2, 3),  # stride > kernel: some input phases are never read
    (2, 11, 13, 5, 7, 3, 1),  # 3×3 stride 1 (Winograd) on sizes that are not whole 2×2 or 4×4 tiles
    (1, 5, 4, 4, 4, 3, 1),  # a 3×2 output: less than one 4×4 tile
]
IDS = ["x".join(map(str, s)) for s in SHAPES]


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def numpy_conv(x, w, stride):
    """Independent reference: sum over taps of a strided window times that tap's (C_in, C_out) matrix."""
    n, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, ho, wo, o))
    for i in range(kh):
        for j in range(kw):
            win = x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
            out += np.einsum("nhwc,oc->nhwo", win.astype(np.float64), w[:, i, j, :].astype(np.float64))
    return out


def make(shape, seed=0):
    n, h, w, c, o, k, s = shape
    kx, kw, kc = mx.random.split(mx.random.key(seed), 3)
    x, wt = mx.random.normal((n, h, w, c), key=kx), mx.random.normal((o, k, k, c), key=kw)
    cot = mx.random.normal(mx.conv2d(x, wt, stride=s).shape, key=kc)
    mx.eval(x, wt, cot)  # a lazy array captured by mx.compile must already be computed
    return x, wt, cot, s


@pytest.fixture(autouse=True)
def clean_state(untuned_convs):
    """Each test gets its own cache folder, no forced method and an empty in-memory tuning table."""
    yield


@pytest.mark.parametrize("method", list(conv.METHODS))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_forward_matches_mx_and_numpy(method, shape):
    x, w, _, s = make(shape)
    y = conv.conv2d(x, w, stride=s, method=method)
    ref = mx.conv2d(x, w, stride=s)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= 1e-4
    assert rel_err(y, numpy_conv(np.array(x), np.array(w), s)) <= 1e-4


@pytest.mark.parametrize("method", list(conv.METHODS))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gradients_match_mx_conv2d(method, shape):
    x, w, cot, s = make(shape, seed=1)
    _, (dx_ref, dw_ref) = mx.vjp(lambda x, w: mx.conv2d(x, w, stride=s), [x, w], [cot])
    _, (dx, dw) = mx.vjp(lambda x, w: conv.conv2d(x, w, s, method), [x, w], [cot])
    assert rel_err(dx, dx_ref) <= 1e-4
    assert rel_err(dw, dw_ref) <= 1e-4


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("method", list(conv.METHODS))
@pytest.mark.parametrize(
    "shape", [(2, 9, 11, 3, 5, 3, 1), (1, 10, 13, 6, 3, 3, 2), (1, 6, 7, 3, 4, 5, 1)], ids=["3x3s1", "3x3s2", "5x5"]
)
def test_zero_padding_matches_mx_conv2d_forward_and_gradients(method, shape, implicit, monkeypatch):
    """``padding=p``: the same values and gradients as ``mx.conv2d(..., padding=p)`` and as numpy on a zero-padded
    input, whether ``direct`` passes the padding to mx.conv2d (``IMPLICIT_PADDING``) or pads first."""
    monkeypatch.setattr(conv, "IMPLICIT_PADDING", implicit)
    n, h, w_, c, o, k, s = shape
    p = k // 2
    kx, kw, kc = mx.random.split(mx.random.key(7), 3)
    x, w = mx.random.normal((n, h, w_, c), key=kx), mx.random.normal((o, k, k, c), key=kw)
    ref = mx.conv2d(x, w, stride=s, padding=p)
    cot = mx.random.normal(ref.shape, key=kc)
    y = conv.conv2d(x, w, stride=s, method=method, padding=p)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= 1e-4
    xp = np.pad(np.array(x), ((0, 0), (p, p), (p, p), (0, 0)))
    assert rel_err(y, numpy_conv(xp, np.array(w), s)) <= 1e-4
    _, (dx_ref, dw_ref) = mx.vjp(lambda x, w: mx.conv2d(x, w, stride=s, padding=p), [x, w], [cot])
    _, (dx, dw) = mx.vjp(lambda x, w: conv.conv2d(x, w, s, method, padding=p), [x, w], [cot])
    assert dx.shape == x.shape
    assert rel_err(dx, dx_ref) <= 1e-4
    assert rel_err(dw, dw_ref) <= 1e-4


def test_padding_chooses_by_the_padded_shape(monkeypatch):
    """A tuned entry for the padded shape is what ``padding=`` finds (so tuning keys are the same either way)."""
    x, w = mx.zeros((1, 6, 6, 4)), mx.zeros((4, 3, 3, 4))
    assert conv.heuristic((1, 8, 8, 4), w.shape) != "im2col"  # so the tuned entry below is what decides
    conv.TUNER.tuned[conv.shape_key((1, 8, 8, 4), w.shape, 1, mx.float32, False)] = {"method": "im2col", "ms": {}}
    used = []
    real = conv.method_fn
    monkeypatch.setattr(conv, "method_fn", lambda name, stride: (used.append(name), real(name, stride))[1])
    conv.conv2d(x, w, padding=1)
    assert used == ["im2col"]


@pytest.mark.parametrize("method", conv.WINOGRAD)
def test_winograd_precision_at_network_channel_counts(method):
    """F(4×4, 3×3) divides by 6 and 24 in its kernel transform and multiplies by up to 8 in its output
    transform: check its rounding against a float64 reference where it is used (64 channels, 18×18 maps)."""
    x, w, cot, s = make((2, 18, 18, 64, 64, 3, 1), seed=4)
    w = w * 0.05
    ref = numpy_conv(np.array(x), np.array(w), 1)
    y, (dx, dw) = mx.vjp(lambda x, w: conv.conv2d(x, w, 1, method), [x, w], [cot])
    _, (dx_ref, dw_ref) = mx.vjp(lambda x, w: mx.conv2d(x, w), [x, w], [cot])
    assert rel_err(y[0], ref) <= 3e-5
    assert rel_err(dx, dx_ref) <= 3e-5 and rel_err(dw, dw_ref) <= 3e-5


def test_half_precision_never_picks_f4_winograd():
    """F(4×4)'s transforms cost a network 7/255 in float16: neither the heuristic nor the tuner may choose it."""
    for dtype in (mx.float16, mx.bfloat16):
        assert not set(conv.FLOAT32_ONLY) & set(conv.candidates((64, 3, 3, 64), 1, dtype))
        assert not set(conv.FLOAT32_ONLY) & set(conv.candidates((32, 9, 9, 3), 1, dtype))
        assert conv.heuristic((1, 18, 18, 64), (64, 3, 3, 64), 1, dtype=dtype, device=mx.cpu) == "winograd"
        assert conv.heuristic((1, 24, 24, 3), (32, 9, 9, 3), 1, dtype=dtype, device=mx.cpu) == "im2col"
        assert conv.tune((1, 10, 10, 64), (64, 3, 3, 64), 1, dtype=dtype, repeats=1) not in conv.FLOAT32_ONLY
    assert conv.heuristic((1, 18, 18, 64), (64, 3, 3, 64), 1, device=mx.cpu) == "winograd4"
    assert conv.heuristic((1, 24, 24, 3), (32, 9, 9, 3), 1, device=mx.cpu) == "s2d"


def test_gpu_heuristic_is_direct_except_large_kernels_weight_gradients():
    """On a GPU ``mx.conv2d`` (cuDNN) won every layer of the training step on an H200, except the weight gradient
    of the 9×9 layers, where it unfolds the input (5.6 GB at 8 × 256²); forward and input-gradient-only layers
    stay direct."""
    gpu = mx.Device(mx.gpu)  # a Device or a DeviceType (mx.gpu) both work
    assert conv.heuristic((1, 24, 24, 3), (32, 9, 9, 3), 1, device=mx.gpu) == "direct"
    assert conv.heuristic((8, 264, 264, 32), (3, 9, 9, 32), 1, training=True, device=gpu) == "taps"
    assert conv.heuristic((8, 264, 264, 3), (32, 9, 9, 3), 1, training=True, device=gpu) == "s2d"
    for training in (False, "input"):
        assert conv.heuristic((8, 264, 264, 32), (3, 9, 9, 32), 1, training=training, device=gpu) == "direct"
    for w_shape, stride in (((64, 3, 3, 64), 1), ((64, 3, 3, 32), 2), ((128, 3, 3, 128), 1)):
        for training in (False, True, "input"):
            assert conv.heuristic((8, 34, 34, w_shape[3]), w_shape, stride, training, device=gpu) == "direct"
    assert conv.heuristic((8, 264, 264, 3), (32, 9, 9, 3), 1, True, mx.bfloat16, device=gpu) == "direct"


def test_gradients_numpy_reference():
    """The weight gradient is the correlation of the input with the cotangent: check one against numpy."""
    x, w, cot, s = make((1, 9, 10, 3, 4, 3, 2), seed=2)
    dw = mx.grad(lambda w: (conv.conv2d(x, w, s, "taps") * cot).sum())(w)
    xn, cn = np.array(x, dtype=np.float64), np.array(cot, dtype=np.float64)
    ref = np.zeros(w.shape)
    for i in range(3):
        for j in range(3):
            win = xn[:, i : i + 2 * (cn.shape[1] - 1) + 1 : 2, j : j + 2 * (cn.shape[2] - 1) + 1 : 2, :]
            ref[:, i, j, :] = np.einsum("nhwc,nhwo->oc", win, cn)
    assert rel_err(dw, ref) <= 1e-4


@pytest.mark.parametrize("method", list(conv.METHODS))
def test_inside_compile_and_value_and_grad(method):
    x, w, cot, s = make((2, 10, 9, 4, 6, 3, 1), seed=3)
    layer = nn.Conv2d(4, 6, 3, bias=False)
    layer.weight = w

    def loss(x):
        return (conv.conv2d(x, layer.weight, s, method) * cot).sum()

    step = mx.compile(nn.value_and_grad(layer, loss), inputs=layer.state, outputs=layer.state)
    value, grads = step(x)
    ref_value, ref_grads = nn.value_and_grad(layer, lambda x: (layer(x) * cot).sum())(x)
    assert rel_err(value, ref_value) <= 1e-4
    assert rel_err(grads["weight"], ref_grads["weight"]) <= 1e-4


def test_bad_arguments_raise_prefixed_value_error():
    x, w = mx.zeros((1, 8, 8, 3)), mx.zeros((4, 3, 3, 3))
    bad = [
        lambda: conv.conv2d(x, mx.zeros((4, 3, 3, 2))),  # channel mismatch
        lambda: conv.conv2d(x[0], w),  # not 4-D
        lambda: conv.conv2d(x, w, stride=0),
        lambda: conv.conv2d(x, w, stride=1.5),
        lambda: conv.conv2d(x, mx.zeros((4, 9, 9, 3))),  # kernel larger than input
        lambda: conv.conv2d(x, mx.zeros((4, 11, 11, 3)), padding=1),  # larger than the padded input
        lambda: conv.conv2d(x, w, padding=-1),
        lambda: conv.conv2d(x, w, padding=1.0),
        lambda: conv.conv2d(x, w, method="fft"),
        lambda: conv.set_default_method("fft"),
        lambda: conv.tune(x.shape, w.shape, methods=["fft"]),
    ]
    for call in bad:
        with pytest.raises(ValueError, match=r"^\[conv2d\] "):
            call()


def test_tune_picks_caches_and_writes_json(tmp_path):
    x_shape, w_shape = (1, 12, 12, 4), (6, 3, 3, 4)
    choice = conv.tune(x_shape, w_shape, 1, repeats=1)
    assert choice in conv.METHODS
    entry = conv.tuned_entry(x_shape, w_shape, 1)
    assert entry["method"] == choice and set(entry["ms"]) == set(conv.candidates(w_shape, 1))
    assert entry["ms"][choice] == min(entry["ms"].values())
    assert conv.choose(x_shape, w_shape, 1) == choice

    path = tmp_path / "cache" / conv.CACHE_FILE
    assert conv.cache_path() == path
    data = json.loads(path.read_text())
    assert data["version"] == conv.CACHE_VERSION
    ((key, saved),) = data["entries"].items()
    assert saved["method"] == choice and "x1x12x12x4" in key and "s1" in key and "infer" in key

    # A second process (simulated: memory cleared) reads the choice back from the file, without timing.
    conv.clear_tuning()
    assert conv.tune(x_shape, w_shape, 1) == choice
    assert conv.choose(x_shape, w_shape, 1) == choice


def test_tune_reads_a_choice_another_process_saved_meanwhile():
    """A training run's rank 0 tunes and saves; the other ranks, whose table was loaded before, must not re-time."""
    conv.tune((1, 8, 8, 2), (3, 3, 3, 2), repeats=1)  # loads (and writes) the file in this process
    x_shape, w_shape = (1, 12, 12, 4), (6, 3, 3, 4)
    other = next(m for m in conv.candidates(w_shape, 1) if m != conv.heuristic(x_shape, w_shape, 1, False))
    assert conv.ConvTuner()._write_file(
        conv.shape_key(x_shape, w_shape, 1, mx.float32, False), {"method": other, "ms": {other: 1.0}}
    )
    assert conv.tune(x_shape, w_shape, 1) == other
    assert conv.tuned_entry(x_shape, w_shape, 1)["ms"] == {other: 1.0}  # read, not timed


def test_tune_training_and_method_subset():
    x_shape, w_shape = (2, 10, 10, 3), (2, 3, 3, 3)
    assert conv.tune(x_shape, w_shape, 2, training=True, methods=["im2col", "taps"], repeats=1) in ("im2col", "taps")
    assert set(conv.tuned_entry(x_shape, w_shape, 2, training=True)["ms"]) == {"im2col", "taps"}
    assert conv.tuned_entry(x_shape, w_shape, 2, training=False) is None


def test_training_never_inherits_a_forward_only_choice():
    x_shape, w_shape = (1, 9, 9, 3), (4, 3, 3, 3)
    conv.tune(x_shape, w_shape, 2, methods=["direct"], repeats=1)
    assert conv.choose(x_shape, w_shape, 2) == "direct"
    assert conv.choose(x_shape, w_shape, 2, training=True) == conv.heuristic(x_shape, w_shape, 2, True)
    conv.tune(x_shape, w_shape, 2, training=True, methods=["taps"], repeats=1)
    assert conv.choose(x_shape, w_shape, 2, training=True) == "taps"


def test_tune_survives_unwritable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(conv.ENV_CACHE, str(blocker))
    assert conv.tune((1, 8, 8, 2), (3, 3, 3, 2), repeats=1) in conv.METHODS


def test_corrupt_cache_file_is_ignored(tmp_path):
    path = tmp_path / "cache" / conv.CACHE_FILE
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert conv.choose((1, 8, 8, 2), (3, 3, 3, 2)) == conv.heuristic((1, 8, 8, 2), (3, 3, 3, 2))
    conv.tune((1, 8, 8, 2), (3, 3, 3, 2), repeats=1)
    assert json.loads(path.read_text())["version"] == conv.CACHE_VERSION


def test_forced_method_env_and_setter(monkeypatch):
    used = []
    real = conv.method_fn
    monkeypatch.setattr(conv, "method_fn", lambda name, stride: used.append(name) or real(name, stride))
    x, w, _, s = make((1, 8, 8, 3, 4, 3, 1))
    monkeypatch.setenv(conv.ENV_METHOD, "direct")
    y = conv.conv2d(x, w, s)
    assert used[-1] == "direct" and rel_err(y, mx.conv2d(x, w)) <= 1e-4
    conv.set_default_method("im2col")  # the setter wins over the env var
    conv.conv2d(x, w, s)
    assert used[-1] == "im2col"
    conv.set_default_method(None)
    monkeypatch.setenv(conv.ENV_METHOD, "bogus")
    with pytest.raises(ValueError, match=r"^\[conv2d\] MLX_STYLE_CONV"):
        conv.conv2d(x, w, s)


def test_auto_in_compile_uses_cache_or_heuristic_and_never_times(monkeypatch):
    x, w, cot, s = make((1, 9, 9, 3, 2, 3, 1), seed=4)
    tuned = conv.tune(x.shape, w.shape, s, methods=["direct"], repeats=1)

    def no_timing(*args, **kwargs):
        raise AssertionError("timed inside a trace")

    monkeypatch.setattr(conv_tuning, "_time_ms", no_timing)
    used = []
    real = conv.method_fn
    monkeypatch.setattr(conv, "method_fn", lambda name, stride: used.append(name) or real(name, stride))
    f = mx.compile(lambda x, w: conv.conv2d(x, w, s))
    assert rel_err(f(x, w), mx.conv2d(x, w)) <= 1e-4
    assert used == [tuned]
    # An untuned shape inside a gradient transform falls back to the heuristic.
    x2, w2, cot2, _ = make((1, 10, 9, 3, 2, 3, 1), seed=5)
    g = mx.compile(mx.grad(lambda w: (conv.conv2d(x2, w, s) * cot2).sum()))(w2)
    g_ref = mx.grad(lambda w: (mx.conv2d(x2, w) * cot2).sum())(w2)
    assert rel_err(g, g_ref) <= 1e-4
    assert used[-1] == conv.heuristic(x2.shape, w2.shape, s)


def test_scratch_estimate_orders_strategies():
    # 9×9 32→3: the per-tap products are 10× smaller than the unfolded input, and the reverse for 3→32.
    big_in = conv.scratch_bytes("im2col", (1, 264, 264, 32), (3, 9, 9, 32))
    assert big_in > 5 * conv.scratch_bytes("taps", (1, 264, 264, 32), (3, 9, 9, 32))
    assert conv.scratch_bytes("taps", (1, 264, 264, 3), (32, 9, 9, 3)) > 5 * conv.scratch_bytes(
        "im2col", (1, 264, 264, 3), (32, 9, 9, 3)
    )


def test_input_only_mode_is_tuned_and_chosen_separately_and_falls_back_to_training():
    x_shape, w_shape = (1, 10, 10, 4), (6, 3, 3, 4)
    conv.tune(x_shape, w_shape, 1, training=True, repeats=1)
    # Untuned for the input gradient alone: the full training choice is used.
    assert conv.choose(x_shape, w_shape, 1, training="input") == conv.choose(x_shape, w_shape, 1, training=True)
    choice = conv.tune(x_shape, w_shape, 1, training="input", methods=["im2col"], repeats=1)
    assert choice == "im2col" and conv.choose(x_shape, w_shape, 1, training="input") == "im2col"
    assert conv.tuned_entry(x_shape, w_shape, 1, training="input")["ms"].keys() == {"im2col"}
    with pytest.raises(ValueError, match="training must be False, True or 'input'"):
        conv.choose(x_shape, w_shape, 1, training="yes")


def test_frozen_conv_asks_for_the_input_gradient_only():
    from mlx_style.nn.ops import Conv2d

    layer = Conv2d(3, 4, 3)
    assert layer.grad_mode() is True
    layer.freeze()
    assert layer.grad_mode() == "input"
    layer.eval()
    assert layer.grad_mode() is False
