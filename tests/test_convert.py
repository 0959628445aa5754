"""The VGG converter (``scripts/convert_vgg.py``, ``mlx_style.convert``) on synthetic torchvision checkpoints."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import json
import time

import mlx.core as mx
import numpy as np
import pytest

from mlx_style.io import vgg_convert as convert_module
from mlx_style.cli.convert_vgg import main
from mlx_style.io.vgg_convert import ConvertConfig, convert, preprocess_from_metadata
from mlx_style.io.download import DownloadError
from mlx_style.nn.losses import recommended_weights
from mlx_style.io.weights import WeightFileError, file_sha256, load_weights

CONVS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def torchvision_state(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A torchvision-layout VGG state dict (OIHW, float16 to keep the files small) plus a classifier."""
    rng = np.random.default_rng(seed)
    state, index, cin = {}, 0, 3
    for item in CONVS[arch]:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = rng.standard_normal((item, cin, 3, 3), dtype=np.float32).astype(np.float16)
        state[f"features.{index}.bias"] = rng.standard_normal(item, dtype=np.float32).astype(np.float16)
        index, cin = index + 2, item
    state["classifier.0.weight"] = np.ones((8, 16), np.float16)  # must be dropped
    state["classifier.0.bias"] = np.zeros(8, np.float16)
    return state


def write_safetensors(path, state, metadata=None):
    mx.save_safetensors(str(path), {k: mx.array(v) for k, v in state.items()}, metadata=metadata or {})
    return path


@pytest.fixture(scope="module")
def vgg16_state():
    return torchvision_state("vgg16")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, vgg16_state):
    folder = tmp_path_factory.mktemp("sources")
    return {
        "plain": write_safetensors(folder / "vgg16_tv.safetensors", vgg16_state),
        "caffe_meta": write_safetensors(
            folder / "vgg16_caffe.safetensors", vgg16_state, {"preprocess": "caffe: BGR, 0-255, mean-subtracted"}
        ),
    }


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# Successful conversions


def test_safetensors_conversion(tmp_path, sources, vgg16_state):
    out = convert(ConvertConfig(source=str(sources["plain"]), out=str(tmp_path / "vgg16.safetensors")))
    arrays, meta = load_weights(out, kind="vgg")  # checks format and checksum
    convs = sorted(k for k in vgg16_state if k.startswith("features."))
    assert sorted(arrays) == convs and len(convs) == 26  # 13 convs, classifier dropped
    for key in convs:
        expected = vgg16_state[key].astype(np.float32)
        if expected.ndim == 4:
            expected = expected.transpose(0, 2, 3, 1)  # OIHW → OHWI
        assert arrays[key].dtype == mx.float32
        np.testing.assert_array_equal(np.array(arrays[key]), expected)
    assert arrays["features.0.weight"].shape == (64, 3, 3, 3)
    assert arrays["features.28.weight"].shape == (512, 3, 3, 512)
    assert meta["kind"] == "vgg" and meta["architecture"] == "vgg16" and meta["format"] == "mlx_style"
    assert json.loads(meta["config"]) == {"arch": "vgg16"}
    assert meta["preprocess"] == "torchvision"  # no metadata in the source: torchvision's convention
    assert json.loads(meta["recommended_loss_weights"]) == recommended_weights("torchvision")
    assert meta["source"] == f"vgg16_tv.safetensors sha256:{file_sha256(sources['plain'])}"
    assert len(meta["sha256"]) == 64


def test_npz_conversion(tmp_path, vgg16_state):
    source = tmp_path / "vgg16.npz"
    np.savez(source, **vgg16_state)
    out = convert(ConvertConfig(source=str(source), out=str(tmp_path / "out.safetensors")))
    arrays, meta = load_weights(out, kind="vgg")
    assert len(arrays) == 26 and meta["preprocess"] == "torchvision"
    np.testing.assert_array_equal(
        np.array(arrays["features.2.weight"]), vgg16_state["features.2.weight"].astype(np.float32).transpose(0, 2, 3, 1)
    )


def test_preprocess_read_from_source_metadata(tmp_path, sources):
    out = convert(ConvertConfig(source=str(sources["caffe_meta"]), out=str(tmp_path / "a.safetensors")))
    _, meta = load_weights(out)
    assert meta["preprocess"] == "caffe"
    assert json.loads(meta["recommended_loss_weights"]) == recommended_weights("caffe")
    # an explicit --preprocess wins over the file's metadata
    out = convert(
        ConvertConfig(source=str(sources["caffe_meta"]), preprocess="torchvision", out=str(tmp_path / "b.safetensors"))
    )
    assert load_weights(out)[1]["preprocess"] == "torchvision"


@pytest.mark.parametrize(
    "meta, expected",
    [
        ({"preprocess": "caffe: BGR, 0-255"}, "caffe"),
        ({"preprocessing": "Torchvision"}, "torchvision"),
        ({"preprocess": "keras"}, None),
        ({}, None),
    ],
)
def test_preprocess_from_metadata(meta, expected):
    assert preprocess_from_metadata(meta) == expected


