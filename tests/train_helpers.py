"""Tiny, regenerable inputs for the training tests: a few small photos, a style image and a shallow random VGG.

Everything is made from fixed seeds in a temporary folder, in well under a second; nothing is downloaded.
The VGG holds only conv1_1…conv2_2 (random, Caffe preprocessing), so the loss reads relu1_2 and relu2_2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_style.io.models import save_vgg
from mlx_style.training.config import TrainConfig
from mlx_style.nn.vgg import VGG

TINY_LAYERS = {"style_layers": ("relu1_2", "relu2_2"), "content_layer": "relu2_2"}


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random RGB image (gradients plus noise), uint8."""
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    base = 128 + 100 * (y * rng.uniform(-1, 1, 3) + x * rng.uniform(-1, 1, 3))
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def make_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(photo(rng, size[0] + i % 3, size[1])).save(path)
        paths.append(path)
    return paths


def make_tiny_vgg(path: Path, preprocess: str = "caffe") -> Path:
    mx.random.seed(1)
    vgg = VGG("vgg16", preprocess)
    arrays = {k: v for k, v in tree_flatten(vgg.parameters()) if int(k.split(".")[1]) <= 7}
    return save_vgg(path, arrays, "vgg16", preprocess, "random test weights")


def make_workspace(root: Path, images: int = 12) -> dict[str, Path]:
    """``{"data", "style", "vgg"}`` under ``root``."""
    data = root / "data"
    make_images(data, images)
    style = root / "style.png"
    Image.fromarray(photo(np.random.default_rng(99), 48, 40)).save(style)
    vgg = make_tiny_vgg(root / "vgg.safetensors")
    return {"data": data, "style": style, "vgg": vgg}


def tiny_config(ws: dict[str, Path], out: Path, **overrides) -> TrainConfig:
    """A seconds-long run: 32² crops, batch 4, width 4, one residual block, uncompiled (no kernel build), untuned
    (tuning times strategies, so its choices, and the float rounding, could differ between runs)."""
    settings = dict(
        style=str(ws["style"]),
        data=str(ws["data"]),
        vgg=str(ws["vgg"]),
        image_size=32,
        batch_size=4,
        width=4,
        residual_blocks=1,
        iters=4,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        output=str(out / "net.safetensors"),
        run_dir=str(out / "run"),
        compile=False,
        tune=False,
        **TINY_LAYERS,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def cli_args(config: TrainConfig) -> list[str]:
    """The command-line flags that reproduce ``config`` (for subprocess runs)."""
    args = [
        "--style",
        *config.style_list(),
        "--data",
        config.data,
        "--vgg",
        config.vgg,
        "--image-size",
        str(config.image_size),
        "--batch-size",
        str(config.batch_size),
        "--width",
        str(config.width),
        "--residual-blocks",
        str(config.residual_blocks),
        "--log-every",
        str(config.log_every),
        "--sample-every",
        str(config.sample_every),
        "--checkpoint-every",
        str(config.checkpoint_every),
        "--output",
        config.output,
        "--run-dir",
        config.run_dir,
        "--style-layers",
        ",".join(config.style_layers),
        "--content-layer",
        config.content_layer,
        "--seed",
        str(config.seed),
    ]
    if config.iters is not None:
        args += ["--iters", str(config.iters)]
    if not config.compile:
        args.append("--no-compile")
    if not config.tune:
        args.append("--no-tune")
    if config.processes is not None:
        args += ["--processes", str(config.processes)]
    return args
