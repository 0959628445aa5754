"""The loss network's weights: the VGG16 that ships inside the package, and loading any converted VGG file.

The package holds the original Oxford/Caffe VGG16 convolutions up to relu4_3 (Simonyan & Zisserman, CC BY 4.0;
``mlx_style/vgg16/``, float16, computed in float32): every loss here (the report's, ``--stable``, AdaIN's encoder)
stops there, so training needs no download. ``weights/vgg16.safetensors``, when you have converted one
(``mlx-style convert-vgg``), takes its place, as ``weights/`` shadows the built-in styles.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx

from mlx_style.io.weights import WeightFileError, check_and_load, load_weights
from mlx_style.nn.vgg import VGG

SHIPPED_VGG = Path(__file__).resolve().parents[1] / "vgg16" / "vgg16.safetensors"
USER_VGG = Path("weights/vgg16.safetensors")  # what convert-vgg writes by default
CONVERT_HINT = "run `python scripts/convert_vgg.py` (or `--from FILE` offline) to create it"


def default_vgg() -> str:
    """The loss network a command uses without ``--vgg``: yours in ``weights/``, else the shipped one."""
    return str(USER_VGG if USER_VGG.exists() or not SHIPPED_VGG.exists() else SHIPPED_VGG)


def load_vgg(path: str | Path | None = None, dtype: mx.Dtype = mx.float32) -> tuple[VGG, dict[str, str]]:
    """Build a frozen VGG from a converted weight file (None: ``default_vgg()``); returns ``(vgg, metadata)``.

    The file's metadata gives the architecture, the preprocessing and the recommended loss weights. The weights
    are cast to ``dtype`` whatever they are stored in (the shipped file is float16).
    """
    path = Path(path if path is not None else default_vgg())
    if not path.exists():
        raise WeightFileError(f"no VGG weights at {path}: {CONVERT_HINT}")
    arrays, meta = load_weights(path, kind="vgg")
    config = json.loads(meta.get("config", "{}"))
    vgg = VGG(config.get("arch", "vgg16"), meta.get("preprocess", "torchvision"))
    # Files may hold fewer layers than the full network (e.g. up to relu4_3): load what is there, strictly.
    present = {int(k.split(".")[1]) for k in arrays}
    depth = min(max(present) + 2, len(vgg.names))  # +2: keep the (parameter-free) ReLU after the last conv
    vgg.features = vgg.features[:depth]
    vgg.names = vgg.names[:depth]
    check_and_load(vgg, {k: v.astype(dtype) for k, v in arrays.items()}, where=f"VGG weights in {path}")
    vgg.freeze()
    return vgg, meta
