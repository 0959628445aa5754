"""What the cam's n/p keys step through: style networks, or pictures for the arbitrary-style network.

``Styles`` cycles through style network files (``weights/*.safetensors`` and the built-ins). ``PictureStyles``
cycles through the pictures of a folder (or the files given) with one network that takes any picture as its style
(``nn.arbitrary``, or ``nn.adain``):
each picture's style vector is computed once and cached (until the file changes), the folder is looked at
again every ``RESCAN_SECONDS`` so a picture dropped into it joins the playlist without a restart, and ``[``/``]``
blend the current style with the next one. Both hand the cam a ``Stylizer`` (``infer.live``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import mlx.core as mx

from mlx_style.errors import MlxStyleError
from mlx_style.io.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image
from mlx_style.io.registry import (
    NO_MODEL_HINT,
    available_models,
    default_model,
    resolve_model,
    resolve_style,
    resolve_style_image,
)
from mlx_style.io.style_models import ARBITRARY_HINT, PICTURE_KINDS, load_style_model, model_kind
from mlx_style.io.weights import WeightFileError

RESCAN_SECONDS = 1.0  # how often a style folder is listed again (a listing costs well under a millisecond)


class PlaylistError(MlxStyleError, RuntimeError):
    """No usable style to start with; the message says what to do."""


def network_entries(paths: list[Path]) -> list[tuple[Path, str | None, str]]:
    """``(path, style, name)`` for each style the networks hold: one entry per style of a multi-style network
    (``train --style A B C``, Magenta's 26), named ``network: style``; ``style`` is None for a single-style one.
    The styles are read as loading checks them (``io.registry.network_styles``), never from a header's claim."""
    from mlx_style.io.registry import network_styles

    entries = []
    for path in paths:
        try:
            names = network_styles(path)
        except ValueError:
            names = []  # unreadable here: loading it says why
        if not names:
            entries.append((path, None, path.stem))
        entries += [(path, str(i), f"{path.stem}: {name}") for i, name in enumerate(names)]
    return entries


class Styles:
    """The styles n/p cycle through (every style of each network), with the loaded one as a ``Stylizer``."""

    blend = 0.0  # networks do not blend live

    def __init__(self, paths: list[Path], index: int, dtype: str, make_stylizer, style: str | None = None):
        """``index``: the network of ``paths`` to start with, at its style named ``style`` (default: its first)."""
        self.entries = network_entries(paths)
        self.dtype, self.make_stylizer = dtype, make_stylizer
        self.index = -1
        self.stylizer = None
        first = [e[0] for e in self.entries].index(paths[index])
        named = [
            i for i, (path, _, name) in enumerate(self.entries) if path == paths[index] and name.endswith(f": {style}")
        ]
        self.select(named[0] if style is not None and named else first)

    @property
    def paths(self) -> list[Path]:
        return [path for path, _, _ in self.entries]

    @property
    def name(self) -> str:
        return self.entries[self.index][2]

    def __len__(self) -> int:
        return len(self.entries)

    def refresh(self) -> None:
        """Networks are listed once, at start."""

    def select(self, index: int, blend: float = 0.0) -> bool:
        """Load style ``index``; on a bad file keep the current one (if any) and report. Returns success."""
        from mlx_style.infer.stylize import load_network

        if index == self.index:
            return True
        path, style, _ = self.entries[index]
        try:
            net, _ = load_network(path, self.dtype, style)
        except ValueError as exc:  # WeightFileError, or a config this version does not know
            if self.stylizer is None:
                raise PlaylistError(str(exc)) from None
            print(f"skipping {path.name}: {exc}", file=sys.stderr)
            return False
        self.stylizer, self.index = self.make_stylizer(net), index
        return True


def style_pictures(sources: list[str]) -> tuple[list[Path], list[Path]]:
    """``(folders to watch, pictures)`` for ``--style-image`` values: folders (their pictures, recursively),
    picture files, or built-in style names."""
    folders, pictures = [], []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            folders.append(path)
            pictures += list_images(path)
        else:
            pictures.append(resolve_style_image(source))
    return folders, list(dict.fromkeys(pictures))


class PictureStyles:
    """Pictures as styles for one arbitrary-style network; vectors cached per picture and modification time."""

    def __init__(self, model, sources: list[str], style_strength: float, make_stylizer, clock=time.monotonic):
        """``model``: an ``io.style_models.StyleModel`` that takes a picture as its style."""
        self.model, self.sources, self.clock = model, sources, clock
        self.folders, self.paths = style_pictures(sources)
        self.cache: dict[Path, tuple[float, mx.array]] = {}
        self.index, self.blend, self._scanned = 0, 0.0, clock()
        start = next((i for i in range(len(self.paths)) if self.vector(self.paths[i]) is not None), None)
        if start is None:
            where = ", ".join(sources)
            raise PlaylistError(
                f"no readable style picture in {where}: give pictures or a folder of them "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        self.index = start
        self.stylizer = make_stylizer(model.bind(vector=self.vector(self.paths[start]), style_strength=style_strength))

    @property
    def name(self) -> str:
        name = self.paths[self.index].stem
        if self.blend > 0 and len(self.paths) > 1:
            return f"{name} → {self.paths[(self.index + 1) % len(self.paths)].stem} {self.blend:.0%}"
        return name

    def __len__(self) -> int:
        return len(self.paths)

    def vector(self, path: Path) -> mx.array | None:
        """The style vector of ``path`` (computed once per version of the file); None if it cannot be read."""
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        cached = self.cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            vector = self.model.style_vector(load_image(path))
            mx.eval(vector)
        except (ImageError, OSError, ValueError) as exc:
            print(f"skipping style picture {path.name}: {exc}", file=sys.stderr)
            return None
        self.cache[path] = (mtime, vector)
        return vector

    def refresh(self) -> None:
        """List the watched folders again (at most every ``RESCAN_SECONDS``): new pictures join the playlist,
        removed ones leave it; the current picture stays current."""
        if not self.folders or self.clock() - self._scanned < RESCAN_SECONDS:
            return
        self._scanned = self.clock()
        current = self.paths[self.index]
        pictures = [p for p in self.paths if not any(f in p.parents for f in self.folders) and p.exists()]
        for folder in self.folders:
            pictures += list_images(folder) if folder.is_dir() else []
        pictures = list(dict.fromkeys(pictures))
        if not pictures:
            return  # the folder was emptied: keep showing the current style
        self.paths = pictures
        self.index = pictures.index(current) if current in pictures else 0
        self._apply()

    def select(self, index: int, blend: float | None = None) -> bool:
        """Make picture ``index`` current (and the blend with the next one ``blend``); False if it is unreadable."""
        index %= len(self.paths)
        if self.vector(self.paths[index]) is None:
            return False
        self.index = index
        if blend is not None:
            self.blend = min(max(float(blend), 0.0), 1.0)
        self._apply()
        return True

    def _apply(self) -> None:
        from mlx_style.nn.arbitrary import mix_vectors

        vector = self.vector(self.paths[self.index])
        following = self.vector(self.paths[(self.index + 1) % len(self.paths)]) if self.blend > 0 else None
        if vector is None:
            return
        if following is not None:
            vector = mix_vectors([vector, following], [1.0 - self.blend, self.blend])
        self.stylizer.net.vector = vector


def resolve_models(model: str | None, weights_dir: str | Path) -> tuple[list[Path], int]:
    """The style networks n/p cycle through and the index of the one to start with (``io.registry``'s rule).

    Raises ``PlaylistError`` saying how to get a model when there is none.
    """
    # networks that take a picture as their style join the cam through --style-image, not n/p
    models = [entry.path for entry in available_models(weights_dir) if model_kind(entry.path) not in PICTURE_KINDS]
    if model is None:
        if not models:
            raise PlaylistError(f"no style network in {weights_dir}/: {NO_MODEL_HINT}")
        first = default_model(weights_dir).resolve()  # the style `stylize` uses without --model
        return models, next((i for i, p in enumerate(models) if p.resolve() == first), 0)
    try:
        path, _ = resolve_style(model, weights_dir)  # ``udnie``: the built-ins' network (the style: open_styles)
    except WeightFileError as exc:
        raise PlaylistError(str(exc)) from None
    resolved = [p.resolve() for p in models]
    if path.resolve() in resolved:
        return models, resolved.index(path.resolve())
    return [path] + models, 0


def open_styles(config, make_stylizer):
    """The cam's playlist (``config``: an ``infer.live.CamConfig``): pictures for a network that takes any picture
    (``--style-image``), else style networks. Raises ``PlaylistError`` with one line."""
    if config.style_images:
        try:
            path = (
                resolve_model(config.model, config.weights_dir)
                if config.model
                else default_model(config.weights_dir, arbitrary=True)
            )
            model = load_style_model(path, config.dtype)
        except (WeightFileError, OSError) as exc:
            raise PlaylistError(str(exc)) from None
        if not model.takes_picture:
            raise PlaylistError(
                f"{path.name} is a network for {model.describe()}: any picture as a style needs the "
                f"arbitrary-style network ({ARBITRARY_HINT}) or an AdaIN network (train --method adain)"
            )
        return PictureStyles(model, config.style_images, config.style_strength, make_stylizer)
    paths, index = resolve_models(config.model, config.weights_dir)
    held = resolve_style(config.model, config.weights_dir)[1] if config.model else None
    return Styles(paths, index, config.dtype, make_stylizer, style=held)
