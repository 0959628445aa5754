"""AdaIN (Huang & Belongie 2017): the layer, the losses and the decoder's gradient against numpy references; the
network's layout, style strength and interpolation; training end to end, exact resume, Ctrl-C, bad images; the
weight file and the loader; the command."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_close, golden_vgg_state
from train_helpers import make_images, photo

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_style.cli.train import build_parser, config_from_args, main
from mlx_style.infer.stylize import memory_needed, stylize_array
from mlx_style.io.models import load_adain, save_adain, save_vgg
from mlx_style.io.weights import WeightFileError, load_weights, read_metadata, save_weights
from mlx_style.nn.adain import (
    AdaINConfig,
    AdaINLossConfig,
    AdaINNet,
    AdaINStyle,
    adain,
    adain_loss,
    channel_stats,
    decoder_layout,
    stats_vector,
)
from mlx_style.nn.arbitrary import mix_vectors
from mlx_style.training.adain import AdaINTrainConfig, make_adain_step, make_optimizer, style_crops, train_adain
from mlx_style.training.config import LATEST, TrainingError

TINY = AdaINConfig(decoder_widths=(8, 8, 4))
EPS = 1e-5


def encoder_state() -> dict[str, mx.array]:
    """conftest's He-scaled random VGG16, conv1_1 … conv4_1, in MLX's layout (activations neither vanish nor
    explode, so the losses and gradients are well conditioned)."""
    state = golden_vgg_state()
    return {
        k: mx.array(np.ascontiguousarray(v.transpose(0, 2, 3, 1) if v.ndim == 4 else v))
        for k, v in state.items()
        if int(k.split(".")[1]) <= 17
    }


def tiny_net(seed: int = 0, config: AdaINConfig = TINY) -> AdaINNet:
    mx.random.seed(seed)
    net = AdaINNet(config)
    net.encoder.load_weights(list(encoder_state().items()), strict=True)
    return net


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Photos, three style pictures and the random encoder's VGG file (~12 MB)."""
    root = tmp_path_factory.mktemp("adain_ws")
    make_images(root / "data", 12)
    styles = root / "styles"
    styles.mkdir()
    for i in range(3):
        Image.fromarray(photo(np.random.default_rng(50 + i), 48 + 8 * i, 56)).save(styles / f"style{i}.png")
    vgg = save_vgg(root / "vgg.safetensors", encoder_state(), "vgg16", "caffe", "random test weights")
    return {"root": root, "data": root / "data", "styles": styles, "vgg": vgg}


def tiny_train_config(ws, out: Path, **overrides) -> AdaINTrainConfig:
    settings = dict(
        styles=str(ws["styles"]),
        data=str(ws["data"]),
        vgg=str(ws["vgg"]),
        image_size=32,
        batch_size=2,
        iters=4,
        lr=1e-3,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        decoder_widths=(8, 8, 4),
        output=str(out / "adain.safetensors"),
        run_dir=str(out / "run"),
        compile=False,
        tune=False,
    )
    settings.update(overrides)
    return AdaINTrainConfig(**settings)


def quiet(text):
    pass


# --- numpy references --------------------------------------------------------------------------------------------


def np_stats(x: np.ndarray, eps: float = EPS):
    x = x.astype(np.float64)
    mean = x.mean(axis=(1, 2))
    return mean, np.sqrt(((x - mean[:, None, None, :]) ** 2).mean(axis=(1, 2)) + eps)


def np_adain(content: np.ndarray, style: np.ndarray, eps: float = EPS) -> np.ndarray:
    cm, cs = np_stats(content, eps)
    sm, ss = np_stats(style, eps)
    return (content - cm[:, None, None]) / cs[:, None, None] * ss[:, None, None] + sm[:, None, None]


