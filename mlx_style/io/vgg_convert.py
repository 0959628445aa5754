"""Convert ImageNet VGG weights for the loss network: ``python scripts/convert_vgg.py``.

By default downloads torchvision's VGG16 from the Hugging Face Hub (``timm/vgg16.tv_in1k``, pinned revision,
sha256 checked), converts the convolutions to MLX layout and writes ``weights/vgg16.safetensors`` with its
preprocessing and recommended loss weights. ``--from FILE`` converts a local torchvision/timm-format
``.safetensors`` or ``.npz`` (``.pth`` when torch is installed) offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlx_style.io.hub import VGG_SOURCES, download
from mlx_style.io.paths import check_input_file
from mlx_style.io.image import PREPROCESSING
from mlx_style.io.models import convert_vgg_state, read_state_dict, save_vgg
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.weights import WeightFileError, file_sha256


@dataclass
class ConvertConfig:
    arch: str = "vgg16"  # the report's loss network; vgg19 for Gatys' layers
    source: str | None = None  # a local checkpoint; None downloads torchvision's weights
    preprocess: str | None = None  # None: the source file's metadata says, else torchvision
    out: str | None = None  # None: weights/<arch>.safetensors


def preprocess_from_metadata(meta: dict[str, str]) -> str | None:
    """Read the preprocessing a checkpoint declares (e.g. ``"caffe: BGR, 0-255 …"``), if any."""
    for key in ("preprocess", "preprocessing"):
        value = meta.get(key, "").strip().lower()
        for mode in PREPROCESSING:
            if value.startswith(mode):
                return mode
    return None


CHECKPOINT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin")
MAX_SOURCE_BYTES = 2_000_000_000  # VGG19 with its classifier is 0.55 GB in float32; twice that in float64


def source_file(path: Path) -> Path:
    """``path`` itself, or for a folder the one checkpoint in it (a downloaded model folder holds one).

    Raises:
        WeightFileError: a folder with no checkpoint, or with several (the message lists them).
    """
    if not path.is_dir():
        return path
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise WeightFileError(
            f"{path} is a folder with no weight file ({', '.join(CHECKPOINT_SUFFIXES)}) in it: "
            "pass the checkpoint file itself with --from"
        )
    names = ", ".join(p.name for p in found[:4]) + (", …" if len(found) > 4 else "")
    raise WeightFileError(f"{path} holds {len(found)} weight files ({names}): pass one of them with --from")


def convert(config: ConvertConfig) -> Path:
    """Convert and write the weights; returns the path written. Nothing is written on any error."""
    out = Path(config.out or f"weights/{config.arch}.safetensors")
    check_suffix(out, (".safetensors",), "-o")
    if config.source is not None:
        check_not_an_input(out, [config.source, source_file(Path(config.source))], "-o")
    if config.source is None:
        path = download(VGG_SOURCES[config.arch])
        source = f"hf://{VGG_SOURCES[config.arch].repo_id}@{VGG_SOURCES[config.arch].revision}"
    else:
        path = check_input_file(source_file(Path(config.source)), MAX_SOURCE_BYTES)
        source = f"{path.name} sha256:{file_sha256(path)}" if path.exists() else path.name
    state, meta = read_state_dict(path)
    preprocess = config.preprocess or preprocess_from_metadata(meta) or "torchvision"
    arrays = convert_vgg_state(state, config.arch)
    return save_vgg(out, arrays, config.arch, preprocess, source)
