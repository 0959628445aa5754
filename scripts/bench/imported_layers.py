"""Where the 26-style network's time goes: each layer in MLX (eager, as the CPU cam runs it) beside onnxruntime's
own profile of the same graph, on one frame, in one run.

    python -m scripts.bench.imported_layers --onnx MAGENTA_ONNX/multistyle26.onnx --size 640x480

Prints one row per layer: MLX padding ms, MLX convolution ms, MLX norm + ReLU ms, and onnxruntime's Conv ms and
its other nodes' ms for that layer (its Pad, the norm's Sub/Pow/ReduceMean/Div/Mul/Add and the Relu), then the
totals (the two upsamplings and the sigmoid are left out on the MLX side). Two more columns time the layer's
convolution as one bare GEMM of its unfolded input, ``(Ho·Wo, kH·kW·C_in) @ (kH·kW·C_in, C_out)`` with both
operands ready, in MLX (its BLAS) and as an onnxruntime MatMul (MLAS): the work any GEMM-based convolution must
do, so the floor for every strategy MLX's CPU backend allows except Winograd's. Medians of ``--repeats`` calls;
onnxruntime runs with its default threads.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (BLAS before mlx.core)
import mlx.core as mx

from mlx_style.backend import keep_freed_memory
from mlx_style.infer.stylize import load_network
from mlx_style.io.magenta import MULTISTYLE_FILE, read_onnx
from mlx_style.nn.conv import tune_convs
from mlx_style.nn.ops import reflect_pad, relu, upsample_nearest


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        mx.eval(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def ort_matmul_ms(m: int, k: int, n: int, repeats: int) -> float:
    """onnxruntime's time for one (m, k) @ (k, n) float32 MatMul, the weight a constant as in a graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": rng.standard_normal((m, k)).astype(np.float32)}
    for _ in range(2):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def gemm_shape(padded: mx.array, weight: mx.array, stride: int) -> tuple[int, int, int]:
    """(M, K, N) of the layer's convolution as one GEMM of its unfolded input."""
    o, kh, kw, c = weight.shape
    ho, wo = (padded.shape[1] - kh) // stride + 1, (padded.shape[2] - kw) // stride + 1
    return ho * wo, kh * kw * c, o


def norm_relu(layer, conv: mx.array, style: mx.array, act: bool) -> mx.array:
    y = layer.norm(conv, style)
    return relu(y) if act else y


def mlx_layers(width: int, height: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per layer of the 26-style network: its padding, convolution and norm (+ ReLU) timed apart."""
    bound, _ = load_network("magenta26", style=7)
    net, style = bound.net, bound.style_weights
    x = mx.array(np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype(np.float32))
    tune_convs(bound, x)
    layers = [("contract.0", net.contract[0]), ("contract.1", net.contract[1]), ("contract.2", net.contract[2])]
    layers += [(f"res.{i}.{j}", block[j]) for i, block in enumerate(net.res) for j in (0, 1)]
    layers += [("expand.0", net.expand[0]), ("expand.1", net.expand[1]), ("expand.2", net.expand[2])]
    rows, y, skip = {}, x / 255.0, None
    for name, layer in layers:
        if name in ("expand.0", "expand.1"):
            y = upsample_nearest(y)
        if name.endswith(".0") and name.startswith("res"):
            skip = y
        mx.eval(y)
        padded = reflect_pad(y, layer.kernel // 2)
        conv = layer.conv(padded)
        mx.eval(padded, conv)
        act = not (name == "expand.2" or (name.startswith("res") and name.endswith(".1")))  # a ReLU follows
        row = {
            "pad": median_ms(lambda: reflect_pad(y, layer.kernel // 2), repeats),
            "conv": median_ms(lambda: layer.conv(padded), repeats),
            "norm": median_ms(lambda: norm_relu(layer, conv, style, act), repeats),
        }
        m, k, n = gemm_shape(padded, layer.conv.weight, layer.conv.stride)
        a, w = mx.random.normal((m, k)), mx.random.normal((k, n))
        mx.eval(a, w)
        row["gemm"] = median_ms(lambda: a @ w, repeats)
        row["ort_gemm"] = ort_matmul_ms(m, k, n, repeats)
        y = norm_relu(layer, conv, style, act)
        if name.startswith("res") and name.endswith(".1"):
            y = skip + y
        rows[name] = row
    return rows


def ort_layers(onnx_file: Path, width: int, height: int, repeats: int) -> dict[str, dict[str, float]]:
    """onnxruntime's profile of the same graph: per layer, its Conv and the rest of its nodes, mean ms per call."""
    import onnxruntime as ort

    graph, _, _ = read_onnx(onnx_file, MULTISTYLE_FILE)
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {
            "image": np.random.default_rng(0).uniform(0, 1, (1, 3, height, width)).astype(np.float32),
            "style_weights": np.eye(26, dtype=np.float32)[7],
        }
        for _ in range(2 + repeats):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    rows = collections.defaultdict(lambda: {"conv": 0.0, "other": 0.0})
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        found = re.search(r"/((?:contract|expand)\.\d|res\.\d\.\d)/", event["name"])
        layer = found.group(1) if found else "reorders and the rest"
        kind = "conv" if event["args"]["op_name"] == "Conv" else "other"
        rows[layer][kind] += event["dur"] / 1e3 / (2 + repeats)
    return dict(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True, help="multistyle26.onnx (the graph the shipped network came from)")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    keep_freed_memory()
    width, height = map(int, args.size.lower().split("x"))
    ours = mlx_layers(width, height, args.repeats)
    theirs = ort_layers(Path(args.onnx), width, height, args.repeats)
    print(f"26-style network at {width}×{height}, ms per frame (MLX {mx.__version__} on {mx.default_device()})")
    print(
        "| layer | MLX pad | MLX conv | MLX norm+ReLU | onnxruntime Conv | onnxruntime other nodes "
        "| bare GEMM, MLX | bare GEMM, onnxruntime |"
    )
    print("|---|---|---|---|---|---|---|---|")
    totals = np.zeros(7)
    for name in [*ours, *(k for k in theirs if k not in ours)]:
        mine, peer = ours.get(name, {}), theirs.get(name, {})
        values = np.array([mine.get("pad", 0), mine.get("conv", 0), mine.get("norm", 0), peer.get("conv", 0)])
        values = np.append(values, [peer.get("other", 0), mine.get("gemm", 0), mine.get("ort_gemm", 0)])
        totals += values
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print("| **total** | " + " | ".join(f"**{v:.1f}**" for v in totals) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
