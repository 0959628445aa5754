"""Stylise images, folders and videos with a trained network: ``python -m mlx_style.stylize --model M IN… -o OUT``.

Johnson et al. 2016: one forward pass of the image transformation network per image. The library functions
(``load_network``, ``stylize_array`` and the helpers under it) are what ``cam`` and ``bench`` reuse; the command
is a thin loop over them:

- images keep their exact size; ``--size``/``--scale`` set the resolution the network runs at (strokes follow
  it), and the result is resized back;
- ``--preserve-color`` keeps the input's colours (the stylised luminance Y with the input's Cb and Cr);
  ``--strength`` blends with the input;
- images larger than ``--tile-size``² pixels (at the network's resolution) run layer by layer in tiles, with
  instance norm over the whole image: the same result as one pass, with bounded memory;
- videos are read and written frame by frame with OpenCV at the source's frame rate and size (no audio).

Exit status: 0 when every input was stylised; 1 when some failed (the rest are written and the failures
listed); 2 when nothing could be stylised (bad model, no inputs, or every input failed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.memory import keep_freed_memory
from mlx_style.signals import interrupt_on_termination
from mlx_style.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image, resize, save_image
from mlx_style.model_io import load_transformer
from mlx_style.ops import same_pad_amounts
from mlx_style.transformer import InstanceNorm, TransformerNet, padded_size
from mlx_style.weights import WeightFileError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
AUDIO_NOTE = ("audio is not carried over (OpenCV writes video only); to copy it back: "
              "ffmpeg -i STYLISED.mp4 -i ORIGINAL -map 0:v -map 1:a? -c:v copy OUT.mp4")


class StylizeError(RuntimeError):
    """One input that cannot be stylised; the message says why."""


@dataclass
class StylizeConfig:
    """Defaults of ``python -m mlx_style.stylize``; the flags are these fields in kebab-case."""

    model: str | None = None  # a transformer .safetensors (train one, or scripts/convert_fst.py --download)
    inputs: list[str] = field(default_factory=list)  # images, folders of images (recursive) and videos
    output: str | None = None  # a file for one input, else a folder; None: out/
    size: int | None = None  # longer side the network runs at; None: the input's own size
    scale: float | None = None  # or a fraction of the input size; strokes grow as this shrinks
    preserve_color: bool = False  # stylise the luminance only (Gatys et al. 2016, "Preserving color")
    strength: float = 1.0  # 1: the stylised image; 0: the input; between: a linear blend
    dtype: str = "float32"  # float16/bfloat16 halve memory on GPUs; on the CPU they are slower
    tile_size: int = 512  # tile above tile_size² px: exact, and MLX CPU convs peak at ~11 KB/px (2.9 GB at 512²)


# ---------------------------------------------------------------------------------------------------------------
# The network


def resolve_model(name: str | Path, weights_dir: str | Path = "weights") -> Path:
    """A model path as given, or ``weights/NAME.safetensors`` for a bare style name such as ``wave``."""
    path = Path(name)
    short = Path(weights_dir) / f"{name}.safetensors"
    if not path.exists() and path.suffix == "" and len(path.parts) == 1 and short.exists():
        return short
    return path


def load_network(path: str | Path, dtype: str = "float32") -> tuple[TransformerNet, dict[str, str]]:
    """Load a transformer weight file and cast it to ``dtype`` (``float32``, ``float16`` or ``bfloat16``).

    ``path`` may be a bare style name (``wave`` → ``weights/wave.safetensors``). Raises ``WeightFileError``
    with a one-line reason (missing, not safetensors, not mlx_style, another kind).
    """
    if dtype not in DTYPES:
        raise ValueError(f"[load_network] dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    path = resolve_model(path)
    try:
        net, meta = load_transformer(path)
    except (KeyError, ValueError) as exc:  # a config the network cannot be built from
        if isinstance(exc, WeightFileError):
            raise
        raise WeightFileError(f"{path} has no usable network config ({exc}); re-create the file") from None
    if dtype != "float32":
        net.set_dtype(DTYPES[dtype])
    return net, meta


def network_dtype(net: TransformerNet) -> mx.Dtype:
    return tree_flatten(net.parameters())[0][1].dtype


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


# ---------------------------------------------------------------------------------------------------------------
# Layer-wise tiled execution: exact, with MLX memory bounded by one tile of one layer
#
# Blending independently stylised tiles does not reproduce the network: instance norm takes its statistics
# over the whole image, and tiles normalised with their own statistics render visibly different textures (on a
# 384×256 photo with the wave network, 192-px tiles differed from the untiled result by 11.5 grey levels on
# average, PSNR 23.5 dB). Here each layer runs tile by tile over the whole image instead: a conv tile reads its
# input window plus the kernel's halo, padded only where the window meets the image border, so it computes
# exactly what the whole-image conv computes; instance norm then uses the statistics of the complete layer.
# Activations are kept in host memory (float32, at most ~200 bytes per image pixel).


def _window(get, height: int, width: int, rows: tuple[int, int], cols: tuple[int, int],
            pads: tuple[tuple[int, int], tuple[int, int]], mode: str) -> np.ndarray:
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
            block = _window(lambda a, b, c, d: x[a:b, c:d], H, W, (r0 * s, (r1 - 1) * s + k),
                            (c0 * s, (c1 - 1) * s + k), pads, mode)
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
                y = _call(layer, x[a:b, c:d], dtype)[r0 - 2 * a:r1 - 2 * a, c0 - 2 * c:c1 - 2 * c]
            else:
                # output rows [r0, r1) = input rows [r0/2, r1/2) and one row of halo each side, padded by 1 as
                # the layer pads its whole input (edge for reflect, zeros for TF 'SAME')
                block = _window(lambda a, b, c, d: x[a:b, c:d], H, W, (r0 // 2, r1 // 2 + 2), (c0 // 2, c1 // 2 + 2),
                                ((1, 1), (1, 1)), layer.input_padding)
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
        raise ValueError(f"[run_tiled] cannot tile a network normalised by {type(norm).__name__} in this mode")
    if relu:
        np.maximum(x, 0.0, out=x)
    return x


def run_tiled(net: TransformerNet, image: np.ndarray, tile_size: int) -> np.ndarray:
    """``run_network`` computed layer by layer in tiles of at most ``tile_size``² output pixels per call.

    Equal to the whole-image forward pass up to float rounding (instance norm sees the whole image), with MLX
    memory bounded by one tile of one layer and host memory of about 200 bytes per pixel. Follows
    ``TransformerNet.__call__`` step by step; ``tests/test_stylize.py`` checks that they agree.
    """
    dtype = network_dtype(net)
    H, W, _ = image.shape
    Hp, Wp = padded_size(H), padded_size(W)
    x = np.pad(np.asarray(image, dtype=np.float32), ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
    x = _normalize(net.in1, _tiled_conv(net.conv1, x, tile_size, dtype), True, dtype)
    x = _normalize(net.in2, _tiled_conv(net.conv2, x, tile_size, dtype), True, dtype)
    x = _normalize(net.in3, _tiled_conv(net.conv3, x, tile_size, dtype), True, dtype)
    for block in net.res:
        y = _normalize(block.in1, _tiled_conv(block.conv1, x, tile_size, dtype), True, dtype)
        x += _normalize(block.in2, _tiled_conv(block.conv2, y, tile_size, dtype), False, dtype)
        del y
    x = _normalize(net.in4, _tiled_upsample_conv(net.deconv1, x, tile_size, dtype), True, dtype)
    x = _normalize(net.in5, _tiled_upsample_conv(net.deconv2, x, tile_size, dtype), True, dtype)
    x = _tiled_conv(net.deconv3, x, tile_size, dtype)
    if net.config.final_norm:
        x = _normalize(net.in6, x, False, dtype)
    if net.config.output == "tanh":
        x = np.tanh(x) * np.float32(150.0) + np.float32(127.5)
    return x[:H, :W]


def run_any_size(net: TransformerNet, image: np.ndarray, tile_size: int = StylizeConfig.tile_size) -> np.ndarray:
    """The whole image in one pass when it fits ``tile_size``² pixels (or ``tile_size`` is 0), else tiled."""
    H, W, _ = image.shape
    if tile_size <= 0 or H * W <= tile_size * tile_size:
        return run_network(net, image)
    return run_tiled(net, image, tile_size)


# ---------------------------------------------------------------------------------------------------------------
# Colour and blending (float RGB 0–255)

# BT.601 full range (JPEG's YCbCr): Y is luminance, Cb and Cr the chroma, offset by 128.
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], dtype=np.float32)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    return (np.asarray(ycbcr, dtype=np.float32) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T


def keep_colors(stylized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The stylised image's luminance with the original's chroma (Cb, Cr); float RGB, not clipped."""
    y = rgb_to_ycbcr(stylized)[..., :1]
    cbcr = rgb_to_ycbcr(original)[..., 1:]
    return ycbcr_to_rgb(np.concatenate([y, cbcr], axis=-1))


