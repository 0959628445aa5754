"""Any picture as a style: Ghiasi, Lee, Kudlur, Dumoulin, Shlens 2017 (Magenta's arbitrary image stylization).

Two networks. ``StylePredictor`` (a MobileNetV2: an image in, a 100-d style vector out) says what a painting's
style is; ``ArbitraryTransformer`` stylises a photo with the instance-norm scales and shifts that this vector
gives (one 1×1 projection per norm). Interpolating two vectors interpolates the styles; Ghiasi's style strength
mixes the painting's vector with the photo's own. ``ArbitraryStyleNet`` holds both, and ``VectorStyle`` binds it
to one vector so it is called like a single-style network (``stylize_array``, ``bench``, the cam).

The layout is the published graph (``io.magenta`` imports it): TF 'SAME' padding in the predictor, ReLU6 and
folded batch norms; in the transformer three contracting convolutions with bias and ReLU, residual blocks and
two ×2 nearest upsamplings with style norms, a 9×9 output convolution with a style norm, and a sigmoid; every
transformer convolution reflect-padded.

Pixels are RGB in 0–255, in and out, as everywhere in the package (the networks themselves work in 0–1).

Shape:
    - ``StylePredictor``: ``(B, H, W, 3)`` → ``(B, style_dim)`` (trained at 256×256)
    - ``ArbitraryTransformer``: ``(B, H, W, 3)`` and ``(B, style_dim)`` or ``(style_dim,)`` → ``(B, H, W, 3)``
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.pixels import resize_shorter
from mlx_style.nn import conv as _conv
from mlx_style.nn.multistyle import normalised
from mlx_style.nn.config import check_int, check_ints, check_number, from_json, to_json
from mlx_style.nn.style import FrameFunction
from mlx_style.nn.ops import depthwise_conv, instance_norm, relu, same_pad
from mlx_style.nn.transformer import ConvLayer, InstanceNorm, TransformerConfig, UpsampleConvLayer, padded_size
from mlx_style.errors import UsageError

STYLE_IMAGE_SIZE = 256  # shorter side of a style image for the predictor: its training size (as Magenta does)
# MobileNetV2 1.0 (Sandler et al. 2018): (hidden channels, output channels, stride) per inverted residual.
MOBILENET_V2_BLOCKS = (
    (32, 16, 1),
    (96, 24, 2),
    (144, 24, 1),
    (144, 32, 2),
    (192, 32, 1),
    (192, 32, 1),
    (192, 64, 2),
    (384, 64, 1),
    (384, 64, 1),
    (384, 64, 1),
    (384, 96, 1),
    (576, 96, 1),
    (576, 96, 1),
    (576, 160, 2),
    (960, 160, 1),
    (960, 160, 1),
    (960, 320, 1),
)


@dataclass(frozen=True)
class ArbitraryConfig:
    """Everything that defines the pair; stored in its weight file's metadata."""

    style_dim: int = 100  # length of the style vector
    stem: int = 32  # channels of the predictor's first convolution
    blocks: tuple[tuple[int, int, int], ...] = MOBILENET_V2_BLOCKS
    head: int = 1280  # channels of the predictor's last 1×1 convolution, before the pooling
    contract: tuple[int, ...] = (8, 16, 32)  # transformer: 9×9, then two 3×3 at stride 2
    num_residual: int = 5
    expand: tuple[int, ...] = (16, 8)  # channels after each ×2 upsampling
    norm_eps: float = 1e-5

    def __post_init__(self):
        owner = "ArbitraryConfig"
        for name in ("style_dim", "stem", "head"):
            check_int(owner, name, getattr(self, name), 1, 4096)
        check_ints(owner, "contract", self.contract, 3, 1, 4096)
        check_ints(owner, "expand", self.expand, 2, 1, 4096)
        check_int(owner, "num_residual", self.num_residual, 0, 64)
        if not isinstance(self.blocks, tuple) or not 1 <= len(self.blocks) <= 64:
            raise UsageError(f"[{owner}] blocks must be 1 to 64 (hidden, out, stride) triples")
        for block in self.blocks:
            check_ints(owner, "blocks", block, 3, 0, 4096)
            check_int(owner, "a block's stride", block[2], 1, 2)
        check_number(owner, "norm_eps", self.norm_eps, 0, 1)

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "ArbitraryConfig":
        return from_json(cls, text)


