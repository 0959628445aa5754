"""The transformer network: Table 1's parameter counts, any-size inputs, config and file round-trips."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import json
from dataclasses import asdict

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from mlx_style.io.models import load_transformer, save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet, count_parameters, padded_size
from mlx_style.io.weights import WeightFileError

# Report's Table 1: conv weights + bias per layer.
TABLE1_CONVS = {
    "conv1": 7808,
    "conv2": 18496,
    "conv3": 73856,
    "deconv1": 73792,
    "deconv2": 18464,
    "deconv3": 7779,
    **{f"res.{i}.conv{j}": 147584 for i in range(5) for j in (1, 2)},
}
TABLE1_TOTAL = 1_679_235  # with the instance norms' scale and shift
# Engstrom's 48 TF variables (shapes in ../shared/data/weights/fast_style_transfer_ml5/README.md): no conv bias,
# an instance norm after every conv including the output one.
FST_TOTAL = (
    9 * 9 * 3 * 32
    + 3 * 3 * 32 * 64
    + 3 * 3 * 64 * 128
    + 10 * 3 * 3 * 128 * 128
    + 3 * 3 * 128 * 64
    + 3 * 3 * 64 * 32
    + 9 * 9 * 32 * 3
    + 2 * (32 + 64 + 128 + 10 * 128 + 64 + 32 + 3)
)

SMALL = {"width": 4, "num_residual": 2}
VARIANTS = {
    "default": TransformerConfig(**SMALL),
    "deconv": TransformerConfig(upsample="deconv", **SMALL),
    "batch": TransformerConfig(norm="batch", **SMALL),
    "same": TransformerConfig(padding="same", conv_bias=False, output="tanh", **SMALL),
    "fst": TransformerConfig(**{**asdict(TransformerConfig.fst()), **SMALL}),
}


def layer_counts(net: TransformerNet) -> dict[str, int]:
    counts = {}
    for name, value in tree_flatten(net.trainable_parameters()):
        layer = name.rsplit(".", 2)[0] if ".conv2d." in name else name.rsplit(".", 1)[0]
        counts[layer] = counts.get(layer, 0) + value.size
    return counts


def test_table1_parameter_counts():
    net = TransformerNet()
    counts = layer_counts(net)
    assert {k: counts[k] for k in TABLE1_CONVS} == TABLE1_CONVS
    norms = {k: v for k, v in counts.items() if k not in TABLE1_CONVS}
    assert sum(norms.values()) == 2 * (32 + 64 + 128 + 10 * 128 + 64 + 32) == 3200
    assert count_parameters(net) == TABLE1_TOTAL


def test_batch_norm_variant_counts_only_trainable_parameters():
    net = TransformerNet(TransformerConfig(norm="batch"))
    assert count_parameters(net) == TABLE1_TOTAL  # running statistics are not trained
    stats = [k for k, _ in tree_flatten(net.parameters()) if "running" in k]
    assert len(stats) == 2 * 15


def test_fst_variant_matches_engstroms_variables():
    assert count_parameters(TransformerNet(TransformerConfig.fst())) == FST_TOTAL == 1_677_638


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (37, 50), (255, 257)])
def test_output_size_equals_input_size(variant, size):
    net = TransformerNet(VARIANTS[variant])  # training mode: batch norm uses the batch's statistics
    H, W = size
    x = mx.random.uniform(0, 255, (1, H, W, 3), key=mx.random.key(H * 1000 + W))
    y = net(x)
    mx.eval(y)
    assert y.shape == (1, H, W, 3)
    assert np.isfinite(np.array(y)).all()


def test_full_width_output_size_and_range():
    net = TransformerNet(TransformerConfig.fst())
    y = net(mx.random.uniform(0, 255, (2, 37, 50, 3), key=mx.random.key(0)))
    mx.eval(y)
    assert y.shape == (2, 37, 50, 3)
    assert float(y.min()) >= -22.5 - 1e-3 and float(y.max()) <= 277.5 + 1e-3  # tanh(x)·150 + 127.5


def test_padded_size():
    assert [padded_size(s) for s in (1, 5, 8, 9, 37, 255, 256, 257)] == [8, 8, 8, 12, 40, 256, 256, 260]


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="3 channels"):
        TransformerNet(TransformerConfig(**SMALL))(mx.zeros((1, 8, 8, 4)))


# ---------------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    "config", [TransformerConfig(), TransformerConfig.fst(), TransformerConfig(norm="batch", width=16, num_residual=3)]
)
def test_config_json_round_trip(config):
    text = config.to_json()
    assert json.loads(text)["width"] == config.width
    assert TransformerConfig.from_json(text) == config


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"norm": "group"}, "norm must be one of"),
        ({"upsample": "bilinear"}, "upsample must be one of"),
        ({"padding": "zeros"}, "padding must be one of"),
        ({"output": "sigmoid"}, "output must be one of"),
        ({"width": 0}, "width"),
        ({"num_residual": -1}, "num_residual"),
        ({"norm_eps": 0.0}, "norm_eps"),
    ],
)
def test_bad_config_raises(fields, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**fields)


def test_config_from_json_unknown_field():
    text = json.dumps({**json.loads(TransformerConfig().to_json()), "attention": True})
    with pytest.raises(ValueError, match=r"unknown fields \['attention'\].*upgrade"):
        TransformerConfig.from_json(text)


def test_config_from_json_bad_value():
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerConfig.from_json(json.dumps({"norm": "layer"}))


# ---------------------------------------------------------------------------------------------------------------
# Weight files


@pytest.mark.parametrize("variant", ["default", "fst", "batch"])
def test_save_load_round_trip(tmp_path, variant):
    mx.random.seed(3)
    net = TransformerNet(VARIANTS[variant])
    x = mx.random.uniform(0, 255, (2, 12, 16, 3), key=mx.random.key(1))
    if variant == "batch":
        mx.eval(net(x))  # move the running statistics away from their initial values
    net.eval()
    expected = np.array(net(x))
    path = save_transformer(tmp_path / "net.safetensors", net, extra={"style": "wave.jpg"})
    loaded, meta = load_transformer(path)
    assert meta["kind"] == "transformer" and meta["style"] == "wave.jpg"
    assert TransformerConfig.from_json(meta["config"]) == VARIANTS[variant]
    assert not loaded.training
    np.testing.assert_array_equal(np.array(loaded(x)), expected)
    assert sorted(k for k, _ in tree_flatten(loaded.parameters())) == sorted(
        k for k, _ in tree_flatten(net.parameters())
    )


def test_load_transformer_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(WeightFileError, match="no style network at .*train"):
        load_transformer(tmp_path / "nope.safetensors")


def test_load_transformer_refuses_a_config_that_does_not_fit(tmp_path):
    """A file whose metadata config disagrees with its tensors is refused, naming the mis-shaped keys."""
    from mlx_style.io.weights import save_weights

    net = TransformerNet(TransformerConfig(width=4, num_residual=1))
    arrays = dict(tree_flatten(net.parameters()))
    meta = {"kind": "transformer", "config": TransformerConfig(width=8, num_residual=1).to_json()}
    path = save_weights(tmp_path / "bad.safetensors", arrays, meta)
    with pytest.raises(WeightFileError, match="says width 8, but its first convolution has 4 channels"):
        load_transformer(path)


# ---------------------------------------------------------------------------------------------------------------
# Several styles in one network (conditional instance norm)


def _multi(styles: int = 3, seed: int = 0):
    mx.random.seed(seed)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=styles))
    net.update(tree_map(lambda p: p + 0.3 * mx.random.normal(p.shape), net.parameters()))
    return net


def _single_from_row(net, weights):
    """A single-style network whose norms are the blend ``weights`` of the multi-style one's rows (numpy)."""
    single = TransformerNet(TransformerConfig(width=4, num_residual=1))
    params = {}
    w = np.asarray(weights, np.float64)
    for key, value in tree_flatten(net.parameters()):
        value = np.asarray(value, np.float64)
        params[key] = mx.array((w @ value).astype(np.float32) if value.ndim == 2 else value.astype(np.float32))
    single.load_weights(list(params.items()), strict=True)
    return single