def test_adain_matches_numpy_and_takes_the_style_statistics():
    rng = np.random.default_rng(0)
    content = (rng.normal(3.0, 2.0, (2, 5, 7, 6)) * rng.uniform(0.1, 10, 6)).astype(np.float32)
    style = (rng.normal(-1.0, 0.5, (2, 4, 3, 6)) * rng.uniform(0.1, 10, 6) + 40).astype(np.float32)
    out = np.asarray(adain(mx.array(content), mx.array(style), EPS))
    assert_close(out, np_adain(content, style), 1e-5, "AdaIN")
    mean, std = np_stats(out, 0.0)
    style_mean, style_std = np_stats(style, EPS)
    assert_close(mean, style_mean, 1e-5, "output mean")
    assert_close(std, style_std, 1e-4, "output std")  # up to eps: the variance is tiny in a few channels
    # one style image for the whole batch broadcasts
    one = np.asarray(adain(mx.array(content), mx.array(style[:1]), EPS))
    assert_close(one, np_adain(content, np.repeat(style[:1], 2, axis=0)), 1e-5, "broadcast style")
    with pytest.raises(ValueError, match="channels"):
        adain(mx.array(content), mx.array(style[..., :3]))


def test_channel_stats_are_biased_with_eps_inside_the_root():
    x = np.random.default_rng(1).normal(0, 1e-3, (1, 4, 4, 3)).astype(np.float32)
    mean, std = channel_stats(mx.array(x), 1e-2)
    ref_mean, ref_std = np_stats(x, 1e-2)
    assert_close(np.asarray(mean), ref_mean, 1e-5)
    assert_close(np.asarray(std), ref_std, 1e-6)  # ≈ sqrt(eps): eps dominates a near-constant channel


def np_loss(content_out, t, out_feats, style_feats, layers, weights, style_weight):
    content = np.mean((content_out.astype(np.float64) - t) ** 2)
    style = 0.0
    for name, w in zip(layers, weights):
        om, osd = np_stats(out_feats[name])
        sm, ssd = np_stats(style_feats[name])
        style += w * (np.mean((om - sm) ** 2) + np.mean((osd - ssd) ** 2))
    return content + style_weight * style, content, style


def test_losses_match_a_numpy_reference():
    net = tiny_net()
    rng = np.random.default_rng(2)
    content = mx.array(rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    style = mx.array(rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    config = AdaINLossConfig(content_weight=1.0, style_weight=7.0, style_layer_weights=(0.5, 1.0, 2.0, 1.5))
    total, terms = adain_loss(net, content, style, config)
    # the reference: numpy formulas on the encoder's features (VGG is checked against torchvision elsewhere)
    layers = config.style_layers
    style_feats = {k: np.asarray(v) for k, v in net.encode(style, layers).items()}
    t = np_adain(np.asarray(net.encode(content)["relu4_1"]), style_feats["relu4_1"])
    output = net.decode(mx.array(t.astype(np.float32)))
    out_feats = {k: np.asarray(v) for k, v in net.encode(output, layers).items()}
    ref_total, ref_content, ref_style = np_loss(
        out_feats["relu4_1"], t, out_feats, style_feats, layers, config.style_layer_weights, 7.0
    )
    assert_close(terms["content"].item(), ref_content, 1e-4, "content loss")
    assert_close(terms["style"].item(), ref_style, 1e-4, "style loss")
    assert_close(total.item(), ref_total, 1e-4, "total")
    assert terms["style"].item() > 0 and terms["content"].item() > 0


def test_decoder_gradient_matches_finite_differences():
    """``nn.value_and_grad`` over the decoder (through the frozen encoder's custom VJPs: ReLU masks, max-pools,
    sub-pixel upsampling, reflect padding, the statistics) against central differences of the loss, both in
    float64; then the float32 gradient that training uses against the float64 one. On MLX's CPU: its GPUs refuse
    float64."""
    with mx.stream(mx.cpu):
        check_decoder_gradient()


def check_decoder_gradient():
    rng = np.random.default_rng(3)
    content = mx.array(rng.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32))
    style = mx.array(rng.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32))
    config = AdaINLossConfig()

    def gradient(net, dtype):
        fn = nn.value_and_grad(net.decoder, lambda c, s: adain_loss(net, c, s, config)[0])
        return dict(tree_flatten(fn(content.astype(dtype), style.astype(dtype))[1]))

    net64 = tiny_net(seed=3)
    net64.set_dtype(mx.float64)
    grads64 = gradient(net64, mx.float64)
    params = dict(tree_flatten(net64.decoder.trainable_parameters()))
    assert set(params) == set(grads64) and not any(k.startswith("encoder") for k in params)
    c64, s64 = content.astype(mx.float64), style.astype(mx.float64)
    for key, value in params.items():
        v = np.asarray(value)
        direction = rng.standard_normal(v.shape)
        direction /= np.linalg.norm(direction)
        h = 1e-6 * np.linalg.norm(v)

        def loss_at(delta):
            net64.decoder.load_weights([(key, mx.array(v + delta * direction, dtype=mx.float64))], strict=False)
            return adain_loss(net64, c64, s64, config)[0].item()

        numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
        net64.decoder.load_weights([(key, mx.array(v, dtype=mx.float64))], strict=False)
        analytic = float((np.asarray(grads64[key]) * direction).sum())
        # 5e-3: a difference may straddle a ReLU or max-pool kink; a wrong gradient is off by O(1)
        assert abs(numeric - analytic) <= 5e-3 * abs(analytic), f"{key}: numeric {numeric:.7g} vs {analytic:.7g}"
    grads32 = gradient(tiny_net(seed=3), mx.float32)
    for key in grads64:
        # float32 through 16 layers of 0–255-scale features: ~1e-2 (rounding flips ReLU masks and max-pool picks)
        assert_close(np.asarray(grads32[key]), np.asarray(grads64[key]), 5e-2, f"float32 gradient of {key}")


