"""The style network computed layer by layer in tiles: the same result as one pass, with bounded memory.

Blending independently stylised tiles does not reproduce the network: instance norm takes its statistics over the
whole image, and tiles normalised with their own statistics render visibly different textures. Here each layer
runs tile by tile over the whole image instead: a conv tile reads its input window plus the kernel's halo, padded
only where the window meets the image border, so it computes exactly what the whole-image conv computes; instance
norm then uses the statistics of the complete layer. Activations are kept in host memory (float32).

``run_tiled`` walks the network's own stages (``TransformerNet.stages``, ``ArbitraryTransformer.stages`` with the
style norms bound to one style vector), so each topology is written once.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.nn.ops import same_pad_amounts
from mlx_style.nn.transformer import ConvLayer, InstanceNorm, ResidualBlock, TransformerNet, padded_size
from mlx_style.errors import UsageError


def network_dtype(net: nn.Module) -> mx.Dtype:
    """The dtype of a network's parameters."""
    return tree_flatten(net.parameters())[0][1].dtype


def _window(
    get,
    height: int,
    width: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    mode: str,
) -> np.ndarray:
    """Rows and columns (in padded coordinates) of an array padded by ``pads``, padding only what is needed.

    ``get(r0, r1, c0, c1)`` returns the in-range block of the unpadded ``(height, width, C)`` array. Reflection
    is exact because a window that needs padding on a side starts at that side's border row or column; ``mode``
    is ``reflect``, ``edge`` or anything else for zeros.
    """
    (pt, _), (pl, _) = pads
    r0, r1 = rows[0] - pt, rows[1] - pt
    c0, c1 = cols[0] - pl, cols[1] - pl
    block = get(max(r0, 0), min(r1, height), max(c0, 0), min(c1, width))
    extra = ((max(0, -r0), max(0, r1 - height)), (max(0, -c0), max(0, c1 - width)), (0, 0))
    if any(a or b for a, b in extra[:2]):
        block = np.pad(block, extra, mode=mode if mode in ("reflect", "edge") else "constant")
    return block


