"""The benchmark on a tiny network: JSON schema, positive numbers, argument errors, the PyTorch twin."""

from __future__ import annotations

import json
import time

import mlx_style  # noqa: F401  (BLAS before mlx.core)
import mlx.core as mx
import numpy as np
import pytest

from mlx_style.cli import bench as bench_cli
from mlx_style.bench import inference as bench
from mlx_style.bench import training as train_bench
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet


@pytest.fixture
def tiny_model(tmp_path):
    mx.random.seed(0)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1))
    net.eval()
    return save_transformer(tmp_path / "tiny.safetensors", net)


def test_json_schema_and_positive_numbers(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench_cli.main(
        [
            "--sizes",
            "32x24,16x16",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--dtype",
            "float32,bfloat16",
            "--compile",
            "no",
            "--model",
            str(tiny_model),
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    for key in ("device", "backend", "mlx_version", "blas", "infer"):
        assert data[key] not in (None, "", []), key
    assert data["mlx_version"] == mx.__version__
    rows = data["infer"]
    assert [(r["width"], r["height"], r["dtype"]) for r in rows] == [
        (32, 24, "float32"),
        (16, 16, "float32"),
        (32, 24, "bfloat16"),
        (16, 16, "bfloat16"),
    ]
    for row in rows:
        assert set(row) >= {"height", "width", "dtype", "compiled", "ms_p50", "ms_p95", "fps"}
        assert row["compiled"] is False
        assert 0 < row["ms_p50"] <= row["ms_p95"] and row["fps"] == pytest.approx(1000 / row["ms_p50"])
    assert "32x24" in printed and "p50 ms" in printed


def test_compiled_rows_use_mx_compile(tiny_model, monkeypatch):
    # mx.compile on the CPU backend runs a C++ compiler (tens of seconds on a busy machine): a spy stands in
    compiled = []
    monkeypatch.setattr(mx, "compile", lambda fn: compiled.append(fn) or fn)
    rows = bench.run(
        bench.BenchConfig(
            sizes="16x16,8x12", dtype="float32", compile="both", warmup=1, repeats=2, model=str(tiny_model)
        ),
        log=lambda *_: None,
    )["infer"]
    assert [r["compiled"] for r in rows] == [False, True, False, True] and all(r["ms_p50"] > 0 for r in rows)
    assert len(compiled) == 2  # a fresh compile per compiled row


@pytest.mark.parametrize("sizes", ["256", "640x", "axb", "640x480,", "0x10", "640*480"])
def test_bad_sizes_are_one_line(sizes, capsys):
    start = time.perf_counter()
    assert bench_cli.main(["--sizes", sizes, "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--sizes" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - start < 5  # fails before building or timing anything


def test_parse_sizes_is_width_first():
    assert bench.parse_sizes("640x480, 1280X720") == [(480, 640), (720, 1280)]


def test_bad_dtype_and_model_are_one_line(tmp_path, capsys):
    assert bench_cli.main(["--dtype", "float64", "--sizes", "8x8"]) == 2
    assert "float64" in capsys.readouterr().err
    assert bench_cli.main(["--model", str(tmp_path / "none.safetensors"), "--sizes", "8x8"]) == 2
    err = capsys.readouterr().err
    assert "no style network" in err and len(err.strip().splitlines()) == 1


def test_quick_fills_only_what_was_not_given():
    config = bench.resolve(bench.BenchConfig(quick=True, repeats=7))
    assert (config.sizes, config.dtype, config.repeats, config.warmup) == ("256x256", "float32", 7, 1)
    full = bench.resolve(bench.BenchConfig())
    assert full.sizes == "256x256,640x480,1280x720" and full.dtype == "all" and full.repeats == 20


def test_train_without_vgg_is_skipped_with_a_note(tmp_path):
    config = bench.resolve(bench.BenchConfig(quick=True, vgg=str(tmp_path / "none.safetensors")))
    assert "convert_vgg.py" in train_bench.bench_train(config)["skipped"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"upsample": "deconv"},
        {"norm": "batch"},
        {
            "upsample": "deconv",
            "padding": "same",
            "conv_bias": False,
            "norm_eps": 1e-3,
            "output": "tanh",
            "final_norm": True,
        },
    ],
)
def test_torch_twin_computes_the_same_network(overrides):
    torch = pytest.importorskip("torch")
    from mlx_style.bench import torch_speed

    mx.random.seed(3)
    config = TransformerConfig(width=4, num_residual=2, **overrides)
    net = TransformerNet(config)
    net.eval()
    module, device, _ = torch_speed.make_torch_net(net)
    assert device == "cpu" or mx.default_device().type == mx.DeviceType.gpu
    # 30×22: not a multiple of 4, so the edge padding and the crop are exercised too
    diff = torch_speed.torch_max_difference(net, module, torch, device, size=(30, 22))
    scale = float(np.abs(np.asarray(net(mx.ones((1, 30, 22, 3)) * 100))).max())
    assert diff <= 1e-4 * max(scale, 1.0) + 5e-3


def test_torch_rows_have_a_ratio(tiny_model, capsys):
    pytest.importorskip("torch")
    data = bench.run(
        bench.BenchConfig(
            sizes="16x16", dtype="float32", compile="no", warmup=1, repeats=2, model=str(tiny_model), torch=True
        )
    )
    row = data["infer"][0]
    assert row["torch_ms_p50"] > 0 and row["mlx_over_torch"] == pytest.approx(row["ms_p50"] / row["torch_ms_p50"])
    assert data["torch"]["max_abs_diff_float32"] < 1e-2
    assert "MLX/torch" in capsys.readouterr().out


def test_random_vgg_for_timing_loads_to_relu4_3_and_keeps_activation_size(tmp_path):
    """``scripts/bench_train.py --vgg random``: a loadable VGG16 file (Caffe preprocessing, its loss weights) whose
    activations neither vanish nor blow up by relu4_3, so a timed step computes on ordinary numbers."""
    from scripts.bench import bench_train

    from mlx_style.io.vgg_weights import load_vgg

    vgg, meta = load_vgg(bench_train.write_random_vgg(tmp_path / "vgg.safetensors", seed=3))
    assert meta["preprocess"] == "caffe" and "recommended_loss_weights" in meta
    assert vgg.names[-1] == "relu4_3"
    x = mx.array(np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32))
    feats = vgg(x, ("relu1_1", "relu4_3"))
    first, last = (float(mx.sqrt(mx.mean(feats[k] ** 2))) for k in ("relu1_1", "relu4_3"))
    assert 0.1 < last / first < 10, (first, last)


def test_bare_onnx_times_the_network_beside_its_own_export(tiny_model, tmp_path, capsys):
    """`bench --onnx` (no file): the --model network exported on the fly, and a row per size with the ratio; and
    the export runs the same network (its output equals MLX's)."""
    pytest.importorskip("onnxruntime", reason="the comparison runs the export in onnxruntime")
    from mlx_style.bench.imported import compare_exported
    from mlx_style.io.onnx_export import build_onnx
    from mlx_style.infer.stylize import load_network
    import onnxruntime as ort

    out = tmp_path / "bench.json"
    args = ["--model", str(tiny_model), "--onnx", "--sizes", "40x24", "--warmup", "0", "--repeats", "1"]
    assert bench_cli.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["rows"][0]
    assert result["kind"] == "exported" and (row["width"], row["height"]) == (40, 24)
    assert (
        row["mlx_ms"] > 0 and row["ort_ms"] > 0 and row["mlx_over_ort"] == pytest.approx(row["mlx_ms"] / row["ort_ms"])
    )
    assert "MLX beside its ONNX export" in capsys.readouterr().out
    net, _ = load_network(tiny_model)
    image = np.random.default_rng(0).uniform(0, 255, (1, 24, 40, 3)).astype(np.float32)
    session = ort.InferenceSession(build_onnx(net).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.transpose(0, 3, 1, 2)})[0].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, np.clip(np.asarray(net(mx.array(image))), 0, 255), atol=1e-2)
    assert compare_exported(net, "tiny", [(16, 16)], 0, 1, log=lambda *_: None)["rows"][0]["mlx_ms"] > 0