# --- the network -------------------------------------------------------------------------------------------------


def test_decoder_mirrors_the_encoder():
    # Huang's decoder for VGG19 (relu4_1): 512→256, ×2, 256→256 ×3, 256→128, ×2, 128→128, 128→64, ×2, 64→64, 64→3
    assert decoder_layout("vgg19", (256, 128, 64)) == [
        (512, 256, False),
        (256, 256, True),
        (256, 256, False),
        (256, 256, False),
        (256, 128, False),
        (128, 128, True),
        (128, 64, False),
        (64, 64, True),
        (64, 3, False),
    ]
    # VGG16 has one convolution fewer in block 3
    assert decoder_layout("vgg16", (256, 128, 64)) == [
        (512, 256, False),
        (256, 256, True),
        (256, 256, False),
        (256, 128, False),
        (128, 128, True),
        (128, 64, False),
        (64, 64, True),
        (64, 3, False),
    ]
    net = AdaINNet(AdaINConfig())
    assert net.encoder.names[-1] == "relu4_1" and len(net.encoder.features) == 19


@pytest.mark.parametrize("shape", [(1, 32, 32, 3), (2, 21, 37, 3)])
def test_output_keeps_the_input_size_and_pixel_range(shape):
    net = tiny_net()
    net.eval()
    x = mx.array(np.random.default_rng(4).uniform(0, 255, shape).astype(np.float32))
    vector = net.style_vector(np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    assert vector.shape == (2 * 512,)
    y = net(x, vector)
    assert y.shape == shape and y.dtype == mx.float32


def test_the_decoder_inverts_the_encoders_preprocessing():
    """A decoder that outputs zeros in the VGG's input space gives the preprocessing's mean colour in 0–255 RGB."""
    for preprocess, expected in (("caffe", (123.68, 116.779, 103.939)), ("torchvision", (123.675, 116.28, 103.53))):
        net = AdaINNet(AdaINConfig(preprocess=preprocess, decoder_widths=(4, 4, 4)))
        last = net.decoder.layers[-1].conv2d
        last.weight, last.bias = mx.zeros_like(last.weight), mx.zeros_like(last.bias)
        out = net.decode(mx.zeros((1, 2, 2, 512)))
        np.testing.assert_allclose(np.asarray(out)[0, 0, 0], expected, rtol=1e-5)
        # and the round trip through the encoder's preprocessing is the identity
        x = mx.array(np.random.default_rng(6).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32))
        from mlx_style.io.image import vgg_preprocess
        from mlx_style.nn.adain import to_pixels

        assert_close(np.asarray(to_pixels(vgg_preprocess(x, preprocess), preprocess)), np.asarray(x), 1e-6)


