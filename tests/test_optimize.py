"""Image optimisation (Gatys et al.) on tiny images with a small random VGG16 saved to a temporary file."""

import json

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from mlx_style.io.image import load_image
from mlx_style.nn.losses import recommended_weights, LossConfig
from mlx_style.io.models import save_vgg
from mlx_style.cli.optimize import main
from mlx_style.optim.gatys import (
    OptimizeConfig,
    check_layers,
    loss_config_for,
    noise_image,
    optimize_image,
    parse_layers,
    parse_weights,
    snapshot_path,
)
from mlx_style.nn.vgg import BLOCK_CHANNELS, layer_names
from mlx_style.io.vgg_weights import load_vgg

# The synthetic file stops at relu3_3 (the default content layer): small and fast, and the real code path.
LOSS = LossConfig(
    content_weight=2.0,
    style_weight=5.0,
    tv_weight=1e-5,
    content_layer="relu3_3",
    style_layers=("relu1_2", "relu2_2", "relu3_3"),
    style_layer_weights=(1.0, 1.0, 1.0),
)
LAYER_FLAGS = ["--style-layers", "relu1_2,relu2_2,relu3_3", "--style-layer-weights", "1,1,1"]


def write_random_vgg(path, last="conv3_3", seed=0, preprocess="caffe", scale=1.0):
    """He-initialised VGG16 convolutions up to ``last`` (times ``scale``), saved like a converted checkpoint."""
    rng = np.random.default_rng(seed)
    arrays, cin = {}, 3
    for index, name in enumerate(layer_names("vgg16")):
        if name.startswith("conv"):
            cout = BLOCK_CHANNELS[int(name[4]) - 1]
            w = scale * rng.standard_normal((cout, 3, 3, cin)) * np.sqrt(2.0 / (9 * cin))
            arrays[f"features.{index}.weight"] = mx.array(w.astype(np.float32))
            arrays[f"features.{index}.bias"] = mx.array((scale * 0.05 * rng.standard_normal(cout)).astype(np.float32))
            cin = cout
        if name == last:
            break
    return save_vgg(path, arrays, "vgg16", preprocess, "random test weights")


