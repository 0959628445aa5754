"""Hostile-user cases, round 3 (docs/hardening.md): exports that would delete a folder, crafted multi-style and
AdaIN files, non-finite blends and weights, pipes given as pictures, two runs in one folder, outputs that could
never be written. Each test fails on the code before its fix."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli import export as export_cli
from mlx_style.cli import flicker as flicker_cli
from mlx_style.cli import stylize as stylize_cli
from mlx_style.cli import train as train_cli
from mlx_style.io import weights
from mlx_style.io.image import ImageError, load_image
from mlx_style.io.models import load_transformer, save_transformer
from mlx_style.io.weights import WeightFileError
from mlx_style.nn.multistyle import blend_weights
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.training import checkpoint as ckpt
from train_helpers import cli_args, make_workspace, tiny_config

TINY = TransformerConfig(width=4, num_residual=1)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def tiny_model(path: Path, config: TransformerConfig = TINY) -> Path:
    mx.random.seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_transformer(path, TransformerNet(config))


def rewrite(path: Path, arrays=None, **changes) -> None:
    """Change tensors or metadata and recompute both checksums, as a crafted (not a damaged) file would."""
    old, meta = mx.load(str(path), return_metadata=True)
    arrays = {**old, **(arrays or {})}
    meta.update({k: str(v) for k, v in changes.items()})
    meta["sha256"] = weights.tensors_sha256(arrays)
    meta["metadata_sha256"] = weights.metadata_sha256(meta)
    mx.save_safetensors(str(path), arrays, metadata=meta)


# --- export --format coreml never deletes what it did not write ------------------------------------------------


def test_coreml_export_into_a_folder_holding_its_input_deletes_nothing(tmp_path, capsys):
    folder = tmp_path / "Folder.mlpackage"
    model = tiny_model(folder / "mine.safetensors")
    (folder / "notes.txt").write_text("precious")
    rc = export_cli.main([str(model), "--format", "coreml", "-o", str(folder)])
    assert rc == 2 and "choose another name" in one_error_line(capsys)
    assert (folder / "notes.txt").read_text() == "precious" and model.exists()
    (folder / "notes.txt").rename(folder / "Manifest.json")  # a package in all but its content
    (folder / "Data").mkdir()
    model = model.rename(folder / "Data" / "mine.safetensors")
    rc = export_cli.main([str(model), "--format", "coreml", "-o", str(folder)])
    assert rc == 2 and "holds the input" in one_error_line(capsys) and model.exists()


@pytest.mark.parametrize("what", ["folder of other files", "file", "symlink"])
def test_coreml_export_refuses_an_output_that_is_not_a_package(tmp_path, capsys, what):
    model = tiny_model(tmp_path / "m.safetensors")
    out = tmp_path / "Out.mlpackage"
    if what == "folder of other files":
        out.mkdir()
        (out / "photo.jpg").write_bytes(b"mine")
    elif what == "file":
        out.write_bytes(b"mine")
    else:
        (tmp_path / "target").mkdir()
        out.symlink_to(tmp_path / "target")
    rc = export_cli.main([str(model), "--format", "coreml", "-o", str(out)])
    assert rc == 2 and "choose another name" in one_error_line(capsys)
    assert out.is_symlink() or (out / "photo.jpg").exists() or out.read_bytes() == b"mine"


def test_coreml_export_replaces_its_own_package_and_a_failed_swap_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("coremltools", reason="Core ML export needs coremltools (pip install -e '.[dev]')")
    model = tiny_model(tmp_path / "m.safetensors")
    out = tmp_path / "Style.mlpackage"
    assert export_cli.main([str(model), "--format", "coreml", "-o", str(out)]) == 0
    first = (out / "Manifest.json").stat().st_mtime_ns
    assert export_cli.main([str(model), "--format", "coreml", "-o", str(out)]) == 0
    assert (out / "Manifest.json").stat().st_mtime_ns != first
    capsys.readouterr()

    def denied(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("mlx_style.io.coreml_export.os.replace", denied)
    assert export_cli.main([str(model), "--format", "coreml", "-o", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after coremltools' own progress lines
    assert last.startswith("error: could not write") and (out / "Manifest.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- crafted multi-style and AdaIN files ---------------------------------------------------------------------------


def test_a_multistyle_file_claiming_millions_of_styles_costs_the_playlist_nothing(tmp_path):
    from mlx_style.infer.playlist import network_entries

    path = tiny_model(tmp_path / "multi.safetensors", TransformerConfig(width=4, num_residual=1, styles=2))
    config = json.loads(mx.load(str(path), return_metadata=True)[1]["config"])
    rewrite(
        path, config=json.dumps({**config, "styles": 20_000_000}), styles=json.dumps([{"name": "a"}, {"name": "b"}])
    )
    start = time.perf_counter()
    entries = network_entries([path])
    assert time.perf_counter() - start < 1
    assert [name for _, _, name in entries] == ["multi: a", "multi: b"]


@pytest.mark.parametrize("names", [[{"title": "a"}, {"title": "b"}], ["only one"], "not a list", [1, None]])
def test_a_crafted_style_name_list_gives_indices_not_a_traceback(tmp_path, names):
    from mlx_style.infer.playlist import network_entries
    from mlx_style.infer.stylize import load_network

    path = tiny_model(tmp_path / "multi.safetensors", TransformerConfig(width=4, num_residual=1, styles=2))
    rewrite(path, styles=json.dumps(names))
    assert [name for _, _, name in network_entries([path])] == ["multi: 0", "multi: 1"]
    net, meta = load_network(path, style=1)
    assert meta["style"] == "1"


def test_an_adain_style_size_that_would_exhaust_memory_is_refused():
    from mlx_style.nn.adain import AdaINConfig

    for size in (2048, 8192):
        with pytest.raises(ValueError, match="style_size must be an integer from 16 to 1024"):
            AdaINConfig(style_size=size)


# --- non-finite numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["1:inf", "0:nan", "0:-inf"])
def test_non_finite_blend_weights_are_refused(spec):
    with pytest.raises(ValueError, match="finite"):
        blend_weights(spec, 3)


def test_huge_blend_weights_do_not_overflow():
    np.testing.assert_allclose(np.asarray(blend_weights("0:1e308,2:1e308", 3)), [0.5, 0.0, 0.5])


def test_non_finite_picture_weights_are_refused(tmp_path):
    from PIL import Image

    from mlx_style.infer.stylize import style_vector

    class Net:  # the predictor's interface: a style vector per picture
        def style_vector(self, image):
            return mx.array(image.mean(axis=(0, 1)).astype(np.float32))

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.full((16, 16, 3), 10, np.uint8)).save(a)
    Image.fromarray(np.full((16, 16, 3), 30, np.uint8)).save(b)
    for weight in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite"):
            style_vector(Net(), {str(a): weight, str(b): 1.0})
    np.testing.assert_allclose(np.asarray(style_vector(Net(), {str(a): 1e308, str(b): 1e308})), 20.0)


def test_nan_weights_in_a_file_are_refused_at_load(tmp_path):
    path = tiny_model(tmp_path / "nan.safetensors")
    arrays = mx.load(str(path))
    bias = arrays["conv1.conv2d.bias"]
    rewrite(path, arrays={"conv1.conv2d.bias": mx.full(bias.shape, float("nan"), bias.dtype)})
    with pytest.raises(WeightFileError, match="not finite"):
        load_transformer(path)


def test_scale_inf_is_one_line(tmp_path, capsys):
    model = tiny_model(tmp_path / "m.safetensors")
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photo)
    rc = stylize_cli.main([str(photo), "-m", str(model), "-o", str(tmp_path / "o.png"), "--scale", "inf"])
    assert rc == 2 and "--scale must be positive" in one_error_line(capsys)


# --- files that are not files, outputs that cannot be written --------------------------------------------------------


def test_a_pipe_given_as_a_picture_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "style.jpg"
    os.mkfifo(fifo)
    caught = []
    worker = threading.Thread(target=lambda: caught.append(pytest.raises(ImageError, load_image, fifo)), daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():
        with open(fifo, "wb"):  # release the reader so the thread can end
            pass
        pytest.fail("load_image blocked on a FIFO")
    assert "not a regular file" in str(caught[0].value)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("hostile_ws"))


def test_a_second_training_run_in_the_same_folder_is_refused(ws, tmp_path, capsys):
    config = tiny_config(ws, tmp_path, iters=1)
    with ckpt.run_lock(config.run_path()):
        rc = train_cli.main(cli_args(config) + ["--processes", "1"])
        assert rc == 2 and "is in use by a training run (process" in one_error_line(capsys)
    assert not Path(config.output).exists()
    assert train_cli.main(cli_args(config) + ["--processes", "1"]) == 0  # the lock went with its holder
    assert Path(config.output).exists()


def test_an_output_name_too_long_for_its_temporary_file_is_refused_at_once(ws, tmp_path, capsys):
    config = tiny_config(ws, tmp_path, output=str(tmp_path / ("n" * 240 + ".safetensors")))
    start = time.perf_counter()
    assert train_cli.main(cli_args(config) + ["--processes", "1"]) == 2
    assert "bytes; use at most" in one_error_line(capsys) and time.perf_counter() - start < 5


def test_flicker_json_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = flicker_cli.main(["a.mp4", "b.mp4", "--json", str(blocker / "out.json")])
    assert rc == 2 and "is a file, not a folder" in one_error_line(capsys)


def test_a_permission_error_does_not_say_make_room(tmp_path):
    error = weights._write_failure(tmp_path / "x", PermissionError(errno.EACCES, "Permission denied"))
    assert "no permission" in str(error) and error.remedy == "make the folder writable"
    full = weights._write_failure(tmp_path / "x", OSError(errno.ENOSPC, "No space left"))
    assert "the disk is full" in str(full) and full.remedy == "make room"


def test_exporting_a_network_that_takes_any_picture_says_so_without_a_flag_export_lacks(tmp_path, capsys):
    from mlx_style.nn.arbitrary import ArbitraryConfig, ArbitraryStyleNet
    from mlx.utils import tree_flatten

    config = ArbitraryConfig(
        style_dim=4, stem=4, blocks=((4, 4, 2),), head=8, contract=(4, 4, 4), num_residual=1, expand=(4, 4)
    )
    path = weights.save_weights(
        tmp_path / "any.safetensors",
        dict(tree_flatten(ArbitraryStyleNet(config).parameters())),
        {"kind": "arbitrary", "architecture": "ghiasi2017", "config": config.to_json()},
    )
    assert export_cli.main([str(path), "-o", str(tmp_path / "x.onnx")]) == 2
    line = one_error_line(capsys)
    assert "takes any picture as its style" in line and "--style-image" not in line
