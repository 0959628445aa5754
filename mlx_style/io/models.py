"""Weight conversion and network files: the one place where keys are renamed and layouts transposed.

- VGG: torchvision/timm checkpoints (``features.{i}.weight`` OIHW) → MLX (OHWI), same key names, classifier
  dropped, preprocessing and recommended loss weights written into the metadata.
- Transformer networks: ``save_transformer`` / ``load_transformer`` keep the network config in the file, so one
  file rebuilds its network; ``load_multistyle``, ``load_arbitrary`` and ``save_adain`` / ``load_adain`` do the
  same for the other kinds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.image import PREPROCESSING
from mlx_style.nn.losses import recommended_weights
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.nn.vgg import ARCHS, VGG
from mlx_style.io.weights import WeightFileError, check_and_load, load_weights, save_weights
from mlx_style.errors import UsageError

DEFAULT_STYLE_HINT = (
    "train one with `python -m mlx_style.train --style STYLE.jpg`, or import a pretrained one "
    "with `python scripts/convert_fst.py --download wave`"
)


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
            raise WeightFileError(
                f"{path} is a PyTorch pickle; reading it needs torch (`pip install torch`), "
                "or give the .safetensors version of the same weights"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (torch raises many kinds; none may escape as a traceback)
            kind = (
                "it holds pickled objects other than tensors"
                if "weights_only" in str(exc)
                else f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else 'unreadable'}"
            )
            raise WeightFileError(
                f"{path} is not a readable PyTorch state dict ({kind}); arbitrary pickles are "
                "never loaded: give a .safetensors or .npz copy of the weights"
            ) from None
        state = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(state, dict):
            raise WeightFileError(f"{path} holds no state dict of tensors")
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
        raise UsageError(f"[save_vgg] arch must be one of {sorted(ARCHS)}")
    if preprocess not in PREPROCESSING:
        raise UsageError(f"[save_vgg] preprocess must be one of {PREPROCESSING}")
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
    try:
        config = TransformerConfig.from_json(meta.get("config", "{}"))
    except (TypeError, ValueError) as exc:  # not JSON, not an object, wrong types or ranges
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    check_config_fits(config, arrays, f"style network {path}")
    net = TransformerNet(config)
    check_and_load(net, arrays, where=f"style network {path}")
    net.eval()
    return net, meta


LEGACY_NORM = re.compile(r"(?<=\.norm\.)(gamma|beta)$")  # files imported before the one instance norm


def load_multistyle(path: str | Path):
    """Rebuild a multi-style network (``nn.multistyle``) from its file; returns ``(net, metadata)``."""
    from mlx_style.nn.multistyle import MultiStyleConfig, MultiStyleNet

    arrays, meta = load_weights(path, kind="multistyle")
    try:
        config = MultiStyleConfig.from_json(meta.get("config", "{}"))
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    arrays = {LEGACY_NORM.sub(lambda m: {"gamma": "weight", "beta": "bias"}[m[1]], k): v for k, v in arrays.items()}
    gamma = arrays.get("contract.0.norm.weight")
    blocks = {key.split(".")[1] for key in arrays if key.startswith("res.")}
    if gamma is None or tuple(gamma.shape) != (config.styles, config.width) or len(blocks) != config.num_residual:
        raise WeightFileError(f"{path}: the file's metadata does not match its tensors")
    net = MultiStyleNet(config)
    check_and_load(net, arrays, where=f"multi-style network {path}")
    net.eval()
    return net, meta


def load_arbitrary(path: str | Path):
    """Rebuild the arbitrary-style pair (``nn.arbitrary``) from its file; returns ``(net, metadata)``."""
    from mlx_style.nn.arbitrary import ArbitraryConfig, ArbitraryStyleNet

    arrays, meta = load_weights(path, kind="arbitrary")
    try:
        config = ArbitraryConfig.from_json(meta.get("config", "{}"))
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    blocks = {key.split(".")[2] for key in arrays if key.startswith("predictor.blocks.")}
    residual = {key.split(".")[2] for key in arrays if key.startswith("transformer.res.")}
    if len(blocks) != len(config.blocks) or len(residual) != config.num_residual:
        raise WeightFileError(f"{path}: the file's metadata does not match its tensors")
    net = ArbitraryStyleNet(config)
    check_and_load(net, arrays, where=f"arbitrary-style network {path}")
    net.eval()
    return net, meta


def save_adain(path: str | Path, net, extra: dict[str, str] | None = None) -> Path:
    """Write an AdaIN network (``nn.adain``) standalone: the encoder up to relu4_1 and the decoder, the config,
    the preprocessing and e.g. the training settings in the metadata (about 28 MB for the VGG16 layout)."""
    arrays = dict(tree_flatten(net.parameters()))
    meta = {
        **(extra or {}),
        "kind": "adain",
        "architecture": "huang2017",
        "config": net.config.to_json(),
        "preprocess": net.config.preprocess,
    }
    return save_weights(path, arrays, meta)


def load_adain(path: str | Path):
    """Rebuild an AdaIN network (``nn.adain``) from its file alone; returns ``(net, metadata)`` in eval mode."""
    from mlx_style.nn.adain import AdaINConfig, AdaINNet, decoder_layout, encoder_depth

    arrays, meta = load_weights(path, kind="adain")
    try:
        config = AdaINConfig.from_json(meta.get("config", "{}"))
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    decoders = {key.split(".")[2] for key in arrays if key.startswith("decoder.layers.")}
    encoders = {int(key.split(".")[2]) for key in arrays if key.startswith("encoder.features.")}
    if (
        len(decoders) != len(decoder_layout(config.arch, config.decoder_widths))
        or not encoders
        or max(encoders) + 2 != encoder_depth(config.arch)
    ):
        raise WeightFileError(f"{path}: the file's metadata does not match its tensors")
    net = AdaINNet(config)
    check_and_load(net, arrays, where=f"AdaIN network {path}")
    net.eval()
    return net, meta


def check_config_fits(config: TransformerConfig, arrays: dict[str, mx.array], where: str) -> None:
    """Refuse a config that the tensors do not bear out, before a network is built from it: a file's metadata
    could otherwise ask for millions of blocks or a huge width (``check_and_load`` then checks every shape)."""
    conv1 = arrays.get("conv1.conv2d.weight")
    if conv1 is None or conv1.ndim != 4:
        raise WeightFileError(f"{where} has no conv1.conv2d.weight tensor: not a style network")
    if conv1.shape[0] != config.width:
        raise WeightFileError(
            f"{where} says width {config.width}, but its first convolution has {conv1.shape[0]} "
            "channels: the file's metadata does not match its tensors"
        )
    blocks = {key.split(".")[1] for key in arrays if key.startswith("res.")}
    if len(blocks) != config.num_residual:
        raise WeightFileError(
            f"{where} says {config.num_residual} residual blocks, but its tensors hold "
            f"{len(blocks)}: the file's metadata does not match its tensors"
        )
