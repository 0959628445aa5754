"""The layer studies: per-layer style reconstructions, the labelled grid, auto weights and the loss plot."""

import argparse
import shlex

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from mlx_style.cli.layers import main
from mlx_style.optim.layers import (
    FIGURE3_LAYERS,
    LABEL_HEIGHT,
    LayersConfig,
    auto_weights,
    format_weight,
    label_tile,
    loss_plot,
    make_grid,
    reconstruct_style,
    run,
    train_command,
)
from mlx_style.nn.losses import STYLE_LAYERS
from mlx_style.optim.gatys import noise_image, parse_layers, parse_weights
from mlx_style.io.vgg_weights import load_vgg
from test_optimize import smooth_image, write_random_vgg

LAYERS = ("relu1_1", "relu1_2", "relu2_1")


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    return write_random_vgg(tmp_path_factory.mktemp("vgg") / "vgg16.safetensors", last="conv2_2")


@pytest.fixture
def style_path(tmp_path):
    path = tmp_path / "style.png"
    Image.fromarray(smooth_image(5, 16, 48)[0].astype(np.uint8)).save(path)  # tiles 48×16: room for a label
    return path


def train_parser():
    """The two flags of ``mlx-style train`` that the printed command sets."""
    p = argparse.ArgumentParser()
    p.add_argument("--style-layers", type=parse_layers)
    p.add_argument("--style-layer-weights", type=parse_weights)
    return p


def test_reconstruction_from_noise_lowers_the_layer_loss(vgg_file):
    vgg = load_vgg(vgg_file)[0]
    style = mx.array(smooth_image(5, 16, 24))
    r = reconstruct_style(vgg, style, "relu1_2", iters=10, seed=0)
    assert len(r.losses) == 11 and r.losses[-1] < 0.2 * r.losses[0]
    assert 0 < r.remaining < 0.2 and r.image.shape == (16, 24, 3)
    assert np.abs(r.image - np.array(noise_image(style.shape, 0))[0]).max() > 5.0


def test_every_layer_gets_the_full_budget_however_small_its_loss(tmp_path):
    # Weights ×1e-3 make the Gram loss ~1e-12 times smaller (gradients ~1e-9): absolute tolerances would stop
    # the run at once, and the layers would no longer be compared at the same budget.
    vgg = load_vgg(write_random_vgg(tmp_path / "tiny.safetensors", last="conv1_1", scale=1e-3))[0]
    r = reconstruct_style(vgg, mx.array(smooth_image(5, 16, 24)), "relu1_1", iters=6)
    assert len(r.losses) == 7 and r.losses[0] < 1e-6 and r.remaining < 0.5


def test_grid_has_one_labelled_tile_per_layer(vgg_file, style_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "--style",
                str(style_path),
                "-o",
                str(out),
                "--vgg",
                str(vgg_file),
                "--size",
                "48",
                "--iters",
                "5",
                "--layers",
                ",".join(LAYERS),
                "--columns",
                "2",
            ]
        )
        == 0
    )
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    W, H = 48, 16
    assert grid.shape == (2 * (H + LABEL_HEIGHT), 2 * W, 3)  # 3 tiles in 2 columns: 2 rows
    tiles = [
        grid[r * (H + LABEL_HEIGHT) : r * (H + LABEL_HEIGHT) + H, c * W : (c + 1) * W]
        for r, c in ((0, 0), (0, 1), (1, 0))
    ]
    labels = [
        grid[r * (H + LABEL_HEIGHT) + H : (r + 1) * (H + LABEL_HEIGHT), c * W : (c + 1) * W]
        for r, c in ((0, 0), (0, 1), (1, 0))
    ]
    for i in range(3):
        assert labels[i].min() < 128 and np.median(labels[i]) > 200  # dark text on white
        for j in range(i):
            assert np.abs(tiles[i] - tiles[j]).mean() > 2.0  # each layer reconstructs differently
            assert not np.array_equal(labels[i], labels[j])  # and is labelled with its own name
    assert grid[H + LABEL_HEIGHT :, W:].min() == 255  # the empty cell stays white
    assert "relu2_1" in capsys.readouterr().out