def test_style_strength_interpolates_features_and_equals_mixing_statistics():
    net = tiny_net()
    net.eval()
    rng = np.random.default_rng(7)
    x = mx.array(rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32))
    vector = net.style_vector(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    # α = 0 rebuilds the photo's own features (AdaIN with its own statistics is the identity)
    rebuilt = net.decode(net.encode(x)["relu4_1"])
    assert_close(np.asarray(net(x, vector, 0.0)), np.asarray(rebuilt), 1e-5, "alpha 0")
    # α-interpolation of the features = AdaIN with the statistics mixed with the photo's own (AdaINStyle.vector_for)
    bound = AdaINStyle(net, vector, 0.3)
    assert_close(np.asarray(bound(x)), np.asarray(net(x, bound.vector_for(x))), 1e-4, "alpha 0.3")
    # and both are the decoded α·AdaIN(f_c, f_s) + (1 − α)·f_c, computed in numpy
    features = np.asarray(net.encode(x)["relu4_1"]).astype(np.float64)
    mean, std = np.asarray(vector[:512]), np.asarray(vector[512:])
    cm, cs = np_stats(features)
    target = (features - cm[:, None, None]) / cs[:, None, None] * std + mean
    t = 0.3 * target + 0.7 * features
    assert_close(np.asarray(bound(x)), np.asarray(net.decode(mx.array(t.astype(np.float32)))), 1e-4, "numpy alpha")
    with pytest.raises(ValueError, match="style-strength"):
        AdaINStyle(net, vector, 1.5)
    with pytest.raises(ValueError, match="1024 numbers"):
        AdaINStyle(net, vector[:10])


def test_mixing_statistics_equals_mixing_adain_outputs():
    """Huang interpolates styles by a weighted mean of the AdaIN outputs; for one content that is AdaIN with the
    weighted mean of the statistics (what a mixed style vector holds)."""
    rng = np.random.default_rng(8)
    content = rng.normal(0, 3, (1, 4, 4, 512)).astype(np.float32)
    styles = [np.abs(rng.normal(i, 2.0, (1, 5, 5, 512))).astype(np.float32) for i in range(3)]
    weights = [0.5, 0.2, 0.3]
    huang = sum(w * np_adain(content, s) for w, s in zip(weights, styles))
    vectors = [stats_vector(*channel_stats(mx.array(s)))[0] for s in styles]
    mixed = mix_vectors(vectors, weights)
    from mlx_style.nn.adain import adain_from_stats, split_vector

    ours = adain_from_stats(mx.array(content), *split_vector(mixed, 512))
    assert_close(np.asarray(ours), huang, 1e-5, "style interpolation")


def test_config_round_trips_and_refuses_bad_values():
    config = AdaINConfig(arch="vgg19", preprocess="torchvision", decoder_widths=(16, 8, 4), style_size=256)
    assert AdaINConfig.from_json(config.to_json()) == config
    for bad in (
        {"arch": "resnet"},
        {"decoder_widths": (8, 8)},
        {"eps": 0},
        {"style_size": 3},
        {"decoder_widths": (8, 8, "4")},
    ):
        with pytest.raises(ValueError, match="AdaINConfig"):
            AdaINConfig(**{**{"decoder_widths": (8, 8, 4)}, **bad})
    with pytest.raises(ValueError, match="unknown fields"):
        AdaINConfig.from_json('{"width": 3}')


# --- the weight file and the loader --------------------------------------------------------------------------------


def test_weight_file_stands_alone_and_loads_strictly(tmp_path):
    net = tiny_net(seed=9)
    path = save_adain(tmp_path / "a.safetensors", net, {"steps": "0"})
    meta = read_metadata(path)
    assert meta["kind"] == "adain" and AdaINConfig.from_json(meta["config"]) == TINY
    loaded, _ = load_adain(path)
    for (k, a), (k2, b) in zip(tree_flatten(net.parameters()), tree_flatten(loaded.parameters())):
        assert k == k2
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(k.startswith("encoder.features.17") for k in dict(tree_flatten(loaded.parameters())))
    # a file whose metadata does not match its tensors is refused before a network is built
    arrays, meta = load_weights(path)
    bad = {k: v for k, v in arrays.items() if not k.startswith("decoder.layers.7")}
    save_weights(tmp_path / "bad.safetensors", bad, {k: v for k, v in meta.items() if "sha256" not in k})
    with pytest.raises(WeightFileError, match="does not match"):
        load_adain(tmp_path / "bad.safetensors")
    with pytest.raises(WeightFileError, match="'adain' network is needed"):
        load_adain(save_vgg(tmp_path / "vgg.safetensors", encoder_state(), "vgg16", "caffe", "x"))


def test_bound_network_runs_through_stylize_array(tmp_path):
    net, _ = load_adain(save_adain(tmp_path / "a.safetensors", tiny_net(seed=10)))
    picture = np.random.default_rng(11).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    bound = AdaINStyle(net, net.style_vector(picture), 0.8)
    photo_ = np.random.default_rng(12).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    out = stylize_array(bound, photo_, tile_size=16)  # above the tile size: still one whole pass (no tiled form)
    assert out.shape == photo_.shape and out.dtype == np.uint8
    assert memory_needed(bound, 30, 44, 30, 44) > 0


# --- training ------------------------------------------------------------------------------------------------------


def test_style_crops_are_a_function_of_seed_and_step(ws):
    from mlx_style.training.adain import load_styles

    styles = load_styles(ws["styles"], 64, [], quiet)
    a, b = style_crops(styles, 0, 5, 3, 32), style_crops(styles, 0, 5, 3, 32)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, style_crops(styles, 0, 6, 3, 32))
    assert not np.array_equal(a, style_crops(styles, 1, 5, 3, 32))