def blend(stylized: np.ndarray, original: np.ndarray, strength: float) -> np.ndarray:
    """``strength · stylized + (1 − strength) · original``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"--strength must be between 0 and 1, got {strength}")
    return strength * np.asarray(stylized, np.float32) + (1.0 - strength) * np.asarray(original, np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def stylize_array(net: TransformerNet, image: np.ndarray, size: int | None = None, scale: float | None = None,
                  preserve_color: bool = False, strength: float = 1.0,
                  tile_size: int = StylizeConfig.tile_size) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    target: Path
    kind: str  # "image" or "video"


def media_kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def plan_jobs(inputs: list[str], output: str | None) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Expand inputs (files, folders searched recursively for images) into jobs; returns ``(jobs, problems)``.

    ``output`` names a file when there is exactly one input file and it has a media suffix; otherwise it is a
    folder (default ``out/``) that mirrors folder inputs' structure. Raises ``ValueError`` for impossible plans.
    """
    sources: list[tuple[Path, Path]] = []  # (file, its path relative to the output folder)
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if not found:
                problems.append((path, "folder holds no images (videos must be named one by one)"))
            sources += [(p, p.relative_to(path)) for p in found]
        elif path.is_file():
            sources.append((path, Path(path.name)))
        else:
            problems.append((path, "no such file or folder"))
    out = Path(output) if output else None
    single_file = (out is not None and out.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)
                   and not out.is_dir())
    if single_file:
        if len(inputs) != 1 or Path(inputs[0]).is_dir():
            raise ValueError(f"-o {out} names one file but the inputs are several files or a folder: "
                             "give a folder for -o")
        if not sources:
            return [], problems
        if media_kind(sources[0][0]) != media_kind(out):
            raise ValueError(f"-o {out}: a {media_kind(sources[0][0])} input needs a "
                             f"{media_kind(sources[0][0])} output file (e.g. {out.with_suffix(sources[0][0].suffix)})")
        targets = [out]
    else:
        folder = out or Path("out")
        targets = [folder / (rel.with_suffix(".mp4") if media_kind(src) == "video" else rel) for src, rel in sources]
    jobs, seen = [], {}
    for (src, _), target in zip(sources, targets):
        if target.resolve() == src.resolve():
            raise ValueError(f"{src} would be overwritten by its own result: choose another -o")
        if target.resolve() in seen:
            raise ValueError(f"{seen[target.resolve()]} and {src} would both be written to {target}: "
                             "stylise them into separate folders")
        seen[target.resolve()] = src
        jobs.append(Job(src, target, media_kind(src)))
    return jobs, problems