def relu6(x: mx.array) -> mx.array:
    return mx.clip(x, 0.0, 6.0)


class SameConv(nn.Module):
    """A convolution with bias and TF 'SAME' zero padding; ``groups == channels`` makes it depthwise."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.weight = mx.zeros((cout, kernel, kernel, cin // groups))
        self.bias = mx.zeros((cout,))
        self.kernel, self.stride, self.groups = kernel, stride, groups

    def __call__(self, x: mx.array) -> mx.array:
        x = same_pad(x, self.kernel, self.stride) if self.kernel > 1 else x
        weight = self.weight.astype(x.dtype)
        if self.groups > 1:
            if self.groups != weight.shape[0] or weight.shape[-1] != 1:
                raise UsageError("[SameConv] grouped convolutions are depthwise only (groups = channels)")
            return depthwise_conv(x, weight, self.stride) + self.bias
        _conv.TUNER.note(x.shape, weight.shape, self.stride, x.dtype, False)
        return _conv.conv2d(x, weight, stride=self.stride) + self.bias


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expansion (absent when hidden = in), 3×3 depthwise, 1×1 linear projection."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int):
        super().__init__()
        self.expand = SameConv(cin, hidden, 1) if hidden != cin else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x: mx.array) -> mx.array:
        y = relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(relu6(self.depthwise(y)))
        return x + y if self.residual else y


class StylePredictor(nn.Module):
    """Style image (0–255) → style vector ``(B, style_dim)``: MobileNetV2, global mean, a 1×1 projection."""

    def __init__(self, config: ArbitraryConfig):
        super().__init__()
        c = config
        self.stem = SameConv(3, c.stem, 3, 2)
        self.blocks, cin = [], c.stem
        for hidden, cout, stride in c.blocks:
            self.blocks.append(InvertedResidual(cin, hidden, cout, stride))
            cin = cout
        self.head = SameConv(cin, c.head, 1)
        self.bottleneck = SameConv(c.head, c.style_dim, 1)

    def __call__(self, x: mx.array) -> mx.array:
        y = relu6(self.stem(x / 255.0))
        for block in self.blocks:
            y = block(y)
        y = mx.mean(relu6(self.head(y)), axis=(1, 2), keepdims=True)
        return self.bottleneck(y)[:, 0, 0, :]


class StyleNorm(nn.Module):
    """Instance norm whose scale and shift are 1×1 projections of the style vector (Ghiasi's style norm)."""

    def __init__(self, style_dim: int, channels: int, eps: float):
        super().__init__()
        self.gamma = nn.Linear(style_dim, channels)
        self.beta = nn.Linear(style_dim, channels)
        self.eps = eps

    def __call__(self, x: mx.array, style: mx.array) -> mx.array:
        B, C = x.shape[0], x.shape[-1]
        style = mx.broadcast_to(style.reshape(-1, style.shape[-1]).astype(mx.float32), (B, style.shape[-1]))
        gamma = self.gamma(style).reshape(B, 1, 1, C)
        beta = self.beta(style).reshape(B, 1, 1, C)
        return instance_norm(x, None, None, self.eps) * gamma.astype(x.dtype) + beta.astype(x.dtype)

    def bind(self, style: mx.array) -> InstanceNorm:
        """The plain instance norm this one is for one style vector (what ``nn.tiled`` normalises with)."""
        style = style.reshape(1, -1).astype(mx.float32)
        norm = InstanceNorm(self.gamma.weight.shape[0], self.eps)
        norm.weight, norm.bias = self.gamma(style)[0], self.beta(style)[0]
        return norm


# The transformer's convolutions: reflect padding, biases, nearest ×2 upsampling (``nn.transformer``'s layers).
LAYERS = TransformerConfig(padding="reflect", upsample="nearest", conv_bias=True)


class StyleResidualBlock(nn.Module):
    """conv–style norm–ReLU–conv–style norm plus the identity."""

    def __init__(self, channels: int, config: ArbitraryConfig):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1, LAYERS)
        self.norm1 = StyleNorm(config.style_dim, channels, config.norm_eps)
        self.conv2 = ConvLayer(channels, channels, 3, 1, LAYERS)
        self.norm2 = StyleNorm(config.style_dim, channels, config.norm_eps)

    def stages(self) -> list[tuple[nn.Module, nn.Module, bool]]:
        """``(conv, norm, relu?)`` in order; the identity is added to the last one's output."""
        return [(self.conv1, self.norm1, True), (self.conv2, self.norm2, False)]


