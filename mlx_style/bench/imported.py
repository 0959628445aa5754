"""Imported networks timed beside onnxruntime running their original graphs, in one run on one device.

``mlx-style bench --model NET --onnx FILE|DIR`` and ``python -m scripts.bench.bench_imported`` call
``compare_imported``. The 26-style network is timed against its graph; the arbitrary-style pair's transformer
against the graph as it ships (int8) and against the same graph with its quantisation removed (float, what the
MLX network computes), both with the image height and width left free (the published graph fixes 384×384; the
network is fully convolutional), and its style predictor alone at 256². Needs ``onnxruntime`` (a dev extra).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import mlx.core as mx

from mlx_style.errors import MlxStyleError


def median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(max(warmup, 1)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def free_image_size(model, name: str):
    """``model`` with the height and width of input ``name`` and of every output left free."""
    for value in [*(i for i in model.graph.input if i.name == name), *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "height", "width"
    return model


def _session(data: bytes, threads: int, providers):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(data, options, providers=providers)


def _ort():
    try:
        import onnx  # noqa: F401  (only whether it is installed)
        import onnxruntime as ort
    except ImportError:
        raise MlxStyleError("timing against onnxruntime needs onnx and onnxruntime: pip install -e '.[dev]'") from None
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort, providers


def _time_sizes(result: dict, forward, peers: dict, sizes, warmup: int, repeats: int, log) -> dict:
    """Time ``forward`` (MLX, on NHWC 0–255 images) and each peer (on the same numpy image) at every size."""
    from mlx_style.nn.conv import tune_convs

    rng = np.random.default_rng(0)
    log(f"{'size':>10} {'MLX ms':>8} " + " ".join(f"{k + ' ms':>12}" for k in peers) + "   MLX/" + " MLX/".join(peers))
    for H, W in sizes:
        image = rng.uniform(0, 255, (1, H, W, 3)).astype(np.float32)
        x = mx.array(image)
        tune_convs(forward, x)  # as `mlx-style bench --tune`: each convolution's strategy timed once, cached
        row = {"width": W, "height": H, "mlx_ms": 1e3 * median_seconds(lambda: mx.eval(forward(x)), warmup, repeats)}
        for name, run in peers.items():
            row[f"{name}_ms"] = 1e3 * median_seconds(lambda: run(image), warmup, repeats)
            row[f"mlx_over_{name}"] = row["mlx_ms"] / row[f"{name}_ms"]
        result["rows"].append(row)
        log(
            f"{f'{W}x{H}':>10} {row['mlx_ms']:8.1f} "
            + " ".join(f"{row[k + '_ms']:12.1f}" for k in peers)
            + "   "
            + " ".join(f"{row['mlx_over_' + k]:.2f}×" for k in peers)
        )
    return result


def compare_exported(net, label: str, sizes, warmup: int = 2, repeats: int = 5, threads: int = 0, log=print) -> dict:
    """Time a style network (Johnson's: the report's, or a trained one) in MLX and its own ONNX export
    (``io.onnx_export.build_onnx``, float32) in onnxruntime, on the same inputs; the rows as ``compare_imported``."""
    ort, providers = _ort()
    from mlx_style.io.onnx_export import build_onnx

    net = net.baked() if hasattr(net, "baked") else net  # as `export` writes it: a Johnson blend in its norms
    graph = build_onnx(net)
    session = _session(graph.SerializeToString(), threads, providers)
    extra = {}
    if any(i.name == "style_weights" for i in graph.graph.input):  # Magenta's 26 styles: the blend is an input
        extra["style_weights"] = np.asarray(net.style_weights, np.float32)
    result = {
        "mlx_version": mx.__version__,
        "device": str(mx.default_device()),
        "onnxruntime": ort.__version__,
        "providers": providers,
        "model": label,
        "kind": "exported",
        "rows": [],
    }
    log(f"MLX {mx.__version__} on {mx.default_device()}; onnxruntime {ort.__version__} ({providers[0]})")
    log(f"{label}: MLX beside its ONNX export")
    peers = {"ort": lambda image: session.run(None, {"image": image.transpose(0, 3, 1, 2), **extra})}
    return _time_sizes(result, net, peers, sizes, warmup, repeats, log)


def compare_imported(
    model: str | Path,
    onnx_source: str | Path,
    sizes: list[tuple[int, int]],
    warmup: int = 2,
    repeats: int = 5,
    threads: int = 0,
    style_image: str | None = None,
    log=print,
) -> dict:
    """Time ``model`` (a converted Magenta network) and onnxruntime on the same inputs; returns the rows.

    ``sizes`` are ``(height, width)`` (as ``bench.inference.parse_sizes`` gives them). ``onnx_source`` is the
    original .onnx file, or for the arbitrary pair the folder (or wheel) holding both files. Ratios are MLX time /
    onnxruntime time (below 1: MLX is faster).
    """
    ort, providers = _ort()
    from mlx_style.infer.stylize import load_network
    from mlx_style.io.magenta import MULTISTYLE_FILE, PREDICT_FILE, TRANSFORM_FILE, read_onnx
    from mlx_style.io.onnx_graph import float_graph
    from mlx_style.io.registry import resolve_model
    from mlx_style.io.weights import read_metadata
    from mlx_style.nn.conv import tune_convs

    model = resolve_model(model)  # a file, or a name: magenta26, magenta_arbitrary
    kind = read_metadata(model).get("kind")
    result = {
        "mlx_version": mx.__version__,
        "device": str(mx.default_device()),
        "onnxruntime": ort.__version__,
        "providers": providers,
        "model": str(model),
        "kind": kind,
        "rows": [],
    }
    log(f"MLX {mx.__version__} on {mx.default_device()}; onnxruntime {ort.__version__} ({providers[0]})")
    rng = np.random.default_rng(0)
    if kind == "multistyle":
        graph, _, _ = read_onnx(Path(onnx_source), MULTISTYLE_FILE)
        session = _session(graph.SerializeToString(), threads, providers)
        net, _ = load_network(model, style=7)
        weights = np.asarray(net.style_weights)
        peers = {
            "ort": lambda image: session.run(
                None, {"image": image.transpose(0, 3, 1, 2) / 255.0, "style_weights": weights}
            )
        }
        forward = net
    elif kind == "arbitrary":
        source = Path(onnx_source).parent if Path(onnx_source).suffix == ".onnx" else Path(onnx_source)
        predict, _, _ = read_onnx(source, PREDICT_FILE)
        transform, _, _ = read_onnx(source, TRANSFORM_FILE)
        net, _ = load_network(
            model, style_images=[style_image] if style_image else [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)]
        )
        vector = np.asarray(net.vector, np.float32).reshape(1, 1, 1, -1)
        int8 = _session(free_image_size(transform, "content_image").SerializeToString(), threads, providers)
        floats = _session(
            free_image_size(float_graph(transform), "content_image").SerializeToString(), threads, providers
        )
        feed = lambda image: {"content_image": image / 255.0, "mobilenet_conv/Conv/BiasAdd": vector}  # noqa: E731
        peers = {
            "ort": lambda image: int8.run(None, feed(image)),
            "ort_float": lambda image: floats.run(None, feed(image)),
        }
        forward = lambda x: net.net(x, net.vector)  # noqa: E731  (the bound vector: the transformer alone)
        painting = rng.uniform(0, 255, (1, 256, 256, 3)).astype(np.float32)
        predictor = _session(predict.SerializeToString(), threads, providers)
        x = mx.array(painting)
        tune_convs(net.net.predictor, x)
        mlx_s = median_seconds(lambda: mx.eval(net.net.predictor(x)), warmup, repeats)
        ort_s = median_seconds(lambda: predictor.run(None, {"style_image": painting / 255.0}), warmup, repeats)
        result["predictor"] = {
            "size": "256x256",
            "mlx_ms": 1e3 * mlx_s,
            "ort_ms": 1e3 * ort_s,
            "mlx_over_ort": mlx_s / ort_s,
        }
        log(
            f"style predictor 256x256: MLX {1e3 * mlx_s:.1f} ms, onnxruntime (int8) {1e3 * ort_s:.1f} ms, "
            f"MLX/ORT {mlx_s / ort_s:.2f}×"
        )
    else:
        raise MlxStyleError(f"{model} is not an imported Magenta network (kind {kind!r})")
    return _time_sizes(result, forward, peers, sizes, warmup, repeats, log)