def test_cli_success(tmp_path, sources, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["--from", str(sources["caffe_meta"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and f"wrote {out}" in printed and "preprocess=caffe" in printed


# ---------------------------------------------------------------------------------------------------------------
# Errors: a clear message, and nothing written


def assert_refused(tmp_path, source, arch, match):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(WeightFileError, match=match):
        convert(ConvertConfig(arch=arch, source=str(source), out=str(out_dir / f"{arch}.safetensors")))
    assert files_in(out_dir) == []  # no output, no temporary file


def test_wrong_network_refused(tmp_path):
    resnet = {
        "conv1.weight": np.zeros((64, 3, 7, 7), np.float32),
        "bn1.weight": np.ones(64, np.float32),
        "layer1.0.conv1.weight": np.zeros((64, 64, 3, 3), np.float32),
        "fc.weight": np.zeros((10, 512)),
    }
    source = write_safetensors(tmp_path / "resnet.safetensors", resnet)
    assert_refused(tmp_path, source, "vgg16", r"not a torchvision-layout vgg16 checkpoint: missing features\.0\.weight")


def test_truncated_file_refused(tmp_path, sources):
    data = sources["plain"].read_bytes()
    source = tmp_path / "truncated.safetensors"
    source.write_bytes(data[: len(data) // 2])
    assert_refused(tmp_path, source, "vgg16", "could not be read .*Download it again")


def test_not_a_safetensors_file_refused(tmp_path):
    source = tmp_path / "vgg16.safetensors"
    source.write_text("<html>404 Not Found</html>")
    assert_refused(tmp_path, source, "vgg16", "could not be read")


def test_vgg19_file_as_vgg16_refused(tmp_path):
    source = write_safetensors(tmp_path / "vgg19.safetensors", torchvision_state("vgg19"))
    # vgg16's conv4_1 is features.17, which vgg19 (four convs in block 3) does not have
    assert_refused(tmp_path, source, "vgg16", r"vgg16 checkpoint: .*missing features\.17\.weight")


def test_vgg16_file_as_vgg19_refused(tmp_path, sources):
    assert_refused(tmp_path, sources["plain"], "vgg19", r"vgg19 checkpoint: .*missing features\.16\.weight")


def test_missing_source_refused(tmp_path):
    assert_refused(tmp_path, tmp_path / "nope.safetensors", "vgg16", "no file at")


def test_folder_with_one_checkpoint_is_read(tmp_path, sources):
    folder = tmp_path / "downloaded"
    folder.mkdir()
    (folder / "README.md").write_text("not weights")
    (folder / "vgg16.safetensors").write_bytes(sources["plain"].read_bytes())
    out = convert(ConvertConfig(source=str(folder), out=str(tmp_path / "vgg16.safetensors")))
    _, meta = load_weights(out, kind="vgg")
    assert meta["source"] == f"vgg16.safetensors sha256:{file_sha256(sources['plain'])}"


def test_folder_without_one_checkpoint_is_a_one_line_error(tmp_path, sources, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_refused(tmp_path, empty, "vgg16", "is a folder with no weight file")
    both = tmp_path / "both"
    both.mkdir()
    for name in ("a.safetensors", "b.npz"):
        (both / name).write_bytes(b"x")
    (tmp_path / "second").mkdir()
    assert_refused(tmp_path / "second", both, "vgg16", r"holds 2 weight files \(a\.safetensors, b\.npz\)")
    out = tmp_path / "never.safetensors"
    assert main(["--from", str(empty), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and not out.exists()


def test_cli_error_is_one_line(tmp_path, capsys):
    source = write_safetensors(tmp_path / "resnet.safetensors", {"fc.weight": np.zeros((10, 512), np.float32)})
    out = tmp_path / "never.safetensors"
    assert main(["--from", str(source), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "features.0.weight" in lines[0]
    assert not out.exists()


def test_offline_without_from_fails_fast(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr("mlx_style.io.hub.reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # not cached here

    def no_network(*args, **kwargs):
        raise AssertionError("the offline path must not try to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    out = tmp_path / "vgg16.safetensors"
    start = time.perf_counter()
    assert main(["--out", str(out)]) == 1
    elapsed = time.perf_counter() - start
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download timm/vgg16.tv_in1k")
    assert "--from FILE" in lines[0] and "offline" in lines[0]
    assert elapsed < 5.0 and not out.exists()
    with pytest.raises(DownloadError):
        convert_module.convert(ConvertConfig(out=str(out)))


def test_devices_pipes_and_oversized_sources_are_one_line(tmp_path, monkeypatch, capsys):
    from mlx_style.cli import convert_fst as fst_cli

    monkeypatch.setattr(convert_module, "MAX_SOURCE_BYTES", 1000)
    (tmp_path / "big.safetensors").write_bytes(bytes(2000))
    out = tmp_path / "o.safetensors"

    def one_line() -> str:
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    for source, words in ((tmp_path / "big.safetensors", "more than the"), ("/dev/zero", "not a regular file")):
        assert main(["--from", str(source), "--out", str(out)]) == 2
        assert words in one_line()
    style = tmp_path / "style"
    style.mkdir()
    (style / "manifest.json").symlink_to("/dev/zero")
    assert fst_cli.main([str(style), "--out", str(out)]) == 2
    assert "the manifest" in (line := one_line()) and "not a regular file" in line
    (style / "manifest.json").unlink()
    (style / "manifest.json").write_text(json.dumps({"Variable": {"filename": "Variable", "shape": [0]}}))
    (style / "Variable").symlink_to("/dev/zero")
    assert fst_cli.main([str(style), "--out", str(out)]) == 2
    assert "Variable at" in (line := one_line()) and "not a regular file" in line
    assert not out.exists()
