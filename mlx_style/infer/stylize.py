"""Stylising one image array with a style network: ``load_network``, ``stylize_array`` and what they use.

Johnson et al. 2016: one forward pass of the image transformation network per image. The output keeps the
input's exact size; ``size``/``scale`` set the resolution the network runs at (strokes follow it); images larger
than ``tile_size``² pixels run layer by layer in tiles (``nn.tiled``): the same result with bounded memory. Where
to tile is the backend's choice (``backend.tile_threshold``): 512² on the CPU, what fits the memory on a GPU.
``infer.files`` runs it over files and videos, ``infer.live`` over camera frames.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_style.infer.color import blend, keep_colors
from mlx_style.io.image import resize
from mlx_style.io.registry import resolve_style
from mlx_style.io.style_models import DTYPES, load_style_model, style_names  # noqa: F401  (DTYPES re-exported)
from mlx_style.nn.tiled import run_tiled
from mlx_style import backend
from mlx_style.errors import UsageError

MAX_SCALE = 64.0  # --scale above this is a typo (and inf would overflow the size)
TILE_SIZE = None  # None: the backend's threshold (backend.tile_threshold); 0: never tile; N: tile above N² px
DEFAULT_ACTIVATION_BYTES_PER_PIXEL = 192  # a network without stages (Magenta's 26 styles): Johnson's width-32 peak


def load_network(
    path: str | Path,
    dtype: str = "float32",
    style: str | int | None = None,
    style_images=None,
    style_strength: float = 1.0,
):
    """Load a style network file of any kind (``io.style_models``) bound to one style, in ``dtype``; returns
    ``(frame function, metadata)``. ``path`` may be a name (see ``io.registry``); see ``bind_style``.
    Raises ``WeightFileError`` with a one-line reason, ``ImageError`` for an unreadable style image, and
    ``ValueError`` for a ``style`` the network does not hold.
    """
    path, held = resolve_style(path)  # a name such as ``udnie`` may be one style of the built-ins' network
    return bind_style(load_style_model(path, dtype), held if style is None else style, style_images, style_strength)


def bind_style(model, style: str | int | None = None, style_images=None, style_strength: float = 1.0):
    """``(frame function, metadata)`` of a ``StyleModel`` for one style: a network of several styles is bound to
    the blend ``style`` (``7``, ``"3:0.5,12:0.5"``; default: its first), a network that takes any picture to the
    style of ``style_images`` (see ``style_vector``) at ``style_strength``; each is then called like a
    single-style one."""
    given = style_images is not None and not (isinstance(style_images, (list, tuple, dict)) and not style_images)
    if given and not model.takes_picture:
        model.bind(vector=mx.zeros((1,)))  # raises: this network takes no picture, saying what does
    vector = style_vector(model.net, style_images) if model.takes_picture else None
    bound = model.bind(style, vector, style_strength)
    label = style_name(style_images) if model.takes_picture else model.style_label(bound, style)
    return bound, {**model.metadata, "style": label}


def parse_style_images(specs) -> list[tuple[object, float]]:
    """``[(image or path, weight)]`` from ``PATH``, ``PATH:WEIGHT`` strings, paths or uint8 arrays, or a
    ``{path: weight}`` dict. A string is a path as a whole when that file exists (a colon may be in a name)."""
    if specs is None or (isinstance(specs, (list, tuple)) and not specs):
        raise UsageError("an arbitrary-style network needs a style: give --style-image PICTURE (any painting)")
    if isinstance(specs, dict):
        return [(k, float(v)) for k, v in specs.items()]
    if isinstance(specs, (str, Path, np.ndarray)):
        specs = [specs]
    parsed = []
    for spec in specs:
        if isinstance(spec, str) and ":" in spec and not Path(spec).exists():
            name, _, weight = spec.rpartition(":")
            try:
                parsed.append((name, float(weight)))
                continue
            except ValueError:
                pass
        parsed.append((spec, 1.0))
    return parsed


def style_vector(net, style_images) -> mx.array:
    """The style vector of one picture, or the weighted mean of several (``parse_style_images``): pictures are
    found as ``train --style`` finds them (a path, or a built-in style's picture by name)."""
    from mlx_style.io.image import load_image
    from mlx_style.io.registry import resolve_style_image
    from mlx_style.nn.arbitrary import mix_vectors

    parsed = parse_style_images(style_images)
    vectors = []
    for source, _ in parsed:
        image = source if isinstance(source, np.ndarray) else load_image(resolve_style_image(source))
        vectors.append(net.style_vector(image))
    try:
        return mix_vectors(vectors, [w for _, w in parsed])
    except ValueError:
        raise UsageError("--style-image weights must be finite numbers ≥ 0, not all 0 (PICTURE:WEIGHT)") from None


def style_name(style_images) -> str:
    """How the style of ``style_images`` is named in logs and the cam's overlay: the pictures' names."""
    parsed = parse_style_images(style_images)
    names = ["picture" if isinstance(s, np.ndarray) else Path(s).stem for s, _ in parsed]
    if len(parsed) == 1:
        return names[0]
    total = sum(w for _, w in parsed)
    return " + ".join(f"{n} {w / total:.0%}" for n, (_, w) in zip(names, parsed))


def run_network(net, image: np.ndarray) -> np.ndarray:
    """One forward pass on an RGB image ``(H, W, 3)`` in 0–255; float32 ``(H, W, 3)``, not clipped."""
    x = mx.array(np.asarray(image, dtype=np.float32))[None].astype(net.compute_dtype)
    y = net(x).astype(mx.float32)
    return np.asarray(y[0])


def network_shape(height: int, width: int, size: int | None = None, scale: float | None = None) -> tuple[int, int]:
    """The ``(height, width)`` the network runs at: the longer side ``size``, or ``scale`` × the input."""
    if size is not None and scale is not None:
        raise UsageError("give --size or --scale, not both")
    if size is not None:
        if size < 1:
            raise UsageError(f"--size must be a positive number of pixels, got {size}")
        factor = size / max(height, width)
    elif scale is not None:
        if not 0 < scale <= MAX_SCALE:
            raise UsageError(f"--scale must be positive and at most {MAX_SCALE}, got {scale}")
        factor = scale
    else:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def tile_side(net, tile_size: int | None = TILE_SIZE) -> int:
    """The side above which ``net`` runs in tiles: ``tile_size`` when given (0: never), else the backend's."""
    if tile_size is not None:
        return tile_size
    return backend.tile_threshold(whole_bytes_per_pixel(net))


def runs_tiled(net, height: int, width: int, tile_size: int | None = TILE_SIZE) -> bool:
    """Whether a ``height × width`` network input runs in tiles (it has a tiled form and is above ``tile_side``)."""
    side = tile_side(net, tile_size)
    return side > 0 and height * width > side * side and net.tiled_stages() is not None


def run_any_size(net, image: np.ndarray, tile_size: int | None = TILE_SIZE) -> np.ndarray:
    """The whole image in one pass when it fits ``tile_side``² pixels (``tile_size`` 0: always), else tiled."""
    H, W, _ = image.shape
    if not runs_tiled(net, H, W, tile_size):
        return run_network(net, image)
    return run_tiled(
        net.tiled_stages(),
        image,
        tile_side(net, tile_size),
        net.tiled_style(mx.array(np.asarray(image, np.float32))[None]),
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def stylize_array(
    net,
    image: np.ndarray,
    size: int | None = None,
    scale: float | None = None,
    preserve_color: bool = False,
    strength: float = 1.0,
    tile_size: int | None = TILE_SIZE,
) -> np.ndarray:
    """Stylise one uint8 RGB image ``(H, W, 3)``; returns uint8 RGB of exactly the same size.

    Args:
        net: a frame function (``nn.style``; see ``load_network``).
        image: uint8 RGB ``(H, W, 3)``.
        size, scale: the network's resolution (longer side, or a fraction); None runs at the input's size.
        preserve_color: keep the input's chroma, stylise the luminance only.
        strength: blend with the input (1 = fully stylised).
        tile_size: images above ``tile_size``² pixels run layer by layer in tiles (same result, bounded
            memory); 0 never tiles; None: the backend's threshold (``tile_side``).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"[stylize_array] expected uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"--strength must be between 0 and 1, got {strength}")
    H, W, _ = image.shape
    if strength == 0.0:
        return image.copy()
    h, w = network_shape(H, W, size, scale)
    styled = to_uint8(run_any_size(net, resize(image, h, w), tile_size))
    styled = resize(styled, H, W).astype(np.float32)
    if preserve_color:
        styled = keep_colors(styled, image)
    if strength < 1.0:
        styled = blend(styled, image, strength)
    return to_uint8(styled)


def activation_bytes_per_pixel(net) -> float:
    """The largest input + output activations of any stage (float32) per network pixel, walking the network's own
    stages (``net``: a ``tiled_stages()`` network); a residual block holds its input and two temporaries."""
    from mlx_style.nn.transformer import ResidualBlock, UpsampleConvLayer

    fraction, peak = 1.0, 0.0  # fraction: activation pixels per image pixel at the current stage
    for stage in net.stages():
        if isinstance(stage, ResidualBlock) or hasattr(stage, "stages"):
            channels = stage.conv1.conv2d.weight.shape[0]
            peak = max(peak, 4 * 3 * channels * fraction)
            continue
        conv = stage[0]
        weight = conv.conv2d.weight
        cin, cout = weight.shape[-1], weight.shape[0]
        out_fraction = fraction * 4 if isinstance(conv, UpsampleConvLayer) else fraction / conv.stride**2
        peak = max(peak, 4 * (cin * fraction + cout * out_fraction))
        fraction = out_fraction
    return peak


def tiled_bytes_per_pixel(net) -> float:
    """Host memory of ``nn.tiled.run_tiled`` per network pixel (``net``: a ``tiled_stages()`` network)."""
    peak = activation_bytes_per_pixel(net)
    # Measured peaks are about 1.6× the activations held (MLX's per-tile buffers and the allocator's free lists
    # on top of them; docs/benchmarks.md); the float32 input and output images come on top.
    return 1.6 * peak + 4 * 3 * 2


def whole_bytes_per_pixel(net) -> float:
    """Peak bytes per network pixel of one whole-image pass of the frame function ``net`` on this backend
    (``backend.whole_bytes_per_pixel``: the CPU's measured constant, or a GPU's from the largest activations)."""
    stages = net.tiled_stages()
    peak = activation_bytes_per_pixel(stages) if stages is not None else DEFAULT_ACTIVATION_BYTES_PER_PIXEL
    return backend.whole_bytes_per_pixel(peak)


def memory_needed(
    net, height: int, width: int, net_height: int, net_width: int, tile_size: int | None = TILE_SIZE
) -> int:
    """Bytes that stylising one ``height × width`` image at ``net_height × net_width`` takes at its peak: the
    decoded, resized and blended images, and the network's activations (tiled or not)."""
    images = 24 * height * width  # uint8 decode, float32 result at full size, uint8 copies
    pixels = net_height * net_width
    tiled = runs_tiled(net, net_height, net_width, tile_size)
    per_pixel = tiled_bytes_per_pixel(net.tiled_stages()) if tiled else whole_bytes_per_pixel(net)
    return int(images + per_pixel * pixels)


def largest_size_within(net, height: int, width: int, budget: int, tile_size: int | None = TILE_SIZE) -> int | None:
    """The largest ``--size`` (longer side) whose ``memory_needed`` fits ``budget`` bytes, or None."""
    low, high = 8, max(height, width)
    if memory_needed(net, height, width, *network_shape(height, width, low), tile_size) > budget:
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if memory_needed(net, height, width, *network_shape(height, width, mid), tile_size) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
