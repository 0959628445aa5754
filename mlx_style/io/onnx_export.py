"""Export a style network to ONNX (``mlx-style export MODEL --format onnx -o FILE``), built directly from the MLX
weights with the ``onnx`` package's helpers (the optional ``export`` extra).

The graph walks the network's own stages (``TransformerNet.stages``) with plain operators every runtime has:
``Pad`` (edge, reflect, constant), ``Conv``, ``ConvTranspose``, ``InstanceNormalization``,
``BatchNormalization``, ``Resize`` (nearest, exact ×2), ``Relu``, ``Add``, ``Tanh``, ``Slice``, ``Clip``. Input
``image`` and output ``stylized`` are ``(1, 3, H, W)`` RGB in 0–255 (as pytorch/examples' export), any ``H`` and
``W``: the graph pads to the network's multiple of 4 and crops back, as the MLX network does. ``dtype="float16"``
stores the weights in half precision (half the file) and computes in float32, as MLX's instance norm does.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_style.errors import MlxStyleError
from mlx_style.nn.ops import same_pad_amounts
from mlx_style.nn.transformer import ConvLayer, InstanceNorm, ResidualBlock, TransformerNet, UpsampleConvLayer

OPSET = 17
DTYPES = ("float32", "float16")


class ExportError(MlxStyleError, ValueError):
    """A network or setting that cannot be exported; the message says which and why."""


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError("exporting to ONNX needs the onnx package: pip install -e '.[export]'") from None
    return onnx, TensorProto, helper, numpy_helper


class _Graph:
    """Collects nodes and initialisers with unique names."""

    def __init__(self, dtype: str):
        self.onnx, self.TensorProto, self.helper, self.numpy_helper = _onnx()
        self.nodes, self.inits, self.count, self.dtype = [], [], 0, dtype

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str, weight: bool = False) -> str:
        """An initialiser; a weight is stored in the export dtype and cast back to float32 in the graph."""
        name = self.name(hint)
        stored = array.astype(np.float16) if weight and self.dtype == "float16" else array
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(stored), name))
        if weight and self.dtype == "float16":
            return self.op("Cast", [name], to=self.TensorProto.FLOAT)
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out


def _weights(module, name: str) -> np.ndarray:
    return np.asarray(getattr(module, name).astype(mx.float32))


def _pad(g: _Graph, x: str, top: int, bottom: int, left: int, right: int, mode: str) -> str:
    if not (top or bottom or left or right):
        return x
    pads = g.const(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads")
    return g.op("Pad", [x, pads], mode=mode)


def _conv(g: _Graph, x: str, conv, stride: int, hint: str) -> str:
    w = _weights(conv, "weight").transpose(0, 3, 1, 2)  # OHWI → OIHW
    inputs = [x, g.const(w, f"{hint}_w", weight=True)]
    if "bias" in conv:
        inputs.append(g.const(_weights(conv, "bias"), f"{hint}_b", weight=True))
    return g.op("Conv", inputs, hint, strides=[stride, stride])


def _conv_layer(g: _Graph, x: str, layer: ConvLayer, hint: str) -> str:
    k, s = layer.kernel, layer.stride
    if layer.padding == "reflect":
        x = _pad(g, x, k // 2, k // 2, k // 2, k // 2, "reflect")
    else:  # TF 'SAME' on the even sizes the padded network sees at every stride-2 layer
        (t, b), (l, r) = same_pad_amounts(2 * s, k, s), same_pad_amounts(2 * s, k, s)
        x = _pad(g, x, t, b, l, r, "constant")
    return _conv(g, x, layer.conv2d, s, hint)


def _upsample_layer(g: _Graph, x: str, layer: UpsampleConvLayer, hint: str) -> str:
    conv = layer.conv2d
    if layer.mode == "nearest":
        scales = g.const(np.array([1, 1, 2, 2], np.float32), "scales")
        up = g.op(
            "Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
        )
        up = _pad(g, up, 1, 1, 1, 1, "reflect" if layer.padding == "reflect" else "constant")
        return _conv(g, up, conv, 1, hint)
    w = _weights(conv, "weight").transpose(3, 0, 1, 2)  # (out, kH, kW, in) → (in, out, kH, kW)
    inputs = [x, g.const(w, f"{hint}_w", weight=True)]
    if "bias" in conv:
        inputs.append(g.const(_weights(conv, "bias"), f"{hint}_b", weight=True))
    if conv.align == "torch":  # torch's padding=1, output_padding=1: rows [1, 2H+1) of the full output
        return g.op("ConvTranspose", inputs, hint, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    return g.op("ConvTranspose", inputs, hint, strides=[2, 2], pads=[0, 0, 1, 1])  # TF 'SAME': the first 2H


def _norm(g: _Graph, x: str, norm, hint: str) -> str:
    scale = g.const(_weights(norm, "weight"), f"{hint}_scale", weight=True)
    bias = g.const(_weights(norm, "bias"), f"{hint}_bias", weight=True)
    if isinstance(norm, InstanceNorm):
        return g.op("InstanceNormalization", [x, scale, bias], hint, epsilon=float(norm.eps))
    mean = g.const(_weights(norm, "running_mean"), f"{hint}_mean", weight=True)
    var = g.const(_weights(norm, "running_var"), f"{hint}_var", weight=True)
    return g.op("BatchNormalization", [x, scale, bias, mean, var], hint, epsilon=float(norm.eps))


def _stage(g: _Graph, x: str, conv, norm, act: bool, hint: str) -> str:
    x = _upsample_layer(g, x, conv, hint) if isinstance(conv, UpsampleConvLayer) else _conv_layer(g, x, conv, hint)
    if norm is not None:
        x = _norm(g, x, norm, hint + "_norm")
    return g.op("Relu", [x]) if act else x


def _multistyle_body(g: _Graph, x: str, net) -> str:
    """Dumoulin et al.'s network (``nn.multistyle``): each norm's scale and shift are the ``style_weights``
    input times its per-style tables, computed in the graph, so one file serves every blend."""
    weights_row = g.op("Unsqueeze", ["style_weights", g.const(np.array([0], np.int64), "axis0")])  # (1, S)

    def cond(x: str, layer, act: bool, hint: str) -> str:
        k = layer.kernel
        x = _pad(g, x, k // 2, k // 2, k // 2, k // 2, "reflect")
        x = _conv(g, x, layer.conv, layer.conv.stride, hint)
        flat = g.const(np.array([-1], np.int64), "flat")
        scale = g.op(
            "Reshape",
            [g.op("MatMul", [weights_row, g.const(_weights(layer.norm, "weight"), hint + "_g", weight=True)]), flat],
        )
        shift = g.op(
            "Reshape",
            [g.op("MatMul", [weights_row, g.const(_weights(layer.norm, "bias"), hint + "_b", weight=True)]), flat],
        )
        x = g.op("InstanceNormalization", [x, scale, shift], hint + "_norm", epsilon=float(layer.norm.eps))
        return g.op("Relu", [x]) if act else x

    x = g.op("Div", [x, g.const(np.array(255.0, np.float32), "k255")])
    for i, layer in enumerate(net.contract):
        x = cond(x, layer, True, f"contract{i}")
    for i, (first, second) in enumerate(net.res):
        x = g.op("Add", [x, cond(cond(x, first, True, f"res{i}_0"), second, False, f"res{i}_1")])
    scales = g.const(np.array([1, 1, 2, 2], np.float32), "scales")
    for i in range(2):
        x = g.op(
            "Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
        )
        x = cond(x, net.expand[i], True, f"expand{i}")
    x = g.op("Sigmoid", [cond(x, net.expand[2], False, "expand2")])
    return g.op("Mul", [x, g.const(np.array(255.0, np.float32), "k255out")])


def build_onnx(net, dtype: str = "float32"):
    """The ONNX ``ModelProto`` of a style network (see the module docstring). A multi-style network (or one
    bound to a blend) takes its blend as a second input, ``style_weights`` ``(styles,)``."""
    from mlx_style.nn.multistyle import BlendedStyle, MultiStyleNet

    if dtype not in DTYPES:
        raise ExportError(f"--dtype must be one of {DTYPES} for ONNX, got {dtype!r}")
    net = net.net if isinstance(net, BlendedStyle) else net
    if not isinstance(net, (TransformerNet, MultiStyleNet)):
        raise ExportError(f"cannot export a {type(net).__name__} to ONNX: not a style network this version knows")
    g = _Graph(dtype)
    helper, TP = g.helper, g.TensorProto
    # Pad to the network's size: a multiple of 4, at least 8 (``padded_size``), with edge pixels.
    shape = g.op("Shape", ["image"])
    hw = g.op("Slice", [shape, g.const(np.array([2], np.int64), "s"), g.const(np.array([4], np.int64), "e")])
    four, eight = g.const(np.array([4], np.int64), "four"), g.const(np.array([8], np.int64), "eight")
    three = g.const(np.array([3], np.int64), "three")
    padded = g.op("Max", [g.op("Mul", [g.op("Div", [g.op("Add", [hw, three]), four]), four]), eight])
    extra = g.op("Sub", [padded, hw])
    zeros6 = g.const(np.zeros(6, np.int64), "zeros6")
    pads = g.op("Concat", [zeros6, extra], axis=0)  # [0, 0, 0, 0, 0, 0, pad H, pad W]
    x = g.op("Pad", ["image", pads], mode="edge")
    multi = isinstance(net, MultiStyleNet)
    if multi:
        x = _multistyle_body(g, x, net)
    for index, stage in enumerate([] if multi else net.stages()):
        if isinstance(stage, ResidualBlock):
            y = x
            for j, (conv, norm, act) in enumerate(stage.stages()):
                y = _stage(g, y, conv, norm, act, f"res{index}_{j}")
            x = g.op("Add", [x, y])
        else:
            x = _stage(g, x, *stage, f"stage{index}")
    if not multi and net.config.output == "tanh":
        x = g.op(
            "Add",
            [
                g.op("Mul", [g.op("Tanh", [x]), g.const(np.array(150.0, np.float32), "k150")]),
                g.const(np.array(127.5, np.float32), "k127"),
            ],
        )
    x = g.op(
        "Slice", [x, g.const(np.array([0, 0], np.int64), "starts"), hw, g.const(np.array([2, 3], np.int64), "axes")]
    )
    g.op("Clip", [x, g.const(np.array(0.0, np.float32), "lo"), g.const(np.array(255.0, np.float32), "hi")])
    g.nodes[-1].output[0] = "stylized"
    image = helper.make_tensor_value_info("image", TP.FLOAT, [1, 3, "height", "width"])
    stylized = helper.make_tensor_value_info("stylized", TP.FLOAT, [1, 3, "height", "width"])
    inputs = [image]
    if multi:
        inputs.append(helper.make_tensor_value_info("style_weights", TP.FLOAT, [net.config.styles]))
    graph = helper.make_graph(g.nodes, "mlx_style", inputs, [stylized], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mlx_style")
    model.ir_version = min(model.ir_version, 9)
    g.onnx.checker.check_model(model)
    return model


def export_onnx(
    net: TransformerNet, path: str | Path, dtype: str = "float32", metadata: dict[str, str] | None = None
) -> Path:
    """Write ``net`` as an ONNX file (atomically), with the weight file's metadata as model properties."""
    from mlx_style.io.weights import atomic_write

    onnx = _onnx()[0]
    model = build_onnx(net, dtype)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return atomic_write(path, lambda tmp: onnx.save(model, tmp))
