"""Stylising one image array with a style network: ``load_network``, ``stylize_array`` and what they use.

Johnson et al. 2016: one forward pass of the image transformation network per image. The output keeps the
input's exact size; ``size``/``scale`` set the resolution the network runs at (strokes follow it); images larger
than ``tile_size``² pixels run layer by layer in tiles (``nn.tiled``): the same result with bounded memory.
``infer.files`` runs it over files and videos, ``infer.live`` over camera frames.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_style.infer.color import blend, keep_colors
from mlx_style.io.image import resize
from mlx_style.io.models import load_transformer
from mlx_style.io.registry import resolve_model
from mlx_style.io.weights import WeightFileError, read_metadata
from mlx_style.nn.arbitrary import VectorStyle
from mlx_style.nn.tiled import network_dtype, run_tiled
from mlx_style.nn.transformer import TransformerNet

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
TILE_SIZE = 512  # tile above 512² px: exact, and a whole-image MLX pass needs far more memory per pixel


def load_network(path: str | Path, dtype: str = "float32", style: str | int | None = None,
                 style_images=None, style_strength: float = 1.0):
    """Load a style network file and cast it to ``dtype`` (``float32``, ``float16`` or ``bfloat16``).

    ``path`` may be a name (see ``io.registry``). A multi-style network comes back bound to the blend ``style``
    (``7``, ``"3:0.5,12:0.5"``; default: style 0), an arbitrary-style network bound to the style of
    ``style_images`` (see ``style_vector``) at ``style_strength``, so either is called like a single-style one.
    Raises ``WeightFileError`` with a one-line reason (missing, not safetensors, not mlx_style, another kind),
    ``ImageError`` for an unreadable style image, and ``ValueError`` for a ``style`` the network does not hold.
    """
    if dtype not in DTYPES:
        raise ValueError(f"[load_network] dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    path = resolve_model(path)
    try:
        kind = read_metadata(path).get("kind")
    except (OSError, ValueError):
        kind = None  # not a readable safetensors file: load_transformer says why, in its words
    if kind == "arbitrary":
        if style is not None:
            raise ValueError(f"--style {style}: {Path(path).name} takes any picture as its style: give "
                             "--style-image PICTURE instead")
        net, meta = load_arbitrary_network(path, dtype)
        vector = style_vector(net, style_images)
        return VectorStyle(net, vector, style_strength), {**meta, "style": style_name(style_images)}
    if kind == "adain":  # Huang & Belongie's network (train --method adain): also any picture as a style
        from mlx_style.io.models import load_adain
        from mlx_style.nn.adain import AdaINStyle

        if style is not None:
            raise ValueError(f"--style {style}: {Path(path).name} takes any picture as its style: give "
                             "--style-image PICTURE instead")
        net, meta = load_adain(path)
        net.decoder.set_dtype(DTYPES[dtype])
        return AdaINStyle(net, style_vector(net, style_images), style_strength), \
            {**meta, "style": style_name(style_images)}
    if style_images:
        raise ValueError(f"--style-image: {Path(path).name} is a network for one style; any picture as a style "
                         f"needs the arbitrary-style network ({ARBITRARY_HINT})")
    if kind == "multistyle":
        from mlx_style.io.models import load_multistyle
        from mlx_style.nn.multistyle import BlendedStyle, blend_weights

        net, meta = load_multistyle(path)
        net.set_dtype(DTYPES[dtype])
        return BlendedStyle(net, blend_weights(0 if style is None else style, net.config.styles)), meta
    try:
        net, meta = load_transformer(path)
    except (KeyError, ValueError) as exc:  # a config the network cannot be built from
        if isinstance(exc, WeightFileError):
            raise
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    net.set_dtype(DTYPES[dtype])  # built-in networks are stored in float16; they run in the dtype asked for
    if net.config.styles > 1:  # several styles in one Table-1 network (train --style A B C)
        from mlx_style.nn.multistyle import BlendedStyle, blend_weights

        names = style_names(meta)
        weights = blend_weights(0 if style is None else style, net.config.styles, names)
        label = names[int(mx.argmax(weights).item())] if names and float(mx.max(weights)) == 1.0 else str(style)
        return BlendedStyle(net, weights), {**meta, "style": label}
    if style is not None:
        raise ValueError(f"--style {style}: {Path(path).name} holds one style (--style picks among the styles of "
                         "a multi-style network)")
    return net, meta


def style_names(meta: dict[str, str]) -> list[str]:
    """The names of a multi-style network's styles, in order (its ``styles`` metadata), or []."""
    import json

    try:
        entries = json.loads(meta.get("styles", "[]"))
    except ValueError:
        return []
    return [e["name"] if isinstance(e, dict) else str(e) for e in entries] if isinstance(entries, list) else []