def _spans(length: int, tile: int, multiple: int = 1) -> list[tuple[int, int]]:
    step = max(multiple, tile // multiple * multiple)
    return [(a, min(a + step, length)) for a in range(0, length, step)]


def _call(module, block: np.ndarray, dtype: mx.Dtype) -> np.ndarray:
    y = module(mx.array(np.ascontiguousarray(block))[None].astype(dtype)).astype(mx.float32)
    return np.asarray(y[0])


def _conv_pads(layer, height: int, width: int, kernel: int, stride: int):
    """The padding ``ConvLayer`` applies to the whole image (reflect k//2, or TF 'SAME')."""
    if layer.padding == "reflect":
        return ((kernel // 2, kernel // 2), (kernel // 2, kernel // 2)), "reflect"
    return (same_pad_amounts(height, kernel, stride), same_pad_amounts(width, kernel, stride)), "zeros"


def _tiled_conv(layer, x: np.ndarray, tile: int, dtype: mx.Dtype) -> np.ndarray:
    """``layer(x)`` for a ``ConvLayer`` (padding + valid conv), computed tile by tile."""
    H, W, _ = x.shape
    k, s = layer.kernel, layer.stride
    pads, mode = _conv_pads(layer, H, W, k, s)
    Ho = (H + sum(pads[0]) - k) // s + 1
    Wo = (W + sum(pads[1]) - k) // s + 1
    out = None
    for r0, r1 in _spans(Ho, tile):
        for c0, c1 in _spans(Wo, tile):
            block = _window(
                lambda a, b, c, d: x[a:b, c:d], H, W, (r0 * s, (r1 - 1) * s + k), (c0 * s, (c1 - 1) * s + k), pads, mode
            )
            y = _call(layer.conv2d, block, dtype)
            if out is None:
                out = np.empty((Ho, Wo, y.shape[-1]), dtype=np.float32)
            out[r0:r1, c0:c1] = y
    return out


def _tiled_upsample_conv(layer, x: np.ndarray, tile: int, dtype: mx.Dtype) -> np.ndarray:
    """``layer(x)`` for an ``UpsampleConvLayer`` (×2 nearest + conv, or a stride-2 transposed conv)."""
    H, W, _ = x.shape
    out = None
    for r0, r1 in _spans(2 * H, tile, 2):
        for c0, c1 in _spans(2 * W, tile, 2):
            if layer.mode == "deconv":
                # output rows [r0, r1) = input rows [r0/2, r1/2) and one row of halo each side, through the
                # module itself so its crop (torch or TF 'SAME' alignment) applies unchanged
                a, b = max(r0 // 2 - 1, 0), min(r1 // 2 + 1, H)
                c, d = max(c0 // 2 - 1, 0), min(c1 // 2 + 1, W)
                y = _call(layer, x[a:b, c:d], dtype)[r0 - 2 * a : r1 - 2 * a, c0 - 2 * c : c1 - 2 * c]
            else:
                # output rows [r0, r1) = input rows [r0/2, r1/2) and one row of halo each side, padded by 1 as
                # the layer pads its whole input (edge for reflect, zeros for TF 'SAME')
                block = _window(
                    lambda a, b, c, d: x[a:b, c:d],
                    H,
                    W,
                    (r0 // 2, r1 // 2 + 2),
                    (c0 // 2, c1 // 2 + 2),
                    ((1, 1), (1, 1)),
                    layer.input_padding,
                )
                y = _call(layer.from_padded, block, dtype)
            if out is None:
                out = np.empty((2 * H, 2 * W, y.shape[-1]), dtype=np.float32)
            out[r0:r1, c0:c1] = y
    return out


def _normalize(norm, x: np.ndarray, relu: bool, dtype: mx.Dtype, chunk_rows: int = 256) -> np.ndarray:
    """Instance norm with the statistics of the whole image (batch norm in eval mode is per pixel), in place."""
    H = x.shape[0]
    chunks = [(a, min(a + chunk_rows, H)) for a in range(0, H, chunk_rows)]
    if isinstance(norm, InstanceNorm):
        count = x.shape[0] * x.shape[1]
        mean = sum(x[a:b].sum(axis=(0, 1), dtype=np.float64) for a, b in chunks) / count
        var = sum(np.square(x[a:b] - mean).sum(axis=(0, 1)) for a, b in chunks) / count  # two passes: no cancellation
        scale = np.asarray(norm.weight.astype(mx.float32), dtype=np.float64) / np.sqrt(var + norm.eps)
        shift = np.asarray(norm.bias.astype(mx.float32), dtype=np.float64) - mean * scale
        scale, shift = scale.astype(np.float32), shift.astype(np.float32)
        for a, b in chunks:
            x[a:b] = x[a:b] * scale + shift
    elif isinstance(norm, nn.BatchNorm) and not norm.training:
        for a, b in chunks:
            x[a:b] = _call(norm, x[a:b], dtype)
    else:
        raise UsageError(f"[run_tiled] cannot tile a network normalised by {type(norm).__name__} in this mode")
    if relu:
        np.maximum(x, 0.0, out=x)
    return x


def _tiled_stage(conv, norm, act: bool, x: np.ndarray, tile: int, dtype: mx.Dtype, style=None) -> np.ndarray:
    """One ``(conv, norm, relu?)`` stage of a network's ``stages``, tile by tile (a style norm bound to ``style``)."""
    y = _tiled_conv(conv, x, tile, dtype) if isinstance(conv, ConvLayer) else _tiled_upsample_conv(conv, x, tile, dtype)
    if norm is not None and hasattr(norm, "bind"):
        norm = norm.bind(style)
    if norm is not None:
        return _normalize(norm, y, act, dtype)
    if act:
        np.maximum(y, 0.0, out=y)
    return y


def run_tiled(net: TransformerNet, image: np.ndarray, tile_size: int, style: mx.array | None = None) -> np.ndarray:
    """The network's forward pass computed stage by stage in tiles of at most ``tile_size``² output pixels.

    Equal to ``net(image)`` (``net(image, style)`` for an ``ArbitraryTransformer``) up to float rounding
    (instance norm sees the whole image), with MLX memory bounded by one tile of one layer and host memory of
    about 200 bytes per pixel.
    """
    dtype = network_dtype(net)
    H, W, _ = image.shape
    Hp, Wp = padded_size(H), padded_size(W)
    x = np.pad(np.asarray(image, dtype=np.float32), ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
    if hasattr(net, "input_transform"):
        x = net.input_transform(x)
    for stage in net.stages():
        if isinstance(stage, ResidualBlock) or hasattr(stage, "stages"):
            y = x
            for conv, norm, act in stage.stages():
                y = _tiled_stage(conv, norm, act, y, tile_size, dtype, style)
            x += y
            del y
        else:
            x = _tiled_stage(*stage, x, tile_size, dtype, style)
    return net.output_transform(x)[:H, :W]
