"""Weight conversion and network files: the one place where keys are renamed and layouts transposed.

- VGG: torchvision/timm checkpoints (``features.{i}.weight`` OIHW) → MLX (OHWI), same key names, classifier
  dropped, preprocessing and recommended loss weights written into the metadata.
- Transformer networks: ``save_transformer`` / ``load_transformer`` keep the network config in the file, so one
  file rebuilds its network.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.image import PREPROCESSING
from mlx_style.nn.losses import recommended_weights
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.nn.vgg import ARCHS, VGG
from mlx_style.io.weights import WeightFileError, check_and_load, load_weights, save_weights

DEFAULT_STYLE_HINT = ("train one with `python -m mlx_style.train --style STYLE.jpg`, or import a pretrained one "
                      "with `python scripts/convert_fst.py --download wave`")


def read_state_dict(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a checkpoint as numpy arrays without unpickling: ``.safetensors`` or ``.npz``.

    ``.pth``/``.pt``/``.bin`` are read only when PyTorch is installed, with ``torch.load(weights_only=True)``
    (which refuses arbitrary pickled objects). Returns ``(arrays, metadata)``.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"no file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            arrays, meta = mx.load(str(path), return_metadata=True)
            return {k: np.asarray(v.astype(mx.float32)) for k, v in arrays.items()}, dict(meta or {})
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}, {}
    except WeightFileError:
        raise
    except Exception as exc:
        raise WeightFileError(f"{path} could not be read ({exc}): is the file complete? Download it again")
    if suffix in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError:
            raise WeightFileError(f"{path} is a PyTorch pickle; reading it needs torch (`pip install torch`), "
                                  "or give the .safetensors version of the same weights")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}, {}
    raise WeightFileError(f"{path}: unknown checkpoint type {suffix!r} (expected .safetensors, .npz or .pth)")


def vgg_feature_indices(arch: str) -> list[int]:
    """torchvision ``features`` indices of the conv layers."""
    return [i for i, name in enumerate(VGG(arch).names) if name.startswith("conv")]


def convert_vgg_state(state: dict[str, np.ndarray], arch: str) -> dict[str, mx.array]:
    """torchvision/timm VGG weights → MLX arrays with the same keys, conv weights OIHW → OHWI.

    Keeps every convolution layer (relu5_3 is needed by the layer study) and drops the classifier.
    Raises ``WeightFileError`` naming what is missing or mis-shaped.
    """
    model = VGG(arch)
    expected = dict(tree_flatten(model.parameters()))
    out, problems = {}, []
    for key, target in expected.items():
        if key not in state:
            problems.append(f"missing {key}")
            continue
        a = np.asarray(state[key], dtype=np.float32)
        if a.ndim == 4:
            a = a.transpose(0, 2, 3, 1)
        if a.shape != tuple(target.shape):
            problems.append(f"{key} has shape {a.shape} after conversion, {arch} needs {tuple(target.shape)}")
            continue
        out[key] = mx.array(a)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; … ({len(problems)} problems)" if len(problems) > 5 else "")
        raise WeightFileError(f"not a torchvision-layout {arch} checkpoint: {shown}")
    return out


def save_vgg(path: str | Path, arrays: dict[str, mx.array], arch: str, preprocess: str, source: str) -> Path:
    """Write converted VGG weights with everything needed to use them, including recommended loss weights."""
    if arch not in ARCHS:
        raise ValueError(f"[save_vgg] arch must be one of {sorted(ARCHS)}")
    if preprocess not in PREPROCESSING:
        raise ValueError(f"[save_vgg] preprocess must be one of {PREPROCESSING}")
    meta = {
        "kind": "vgg",
        "architecture": arch,
        "config": json.dumps({"arch": arch}),
        "preprocess": preprocess,
        "recommended_loss_weights": json.dumps(recommended_weights(preprocess)),
        "source": source,
    }
    return save_weights(path, arrays, meta)


def save_transformer(path: str | Path, net: TransformerNet, extra: dict[str, str] | None = None) -> Path:
    """Write a transformer network with its config (and e.g. the style and training config) in the metadata."""
    arrays = dict(tree_flatten(net.parameters()))
    meta = {"kind": "transformer", "architecture": "johnson2016", "config": net.config.to_json(), **(extra or {})}
    return save_weights(path, arrays, meta)


def load_transformer(path: str | Path) -> tuple[TransformerNet, dict[str, str]]:
    """Rebuild a transformer network from its file alone; returns ``(net, metadata)`` in eval mode."""
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"no style network at {path}: {DEFAULT_STYLE_HINT}")
    arrays, meta = load_weights(path, kind="transformer")
    net = TransformerNet(TransformerConfig.from_json(meta["config"]))
    check_and_load(net, arrays, where=f"style network {path}")
    net.eval()
    return net, meta