ARBITRARY_HINT = "mlx-style convert-magenta --download"


def load_arbitrary_network(path: str | Path, dtype: str = "float32"):
    """The arbitrary-style pair (``nn.arbitrary``) of ``path``, unbound; its predictor stays in float32 (it
    runs once per style image), its transformer in ``dtype``."""
    from mlx_style.io.models import load_arbitrary

    net, meta = load_arbitrary(path)
    net.transformer.set_dtype(DTYPES[dtype])
    return net, meta


def load_picture_network(path: str | Path, dtype: str = "float32"):
    """``(network, bind)`` for a network that takes any picture as its style (the imported arbitrary pair, or an
    AdaIN network): ``bind(network, vector, style_strength)`` makes the module that stylises with one style."""
    from mlx_style.io.models import load_adain
    from mlx_style.nn.adain import AdaINStyle

    kind = read_metadata(resolve_model(path)).get("kind")
    if kind == "adain":
        net, _ = load_adain(resolve_model(path))
        net.decoder.set_dtype(DTYPES[dtype])
        return net, AdaINStyle
    if kind != "arbitrary":
        raise WeightFileError(f"{Path(path).name} is a network for {'one style' if kind == 'transformer' else kind}: "
                              f"any picture as a style needs the arbitrary-style network ({ARBITRARY_HINT}) or an "
                              "AdaIN network (train --method adain)")
    return load_arbitrary_network(path, dtype)[0], VectorStyle


def parse_style_images(specs) -> list[tuple[object, float]]:
    """``[(image or path, weight)]`` from ``PATH``, ``PATH:WEIGHT`` strings, paths or uint8 arrays, or a
    ``{path: weight}`` dict. A string is a path as a whole when that file exists (a colon may be in a name)."""
    if specs is None or (isinstance(specs, (list, tuple)) and not specs):
        raise ValueError(f"an arbitrary-style network needs a style: give --style-image PICTURE (any painting)")
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
        raise ValueError("--style-image weights must be ≥ 0 and not all 0 (PICTURE:WEIGHT)") from None


def style_name(style_images) -> str:
    """How the style of ``style_images`` is named in logs and the cam's overlay: the pictures' names."""
    parsed = parse_style_images(style_images)
    names = ["picture" if isinstance(s, np.ndarray) else Path(s).stem for s, _ in parsed]
    if len(parsed) == 1:
        return names[0]
    total = sum(w for _, w in parsed)
    return " + ".join(f"{n} {w / total:.0%}" for n, (_, w) in zip(names, parsed))


def run_network(net: TransformerNet, image: np.ndarray) -> np.ndarray:
    """One forward pass on an RGB image ``(H, W, 3)`` in 0–255; float32 ``(H, W, 3)``, not clipped."""
    x = mx.array(np.asarray(image, dtype=np.float32))[None].astype(network_dtype(net))
    y = net(x).astype(mx.float32)
    return np.asarray(y[0])