@pytest.mark.builtin_styles  # the shipped any-picture network
def test_bare_onnx_takes_a_multistyle_network_and_refuses_the_arbitrary_one(tmp_path, capsys):
    """A style of a Johnson network of several styles is exported with its blend in the norms (as `export`), so
    the graph needs no style input; the any-picture network has no export and says where its graphs are."""
    pytest.importorskip("onnxruntime", reason="the comparison runs the export in onnxruntime")
    mx.random.seed(1)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=2))
    net.eval()
    path = save_transformer(tmp_path / "two.safetensors", net)
    out = tmp_path / "bench.json"
    args = ["--model", str(path), "--onnx", "--sizes", "24x16", "--warmup", "0", "--repeats", "1"]
    assert bench_cli.main([*args, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert (row["width"], row["height"]) == (24, 16) and row["ort_ms"] > 0
    assert bench_cli.main(["--model", "magenta_arbitrary", "--onnx", "--sizes", "24x16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ONNX export of its own" in err[0]


def test_gemm_shape_is_the_unfolded_product():
    from scripts.bench.imported_layers import gemm_shape

    padded, weight = mx.zeros((1, 482, 642, 32)), mx.zeros((16, 3, 3, 32))
    assert gemm_shape(padded, weight, 2) == (240 * 320, 9 * 32, 16)
    assert gemm_shape(mx.zeros((1, 24, 32, 4)), mx.zeros((3, 9, 9, 4)), 1) == (16 * 24, 81 * 4, 3)


@pytest.mark.builtin_styles
def test_imported_layers_prints_every_layer_beside_onnxruntime(capsys):
    """``scripts/bench/imported_layers.py``: a row per layer of the 26-style network with all seven times, and the
    totals row the sum of the rows."""
    pytest.importorskip("onnxruntime", reason="the script profiles the graph in onnxruntime")
    from conftest import shared_data
    from scripts.bench import imported_layers

    onnx_file = shared_data("weights", "magenta_onnx", "multistyle26.onnx")
    assert imported_layers.main(["--onnx", str(onnx_file), "--size", "64x48", "--repeats", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    rows = {line.split(" | ")[0][2:]: [float(v.strip("* |")) for v in line.split(" | ")[1:]] for line in lines}
    layers = ["contract.0", "contract.1", "contract.2", *(f"res.{i}.{j}" for i in range(6) for j in (0, 1))]
    layers += ["expand.0", "expand.1", "expand.2"]
    for name in layers:  # times print to 0.1 ms: a tiny layer may show 0.0
        assert len(rows[name]) == 7 and all(v >= 0 for v in rows[name]), name
    assert all(v > 0 for v in rows["**total**"])
    totals = np.sum([values for name, values in rows.items() if name != "**total**"], axis=0)
    np.testing.assert_allclose(rows["**total**"], totals, atol=0.05 * len(rows))
