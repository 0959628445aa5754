"""The GPU session script (``scripts/bench/gpu_session.py``) at its smoke sizes on the CPU: each part's JSON has the
keys the device run reports, with finite positive times and ratios; a part past its deadline is stopped and the
others are kept."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from dataclasses import replace

import pytest

from conftest import shared_data
from scripts.bench import gpu_session

SMOKE = replace(gpu_session.SessionConfig(), **gpu_session.SMOKE, dtypes=("float32", "bfloat16"))


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def run_part(name: str, cfg=SMOKE) -> dict:
    saved = []
    gpu_session.PARTS[name](cfg, saved.append)
    assert saved, f"the {name} part saved nothing"
    return json.loads(json.dumps(saved[-1]))  # what the driver reads back


def test_inference_rows_hold_mlx_and_pytorch_times_and_their_ratio():
    out = run_part("infer")
    rows = out["rows"]
    assert [(r["width"], r["height"], r["dtype"]) for r in rows] == [(32, 32, "float32"), (32, 32, "bfloat16")]
    assert all(positive(r["ms_p50"]) and positive(r["ms_first"]) for r in rows)
    if importlib.util.find_spec("torch") is None:
        assert "skipped" in out["torch"]
    else:
        assert out["torch"]["device"] == "cpu"
        assert all(positive(r["torch_ms_p50"]) and positive(r["mlx_over_torch"]) for r in rows), rows
        assert all(math.isclose(r["mlx_over_torch"], r["ms_p50"] / r["torch_ms_p50"]) for r in rows)


def test_training_step_times_and_memory_of_both_frameworks():
    out = run_part("train")
    assert (out["batch"], out["size"], out["rounds"]) == (2, 32, 1)
    mlx = out["mlx"]
    assert len(mlx["step_s"]) == 1 and positive(mlx["ms_per_step"]) and positive(mlx["peak_memory_gb"])
    assert all(math.isfinite(v) for v in mlx["losses"])
    missing = gpu_session.torch_training_missing()
    if missing:
        assert out["torch"] == {"skipped": missing}
        return
    assert positive(out["torch"]["ms_per_step"]) and positive(out["torch"]["peak_rss_gb"])
    assert out["memory_measure"] == "peak_rss_gb"  # PyTorch's device peak exists on CUDA only
    assert positive(out["mlx_over_torch_time"]) and positive(out["mlx_over_torch_memory"])
    assert math.isclose(mlx["losses"][0], out["torch"]["losses"][0], rel_tol=1e-3)  # the same step on both sides


def test_imported_networks_beside_onnxruntime():
    pytest.importorskip("onnx", reason="importing the Magenta networks needs onnx")
    pytest.importorskip("onnxruntime", reason="the peer is onnxruntime")
    folder = shared_data("weights", "magenta_onnx", "multistyle26.onnx").parent
    out = run_part("imported", replace(SMOKE, magenta=str(folder)))
    multi = out["multistyle26"]
    assert multi["kind"] == "multistyle" and "CPUExecutionProvider" in multi["providers"]
    (row,) = multi["rows"]
    assert (row["width"], row["height"]) == (32, 32)
    assert all(positive(row[k]) for k in ("mlx_ms", "ort_ms", "mlx_over_ort")), row
    if importlib.util.find_spec("onnx2torch") is None:
        assert multi["torch_graph"].startswith("skipped")
    else:
        assert positive(row["torch_graph_ms"]) and positive(row["mlx_over_torch_graph"]), row
    from mlx_style.io import magenta

    if hasattr(magenta, "import_arbitrary"):
        (row,) = out["arbitrary"]["rows"]
        assert all(positive(row[k]) for k in ("mlx_ms", "ort_ms", "ort_float_ms", "mlx_over_ort_float")), row
        assert positive(out["arbitrary"]["predictor"]["mlx_over_ort"])


def test_the_driver_writes_each_part_and_stops_one_past_its_deadline(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_session.main(["--smoke", "--parts", "info,warm", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    info, warm = data["parts"]["info"], data["parts"]["warm"]
    assert info["status"] == warm["status"] == "ok", data["parts"]
    assert info["result"]["mlx_version"] and info["result"]["packages"]["mlx"]
    assert all(positive(v) for v in warm["result"]["infer_first_ms"].values())
    assert positive(warm["result"]["train_first_step_s"]) and positive(data["elapsed_s"])
    assert "parts: info ok, warm ok" in capsys.readouterr().out

    # At its full sizes the warm part starts with a training step of batch 8 at 256² (with a random VGG16): tens of
    # seconds on a CPU, so it cannot end inside 1.5 s however fast the machine; the smoke sizes can (CI did once).
    start = time.monotonic()
    record = gpu_session.run_part("warm", start + 1.5, [], tmp_path)
    assert record["status"] == "timeout" and time.monotonic() - start < 10, record
    assert gpu_session.run_part("info", time.monotonic() + 0.5, [], tmp_path)["status"] == "skipped"
    assert gpu_session.main(["--parts", "nope", "--out", str(out)]) == 2
