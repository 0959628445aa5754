"""Finding a style network: one rule for every command (``stylize --model``, the cam's ``--model`` and its n/p keys).

A model is named by

1. a path to a ``.safetensors`` file, as given; else
2. a bare name (``wave``): ``<weights dir>/wave.safetensors``.

``list_style_models`` lists what a weights folder offers, reading only file headers.
"""

from __future__ import annotations

from pathlib import Path

from mlx_style.io.weights import WeightFileError, read_metadata

WEIGHTS_DIR = Path("weights")
NO_MODEL_HINT = ("train one with `mlx-style train --style STYLE.jpg --data DIR`, or import a pretrained one "
                 "with `python scripts/convert_fst.py --download wave`")


def list_style_models(folder: str | Path = WEIGHTS_DIR) -> list[Path]:
    """The style networks among ``folder/*.safetensors``, sorted by name; VGG and unreadable files skipped."""
    found = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            if read_metadata(path).get("kind") == "transformer":
                found.append(path)
        except (OSError, ValueError):
            continue
    return found


def is_bare_name(name: str | Path) -> bool:
    """A name with no folder and no suffix, such as ``wave``."""
    path = Path(name)
    return path.suffix == "" and len(path.parts) == 1


def resolve_model(name: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """The file a model name means (see the module docstring).

    Raises:
        WeightFileError: nothing by that name; the message lists what is available and how to get a model.
    """
    path = Path(name)
    if path.exists():
        return path
    if is_bare_name(name):
        short = Path(weights_dir) / f"{name}.safetensors"
        if short.exists():
            return short
    available = [p.stem for p in list_style_models(weights_dir)]
    listed = f" (in {weights_dir}/: {', '.join(available)})" if available else ""
    raise WeightFileError(f"no style network at {name}{listed}: {NO_MODEL_HINT}")
