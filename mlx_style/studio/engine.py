"""Networks bound to what the page picked: a style, a blend of two, or any picture's style; loaded once and shared
by every tab, evaluated one at a time.

A blend of two styles of one network (Magenta's 26, a multi-style run) mixes their norms, as ``stylize --style
a:0.5,b:0.5`` does; two separate networks are blended in their outputs (each runs, the pictures are mixed). The
``compute`` lock serialises the networks' work: a CPU gains nothing from two passes at once, and the live tab
drops a frame instead of waiting behind a photo (``live``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_style.infer.stylize import bind_style, stylize_array
from mlx_style.io.image import load_image, resize_max_side
from mlx_style.io.style_models import StyleModel, load_style_model
from mlx_style.nn.style import FrameFunction
from mlx_style.studio.catalogue import StyleEntry
from mlx_style.studio.paths import StudioError

compute = threading.Lock()  # one network pass at a time in this process (see the module docstring)
THUMBNAIL = 160  # px, the longer side of a gallery tile
SWATCH = 96  # px: a style without a known painting is shown on this pattern


class PixelBlend(FrameFunction):
    """Two networks' pictures mixed: ``(1 - weight)`` of the first, ``weight`` of the second."""

    def __init__(self, first: FrameFunction, second: FrameFunction, weight: float):
        super().__init__()
        self.first, self.second, self.weight = first, second, float(weight)

    def __call__(self, x: mx.array) -> mx.array:
        a = mx.clip(self.first(x).astype(mx.float32), 0, 255)  # each style's own picture, as it would be shown
        b = mx.clip(self.second(x.astype(self.second.compute_dtype)).astype(mx.float32), 0, 255)
        return (1.0 - self.weight) * a + self.weight * b

    @property
    def compute_dtype(self) -> mx.Dtype:
        return self.first.compute_dtype


class Cancelled(StudioError, RuntimeError):
    """A long job stopped from the page."""


class Watched(FrameFunction):
    """A frame function that calls ``on_frame()`` before each frame (which raises ``Cancelled`` to stop a video)
    and runs each whole-image pass under the ``compute`` lock."""

    def __init__(self, inner: FrameFunction, on_frame):
        super().__init__()
        self.inner = inner
        self._on_frame = on_frame

    def __call__(self, x: mx.array) -> mx.array:
        self._on_frame()
        with compute:
            y = self.inner(x)
            mx.eval(y)
        return y

    def tiled_stages(self):
        return self.inner.tiled_stages()

    def tiled_style(self, x: mx.array):
        self._on_frame()
        return self.inner.tiled_style(x)

    @property
    def compute_dtype(self) -> mx.Dtype:
        return self.inner.compute_dtype


def digest(image: np.ndarray | None) -> str:
    """A short fingerprint of a picture (the key of its style vector in the caches)."""
    if image is None:
        return ""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()[:16]


class Networks:
    """Loaded networks (a few, least recently used dropped) and the frame functions bound from them."""

    def __init__(self, capacity: int = 6, bound_capacity: int = 32):
        self.capacity, self.bound_capacity = capacity, bound_capacity
        self._models: OrderedDict[tuple, StyleModel] = OrderedDict()
        self._bound: OrderedDict[tuple, FrameFunction] = OrderedDict()
        self._lock = threading.RLock()

    def model(self, path: Path) -> StyleModel:
        """The network in ``path`` (loaded again when the file changed, e.g. a run wrote it anew)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_style_model(path)
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return self._models[key]

    def bind(
        self, first: StyleEntry, second: StyleEntry | None = None, blend: float = 0.0, picture: np.ndarray | None = None
    ) -> FrameFunction:
        """The frame function for ``first``, blended towards ``second`` by ``blend`` (0: ``first`` alone, 1:
        ``second`` alone); ``picture`` is the style of a network that takes any picture.

        Raises:
            StudioError: a blend outside 0..1, or a picture network without a picture.
        """
        if not 0.0 <= blend <= 1.0:
            raise StudioError(f"blend must be between 0 and 1, got {blend}")
        if second is None or second.key == first.key or blend == 0.0:
            second, blend = None, 0.0
        elif blend == 1.0:
            first, second, blend = second, None, 0.0
        needs_picture = first.takes_picture or (second is not None and second.takes_picture)
        key = (
            first.key,
            str(first.network),
            second.key if second else None,
            round(blend, 4),
            digest(picture) if needs_picture else "",
        )
        with self._lock:
            if key in self._bound:
                self._bound.move_to_end(key)
                return self._bound[key]
        net = self._bind(first, second, blend, picture)
        with self._lock:
            self._bound[key] = net
            while len(self._bound) > self.bound_capacity:
                self._bound.popitem(last=False)
        return net

    def _bind(self, first, second, blend, picture) -> FrameFunction:
        if second is None:
            return self._one(first, picture)
        if first.network == second.network and first.index is not None and second.index is not None:
            model = self.model(first.network)  # two styles of one network: mix their norms
            with compute:
                return bind_style(model, {first.index: 1.0 - blend, second.index: blend})[0]
        return PixelBlend(self._one(first, picture), self._one(second, picture), blend)

    def _one(self, entry: StyleEntry, picture: np.ndarray | None) -> FrameFunction:
        model = self.model(entry.network)
        if entry.takes_picture and picture is None:
            raise StudioError(f"{entry.label} takes its style from a painting: upload one")
        with compute:  # as `stylize` binds a network: a style of several, or a picture's style vector
            if entry.takes_picture:
                return bind_style(model, None, np.ascontiguousarray(picture))[0]
            return bind_style(model, None if entry.index is None else {entry.index: 1.0})[0]


def stylise(
    net: FrameFunction, image: np.ndarray, size: int | None, keep_colours: bool = False, strength: float = 1.0
) -> np.ndarray:
    """``infer.stylize.stylize_array`` under the ``compute`` lock (the same result as ``mlx_style.api.stylize``)."""
    with compute:
        return stylize_array(net, image, size=size, preserve_color=keep_colours, strength=strength)


def pattern(size: int = SWATCH) -> np.ndarray:
    """A fixed picture with edges, gradients and flat areas: what a style is shown on when its painting is not
    known."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.stack([200 * x + 30, 160 * (1 - y) + 40, 120 + 100 * np.sin(6 * x * y)], axis=-1)
    disc = (x - 0.35) ** 2 + (y - 0.6) ** 2 < 0.06
    image[disc] = (235, 210, 80)
    image[int(0.15 * size) : int(0.3 * size), int(0.55 * size) : int(0.9 * size)] = (40, 60, 160)
    return np.clip(image, 0, 255).astype(np.uint8)


class Thumbnails:
    """Gallery tiles: a style's painting when known, else the style applied to ``pattern()``."""

    def __init__(self, networks: Networks):
        self.networks = networks
        self._tiles: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def tile(self, entry: StyleEntry) -> np.ndarray:
        source = entry.painting or entry.network
        stat = source.stat()
        key = (entry.key, str(source), stat.st_mtime_ns)
        with self._lock:
            if key in self._tiles:
                return self._tiles[key]
        if entry.painting is not None:
            tile = resize_max_side(load_image(entry.painting), THUMBNAIL)
        elif entry.takes_picture:
            tile = np.full((SWATCH, SWATCH, 3), 235, np.uint8)  # "any picture": the page labels it
        else:
            tile = stylise(self.networks.bind(entry), pattern(), None)
        tile = np.asarray(tile, np.uint8)
        with self._lock:
            self._tiles[key] = tile
        return tile
