"""The dev scripts behind the MLX-vs-PyTorch training comparison: the PyTorch twin of the training recipe, and
the held-out evaluation both networks are measured with."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train_helpers import make_workspace, tiny_config

import mlx_style  # noqa: F401
from mlx_style.training.progress import read_log
from mlx_style.training import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("compare_ws"))


@pytest.fixture(scope="module")
def trained(ws, tmp_path_factory):
    """Two tiny networks trained with the same recipe for different lengths (4 and 1 steps)."""
    root = tmp_path_factory.mktemp("compare_nets")
    long = tiny_config(ws, root / "long", iters=4)
    short = tiny_config(ws, root / "short", iters=1)
    train(long, stream=io.StringIO())
    train(short, stream=io.StringIO())
    return long, short


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m scripts.bench.<name>`` from the repository root, as the docs run it."""
    module = "scripts.bench." + name.removesuffix(".py")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_compare_measures_every_photo_alike_and_draws_the_grid(ws, trained, tmp_path):
    long, short = trained
    out_json, grid = tmp_path / "losses.json", tmp_path / "grid.png"
    done = run_script(
        "compare_training.py",
        long.output,
        short.output,
        long.output,
        "--labels",
        "A,B,A2",
        "--style",
        str(ws["style"]),
        "--data",
        str(ws["data"]),
        "--vgg",
        str(ws["vgg"]),
        "--size",
        "32",
        "--grid",
        str(grid),
        "--grid-size",
        "40",
        "--json",
        str(out_json),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out_json.read_text())
    assert len(data["files"]) == 12
    a, b, a2 = (data["results"][k] for k in ("A", "B", "A2"))
    assert a == a2  # the same network measures the same, photo for photo
    assert all(np.isfinite(r[k]) for r in a + b for k in ("loss", "content", "style", "tv"))
    assert [r["loss"] for r in a] != [r["loss"] for r in b]
    assert "A has the lower total than A2 on 0 of 12 photos" in done.stdout
    # Four photos (the default), each as a row: the photo, then one tile per network, 40² plus a label strip.
    width, height = Image.open(grid).size
    assert width == 4 * 40 and height % 4 == 0 and height // 4 > 40


def test_compare_refuses_a_file_without_a_training_loss_config(ws, tmp_path):
    from mlx_style.io.models import save_transformer
    from mlx_style.nn.transformer import TransformerConfig, TransformerNet

    plain = save_transformer(tmp_path / "plain.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1)))
    done = run_script(
        "compare_training.py",
        str(plain),
        "--style",
        str(ws["style"]),
        "--data",
        str(ws["data"]),
        "--vgg",
        str(ws["vgg"]),
        "--size",
        "32",
    )
    assert done.returncode != 0 and "no loss_config" in done.stderr


def test_torch_reference_trains_the_same_recipe_step_for_step(ws, trained, tmp_path):
    """Same files, order, initial weights and loss: PyTorch's first steps give MLX's losses."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    long, _ = trained
    log = tmp_path / "torch.jsonl"
    done = run_script(
        "train_torch_reference.py",
        "--style",
        long.style,
        "--data",
        long.data,
        "--vgg",
        long.vgg,
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--iters",
        "4",
        "--log-every",
        "1",
        "--width",
        "4",
        "--residual-blocks",
        "1",
        "--style-layers",
        ",".join(long.style_layers),
        "--content-layer",
        long.content_layer,
        "--output",
        str(tmp_path / "torch.safetensors"),
        "--log",
        str(log),
    )
    assert done.returncode == 0, done.stderr
    theirs = [json.loads(line) for line in log.read_text().splitlines()]
    ours = read_log(Path(long.run_dir) / "log.jsonl")
    assert [r["step"] for r in theirs] == [r["step"] for r in ours] == [1, 2, 3, 4]
    for t, m in zip(theirs, ours):
        for key in ("loss", "content", "style", "tv"):
            assert t[key] == pytest.approx(m[key], rel=2e-3), (t["step"], key)
    assert theirs[0]["loss"] == pytest.approx(ours[0]["loss"], rel=1e-5)  # before any update: the same function


@pytest.mark.parametrize("upsample", ["nearest", "deconv"])
def test_torch_twin_weights_round_trip_and_compute_the_same_network(upsample):
    torch = pytest.importorskip("torch")
    from mlx_style.bench import torch_twin
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_style.nn.transformer import TransformerConfig, TransformerNet

    config = TransformerConfig(width=4, num_residual=1, upsample=upsample)
    mx.random.seed(3)
    net = TransformerNet(config)
    arrays = {k: np.asarray(v) for k, v in tree_flatten(net.parameters())}
    twin = torch_twin.net_from_mlx(torch, arrays, config)
    back = torch_twin.net_to_mlx_arrays(twin, config)
    assert back.keys() == arrays.keys() and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    x = np.random.default_rng(0).uniform(0, 255, (1, 20, 24, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(net(mx.array(x))), theirs, atol=1e-3)