def smooth_image(seed, H, W):
    """A random smooth RGB image in 0–255 (blurred noise plus a ramp), float32 (1, H, W, 3)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 255, (H // 4 + 2, W // 4 + 2, 3))
    a = np.asarray(Image.fromarray(a.astype(np.uint8)).resize((W, H), Image.Resampling.BICUBIC), np.float32)
    ramp = np.linspace(-40, 40, W, dtype=np.float32)[None, :, None]
    return np.clip(a + ramp, 0, 255)[None]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    return write_random_vgg(tmp_path_factory.mktemp("vgg") / "vgg16.safetensors")


@pytest.fixture(scope="module")
def vgg(vgg_file):
    return load_vgg(vgg_file)[0]


@pytest.fixture
def images(tmp_path):
    content, style = smooth_image(1, 24, 32), smooth_image(2, 28, 20)
    paths = tmp_path / "content.png", tmp_path / "style.png"
    for path, a in zip(paths, (content, style)):
        Image.fromarray(a[0].astype(np.uint8)).save(path)
    return paths


def test_lbfgs_loss_decreases_monotonically_and_the_image_changes(vgg):
    content = mx.array(smooth_image(1, 24, 32))
    result = optimize_image(vgg, content, mx.array(smooth_image(2, 28, 20)), LOSS, iters=8)
    losses = np.array(result.losses)
    assert len(losses) == 9 and result.iterations == 8 and result.evaluations >= 9
    assert losses[-1] < 0.5 * losses[0]
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])  # every accepted step satisfies sufficient decrease
    assert float(mx.max(mx.abs(result.image - content))) > 1.0
    assert result.image.shape == content.shape
    # The weighted terms add up to the total at every iteration.
    np.testing.assert_allclose([sum(t.values()) for t in result.terms], losses, rtol=1e-4)


def test_adam_loss_decreases(vgg):
    content = mx.array(smooth_image(1, 24, 32))
    result = optimize_image(vgg, content, mx.array(smooth_image(2, 28, 20)), LOSS, iters=15, optimizer="adam", lr=2.0)
    losses = np.array(result.losses)
    assert result.evaluations == 16 and losses[-1] < losses[0]
    assert np.mean(np.diff(losses) <= 0) >= 0.7


def test_noise_init_starts_from_noise_and_decreases(vgg):
    content = mx.array(smooth_image(1, 24, 32))
    seen = []
    result = optimize_image(
        vgg,
        content,
        mx.array(smooth_image(2, 28, 20)),
        LOSS,
        iters=6,
        init="noise",
        seed=3,
        on_step=lambda state, terms: seen.append(np.array(state.x)),
    )
    start = np.array(noise_image(content.shape, 3))
    np.testing.assert_array_equal(seen[0], start)
    assert 20 < start.std() < 40 and start.min() >= 0 and start.max() <= 255
    assert result.losses[-1] < result.losses[0] and np.isfinite(np.array(result.image)).all()
    assert np.abs(np.array(result.image) - start).max() > 1.0
    # Mostly style at the start: noise shares no content with the photo.
    assert result.terms[0]["content"] > 0


def test_noise_depends_on_the_seed_only():
    a, b, c = noise_image((1, 8, 8, 3), 0), noise_image((1, 8, 8, 3), 0), noise_image((1, 8, 8, 3), 1)
    assert np.array_equal(np.array(a), np.array(b)) and not np.array_equal(np.array(a), np.array(c))


def test_main_writes_the_image_snapshots_and_progress(vgg_file, images, tmp_path, capsys):
    out = tmp_path / "out" / "result.png"
    code = main(
        [
            "--content",
            str(images[0]),
            "--style",
            str(images[1]),
            "-o",
            str(out),
            "--vgg",
            str(vgg_file),
            "--size",
            "24",
            "--iters",
            "4",
            "--save-every",
            "2",
            "--log-every",
            "2",
            *LAYER_FLAGS,
        ]
    )
    assert code == 0
    assert load_image(out).shape == (18, 24, 3)  # content 24×32 → longer side 24
    assert snapshot_path(out, 2).exists() and not snapshot_path(out, 4).exists()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iter")]
    assert [line.split()[1] for line in lines] == ["0/4", "2/4", "4/4"]
    for word in ("loss", "content", "style", "tv", "it/s"):
        assert word in lines[-1]


def test_missing_vgg_says_how_to_convert(images, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "vgg16.safetensors"
    code = main(
        ["--content", str(images[0]), "--style", str(images[1]), "-o", str(tmp_path / "o.png"), "--vgg", str(missing)]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"python scripts/convert_vgg.py -o {missing}" in err
    assert err.startswith("error: no VGG weights") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--style-layers", "relu1_2,relu4_3", "--style-layer-weights", "1,1"], "relu4_3 not in this VGG file"),
        (["--style-layers", "relu1_2,relu2_2", "--style-layer-weights", "1,1,1"], "one weight per layer"),
        (["--size", "3", *LAYER_FLAGS], "too small"),
    ],
)
def test_bad_requests_exit_with_one_clear_line(vgg_file, images, tmp_path, capsys, flags, message):
    code = main(
        [
            "--content",
            str(images[0]),
            "--style",
            str(images[1]),
            "-o",
            str(tmp_path / "o.png"),
            "--vgg",
            str(vgg_file),
            "--iters",
            "1",
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_loss_weights_default_to_the_vgg_file_and_flags_override(vgg_file):
    meta = load_vgg(vgg_file)[1]
    recommended = recommended_weights(meta["preprocess"])
    assert json.loads(meta["recommended_loss_weights"]) == recommended
    config = loss_config_for(OptimizeConfig(), meta)
    assert (config.content_weight, config.style_weight, config.tv_weight) == (
        recommended["content"],
        recommended["style"],
        recommended["tv"],
    )
    assert config.style_layer_weights == (1.0, 1.0, 1.0, 1.0)
    config = loss_config_for(
        OptimizeConfig(
            style_weight=50.0, tv_weight=0.0, style_layers=("relu1_2", "relu2_2"), style_layer_weights=(0.7, 0.3)
        ),
        meta,
    )
    assert (config.content_weight, config.style_weight, config.tv_weight) == (recommended["content"], 50.0, 0.0)
    assert config.style_layers == ("relu1_2", "relu2_2") and config.style_layer_weights == (0.7, 0.3)


def test_check_layers_knows_the_pooling_depth(vgg):
    check_layers(vgg, ("relu3_3",), 4, 4)  # two pools before relu3_3: 4 px is enough
    with pytest.raises(ValueError, match="at least 4 px"):
        check_layers(vgg, ("relu1_1", "relu3_3"), 3, 40)


def test_flag_parsers():
    assert parse_layers("relu1_2, relu2_2") == ("relu1_2", "relu2_2")
    assert parse_weights("0.7,0.3,0.03,0.03") == (0.7, 0.3, 0.03, 0.03)
    for bad in ("a,b", "-1,2", ""):
        with pytest.raises(Exception, match="expected"):
            parse_weights(bad)