@pytest.mark.parametrize("weights", [[0, 1, 0], [0.2, 0.5, 0.3]])
def test_multi_style_network_is_the_single_style_network_of_its_blend(weights):
    net = _multi()
    x = mx.array(np.random.default_rng(0).uniform(0, 255, (2, 20, 28, 3)).astype(np.float32))
    ours = net(x, mx.array(weights, dtype=mx.float32))
    expected = _single_from_row(net, weights)(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="style blend"):
        net(x)


def test_multi_style_gradient_reaches_only_the_rows_in_use():
    from mlx.nn import value_and_grad

    net = _multi()
    x = mx.array(np.random.default_rng(1).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32))
    style = mx.array([0.0, 1.0, 0.0])
    loss = lambda: mx.mean(net(x, style) ** 2)  # noqa: E731
    _, grads = value_and_grad(net, lambda: loss())()
    g = np.asarray(grads["in1"]["weight"])
    assert np.all(g[[0, 2]] == 0) and np.any(g[1] != 0)
    # one entry against a central finite difference
    eps = 1e-3
    w = np.asarray(net.in1.weight).copy()
    for sign in (1, -1):
        w2 = w.copy()
        w2[1, 2] += sign * eps
        net.in1.weight = mx.array(w2)
        if sign == 1:
            plus = float(loss())
        else:
            minus = float(loss())
    net.in1.weight = mx.array(w)
    assert abs((plus - minus) / (2 * eps) - g[1, 2]) <= 2e-2 * max(1.0, abs(g[1, 2]))


def test_multi_style_tiled_forward_matches_and_configs_refuse_batch_norm():
    from mlx_style.nn.multistyle import BlendedStyle
    from mlx_style.infer.stylize import run_any_size

    net = _multi()
    bound = BlendedStyle(net, mx.array([0.5, 0.0, 0.5]))
    photo = np.random.default_rng(2).uniform(0, 255, (60, 44, 3)).astype(np.float32)
    np.testing.assert_allclose(
        run_any_size(bound, photo, tile_size=16), run_any_size(bound, photo, tile_size=0), atol=2e-2
    )
    with pytest.raises(ValueError, match="norm 'instance'"):
        TransformerConfig(norm="batch", styles=2)


def test_with_style_bakes_a_blend_into_a_single_style_network():
    net = _multi()
    blend = mx.array([0.25, 0.0, 0.75])
    x = mx.array(np.random.default_rng(3).uniform(0, 255, (1, 24, 24, 3)).astype(np.float32))
    single = net.with_style(blend)
    assert single.config.styles == 1
    np.testing.assert_allclose(np.asarray(single(x)), np.asarray(net(x, blend)), atol=1e-3)