def test_the_step_trains_the_decoder_only_and_lowers_the_loss():
    net = tiny_net(seed=13)
    cfg = AdaINTrainConfig(lr=3e-3, lr_decay=0.0)
    optimizer = make_optimizer(cfg)
    optimizer.init(net.decoder.trainable_parameters())
    encoder_before = {k: np.asarray(v) for k, v in tree_flatten(net.encoder.parameters())}
    rng = np.random.default_rng(13)
    content = mx.array(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    style = mx.array(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    step = make_adain_step(net, optimizer, AdaINLossConfig(), compile=False)
    losses = []
    for _ in range(8):
        loss, _ = step(content, style)
        mx.eval(loss, net.decoder.parameters(), optimizer.state)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    for k, v in tree_flatten(net.encoder.parameters()):
        np.testing.assert_array_equal(np.asarray(v), encoder_before[k])


def decoder_weights(path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(path)).items() if k.startswith("decoder.")}


def test_end_to_end_training_writes_a_file_the_loader_stylises_with(ws, tmp_path):
    config = tiny_train_config(ws, tmp_path, sample_every=2, sample_count=1)
    result = train_adain(config, quiet)
    assert result.status == "done" and result.step == 4 and result.skipped == 0
    assert [r["step"] for r in result.records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["content"] > 0 and r["style"] > 0 for r in result.records)
    meta = read_metadata(result.output)
    assert meta["kind"] == "adain" and meta["steps"] == "4" and meta["method"] == "adain"
    assert [s["name"] for s in json.loads(meta["styles"])] == ["style0.png", "style1.png", "style2.png"]
    assert json.loads(meta["train_config"])["data"] == "data"  # no local folders in the file
    assert (tmp_path / "run" / "samples" / "final.png").exists() and (tmp_path / "run" / "loss.png").exists()
    net, _ = load_adain(result.output)
    picture = np.asarray(Image.open(ws["styles"] / "style1.png"))
    out = stylize_array(AdaINStyle(net, net.style_vector(picture), 0.5), picture[:40, :40])
    assert out.shape == (40, 40, 3)
    # the written decoder is the trained one, not the initial one (checkpoints name it model.*)
    initial = {
        k[len("model.") :]: np.asarray(v)
        for k, v in mx.load(str(tmp_path / "run" / "checkpoints" / "step_00000000.safetensors")).items()
        if k.startswith("model.")
    }
    trained = {k[len("decoder.") :]: v for k, v in decoder_weights(result.output).items()}
    assert set(initial) == set(trained)
    assert any(not np.array_equal(initial[k], trained[k]) for k in trained)


def test_resume_is_exact(ws, tmp_path):
    straight = train_adain(tiny_train_config(ws, tmp_path / "a", iters=4), quiet)
    first = train_adain(tiny_train_config(ws, tmp_path / "b", iters=2), quiet)
    assert first.step == 2
    resumed = train_adain(tiny_train_config(ws, tmp_path / "b", iters=4, resume=LATEST), quiet)
    assert resumed.status == "done" and resumed.step == 4
    a, b = decoder_weights(straight.output), decoder_weights(resumed.output)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [r["loss"] for r in straight.records] == [r["loss"] for r in resumed.records]
    assert [r["step"] for r in resumed.records] == [1, 2, 3, 4]  # the log describes one history


def test_resume_with_other_settings_is_refused(ws, tmp_path):
    train_adain(tiny_train_config(ws, tmp_path, iters=1), quiet)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train_adain(
            tiny_train_config(ws, tmp_path, iters=2, overwrite=False, output=str(tmp_path / "x.safetensors")), quiet
        )
    with pytest.raises(TrainingError, match="global_batch"):
        train_adain(tiny_train_config(ws, tmp_path, iters=2, batch_size=3, resume=LATEST), quiet)
    with pytest.raises(TrainingError, match="other settings"):
        train_adain(tiny_train_config(ws, tmp_path, iters=2, style_weight=3.0, resume=LATEST), quiet)
    with pytest.raises(TrainingError, match="another AdaIN network"):
        train_adain(tiny_train_config(ws, tmp_path, iters=2, decoder_widths=(4, 4, 4), resume=LATEST), quiet)


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_exactly(ws, tmp_path):
    def interrupt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = train_adain(tiny_train_config(ws, tmp_path / "b", iters=4), quiet, on_step=interrupt)
    # the signal lands after step 2's check: step 3 finishes, then the checkpoint, and no weight file
    assert stopped.status == "interrupted" and stopped.step == 3 and stopped.output is None
    assert stopped.checkpoint.name == "step_00000003.safetensors" and stopped.checkpoint.exists()
    resumed = train_adain(tiny_train_config(ws, tmp_path / "b", iters=4, resume=LATEST), quiet)
    assert resumed.status == "done" and resumed.step == 4
    straight = train_adain(tiny_train_config(ws, tmp_path / "a", iters=4), quiet)
    a, b = decoder_weights(straight.output), decoder_weights(resumed.output)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_bad_images_are_skipped_and_counted(ws, tmp_path):
    data, styles = tmp_path / "data", tmp_path / "styles"
    make_images(data, 12, seed=3)
    (data / "img000.png").write_bytes(b"not an image")  # the first in sorted order: read at step 1
    (data / "img001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    styles.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(photo(np.random.default_rng(len(name)), 64, 64)).save(styles / name)
    (styles / "broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    said = []
    config = tiny_train_config(ws, tmp_path, data=str(data), styles=str(styles), batch_size=2, iters=6)
    result = train_adain(config, said.append)
    assert result.status == "done"
    assert result.styles == ["a.png", "b.png"]
    skipped = [s for s in said if s.startswith("skipping")]
    assert any("broken.jpg" in s for s in skipped)
    assert result.skipped == len(skipped) >= 2  # the style picture and at least one photo reached in 6 steps
    assert any("img00" in s for s in skipped)


def test_inputs_are_checked_before_any_work(ws, tmp_path):
    with pytest.raises(TrainingError, match="multiple of 8"):
        train_adain(tiny_train_config(ws, tmp_path, image_size=30), quiet)
    with pytest.raises(WeightFileError, match="no VGG weights"):
        train_adain(tiny_train_config(ws, tmp_path, vgg=str(tmp_path / "none.safetensors")), quiet)
    with pytest.raises(Exception, match="no style folder"):
        train_adain(tiny_train_config(ws, tmp_path, styles=str(tmp_path / "nowhere")), quiet)
    shallow = tmp_path / "shallow.safetensors"
    save_vgg(shallow, {k: v for k, v in encoder_state().items() if int(k.split(".")[1]) <= 7}, "vgg16", "caffe", "x")
    with pytest.raises(TrainingError, match="relu4_1"):
        train_adain(tiny_train_config(ws, tmp_path, vgg=str(shallow)), quiet)


# --- the command -------------------------------------------------------------------------------------------------


def test_parser_defaults_are_the_configs():
    args = build_parser("adain").parse_args(["--method", "adain", "--styles", "s", "--data", "d"])
    config = config_from_args(args)
    assert config == AdaINTrainConfig(styles="s", data="d")


def test_command_trains_and_reports(ws, tmp_path, capsys):
    out = tmp_path / "cmd.safetensors"
    code = main(
        [
            "--method",
            "adain",
            "--styles",
            str(ws["styles"]),
            "--data",
            str(ws["data"]),
            "--vgg",
            str(ws["vgg"]),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--iters",
            "2",
            "--decoder-widths",
            "8,8,4",
            "--output",
            str(out),
            "--run-dir",
            str(tmp_path / "run"),
            "--sample-every",
            "0",
            "--no-compile",
            "--no-tune",
            "--lr",
            "1e-3",
        ]
    )
    assert code == 0 and out.exists()
    assert f"wrote {out} after 2 steps" in capsys.readouterr().out
    code = main(["--method=adain", "--styles", str(ws["styles"]), "--data", str(ws["data"]), "--image-size", "20"])
    assert code == 2 and "multiple of 8" in capsys.readouterr().err


def test_train_method_adain_then_stylize_and_cam_with_any_picture(ws, tmp_path, capsys):
    """The user's path: `mlx-style train --method adain`, then `stylize --model FILE --style-image PICTURE`."""
    from mlx_style.cli import run_command

    out = tmp_path / "adain.safetensors"
    assert (
        run_command(
            "train",
            [
                "--method",
                "adain",
                "--styles",
                str(ws["styles"]),
                "--data",
                str(ws["data"]),
                "--vgg",
                str(ws["vgg"]),
                "--image-size",
                "32",
                "--batch-size",
                "2",
                "--iters",
                "2",
                "--decoder-widths",
                "8,8,4",
                "--output",
                str(out),
                "--run-dir",
                str(tmp_path / "run"),
                "--sample-every",
                "0",
                "--no-compile",
                "--no-tune",
            ],
        )
        == 0
    )
    photo_path = tmp_path / "photo.png"
    Image.fromarray(photo(np.random.default_rng(9), 37, 45)).save(photo_path)
    picture = ws["styles"] / "style2.png"
    assert (
        run_command(
            "stylize",
            [
                str(photo_path),
                "--model",
                str(out),
                "--style-image",
                str(picture),
                "--style-strength",
                "0.7",
                "-o",
                str(tmp_path / "o.png"),
            ],
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "o.png")).shape == (37, 45, 3)
    capsys.readouterr()
    assert run_command("stylize", [str(photo_path), "--model", str(out), "-o", str(tmp_path / "x.png")]) == 2
    assert "--style-image" in capsys.readouterr().err
    assert run_command("train", ["--method", "nope"]) == 2
    import cv2

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 32))
    for i in range(4):
        writer.write(np.full((32, 40, 3), 30 * i, np.uint8))
    writer.release()
    capsys.readouterr()
    assert (
        run_command(
            "cam",
            [
                "--headless",
                "--source",
                str(clip),
                "--model",
                str(out),
                "--style-image",
                str(ws["styles"]),
                "--size",
                "32",
                "--output",
                str(tmp_path / "cam.avi"),
            ],
        )
        == 0
    )
    assert "style style0" in capsys.readouterr().out
