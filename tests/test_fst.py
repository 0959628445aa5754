"""Importing Engstrom's pretrained networks (``mlx_style.fst``), checked against ``tests/fst_reference.py``."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

import fst_reference
from conftest import shared_data
from mlx_style.cli import convert_fst as fst_cli
from mlx_style.io import fst
from mlx_style.io.download import DownloadError
from mlx_style.io.image import load_image, resize
from mlx_style.io.models import load_transformer
from mlx_style.io.weights import WeightFileError, load_weights

ML5 = ("weights", "fast_style_transfer_ml5")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def ml5_shapes() -> list[list[int]]:
    """Engstrom's variable shapes in creation order, from the format README's table."""
    shapes = [[9, 9, 3, 32], [32], [32], [3, 3, 32, 64], [64], [64], [3, 3, 64, 128], [128], [128]]
    shapes += [[3, 3, 128, 128], [128], [128]] * 10
    shapes += [[3, 3, 64, 128], [64], [64], [3, 3, 32, 64], [32], [32], [9, 9, 32, 3], [3], [3]]
    return shapes


def write_ml5_folder(folder: Path, seed: int = 0) -> list[np.ndarray]:
    """A synthetic ml5-format folder with random weights (conv ~He scale, IN scale ~1, shift ~0)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    manifest, arrays = {}, []
    for i, shape in enumerate(ml5_shapes()):
        name = fst.variable_name(i)
        if len(shape) == 4:
            fan_in = shape[0] * shape[1] * (shape[3] if i in (39, 42) else shape[2])
            a = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif i % 3 == 1:  # shift
            a = 0.2 * rng.standard_normal(shape)
        else:  # scale
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        a = a.astype("<f4")
        a.tofile(folder / name)
        manifest[name] = {"filename": name, "shape": shape}
        arrays.append(a)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return arrays


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ml5") / "wave"
    write_ml5_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# The real networks


@pytest.mark.parametrize("style", ["wave", "scream"])
def test_real_network_matches_numpy_reference(style, tmp_path):
    folder = shared_data(*ML5, style)
    photo = shared_data("content", "holdout", "kodak_kodim08.png")
    image = resize(load_image(photo), 104, 156)  # multiples of 4: TF's output size equals the input's there
    out = fst.import_fst(folder, tmp_path / f"{style}.safetensors")
    net, meta = load_transformer(out)
    ours = np.array(net(mx.array(image.astype(np.float32))[None]))[0]
    ref = fst_reference.forward(fst_reference.read_variables(folder), image)
    assert ours.shape == ref.shape == (104, 156, 3)
    ours, ref = np.clip(ours, 0, 255), np.clip(ref, 0, 255)
    assert psnr(ours, ref) >= 40.0, f"{style}: PSNR {psnr(ours, ref):.1f} dB"
    assert np.abs(ours - ref).max() < 1.0
    # a stylised photo, not a copy of it: the reference and the network both move it far from the input
    assert psnr(ours, image) < 20.0
    assert meta["style"] == style and meta["ml5_sha256"] == fst.ML5_SHA256[style]
    assert "Logan Engstrom" in meta["license"]


def test_pinned_checksums_match_shared_copies():
    root = shared_data(*ML5)
    for style in fst_cli.STYLES:
        assert fst.ml5_sha256(fst.read_ml5_folder(root / style)) == fst.ML5_SHA256[style], style


# ---------------------------------------------------------------------------------------------------------------
# Conversion, on a synthetic folder