class ArbitraryTransformer(nn.Module):
    """Photo (0–255) and style vector → stylised photo (0–255), any height and width."""

    def __init__(self, config: ArbitraryConfig):
        super().__init__()
        c, L = config, LAYERS
        self.contract = [
            ConvLayer(3, c.contract[0], 9, 1, L),
            ConvLayer(c.contract[0], c.contract[1], 3, 2, L),
            ConvLayer(c.contract[1], c.contract[2], 3, 2, L),
        ]
        self.res = [StyleResidualBlock(c.contract[2], c) for _ in range(c.num_residual)]
        self.expand = [
            UpsampleConvLayer(c.contract[2], c.expand[0], L),
            UpsampleConvLayer(c.expand[0], c.expand[1], L),
            ConvLayer(c.expand[1], 3, 9, 1, L),
        ]
        self.expand_norms = [StyleNorm(c.style_dim, ch, c.norm_eps) for ch in (*c.expand, 3)]

    def stages(self) -> list:
        """The network in order: ``(conv, style norm or None, relu?)`` tuples and ``StyleResidualBlock``s.

        The one statement of the topology: ``__call__`` and the tiled forward (``nn.tiled``) both walk it.
        """
        norms = self.expand_norms
        return [
            *((conv, None, True) for conv in self.contract),
            *self.res,
            (self.expand[0], norms[0], True),
            (self.expand[1], norms[1], True),
            (self.expand[2], norms[2], False),
        ]

    def input_transform(self, x):
        """0–255 pixels to the 0–1 the network was trained on (MLX arrays: in the dtype it was cast to)."""
        if isinstance(x, mx.array):
            return x.astype(self.contract[0].conv2d.weight.dtype) / 255.0
        return x / np.float32(255.0)

    def output_transform(self, y):
        """The sigmoid, back to 0–255 (MLX or numpy arrays)."""
        if isinstance(y, mx.array):
            return mx.sigmoid(y) * 255.0
        return np.float32(255.0) / (np.float32(1.0) + np.exp(-y))

    def __call__(self, x: mx.array, style: mx.array) -> mx.array:
        B, H, W, C = x.shape
        if C != 3:
            raise UsageError(f"[ArbitraryTransformer] expected NHWC RGB input with 3 channels, got shape {x.shape}")
        Hp, Wp = padded_size(H), padded_size(W)
        if (Hp, Wp) != (H, W):
            x = mx.pad(x, ((0, 0), (0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")

        def run(stages, y):
            for conv, norm, act in stages:
                y = conv(y)
                y = norm(y, style) if norm is not None else y
                y = relu(y) if act else y
            return y

        y = self.input_transform(x)
        for stage in self.stages():
            y = y + run(stage.stages(), y) if isinstance(stage, StyleResidualBlock) else run([stage], y)
        return self.output_transform(y)[:, :H, :W, :]


class ArbitraryStyleNet(nn.Module):
    """The predictor and the transformer together: ``style_vector(painting)``, then ``net(photo, vector)``."""

    def __init__(self, config: ArbitraryConfig | None = None):
        super().__init__()
        self.config = config or ArbitraryConfig()
        self.predictor = StylePredictor(self.config)
        self.transformer = ArbitraryTransformer(self.config)

    def style_vector(self, image: np.ndarray, size: int | None = STYLE_IMAGE_SIZE) -> mx.array:
        """The style vector ``(style_dim,)`` of one uint8 RGB style image ``(H, W, 3)``, its shorter side
        resized to ``size`` first (Magenta's default; None keeps it as it is)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise UsageError(
                f"[ArbitraryStyleNet] expected a uint8 (H, W, 3) style image, got {image.dtype} {image.shape}"
            )
        if size is not None:
            image = resize_shorter(image, size)
        return self.predictor(mx.array(image.astype(np.float32))[None])[0]

    def __call__(self, x: mx.array, style: mx.array) -> mx.array:
        if style.shape[-1] != self.config.style_dim:
            raise UsageError(
                f"[ArbitraryStyleNet] style vectors have {self.config.style_dim} numbers, got shape {style.shape}"
            )
        return self.transformer(x, style)


def mix_vectors(vectors: list[mx.array], weights: list[float] | None = None) -> mx.array:
    """A weighted mean of style vectors (weights ≥ 0, normalised to sum 1; equal when None)."""
    if not vectors:
        raise UsageError("[mix_vectors] no style vectors")
    weights = [1.0] * len(vectors) if weights is None else [float(w) for w in weights]
    if len(weights) != len(vectors):
        raise UsageError("[mix_vectors] one weight per vector")
    weights = normalised(weights, "[mix_vectors]")
    return sum(v.astype(mx.float32) * w for v, w in zip(vectors, weights))


class VectorStyle(FrameFunction):
    """An arbitrary-style network bound to one style vector: an image in, the stylised image out, as a
    single-style network is called. ``content_strength`` (Ghiasi's interpolation, 1 = the painting's style,
    0 = the photo's own) mixes in each input's own vector, which costs one predictor pass per image."""

    def __init__(self, net: ArbitraryStyleNet, vector: mx.array, style_strength: float = 1.0):
        super().__init__()
        if not 0.0 <= style_strength <= 1.0:
            raise UsageError(f"--style-strength must be between 0 and 1, got {style_strength}")
        self.net = net
        self.vector = vector.astype(mx.float32)
        self.style_strength = float(style_strength)
        self.freeze(keys=["vector"], strict=False)

    @property
    def config(self):
        return self.net.config

    def vector_for(self, x: mx.array) -> mx.array:
        """The style vector for the batch ``x``: the bound one, mixed with each image's own below strength 1."""
        if self.style_strength == 1.0:
            return self.vector
        pixels = np.clip(np.rint(np.asarray(x.astype(mx.float32))), 0, 255).astype(np.uint8)
        own = mx.stack([self.net.style_vector(image) for image in pixels])
        return self.style_strength * self.vector + (1.0 - self.style_strength) * own

    def style_inputs(self, x: mx.array) -> tuple[mx.array, ...]:
        return (self.vector_for(x),)  # an input, so a compiled forward follows the style as it changes

    def apply_style(self, x: mx.array, vector: mx.array) -> mx.array:
        return self.net(x, vector)

    def tiled_stages(self):
        return self.net.transformer

    @property
    def compute_dtype(self) -> mx.Dtype:
        return next(v for _, v in tree_flatten(self.net.transformer.parameters())).dtype

    def tiled_style(self, x: mx.array) -> mx.array:
        vector = self.vector_for(x)
        return vector.reshape(-1, vector.shape[-1])[0]

    def __call__(self, x: mx.array) -> mx.array:
        return self.net(x, self.vector_for(x))