def _atomic_target(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def stylize_image_file(net: TransformerNet, job: Job, config: StylizeConfig) -> str:
    """Stylise one image file into ``job.target``; returns a short description for the log."""
    try:
        image = load_image(job.source)
    except ImageError as exc:
        raise StylizeError(str(exc).replace(f"{job.source}: ", "")) from None
    H, W, _ = image.shape
    h, w = network_shape(H, W, config.size, config.scale)
    result = stylize_array(net, image, config.size, config.scale, config.preserve_color, config.strength,
                           config.tile_size)
    partial = _atomic_target(job.target)
    try:
        save_image(partial, result)
        os.replace(partial, job.target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise StylizeError(f"cannot write {job.target} ({exc})") from None
    except BaseException:  # Ctrl-C or a termination signal mid-write: no half-written file left behind
        partial.unlink(missing_ok=True)
        raise
    tiled = config.tile_size > 0 and h * w > config.tile_size ** 2
    return f"{W}×{H} (network {w}×{h}{', tiled' if tiled else ''})"


def _fourcc(path: Path) -> str:
    return "MJPG" if path.suffix.lower() == ".avi" else "mp4v"  # both write and read back with this OpenCV


def stylize_video_file(net: TransformerNet, job: Job, config: StylizeConfig, log=print) -> str:
    """Stylise a video frame by frame at its own frame rate and size; returns a short description."""
    import cv2

    capture = cv2.VideoCapture(str(job.source))
    if not capture.isOpened():
        raise StylizeError("OpenCV cannot open it as a video")
    fps = capture.get(cv2.CAP_PROP_FPS)
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if not fps or not math.isfinite(fps) or fps <= 0:
        log(f"  {job.source}: no frame rate in the file; writing 30 fps")
        fps = 30.0
    partial = _atomic_target(job.target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    writer, frames, start, last_report = None, 0, time.perf_counter(), time.perf_counter()
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                H, W = frame.shape[:2]
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*_fourcc(job.target)), fps, (W, H))
                if not writer.isOpened():
                    raise StylizeError(f"OpenCV cannot write {job.target} ({_fourcc(job.target)})")
            rgb = np.ascontiguousarray(frame[..., ::-1])
            out = stylize_array(net, rgb, config.size, config.scale, config.preserve_color, config.strength,
                                config.tile_size)
            writer.write(np.ascontiguousarray(out[..., ::-1]))
            frames += 1
            if time.perf_counter() - last_report > 5.0:
                rate = frames / (time.perf_counter() - start)
                left = f", about {(expected - frames) / rate:.0f} s left" if expected and expected > frames else ""
                log(f"  frame {frames}{'/' + str(expected) if expected else ''}: {rate:.2f} frames/s{left}")
                last_report = time.perf_counter()
        if writer is None:
            raise StylizeError("the video has no readable frames")
        writer.release()
        writer = None
        os.replace(partial, job.target)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
    elapsed = time.perf_counter() - start
    return f"{W}×{H}, {frames} frames at {fps:.2f} fps ({frames / elapsed:.2f} frames/s, no audio)"


@dataclass
class RunSummary:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    image_seconds: list[float] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return 0
        return 1 if self.done else 2


def stylize_files(net: TransformerNet, jobs: list[Job], config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """Run every job, logging one line each; a failing input is reported and skipped, never fatal."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    summary = RunSummary()
    if any(job.kind == "video" for job in jobs):
        log(f"note: {AUDIO_NOTE}")
    for index, job in enumerate(jobs, 1):
        start = time.perf_counter()
        try:
            if job.kind == "video":
                what = stylize_video_file(net, job, config, log)
            else:
                what = stylize_image_file(net, job, config)
        except (RuntimeError, ValueError, OSError) as exc:  # StylizeError, MLX and OpenCV failures
            summary.failed.append((job.source, str(exc)))
            warn(f"[{index}/{len(jobs)}] {job.source}: skipped: {exc}")
            continue
        seconds = time.perf_counter() - start
        summary.done.append(job.target)
        if job.kind == "image":
            summary.image_seconds.append(seconds)
        log(f"[{index}/{len(jobs)}] {job.source} → {job.target}  {what}  {seconds * 1000:.0f} ms")
    return summary


def check_config(config: StylizeConfig) -> None:
    """Refuse impossible settings before any work, with a ``ValueError`` naming the flag."""
    network_shape(1, 1, config.size, config.scale)
    if not 0.0 <= config.strength <= 1.0:
        raise ValueError(f"--strength must be between 0 and 1, got {config.strength}")
    if config.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {tuple(DTYPES)}, got {config.dtype!r}")
    if config.tile_size and config.tile_size < 64:
        raise ValueError(f"--tile-size must be 0 (never tile) or at least 64, got {config.tile_size}")


def run(config: StylizeConfig, log=print, warn=None) -> RunSummary:
    """The whole command: load the model, plan the outputs, stylise everything, print a summary.

    Raises ``WeightFileError`` (model) or ``ValueError`` (arguments) before any file is written.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    if config.model is None:
        found = sorted(p.name for p in Path("weights").glob("*.safetensors") if not p.name.startswith("vgg"))
        hint = f" (in weights/: {', '.join(found)})" if found else ""
        raise ValueError(f"give a style network with --model FILE{hint}")
    check_config(config)
    jobs, problems = plan_jobs(config.inputs, config.output)
    net, meta = load_network(config.model, config.dtype)
    log(f"model {config.model} (style: {meta.get('style', 'unknown')}, {config.dtype})")
    start = time.perf_counter()
    summary = stylize_files(net, jobs, config, log, warn)
    for path, reason in problems:
        warn(f"{path}: skipped: {reason}")
    summary.failed = problems + summary.failed
    total = time.perf_counter() - start
    mean = (f"; {1000 * sum(summary.image_seconds) / len(summary.image_seconds):.0f} ms per image"
            if summary.image_seconds else "")
    failed = f", {len(summary.failed)} failed ({', '.join(str(p) for p, _ in summary.failed[:5])}" \
             f"{', …' if len(summary.failed) > 5 else ''})" if summary.failed else ""
    log(f"done: {len(summary.done)} stylised{failed} in {total:.1f} s{mean}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    d = StylizeConfig()
    p = argparse.ArgumentParser(
        prog="python -m mlx_style.stylize", description=__doc__.splitlines()[0],
        epilog=f"Videos: written with OpenCV (mp4v for .mp4, MJPG for .avi); {AUDIO_NOTE}. "
               "Exit status: 0 all done, 1 some inputs failed (the rest written), 2 nothing done.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders of images (recursive), videos")
    p.add_argument("--model", "-m", default=d.model,
                   help="style network: a .safetensors file, or a name in weights/ (e.g. wave)")
    p.add_argument("-o", "--output", default=d.output,
                   help="output file for one input, else a folder (default: out/)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, default=d.size,
                      help="longer side the network runs at (default: the input's size); smaller = bigger strokes")
    size.add_argument("--scale", type=float, default=d.scale, help="network resolution as a fraction of the input")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours, stylise luminance")
    p.add_argument("--strength", type=float, default=d.strength, help="0..1 blend with the input (default 1)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=d.dtype, help="network precision (default float32)")
    p.add_argument("--tile-size", type=int, default=d.tile_size,
                   help="images above TILE² pixels (at the network's resolution) run layer by layer in tiles: "
                        "the same result with bounded memory (0: never; default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    config = StylizeConfig(model=args.model, inputs=args.inputs, output=args.output, size=args.size,
                           scale=args.scale, preserve_color=args.preserve_color, strength=args.strength,
                           dtype=args.dtype, tile_size=args.tile_size)
    try:
        with interrupt_on_termination():  # kill/timeout/closed terminal: unfinished outputs removed, as Ctrl-C
            summary = run(config)
    except (WeightFileError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the files listed above are complete", file=sys.stderr)
        return 130
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
