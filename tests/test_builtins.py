"""The built-in styles and the one rule that finds a style: a path, a name in weights/, a built-in name."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli import stylize as stylize_cli
from mlx_style.io import registry
from mlx_style.io.image import ImageError
from mlx_style.io.models import save_transformer
from mlx_style.io.weights import WeightFileError, load_weights, read_metadata
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx.utils import tree_flatten

pytestmark = pytest.mark.builtin_styles
SHIPPED = sorted(registry.BUILTIN_DIR.glob("*.safetensors"))
needs_builtins = pytest.mark.skipif(not SHIPPED, reason="no built-in style networks in mlx_style/styles/")


@needs_builtins
def test_every_built_in_is_a_float16_network_with_its_picture_and_recipe():
    ours = [p for p in SHIPPED if read_metadata(p).get("kind") == "transformer"]  # Magenta's: test_shipped_magenta
    assert ours
    for path in ours:
        arrays, meta = load_weights(path, kind="transformer")
        assert {a.dtype for a in arrays.values()} == {mx.float16}
        assert meta["built_in"] == "true" and "public domain" in meta["style_licence"]
        assert meta["training_command"].startswith("mlx-style train --style ")
        names = registry.network_styles(path) or [path.stem]  # one picture per style it holds
        for name in names:
            assert (registry.BUILTIN_DIR / f"{name}.jpg").exists(), name
            assert max(Image.open(registry.BUILTIN_DIR / f"{name}.jpg").size) <= 512
        assert "/" not in json.loads(meta["train_config"])["data"]  # a folder name, no local path


@needs_builtins
def test_the_installed_package_stays_small():
    total = sum(
        p.stat().st_size
        for p in Path(mlx_style.__file__).parent.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert total <= 40e6, f"the package is {total / 1e6:.1f} MB"  # the budget: everything it ships


@needs_builtins
def test_stylize_without_a_model_uses_the_default_built_in(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
    assert stylize_cli.main([str(photo), "-o", str(tmp_path / "out.jpg")]) == 0
    assert Image.open(tmp_path / "out.jpg").size == (56, 40)
    assert f"(style: {registry.DEFAULT_STYLE}," in capsys.readouterr().out  # the default style, wherever it lives


@needs_builtins
def test_list_shows_every_style_and_where_it_comes_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    mx.random.seed(0)
    save_transformer(
        tmp_path / "weights" / "mine.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1))
    )
    assert stylize_cli.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("mine ") and " weights " in line for line in lines)
    assert any(line.startswith(f"{registry.DEFAULT_STYLE} ") and "built-in" in line for line in lines)


def test_a_name_in_weights_shadows_a_built_in_of_the_same_name(tmp_path, monkeypatch):
    builtin, weights = tmp_path / "builtin", tmp_path / "weights"
    for folder in (builtin, weights):
        folder.mkdir()
        save_transformer(folder / "wave.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1)))
    save_transformer(builtin / "udnie.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1)))
    monkeypatch.setattr(registry, "BUILTIN_DIR", builtin)
    assert registry.resolve_model("wave", weights) == weights / "wave.safetensors"
    assert registry.resolve_model("udnie", weights) == builtin / "udnie.safetensors"
    assert [(e.name, e.origin) for e in registry.available_models(weights)] == [
        ("wave", "weights"),
        ("udnie", "built-in"),
    ]
    with pytest.raises(WeightFileError, match=r"no style network at nosuch \(available: wave, udnie\)"):
        registry.resolve_model("nosuch", weights)


def test_a_style_picture_resolves_to_the_built_in_when_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "builtin")
    (tmp_path / "builtin").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "builtin" / "wave.jpg")
    assert registry.resolve_style_image("wave") == tmp_path / "builtin" / "wave.jpg"
    assert registry.resolve_style_image("wave.jpg") == tmp_path / "builtin" / "wave.jpg"
    Image.new("RGB", (8, 8)).save(tmp_path / "wave.jpg")  # a file of that name wins
    assert registry.resolve_style_image("wave.jpg") == Path("wave.jpg")
    with pytest.raises(ImageError, match=r"nosuch.jpg: no such file \(built-in styles: wave\)"):
        registry.resolve_style_image("nosuch.jpg")
    with pytest.raises(ImageError, match="no such file"):
        registry.resolve_style_image("some/folder/wave.jpg")


@needs_builtins
def test_train_finds_the_built_in_picture_by_name(tmp_path, monkeypatch):
    from mlx_style.training import train
    from train_helpers import make_workspace, tiny_config

    ws = make_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    config = tiny_config(ws, tmp_path / "run", iters=1, style=registry.DEFAULT_STYLE)
    result = train(config, stream=io.StringIO())
    assert result.status == "done"
    assert read_metadata(result.output)["style"] == f"{registry.DEFAULT_STYLE}.jpg"


def multi_builtin(folder: Path, names=("wave", "udnie", "the_scream")) -> Path:
    """A tiny stand-in for the built-ins' one network: several named styles in one file, with their pictures."""
    folder.mkdir(parents=True, exist_ok=True)
    mx.random.seed(0)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=len(names)))
    rows = {k: mx.random.normal(v.shape) for k, v in dict(tree_flatten(net.parameters())).items() if v.ndim == 2}
    net.load_weights(list(rows.items()), strict=False)
    for name in names:
        Image.new("RGB", (8, 8)).save(folder / f"{name}.jpg")
    return save_transformer(
        folder / "builtin.safetensors", net, {"styles": json.dumps([{"name": n} for n in names]), "style": "3 styles"}
    )


def test_a_style_name_finds_its_style_inside_the_built_ins_one_network(tmp_path, monkeypatch, capsys):
    from mlx_style.infer.stylize import load_network

    monkeypatch.chdir(tmp_path)
    path = multi_builtin(tmp_path / "builtin")
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "builtin")
    assert registry.resolve_style("udnie") == (path, "udnie")
    assert registry.resolve_style(str(path)) == (path, None)
    assert registry.default_model() == path  # the default style, wave, is its first
    x = mx.array(np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32))
    by_name, meta = load_network("udnie")
    by_index, _ = load_network(path, style=1)
    assert meta["style"] == "udnie"
    np.testing.assert_array_equal(np.asarray(by_name(x)), np.asarray(by_index(x)))
    assert stylize_cli.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "udnie" in listing and "builtin.safetensors#udnie" in listing
    with pytest.raises(WeightFileError, match="available: builtin, wave, udnie, the_scream"):
        registry.resolve_model("nosuch")


def test_the_cam_starts_on_the_style_it_is_given_by_name(tmp_path, monkeypatch):
    from mlx_style.infer import live
    from mlx_style.infer.playlist import Styles

    path = multi_builtin(tmp_path / "builtin")
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "builtin")
    paths, index = live.resolve_models("the_scream", tmp_path / "weights")
    styles = Styles(paths, index, "float32", lambda net: net, style="the_scream")
    assert styles.name == "builtin: the_scream" and len(styles) == 3 and paths[index] == path


def test_train_from_one_style_of_the_built_ins_network(tmp_path, monkeypatch):
    from mlx_style.training import train
    from train_helpers import make_workspace, tiny_config

    multi_builtin(tmp_path / "builtin")
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "builtin")
    ws = make_workspace(tmp_path / "ws")
    config = tiny_config(ws, tmp_path / "run", iters=1, init_from="udnie", lr=0.0)
    result = train(config, stream=io.StringIO())
    assert result.status == "done"
    assert read_metadata(result.output)["started_from"] == "builtin.safetensors#udnie"
