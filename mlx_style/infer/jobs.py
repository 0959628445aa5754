"""What a ``stylize`` run works on: its settings, one job per input, and the checks both images and videos make
before any work (memory from the file's header)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mlx_style import backend
from mlx_style.errors import MlxStyleError
from mlx_style.infer.smoothing import DEFAULT_WEIGHT
from mlx_style.infer.stylize import TILE_SIZE, largest_size_within, memory_needed, network_shape
from mlx_style.io import video

VIDEO_EXTENSIONS = tuple(video.VIDEO_CODECS)
# Of video per segment (io.video): what a kill can lose, and the longest keyframe interval (x264's own is 250 frames,
# 8–10 s; a keyframe every 4 s costs a few per cent of the file).
SEGMENT_SECONDS = 4.0
PROGRESS_SECONDS = 5.0  # between the progress lines of a video


class StylizeError(MlxStyleError, RuntimeError):
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
    tile_size: int | None = TILE_SIZE  # images above tile_size² px (network size) run in tiles; None: the backend's
    smooth: float = DEFAULT_WEIGHT  # videos: temporal smoothing weight (infer.smoothing), as in the cam; 0: off
    style: str | None = None  # a multi-style network's style: an index (7) or a blend (3:0.5,12:0.5)
    style_images: list[str] | None = None  # an arbitrary-style network's style: pictures, PATH[:WEIGHT] each
    style_strength: float = 1.0  # with style_images: 1 the pictures' style, 0 the photo's own (Ghiasi)
    quality: int = video.DEFAULT_QUALITY  # videos: CRF-like, x264's scale: lower is better and larger
    audio: bool = True  # videos: every audio stream of the source, copied where the container takes it
    resume: bool = False  # videos: continue the finished segments an interrupted run left (.NAME.partial/)


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    target: Path
    kind: str  # "image" or "video"


def atomic_target(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")


MEMORY_SHARE = 0.8  # of the memory available that one image may take


def check_memory(net, path: Path, config: StylizeConfig, available: int | None = None) -> None:
    """Refuse an image whose stylisation would not fit in memory (``StylizeError`` naming a ``--size`` that fits),
    reading only its header. Unreadable headers pass: ``load_image`` reports them."""
    try:
        with Image.open(path) as img:
            W, H = img.size
    except Exception:  # noqa: BLE001  (any header Pillow cannot read: left to load_image's clear message)
        return
    check_frame_memory(net, H, W, config, available)


def check_frame_memory(net, H: int, W: int, config: StylizeConfig, available: int | None = None):
    """``check_memory`` for an ``H × W`` picture: an image, or every frame of a video (checked from its header)."""
    available = backend.available_memory_bytes() if available is None else available
    if not available:
        return
    h, w = network_shape(H, W, config.size, config.scale)
    need = memory_needed(net, H, W, h, w, config.tile_size)
    budget = int(MEMORY_SHARE * available)
    if need <= budget:
        return
    fits = largest_size_within(net, H, W, budget, config.tile_size)
    advice = f"pass --size {fits} (or smaller)" if fits else "use a machine with more memory"
    raise StylizeError(
        f"{W}×{H} at network size {w}×{h} needs about {need / 1e9:.1f} GB, and "
        f"{available / 1e9:.1f} GB is available: {advice}"
    )
