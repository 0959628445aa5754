"""The loss network inside the package (``mlx_style/vgg16/``): what it holds, that it is the default everywhere a
VGG is needed, and that training starts from a fresh install with no download."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from conftest import shared_data
from mlx_style.cli import train as train_cli
from mlx_style.io.models import convert_vgg_state, read_state_dict
from mlx_style.io.vgg_weights import SHIPPED_VGG, USER_VGG, default_vgg, load_vgg
from mlx_style.io.weights import load_weights
from mlx_style.optim.gatys import OptimizeConfig
from mlx_style.training.adain import AdaINTrainConfig
from mlx_style.training.config import TrainConfig


def test_the_shipped_vgg_holds_conv1_1_to_conv4_3_in_float16_with_its_licence():
    arrays, meta = load_weights(SHIPPED_VGG, kind="vgg")
    assert len([k for k in arrays if k.endswith(".weight")]) == 10
    assert {a.dtype for a in arrays.values()} == {mx.float16}
    assert meta["preprocess"] == "caffe" and json.loads(meta["recommended_loss_weights"])["content"] > 0
    assert "CC BY 4.0" in meta["licence"] and "Simonyan" in meta["licence"]
    assert (SHIPPED_VGG.parent / "LICENSE-CC-BY-4.0.txt").read_text().startswith("Attribution 4.0 International")
    assert "What was changed" in (SHIPPED_VGG.parent / "NOTICE").read_text()
    vgg, _ = load_vgg(SHIPPED_VGG)
    assert vgg.names[-1] == "relu4_3" and vgg.features[0].weight.dtype == mx.float32  # computed in float32
    with pytest.raises(ValueError, match="relu5_3 is beyond these weights .* convert-vgg"):
        vgg(mx.zeros((1, 16, 16, 3)), ["relu5_3"])


def test_the_shipped_vgg_is_the_caffe_vgg16_rounded_to_float16():
    source = shared_data("weights", "vgg16_caffe_imagenet", "vgg16_caffe_imagenet.safetensors")
    state, _ = read_state_dict(source)
    full = convert_vgg_state(state, "vgg16")
    shipped, _ = load_weights(SHIPPED_VGG, kind="vgg")
    for key, value in shipped.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(full[key].astype(mx.float16)), err_msg=key)


def test_every_command_defaults_to_the_shipped_vgg_unless_weights_holds_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_vgg() == str(SHIPPED_VGG)
    assert TrainConfig().vgg == AdaINTrainConfig().vgg == OptimizeConfig().vgg == str(SHIPPED_VGG)
    USER_VGG.parent.mkdir()
    USER_VGG.write_bytes(b"")
    assert TrainConfig().vgg == str(USER_VGG)  # a converted file of your own takes its place


def test_train_runs_on_a_fresh_install_with_no_vgg_of_its_own(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "painting.png")
    rc = train_cli.main(
        [
            "--style",
            "painting.png",
            "--data",
            "photos",
            "--iters",
            "2",
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--width",
            "4",
            "--residual-blocks",
            "1",
            "--no-compile",
            "--no-tune",
            "--processes",
            "1",
            "--sample-every",
            "0",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    meta = load_weights(tmp_path / "weights" / "painting.safetensors")[1]
    assert meta["vgg"].startswith("vgg16_caffe_imagenet.safetensors sha256:")
