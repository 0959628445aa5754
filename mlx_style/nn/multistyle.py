"""One network, many styles: conditional instance normalisation (Dumoulin, Shlens, Kudlur 2017).

Every instance norm holds one scale and shift per style (``gamma``, ``beta``: ``(styles, channels)``); the
convolutions are shared. A style blend is a weight per style (a one-hot vector picks one style; weights summing
to 1 interpolate), applied as ``weights @ gamma`` and ``weights @ beta``. The layout is Magenta's 26-style
network as published in ONNX (``io.magenta``): three contracting convolutions (9×9, then two 3×3 at stride 2),
residual blocks, two ×2 nearest upsamplings each followed by a 3×3 convolution, a 9×9 output convolution, every
convolution reflect-padded, bias-free and followed by a conditional instance norm (and a ReLU but the last), and
a sigmoid.

Pixels are RGB in 0–255, in and out, as for ``TransformerNet``; any height and width (padded to a multiple of 4
inside and cropped back).

Shape:
    - Input: ``(B, H, W, 3)``, float, 0–255; style weights ``(styles,)``
    - Output: ``(B, H, W, 3)``, float, 0–255
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlx_style.nn.config import check_int, check_ints, check_number, from_json, to_json
from mlx_style.nn.style import FrameFunction
from mlx_style.nn.ops import Conv2d, reflect_pad, relu, upsample_nearest
from mlx_style.nn.transformer import InstanceNorm, padded_size
from mlx_style.errors import UsageError


@dataclass(frozen=True)
class MultiStyleConfig:
    """Everything that defines a multi-style network; stored in its weight file's metadata."""

    styles: int = 26  # scale-and-shift pairs per norm
    width: int = 32  # channels of the contracting layers and the residual blocks
    expand: tuple[int, ...] = (8, 4)  # channels after each ×2 upsampling
    num_residual: int = 6
    norm_eps: float = 1e-5

    def __post_init__(self):
        owner = "MultiStyleConfig"
        check_int(owner, "styles", self.styles, 1, 4096)
        check_int(owner, "width", self.width, 1, 4096)
        check_ints(owner, "expand", self.expand, 2, 1, 4096)
        check_int(owner, "num_residual", self.num_residual, 0, 256)
        check_number(owner, "norm_eps", self.norm_eps, 0, 1)

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "MultiStyleConfig":
        return from_json(cls, text)