def test_synthetic_folder_round_trips(synthetic, tmp_path):
    arrays = [a for a in fst_reference.read_variables(synthetic)]
    out = fst.import_fst(synthetic, tmp_path / "syn.safetensors", name="wave", source="test")
    tensors, meta = load_weights(out, kind="transformer")
    assert len(tensors) == 48
    # layouts: HWIO → OHWI, transposed [h, w, out, in] → (out, h, w, in); shift → bias, scale → weight
    np.testing.assert_array_equal(np.array(tensors["conv1.conv2d.weight"]), arrays[0].transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(np.array(tensors["in1.bias"]), arrays[1])
    np.testing.assert_array_equal(np.array(tensors["in1.weight"]), arrays[2])
    np.testing.assert_array_equal(np.array(tensors["res.4.conv2.conv2d.weight"]), arrays[36].transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(np.array(tensors["res.4.in2.weight"]), arrays[38])
    np.testing.assert_array_equal(np.array(tensors["deconv1.conv2d.weight"]), arrays[39].transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(np.array(tensors["in6.bias"]), arrays[46])
    np.testing.assert_array_equal(np.array(tensors["in6.weight"]), arrays[47])
    assert json.loads(meta["config"])["final_norm"] is True
    assert meta["source"] == "test" and meta["style"] == "wave"

    net, _ = load_transformer(out)
    image = np.random.default_rng(1).uniform(0, 255, (24, 20, 3))
    ours = np.array(net(mx.array(image.astype(np.float32))[None]))[0]
    ref = fst_reference.forward(arrays, image)
    assert np.abs(ours - ref).max() < 0.05


def test_missing_variable_file(synthetic, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in synthetic.iterdir():
        if p.name != "Variable_12":
            (broken / p.name).write_bytes(p.read_bytes())
    with pytest.raises(WeightFileError, match=r"Variable_12 is missing"):
        fst.read_ml5_folder(broken)


def test_truncated_variable_file(synthetic, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in synthetic.iterdir():
        data = p.read_bytes()
        (broken / p.name).write_bytes(data[:-4] if p.name == "Variable_45" else data)
    with pytest.raises(WeightFileError, match=r"Variable_45 has 31100 bytes.*needs 31104"):
        fst.read_ml5_folder(broken)


def test_not_an_ml5_folder(tmp_path):
    with pytest.raises(WeightFileError, match="no folder"):
        fst.read_ml5_folder(tmp_path / "nowhere")
    with pytest.raises(WeightFileError, match="no manifest.json"):
        fst.read_ml5_folder(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(WeightFileError, match="not a valid ml5 manifest"):
        fst.read_ml5_folder(tmp_path)


def test_wrong_architecture_is_refused(synthetic):
    arrays = fst.read_ml5_folder(synthetic)
    swapped = dict(arrays, Variable_3=np.zeros((3, 3, 64, 32), np.float32))
    with pytest.raises(WeightFileError, match=r"Variable_3 → conv2.conv2d.weight"):
        fst.convert_ml5(swapped)
    fewer = {k: v for k, v in arrays.items() if k != "Variable_47"}
    with pytest.raises(WeightFileError, match="expected 48 variables"):
        fst.convert_ml5(fewer)


def test_cli_converts_a_folder_and_reports_errors_in_one_line(synthetic, tmp_path, capsys):
    out = tmp_path / "w" / "syn.safetensors"
    assert fst_cli.main([str(synthetic), "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert fst_cli.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no folder")
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# Downloads


def test_offline_download_fails_fast_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fst, "reachable", lambda url, timeout=3.0: False)
    start = time.perf_counter()
    code = fst_cli.main(
        ["--download", "wave", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "wave.safetensors")]
    )
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 1 and elapsed < 2.0
    assert err.count("\n") == 1 and "offline" in err and "convert_fst.py FOLDER" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "wave.safetensors").exists()


class _Server:
    """A local HTTP server over ``root`` that records the paths asked for."""

    def __init__(self, root: Path):
        requested = self.requested = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                requested.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_resumes_and_checks_sizes_and_checksum(tmp_path):
    root = shared_data(*ML5)
    dest = tmp_path / "wave"
    dest.mkdir()
    (dest / "manifest.json").write_bytes((root / "wave" / "manifest.json").read_bytes())
    (dest / "Variable_3").write_bytes((root / "wave" / "Variable_3").read_bytes())  # complete: kept
    (dest / "Variable_9").write_bytes((root / "wave" / "Variable_9").read_bytes()[:1000])  # truncated: fetched
    server = _Server(root)
    try:
        fst.download_fst("wave", dest, base_url=server.url, log=lambda line: None)
    finally:
        server.close()
    assert "/wave/Variable_9" in server.requested
    assert "/wave/Variable_3" not in server.requested and "/wave/manifest.json" not in server.requested
    assert len(server.requested) == 47
    assert fst.ml5_sha256(fst.read_ml5_folder(dest)) == fst.ML5_SHA256["wave"]
    assert not list(dest.glob(".*"))  # no temporary files left


def test_download_refuses_short_files(synthetic, tmp_path):
    served = tmp_path / "served" / "wave"
    served.mkdir(parents=True)
    for p in synthetic.iterdir():
        data = p.read_bytes()
        (served / p.name).write_bytes(data[:100] if p.name == "Variable_6" else data)
    server = _Server(served.parent)
    try:
        with pytest.raises(DownloadError, match=r"Variable_6 sent 100 bytes"):
            fst.download_fst("wave", tmp_path / "dest", base_url=server.url, log=lambda line: None)
    finally:
        server.close()
    assert not (tmp_path / "dest" / "Variable_6").exists()
