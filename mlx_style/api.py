"""The Python API: ``load_style``, ``stylize``, ``export`` and ``train``, re-exported by ``mlx_style``::

from mlx_style import load_style, stylize
out = stylize(load_style("weights/wave.safetensors"), image)   # uint8 RGB (H, W, 3) in, same size out
out = stylize("magenta_arbitrary", image, style_image="starry_night.jpg")   # any picture as the style

from mlx_style import TrainConfig, train
result = train(TrainConfig(style="wave.jpg", data="photos/", image_size=128, batch_size=4, iters=400))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlx_style.infer.stylize import TILE_SIZE, bind_style, stylize_array
from mlx_style.io.style_models import ARBITRARY_HINT, StyleModel, load_style_model
from mlx_style.nn.style import FrameFunction
from mlx_style.training import train  # noqa: F401  (re-exported: TrainConfig or AdaINTrainConfig)
from mlx_style.training.config import AdaINTrainConfig, TrainConfig, TrainResult  # noqa: F401  (re-exported)
from mlx_style.errors import UsageError


@dataclass
class Style:
    """A style network bound to one style (``net``: a frame function, ``nn.style``), the file's metadata
    (``metadata["style"]`` names the painting) and the loaded network of any kind (``model``)."""

    net: FrameFunction
    metadata: dict[str, str]
    path: Path
    model: StyleModel | None = None

    @property
    def name(self) -> str:
        return self.metadata.get("style", self.path.stem)


def load_style(
    model: str | Path | None = None,
    dtype: str = "float32",
    *,
    style: str | int | None = None,
    style_image=None,
    style_strength: float = 1.0,
) -> Style:
    """A style network by path or name (``wave`` finds ``weights/wave.safetensors``; see ``io.registry``).

    ``style`` picks a multi-style network's style or blend (``7``, ``"3:0.5,12:0.5"``); ``style_image`` gives
    the arbitrary-style network its style: a picture (path, built-in style name or uint8 array), several, or
    ``{path: weight}``; ``style_strength`` below 1 mixes in each photo's own style. With a ``style_image`` and
    no ``model``, the arbitrary-style network that ships with the package is used.

    Raises:
        WeightFileError: no such model, or a file that is not a usable style network (one-line reason).
    """
    from mlx_style.io.registry import default_model, resolve_style

    path, held = resolve_style(model) if model is not None else (default_model(arbitrary=style_image is not None), None)
    loaded = load_style_model(path, dtype)
    net, meta = bind_style(loaded, held if style is None else style, style_image, style_strength)
    return Style(net, meta, path, loaded)


EXPORTED_METADATA = (
    "style",
    "style_sha256",
    "config",
    "source",
    "sha256",
    "training_command",
    "style_licence",
    "licence",
)  # weight-file fields an exported model carries (as mlx_style_<field>)
EXPORT_SUFFIXES = {"onnx": (".onnx",), "coreml": (".mlpackage",)}


def export(
    model: Style | FrameFunction | str | Path, path: str | Path, format: str = "onnx", dtype: str = "float32"
) -> Path:
    """Write a style network as ONNX (``format="onnx"``, float32 or float16 weights) or Core ML
    (``"coreml"``, a ``.mlpackage``), with its weight file's provenance; see ``io.onnx_export`` and
    ``io.coreml_export``. The output is checked (suffix, not the model's own file) before any work."""
    from mlx_style.io.paths import check_not_an_input, check_suffix

    if format not in EXPORT_SUFFIXES:
        raise UsageError(f"format must be one of {tuple(EXPORT_SUFFIXES)}, got {format!r}")
    check_suffix(path, EXPORT_SUFFIXES[format], "-o")
    if format == "coreml":
        from mlx_style.io.coreml_export import check_package_target

        check_package_target(path)
    if isinstance(model, (str, Path)):
        from mlx_style.io.onnx_export import ExportError
        from mlx_style.io.registry import takes_picture

        if takes_picture(model):
            raise ExportError(
                f"{model} takes any picture as its style, given when it runs: only networks of fixed "
                "styles export (the built-ins, magenta26, your trained ones)"
            )
        model = load_style(model)
    if isinstance(model, Style):
        check_not_an_input(path, [model.path], "-o")
        metadata = {"mlx_style_" + k: v for k, v in model.metadata.items() if k in EXPORTED_METADATA}
        net = model.net
    else:
        net, metadata = model, {}
    net = net.baked() if hasattr(net, "baked") else net  # a blend of several styles: no style input
    if format == "coreml":
        from mlx_style.io.coreml_export import export_coreml

        return export_coreml(net, path, metadata)
    from mlx_style.io.onnx_export import export_onnx

    return export_onnx(net, path, dtype, metadata)


def stylize(
    model: Style | FrameFunction | str | Path | None,
    image: np.ndarray,
    *,
    size: int | None = None,
    scale: float | None = None,
    preserve_color: bool = False,
    strength: float = 1.0,
    tile_size: int = TILE_SIZE,
    style: str | int | None = None,
    style_image=None,
    style_strength: float = 1.0,
) -> np.ndarray:
    """Stylise a uint8 RGB ``(H, W, 3)`` image; returns uint8 RGB of exactly the same size.

    ``model`` is a ``load_style`` result, a frame function (``nn.style``), or a path or name to load (with ``style``,
    ``style_image`` and ``style_strength`` as ``load_style`` takes them; a loaded arbitrary-style network takes
    a new ``style_image`` too). ``size``/``scale`` set the resolution the network runs at (smaller: bigger
    strokes); ``preserve_color`` keeps the photo's colours; ``strength`` blends with it; images above
    ``tile_size``² pixels run in tiles (same result).
    """
    if model is None or isinstance(model, (str, Path)):
        model = load_style(model, style=style, style_image=style_image, style_strength=style_strength)
    elif style_image is not None:
        if not isinstance(model, Style) or model.model is None or not model.model.takes_picture:
            raise UsageError(f"style_image needs the arbitrary-style network ({ARBITRARY_HINT})")
        model = Style(
            bind_style(model.model, None, style_image, style_strength)[0], model.metadata, model.path, model.model
        )
    net = model.net if isinstance(model, Style) else model
    return stylize_array(net, image, size, scale, preserve_color, strength, tile_size)