class ConditionalConv(nn.Module):
    """Reflect padding, a bias-free convolution, a conditional instance norm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, config: MultiStyleConfig):
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel, stride, bias=False)
        self.norm = InstanceNorm(cout, config.norm_eps, config.styles, conditional=True)  # the one norm
        self.kernel = kernel

    def __call__(self, x: mx.array, style_weights: mx.array) -> mx.array:
        return self.norm(self.conv(reflect_pad(x, self.kernel // 2)), style_weights)


class MultiStyleNet(nn.Module):
    """Dumoulin et al.'s network: an image and a style blend in, the stylised image out."""

    def __init__(self, config: MultiStyleConfig | None = None):
        super().__init__()
        self.config = c = config or MultiStyleConfig()
        self.contract = [
            ConditionalConv(3, c.width, 9, 1, c),
            ConditionalConv(c.width, c.width, 3, 2, c),
            ConditionalConv(c.width, c.width, 3, 2, c),
        ]
        self.res = [
            [ConditionalConv(c.width, c.width, 3, 1, c), ConditionalConv(c.width, c.width, 3, 1, c)]
            for _ in range(c.num_residual)
        ]
        self.expand = [
            ConditionalConv(c.width, c.expand[0], 3, 1, c),
            ConditionalConv(c.expand[0], c.expand[1], 3, 1, c),
            ConditionalConv(c.expand[1], 3, 9, 1, c),
        ]

    def __call__(self, x: mx.array, style_weights: mx.array) -> mx.array:
        B, H, W, C = x.shape
        if C != 3:
            raise UsageError(f"[MultiStyleNet] expected NHWC RGB input with 3 channels, got shape {x.shape}")
        if style_weights.shape != (self.config.styles,):
            raise UsageError(
                f"[MultiStyleNet] style weights must have shape ({self.config.styles},), got {style_weights.shape}"
            )
        Hp, Wp = padded_size(H), padded_size(W)
        if (Hp, Wp) != (H, W):
            x = mx.pad(x, ((0, 0), (0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
        y = x / 255.0
        for layer in self.contract:
            y = relu(layer(y, style_weights))
        for first, second in self.res:
            y = y + second(relu(first(y, style_weights)), style_weights)
        y = relu(self.expand[0](upsample_nearest(y), style_weights))
        y = relu(self.expand[1](upsample_nearest(y), style_weights))
        y = mx.sigmoid(self.expand[2](y, style_weights)) * 255.0
        return y[:, :H, :W, :]


def blend_weights(spec: str | int | dict[int, float], styles: int, names: list[str] | None = None) -> mx.array:
    """A style blend from ``7``, ``"7"``, ``"3:0.5,12:0.5"`` or ``{3: 0.5, 12: 0.5}``: a ``(styles,)`` vector.
    With ``names`` (the styles' names, in order), a name may stand for its index: ``"wave:0.7,udnie:0.3"``.

    Raises:
        ValueError: an index or name out of range, a negative or non-numeric weight, or weights that sum to 0.
    """
    names = list(names or [])
    if isinstance(spec, int) and not isinstance(spec, bool):
        parts = {spec: 1.0}
    elif isinstance(spec, dict):
        parts = dict(spec)
    else:
        parts = {}
        for item in str(spec).split(","):
            key, _, weight = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
            if key in names:
                key = str(names.index(key))
            try:
                parts[int(key)] = parts.get(int(key), 0.0) + (float(weight) if weight else 1.0)
            except ValueError:
                known = f" or a name ({', '.join(names)})" if names else ""
                raise UsageError(
                    f"--blend {spec!r}: expected an index like 7{known}, or a blend like 3:0.5,12:0.5"
                ) from None
    for index, weight in parts.items():
        if not 0 <= index < styles:
            raise UsageError(f"--blend {spec!r}: this network holds styles 0 to {styles - 1}, not {index}")
        if not 0 <= weight < math.inf:
            raise UsageError(f"--blend {spec!r}: weights must be finite numbers ≥ 0")
    vector = [0.0] * styles
    for index, weight in zip(parts, normalised(list(parts.values()), f"--blend {spec!r}")):
        vector[index] = weight
    return mx.array(vector, dtype=mx.float32)


def normalised(weights: list[float], what: str) -> list[float]:
    """``weights`` (finite, ≥ 0) scaled to sum 1; divided by their largest first, so huge ones cannot overflow.

    Raises:
        ValueError: a weight that is negative or not finite, or all of them 0.
    """
    if any(not 0 <= w < math.inf for w in weights):
        raise UsageError(f"{what}: weights must be finite numbers ≥ 0")
    largest = max(weights, default=0.0)
    if largest <= 0:
        raise UsageError(f"{what}: the weights sum to 0")
    scaled = [w / largest for w in weights]
    return [w / sum(scaled) for w in scaled]


class BlendedStyle(FrameFunction):
    """A multi-style network (``MultiStyleNet``, or a ``TransformerNet`` of several styles) bound to one style blend:
    an image in, the stylised image out, as a single-style network is called; the blend is its style input."""

    def __init__(self, net: nn.Module, style_weights: mx.array):
        super().__init__()
        self.net = net
        self.style_weights = style_weights
        self.freeze(keys=["style_weights"], strict=False)

    @property
    def config(self):
        return self.net.config

    def __call__(self, x: mx.array) -> mx.array:
        return self.net(x, self.style_weights)

    def style_inputs(self, x: mx.array) -> tuple[mx.array, ...]:
        return (self.style_weights,)

    def apply_style(self, x: mx.array, style_weights: mx.array) -> mx.array:
        return self.net(x, style_weights)

    def tiled_stages(self):
        return self.net if hasattr(self.net, "stages") else None  # Magenta's 26-style network has none yet

    def tiled_style(self, x: mx.array) -> mx.array:
        return self.style_weights

    def baked(self) -> nn.Module:
        """Johnson's network takes the blend into its norms (``TransformerNet.with_style``); Magenta's 26-style
        network stays bound (its ONNX export takes the blend as weights)."""
        return self.net.with_style(self.style_weights) if hasattr(self.net, "with_style") else self
