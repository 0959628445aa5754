"""The Styles tab's actions on one style: export it (ONNX, Core ML: ``mlx_style.api.export``) and share it on the
Hugging Face Hub (``infer.sharing.push``: the weight file, a model card with its painting and samples)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mlx_style.errors import MlxStyleError
from mlx_style.io.weights import read_metadata
from mlx_style.studio.catalogue import StyleEntry
from mlx_style.studio.engine import Networks, compute
from mlx_style.studio.media import output_name
from mlx_style.studio.paths import StudioError

FORMATS = {"ONNX": "onnx", "Core ML": "coreml"}


def export_style(
    networks: Networks, entry: StyleEntry, fmt: str, out_dir: Path, picture: np.ndarray | None = None
) -> Path:
    """Write ``entry`` as ONNX (``.onnx``) or Core ML (a ``.mlpackage``, zipped for download) in ``out_dir``; a
    network that takes any picture is exported with ``picture`` (or its known painting) baked in.

    Raises:
        StudioError: an unknown format, no picture for a picture network, or the export failed (its reason).
    """
    from mlx_style.api import Style, export
    from mlx_style.io.image import load_image

    if fmt not in FORMATS:
        raise StudioError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if entry.takes_picture and picture is None and entry.painting is not None:
        picture = load_image(entry.painting)
    net = networks.bind(entry, picture=picture)
    style = Style(net, {**read_metadata(entry.network), "style": entry.name}, entry.network)
    suffix = ".onnx" if FORMATS[fmt] == "onnx" else ".mlpackage"
    target = out_dir / output_name(entry.name, suffix, tag="")
    try:
        with compute:
            export(style, target, format=FORMATS[fmt])
    except (MlxStyleError, ValueError, ImportError, RuntimeError, OSError) as exc:
        raise StudioError(f"export failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if target.is_dir():  # a .mlpackage is a folder: one file to download
        archive = Path(shutil.make_archive(str(target), "zip", root_dir=target.parent, base_dir=target.name))
        shutil.rmtree(target)
        return archive
    return target


def push_style(
    entry: StyleEntry, repo: str, token: str | None = None, onnx: bool = False, endpoint: str | None = None
) -> str:
    """Upload ``entry``'s network file to ``repo`` (``user/name``) with its model card; returns the commit URL.

    Raises:
        StudioError: a bad repo name, no painting for a picture network, or the upload failed (one line).
    """
    from mlx_style.infer.sharing import default_samples, push

    repo = (repo or "").strip()
    if repo.count("/") != 1:
        raise StudioError(f"repository {repo!r}: give it as user/name")
    painting = str(entry.painting) if entry.painting else None
    try:
        return push(
            entry.network,
            repo,
            style_picture=painting,
            samples=default_samples(painting),
            onnx=onnx,
            token=(token or "").strip() or None,
            endpoint=endpoint,
        )
    except (MlxStyleError, ValueError, OSError) as exc:
        raise StudioError(str(exc).splitlines()[0]) from None
