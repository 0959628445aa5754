"""Reading ONNX graphs for the importers: constant values, and quantised graphs turned back into float ones.

A TFLite-origin graph stores int8 weights behind ``DequantizeLinear`` and rounds every activation through a
``QuantizeLinear``/``DequantizeLinear`` pair. ``float_graph`` folds the weights' dequantisation into float32
initialisers and removes the activation pairs, leaving the network the weights define: what the importers read,
and the reference the MLX networks are checked against. Needs the ``onnx`` package (the ``convert`` extra).
"""

from __future__ import annotations

import numpy as np

from mlx_style.io.weights import WeightFileError


def onnx_modules():
    """``(onnx, numpy_helper)``, or a one-line error saying how to install them."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightFileError("importing ONNX networks needs the onnx package: pip install -e '.[convert]'") from None
    return onnx, numpy_helper


def _tensors(graph):
    """Every tensor stored in ``graph``: initialisers, sparse ones, node attributes, and those of subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield from (a.sparse_tensor.values, a.sparse_tensor.indices)
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(sub)


def refuse_external_data(model, where: str = "the ONNX graph") -> None:
    """Refuse a graph whose tensors keep their bytes in outside files: ``numpy_helper.to_array`` would read any
    file they name, relative to the current folder (a crafted graph copied ``./secret.bin`` into the weights).
    Magenta's graphs hold all their weights.

    Raises:
        WeightFileError: naming the first such tensor.
    """
    onnx, _ = onnx_modules()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise WeightFileError(f"{where}: tensor {tensor.name!r} keeps its data in an outside file; ONNX files with "
                                  "external data are not imported (Magenta's have none)")


def constants(model) -> dict[str, np.ndarray]:
    """Every initialiser and ``Constant`` node output of the graph, by name."""
    _, numpy_helper = onnx_modules()
    refuse_external_data(model)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(x − zero) · scale``, per tensor or per slice along ``axis``."""
    x = x.astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zero = np.zeros_like(scale) if zero is None else np.asarray(zero, np.float32)
    if scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (x - zero) * scale


def float_graph(model):
    """A copy of ``model`` with weight dequantisation folded and activation quantise/dequantise pairs removed."""
    onnx, numpy_helper = onnx_modules()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    values = constants(model)
    rename, folded, kept = {}, {}, []
    for node in graph.node:
        inputs = [rename.get(i, i) for i in node.input]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and (len(inputs) < 2 or len(node.output) != 1):
            raise WeightFileError(f"a {node.op_type} node with {len(inputs)} inputs and {len(node.output)} outputs: "
                                  "not a graph a converter wrote")
        if node.op_type == "DequantizeLinear" and inputs[0] in values:
            if inputs[1] not in values or (len(inputs) > 2 and inputs[2] and inputs[2] not in values):
                raise WeightFileError(f"DequantizeLinear of {inputs[0]!r} has no constant scale and zero point")
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zero = values[inputs[2]] if len(inputs) > 2 and inputs[2] else None
            folded[node.output[0]] = dequantize(values[inputs[0]], values[inputs[1]], zero, axis)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            rename[node.output[0]] = inputs[0]
        else:
            del node.input[:]
            node.input.extend(inputs)
            kept.append(node)
    for output in graph.output:
        if output.name in rename:
            kept.append(onnx.helper.make_node("Identity", [rename[output.name]], [output.name]))
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for node in graph.node for i in node.input}
    initialisers = [i for i in graph.initializer if i.name in used]
    initialisers += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in folded.items() if k in used]
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    return model


def attributes(node) -> dict:
    onnx, _ = onnx_modules()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