def network_shape(height: int, width: int, size: int | None = None, scale: float | None = None) -> tuple[int, int]:
    """The ``(height, width)`` the network runs at: the longer side ``size``, or ``scale`` × the input."""
    if size is not None and scale is not None:
        raise ValueError("give --size or --scale, not both")
    if size is not None:
        if size < 1:
            raise ValueError(f"--size must be a positive number of pixels, got {size}")
        factor = size / max(height, width)
    elif scale is not None:
        if not scale > 0:
            raise ValueError(f"--scale must be positive, got {scale}")
        factor = scale
    else:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def tiled_form(net):
    """``(network with stages, style vector or None)`` that ``nn.tiled`` computes for ``net``, or None."""
    if isinstance(net, TransformerNet):
        return net, None
    if isinstance(net, VectorStyle):
        return net.net.transformer, None
    if isinstance(getattr(net, "net", None), TransformerNet):  # a multi-style Table-1 network bound to a blend
        return net.net, net.style_weights
    return None  # Magenta's 26-style network has no tiled forward yet


def run_any_size(net: TransformerNet, image: np.ndarray, tile_size: int = TILE_SIZE) -> np.ndarray:
    """The whole image in one pass when it fits ``tile_size``² pixels (or ``tile_size`` is 0), else tiled."""
    H, W, _ = image.shape
    form = tiled_form(net)
    if tile_size <= 0 or H * W <= tile_size * tile_size or form is None:
        return run_network(net, image)
    if isinstance(net, VectorStyle):  # the style vector (with the photo's own mixed in, below strength 1)
        vector = net.vector_for(mx.array(np.asarray(image, np.float32))[None])
        return run_tiled(form[0], image, tile_size, vector.reshape(-1, vector.shape[-1])[0])
    return run_tiled(form[0], image, tile_size, form[1])


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def stylize_array(net: TransformerNet, image: np.ndarray, size: int | None = None, scale: float | None = None,
                  preserve_color: bool = False, strength: float = 1.0,
                  tile_size: int = TILE_SIZE) -> np.ndarray:
    """Stylise one uint8 RGB image ``(H, W, 3)``; returns uint8 RGB of exactly the same size.

    Args:
        net: a loaded ``TransformerNet`` (see ``load_network``).
        image: uint8 RGB ``(H, W, 3)``.
        size, scale: the network's resolution (longer side, or a fraction); None runs at the input's size.
        preserve_color: keep the input's chroma, stylise the luminance only.
        strength: blend with the input (1 = fully stylised).
        tile_size: images above ``tile_size``² pixels run layer by layer in tiles (same result, bounded
            memory); 0 never tiles.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"[stylize_array] expected uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"--strength must be between 0 and 1, got {strength}")
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


WHOLE_BYTES_PER_PIXEL = 12_000  # one MLX pass over the whole image peaks near this on the CPU (docs/benchmarks.md)


def tiled_bytes_per_pixel(net: TransformerNet) -> float:
    """Host memory of ``nn.tiled.run_tiled`` per network pixel, from the largest input + output activations of
    any stage (float32), walking the network's own stages; a residual block holds its input and two temporaries."""
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
        out_fraction = fraction * 4 if isinstance(conv, UpsampleConvLayer) else fraction / conv.stride ** 2
        peak = max(peak, 4 * (cin * fraction + cout * out_fraction))
        fraction = out_fraction
    # Measured peaks are about 1.6× the activations held (MLX's per-tile buffers and the allocator's free lists
    # on top of them; docs/benchmarks.md); the float32 input and output images come on top.
    return 1.6 * peak + 4 * 3 * 2


def memory_needed(net: TransformerNet, height: int, width: int, net_height: int, net_width: int,
                  tile_size: int = TILE_SIZE) -> int:
    """Bytes that stylising one ``height × width`` image at ``net_height × net_width`` takes at its peak: the
    decoded, resized and blended images, and the network's activations (tiled or not)."""
    images = 24 * height * width  # uint8 decode, float32 result at full size, uint8 copies
    pixels = net_height * net_width
    form = tiled_form(net)
    tiled = tile_size > 0 and pixels > tile_size * tile_size and form is not None
    per_pixel = tiled_bytes_per_pixel(form[0]) if tiled else WHOLE_BYTES_PER_PIXEL
    return int(images + per_pixel * pixels)


def largest_size_within(net: TransformerNet, height: int, width: int, budget: int,
                        tile_size: int = TILE_SIZE) -> int | None:
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
