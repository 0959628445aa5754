"""ops.tune_convs: one eager run records every convolution shape, each is tuned once and then used."""

import json

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import pytest

from mlx_style import conv
from mlx_style.ops import tune_convs
from mlx_style.transformer import TransformerConfig, TransformerNet


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(conv.ENV_CACHE, str(tmp_path))
    conv.clear_tuning()
    yield tmp_path
    conv.clear_tuning()


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
