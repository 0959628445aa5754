"""ONNX export: the exported graph in onnxruntime against MLX, for every network variant and any size."""

from __future__ import annotations

import numpy as np
import pytest
from mlx.utils import tree_map

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli import export as export_cli
from mlx_style.io.image import load_image, resize
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from conftest import shared_data

ort = pytest.importorskip(
    "onnxruntime", reason="the export tests run the graph in onnxruntime (pip install -e '.[dev]')"
)
pytest.importorskip("onnx", reason="exporting needs the onnx package (pip install -e '.[dev]')")

from mlx_style.io.onnx_export import build_onnx  # noqa: E402

VARIANTS = {
    "default": TransformerConfig(width=8, num_residual=2),
    "deconv": TransformerConfig(width=8, num_residual=1, upsample="deconv"),
    "fst": TransformerConfig(
        norm="instance",
        upsample="deconv",
        padding="same",
        conv_bias=False,
        norm_eps=1e-3,
        output="tanh",
        final_norm=True,
        width=8,
        num_residual=1,
    ),
    "batch-same": TransformerConfig(width=8, num_residual=1, norm="batch", padding="same"),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def run_onnx(model, image_hwc: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(image_hwc.astype(np.float32).transpose(2, 0, 1)[None])
    return session.run(["stylized"], {"image": x})[0][0].transpose(1, 2, 0)


def mlx_reference(net: TransformerNet, image_hwc: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(net(mx.array(image_hwc.astype(np.float32))[None])[0]), 0, 255)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_exports_and_matches_mlx_at_sizes_not_multiples_of_4(variant):
    mx.random.seed(0)
    net = TransformerNet(VARIANTS[variant])
    net.update(tree_map(lambda p: p + 0.1 * mx.random.normal(p.shape), net.parameters()))
    net.eval()
    model = build_onnx(net)
    rng = np.random.default_rng(0)
    for H, W in ((61, 93), (30, 17)):
        image = rng.uniform(0, 255, (H, W, 3))
        out = run_onnx(model, image)
        assert out.shape == (H, W, 3) and psnr(out, mlx_reference(net, image)) > 100


@pytest.mark.builtin_styles
def test_a_real_network_exports_to_over_40_db_on_held_out_photos_in_float32_and_float16(tmp_path):
    from mlx_style.infer.stylize import load_network

    net, _ = load_network("wave")  # the wave style of the built-ins' one network
    for dtype in ("float32", "float16"):
        out = tmp_path / f"wave_{dtype}.onnx"
        assert export_cli.main(["wave", "-o", str(out), "--dtype", dtype]) == 0
        import onnx

        model = onnx.load(str(out))
        for name, (H, W) in (("kodak_kodim03.png", (203, 301)), ("kodak_kodim13.png", (150, 226))):
            photo = resize(load_image(shared_data("content", "holdout", name)), H, W)
            assert psnr(run_onnx(model, photo), mlx_reference(net, photo)) >= 40, (dtype, name)
    assert (tmp_path / "wave_float16.onnx").stat().st_size < 0.6 * (tmp_path / "wave_float32.onnx").stat().st_size


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_core_ml_packages_build_and_validate_with_image_input_and_output(variant, tmp_path, capsys):
    ct = pytest.importorskip("coremltools", reason="Core ML export needs coremltools (pip install -e '.[dev]')")
    from mlx_style.io.coreml_export import SHAPES

    mx.random.seed(0)
    model = save_transformer(tmp_path / "m.safetensors", TransformerNet(VARIANTS[variant]))
    out = tmp_path / "Style.mlpackage"
    assert export_cli.main([str(model), "--format", "coreml", "-o", str(out)]) == 0, capsys.readouterr().err
    spec = ct.models.MLModel(str(out), skip_model_load=True).get_spec()  # reading it back validates the package
    image_in, image_out = spec.description.input[0], spec.description.output[0]
    assert (image_in.name, image_out.name) == ("image", "stylized")
    assert image_in.type.WhichOneof("Type") == image_out.type.WhichOneof("Type") == "imageType"
    sizes = {(s.height, s.width) for s in image_in.type.imageType.enumeratedSizes.sizes}
    assert sizes == set(SHAPES) and all(h % 4 == 0 and w % 4 == 0 for h, w in sizes)
    # the output follows the input at every size, not fixed at the default (cropped or blank otherwise)
    out_sizes = [(s.height, s.width) for s in image_out.type.imageType.enumeratedSizes.sizes]
    assert out_sizes == [(s.height, s.width) for s in image_in.type.imageType.enumeratedSizes.sizes]
    assert (image_out.type.imageType.height, image_out.type.imageType.width) == SHAPES[0]


@pytest.mark.skipif(__import__("sys").platform != "darwin", reason="Core ML runs models on macOS only")
def test_core_ml_prediction_matches_mlx_on_macos(tmp_path):
    ct = pytest.importorskip("coremltools")
    from PIL import Image

    from mlx_style.io.coreml_export import export_coreml

    mx.random.seed(0)
    net = TransformerNet(VARIANTS["default"])
    net.eval()
    package = export_coreml(net, tmp_path / "Style.mlpackage")
    photo = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    out = ct.models.MLModel(str(package)).predict({"image": Image.fromarray(photo)})["stylized"]
    assert psnr(np.asarray(out.convert("RGB"), np.float32), mlx_reference(net, photo)) >= 40


def test_export_errors_are_one_line(tmp_path, capsys):
    mx.random.seed(0)
    model = save_transformer(tmp_path / "m.safetensors", TransformerNet(VARIANTS["default"]))
    assert export_cli.main([str(model), "--format", "coreml", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "cannot write .onnx" in capsys.readouterr().err
    assert export_cli.main([str(model), "-o", str(tmp_path / "m.txt")]) == 2
    assert "cannot write .txt" in capsys.readouterr().err
    assert export_cli.main([str(model), "-o", str(model)]) == 2
    assert export_cli.main(["nosuch", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "no style network at nosuch" in capsys.readouterr().err


def test_the_python_api_exports(tmp_path):
    import mlx_style as ms

    mx.random.seed(0)
    model = save_transformer(tmp_path / "m.safetensors", TransformerNet(VARIANTS["default"]))
    out = ms.export(str(model), tmp_path / "m.onnx")
    import onnx

    exported = onnx.load(str(out))
    props = {p.key: p.value for p in exported.metadata_props}
    assert props["mlx_style_sha256"] == ms.load_style(str(model)).metadata["sha256"]  # provenance kept
    image = np.random.default_rng(3).uniform(0, 255, (45, 70, 3))
    assert psnr(run_onnx(exported, image), mlx_reference(ms.load_style(str(model)).net, image)) > 100
    with pytest.raises(ValueError, match="format must be one of"):
        ms.export(str(model), tmp_path / "m.tflite", format="tflite")