def test_label_tile_and_make_grid_sizes():
    tile = label_tile(np.zeros((10, 30, 3)), "relu5_3")
    assert tile.size == (30, 10 + LABEL_HEIGHT)
    assert make_grid([tile] * 5, columns=4).size == (4 * 30, 2 * (10 + LABEL_HEIGHT))
    assert make_grid([tile] * 2, columns=4).size == (2 * 30, 10 + LABEL_HEIGHT)


def test_auto_weights_are_positive_sum_to_one_and_inverse_to_what_is_left():
    remaining = {"relu1_2": 0.01, "relu2_2": 0.02, "relu3_3": 0.1, "relu4_3": 0.4}
    weights = auto_weights(remaining)
    assert list(weights) == list(remaining) and all(w > 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    products = [weights[k] * remaining[k] for k in remaining]
    assert max(products) == pytest.approx(min(products), rel=1e-12)
    assert weights["relu1_2"] == pytest.approx(2 * weights["relu2_2"])
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match="relu2_2"):
            auto_weights({"relu1_2": 0.1, "relu2_2": bad})


def test_format_weight():
    assert [format_weight(w) for w in (0.7, 0.031249, 0.00001234, 1.0)] == ["0.7", "0.0312", "0.0000123", "1"]


def test_auto_weights_command_parses_back(vgg_file, style_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    results = run(
        LayersConfig(
            style=str(style_path),
            output=str(out),
            vgg=str(vgg_file),
            size=24,
            iters=5,
            layers=("relu1_2", "relu2_2"),
            auto_weights=True,
        )
    )
    lines = capsys.readouterr().out.splitlines()
    commands = [line for line in lines if line.startswith("mlx-style train ")]
    assert len(commands) == 1
    args = train_parser().parse_args(shlex.split(commands[0])[2:])
    expected = auto_weights({layer: r.remaining for layer, r in results.items()})
    assert args.style_layers == ("relu1_2", "relu2_2")
    np.testing.assert_allclose(args.style_layer_weights, list(expected.values()), rtol=5e-3)
    assert sum(args.style_layer_weights) == pytest.approx(1.0, abs=2e-3)
    plot = Image.open(tmp_path / "grid_losses.png")
    assert plot.size == (640, 400)
    assert np.asarray(plot.convert("L")).std() > 10  # something is drawn on it
    assert train_command(expected) == commands[0]


def test_loss_plot_draws_each_curve_in_its_colour():
    plot = np.asarray(loss_plot({"a": [1.0, 0.1, 0.01], "b": [1.0, 0.5, 0.4]}, {"a": 0.9, "b": 0.1}))
    colours = {tuple(c) for c in plot.reshape(-1, 3)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours


def test_defaults_follow_the_mode():
    assert LayersConfig().resolved_layers() == FIGURE3_LAYERS and LayersConfig().resolved_iters() == 100
    auto = LayersConfig(auto_weights=True)
    assert auto.resolved_layers() == STYLE_LAYERS and auto.resolved_iters() == 60
    assert LayersConfig(auto_weights=True, iters=7, layers=("relu1_1",)).resolved_iters() == 7


def test_missing_vgg_and_missing_layers_exit_with_one_clear_line(vgg_file, style_path, tmp_path, capsys):
    missing = tmp_path / "vgg16.safetensors"
    assert main(["--style", str(style_path), "-o", str(tmp_path / "g.png"), "--vgg", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"python scripts/convert_vgg.py -o {missing}" in err and len(err.strip().splitlines()) == 1
    # The default layers go to relu5_3; this file stops at relu2_2.
    assert main(["--style", str(style_path), "-o", str(tmp_path / "g.png"), "--vgg", str(vgg_file)]) == 2
    err = capsys.readouterr().err
    assert "relu3_1" in err and "not in this VGG file" in err
    assert not (tmp_path / "g.png").exists()


def test_train_accepts_the_printed_command():
    from mlx_style.cli import train

    weights = auto_weights({"relu1_2": 0.000232, "relu2_2": 0.00166, "relu3_3": 0.0141, "relu4_3": 0.116})
    args, unknown = train.build_parser().parse_known_args(
        shlex.split(train_command(weights))[2:] + ["--style", "wave.jpg"]
    )
    assert unknown == [] and tuple(args.style_layers) == tuple(weights)
    np.testing.assert_allclose(args.style_layer_weights, list(weights.values()), rtol=5e-3)
