"""Every kind of style network behind one interface: ``load_style_model(path)`` reads the file's ``kind``, builds
its network from one table, and returns a ``StyleModel`` that says what styles it holds and binds one of them
(a style, a blend, or a picture's style vector) to a frame function (``nn.style.FrameFunction``).

| kind | network | its styles |
|---|---|---|
| ``transformer`` | Johnson et al.'s network (``nn.transformer``), one style or several (conditional norms) | named |
| ``multistyle`` | Magenta's 26-style network (``nn.multistyle``, Dumoulin et al. 2017) | numbered |
| ``arbitrary`` | Magenta's arbitrary pair (``nn.arbitrary``, Ghiasi et al. 2017) | any picture |
| ``adain`` | Huang & Belongie's AdaIN network (``nn.adain``) | any picture |

``stylize``, the cam, export, the registry, the Python API and the studio use only this: no class checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_style.io.weights import WeightFileError, read_metadata
from mlx_style.errors import UsageError

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
PICTURE_KINDS = ("arbitrary", "adain")  # kinds whose style is any picture, given when they run
ARBITRARY_HINT = "magenta_arbitrary, the one used when no model is named"  # ships with the package


def _transformer(path: Path, dtype: str):
    from mlx_style.io.models import load_transformer

    try:
        net, meta = load_transformer(path)
    except (KeyError, ValueError) as exc:  # a config the network cannot be built from
        if isinstance(exc, WeightFileError):
            raise
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    net.set_dtype(DTYPES[dtype])  # built-in networks are stored in float16; they run in the dtype asked for
    return net, meta


def _multistyle(path: Path, dtype: str):
    from mlx_style.io.models import load_multistyle

    net, meta = load_multistyle(path)
    net.set_dtype(DTYPES[dtype])
    return net, meta


def _arbitrary(path: Path, dtype: str):
    from mlx_style.io.models import load_arbitrary

    net, meta = load_arbitrary(path)
    net.transformer.set_dtype(DTYPES[dtype])  # the predictor stays float32: it runs once per style picture
    return net, meta


def _adain(path: Path, dtype: str):
    from mlx_style.io.models import load_adain

    net, meta = load_adain(path)
    net.decoder.set_dtype(DTYPES[dtype])
    return net, meta


LOADERS = {"transformer": _transformer, "multistyle": _multistyle, "arbitrary": _arbitrary, "adain": _adain}


def style_names(meta: dict[str, str]) -> list[str]:
    """The names of a multi-style network's styles, in order (its ``styles`` metadata), or [] when the list is
    missing or crafted (not one non-empty string per entry)."""
    try:
        entries = json.loads(meta.get("styles", "[]"))
    except ValueError:
        return []
    names = [e.get("name") if isinstance(e, dict) else e for e in entries] if isinstance(entries, list) else []
    return names if all(isinstance(n, str) and n for n in names) else []


@dataclass
class StyleModel:
    """A loaded style network of any kind, unbound: ``styles`` names what it holds ([] when it takes a picture)."""

    kind: str
    net: nn.Module
    metadata: dict[str, str]
    path: Path

    @property
    def takes_picture(self) -> bool:
        return self.kind in PICTURE_KINDS

    @property
    def styles(self) -> list[str]:
        if self.takes_picture:
            return []
        count = self.net.config.styles
        names = style_names(self.metadata)
        if count == 1:
            return [self.metadata.get("style", self.path.stem)]
        return names if len(names) == count else [str(i) for i in range(count)]

    def style_vector(self, image: np.ndarray) -> mx.array:
        """The style vector of one uint8 RGB picture (networks that take a picture)."""
        if not self.takes_picture:
            raise UsageError(f"{self.path.name} is a network for {self.describe()}: it takes no style picture")
        return self.net.style_vector(image)

    def bind(
        self, style: str | int | dict | None = None, vector: mx.array | None = None, style_strength: float = 1.0
    ) -> nn.Module:
        """The frame function for one style: ``style`` picks or blends a multi-style network's styles (``7``,
        ``"wave:0.5,udnie:0.5"``; default the first); ``vector`` is the style of a picture network.

        Raises:
            ValueError: a style this network does not hold, or a picture network without a vector.
        """
        if self.takes_picture:
            if style is not None:
                raise UsageError(
                    f"--blend {style}: {self.path.name} takes any picture as its style: give "
                    "--style-image PICTURE instead"
                )
            if vector is None:
                raise UsageError("an arbitrary-style network needs a style: give --style-image PICTURE (any painting)")
            if self.kind == "adain":
                from mlx_style.nn.adain import AdaINStyle

                return AdaINStyle(self.net, vector, style_strength)
            from mlx_style.nn.arbitrary import VectorStyle

            return VectorStyle(self.net, vector, style_strength)
        if vector is not None:
            raise UsageError(
                f"--style-image: {self.path.name} is a network for {self.describe()}; any picture as a "
                f"style needs the arbitrary-style network ({ARBITRARY_HINT})"
            )
        if self.net.config.styles == 1:
            if style is not None:
                raise UsageError(
                    f"--blend {style}: {self.path.name} holds one style (--blend picks among the styles "
                    "of a multi-style network)"
                )
            return self.net
        from mlx_style.nn.multistyle import BlendedStyle, blend_weights

        names = self.styles if self.kind == "transformer" else []
        return BlendedStyle(self.net, blend_weights(0 if style is None else style, len(self.styles), names))

    def style_label(self, bound: nn.Module, style) -> str:
        """How the bound style is named: the style's name when one is picked whole, else the blend as given."""
        weights = getattr(bound, "style_weights", None)
        if weights is None or self.kind != "transformer":
            return self.metadata.get("style", self.path.stem)
        return self.styles[int(mx.argmax(weights).item())] if float(mx.max(weights)) == 1.0 else str(style)

    def describe(self) -> str:
        count = len(self.styles)
        return "any picture" if self.takes_picture else "one style" if count == 1 else f"{count} styles"


def model_kind(path: str | Path) -> str | None:
    """The ``kind`` a weight file declares, from its header; None when it is unreadable."""
    try:
        return read_metadata(path).get("kind")
    except (OSError, ValueError):
        return None


def style_licence(meta: dict[str, str], style: str | None = None) -> str:
    """The licence of the painting(s) a weight file records, as a line ("" when none). A network of several styles
    records one per style as a JSON object: ``style`` picks one, else all are listed as ``name: licence``."""
    text = meta.get("style_licence") or ""
    try:
        per_style = json.loads(text) if text.startswith("{") else None
    except ValueError:
        per_style = None
    if not isinstance(per_style, dict):
        return text
    if style is not None and style in per_style:
        return str(per_style[style])
    return "; ".join(f"{name}: {licence}" for name, licence in per_style.items())


def load_style_model(path: str | Path, dtype: str = "float32") -> StyleModel:
    """Load any style network file (a path; see ``io.registry.resolve_model`` for names) in ``dtype``.

    Raises:
        WeightFileError: a missing or unreadable file, or one that holds no style network (one-line reason).
        ValueError: an unknown dtype.
    """
    if dtype not in DTYPES:
        raise UsageError(f"[load_style_model] dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    path = Path(path)
    kind = model_kind(path)
    loader = LOADERS.get(kind, _transformer)  # an unreadable or foreign file: the transformer loader says why
    net, meta = loader(path, dtype)
    return StyleModel(kind if kind in LOADERS else "transformer", net, meta, path)
