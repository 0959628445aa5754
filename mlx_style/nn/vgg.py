"""The VGG loss network (Simonyan & Zisserman 2015) with torchvision's layer layout, frozen.

``VGG(arch)`` builds ``features.{i}`` exactly as torchvision's ``vgg16().features`` / ``vgg19().features``
(3×3 convs with zero padding 1 and ReLU, 2×2 max-pools), so converted weights keep torchvision's key names.
Calling it returns the named activations asked for (``relu1_1`` … ``relu5_3``) and stops at the deepest one.
It takes RGB 0–255 images and applies the preprocessing its weights were trained with
(``mlx_style.pixels.vgg_preprocess``).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_style.pixels import PREPROCESSING, vgg_preprocess
from mlx_style.nn.ops import Conv2d, max_pool_2x2, relu
from mlx_style.errors import UsageError

ARCHS = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)


def layer_names(arch: str) -> list[str]:
    """Names of ``features`` entries in order: conv1_1, relu1_1, …, pool1, …"""
    names = []
    for block, n in enumerate(ARCHS[arch], start=1):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


class MaxPool2x2(nn.Module):
    """2×2 max-pool, stride 2 (floor, as torchvision)."""

    def __call__(self, x: mx.array) -> mx.array:
        return max_pool_2x2(x)


class ReLU(nn.Module):
    def __call__(self, x: mx.array) -> mx.array:
        return relu(x)


class VGG(nn.Module):
    """VGG16/19 convolutional features.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        preprocess: ``"torchvision"`` or ``"caffe"``: what the weights expect (see ``mlx_style.pixels``).

    Shape:
        - Input: ``(B, H, W, 3)`` RGB, 0–255
        - Output: dict of ``(B, H/2^k, W/2^k, C)`` activations for the requested layer names
    """

    def __init__(self, arch: str = "vgg16", preprocess: str = "torchvision"):
        super().__init__()
        if arch not in ARCHS:
            raise UsageError(f"[VGG] arch must be one of {sorted(ARCHS)}, got {arch!r}")
        if preprocess not in PREPROCESSING:
            raise UsageError(f"[VGG] preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        self.arch, self.preprocess = arch, preprocess
        self.names = layer_names(arch)
        layers, cin = [], 3
        for name in self.names:
            if name.startswith("conv"):
                cout = BLOCK_CHANNELS[int(name[4]) - 1]
                layers.append(Conv2d(cin, cout, 3, padding=1))
                cin = cout
            elif name.startswith("relu"):
                layers.append(ReLU())
            else:
                layers.append(MaxPool2x2())
        self.features = layers
        self.freeze()

    def __call__(self, x: mx.array, layers: tuple[str, ...] | list[str]) -> dict[str, mx.array]:
        unknown = [name for name in layers if name not in self.names]
        if unknown and all(name in layer_names(self.arch) for name in unknown):  # weights that stop earlier
            raise UsageError(
                f"[VGG] {unknown[0]} is beyond these weights (they stop at {self.names[-1]}): convert "
                f"the whole {self.arch} with `mlx-style convert-vgg` and pass --vgg weights/"
                f"{self.arch}.safetensors"
            )
        if unknown:
            raise UsageError(
                f"[VGG] unknown layers {unknown} for {self.arch}; known: relu1_1 … "
                f"{[n for n in self.names if n.startswith('relu')][-1]}"
            )
        wanted = set(layers)
        last = max(self.names.index(name) for name in layers)
        y = vgg_preprocess(x, self.preprocess).astype(self.features[0].weight.dtype)
        out = {}
        for name, layer in zip(self.names[: last + 1], self.features[: last + 1]):
            y = layer(y)
            if name in wanted:
                out[name] = y
        return out
