"""Any picture as a style by adaptive instance normalisation: Huang & Belongie 2017 (AdaIN), the report's §5.2.

An encoder fixed to the VGG loss network up to relu4_1 maps the photo and the painting to features; the AdaIN
layer gives the photo's features the painting's per-channel mean and standard deviation,

    AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y),   μ, σ over H and W per image and channel,
    σ = sqrt(biased variance + eps) (Huang's eq. 5-6);

and a decoder trained in MLX (``training.adain``; ``mlx-style train --method adain``) turns the result back into a
picture. The style strength α interpolates in feature space, ``t = α·AdaIN(f_c, f_s) + (1 − α)·f_c``; several
styles interpolate by a weighted mean of their target statistics (μ, σ). For one content, AdaIN is affine in
(μ, σ), so that equals Huang's weighted mean of the AdaIN outputs exactly; and because σ(x)·(x − μ(x))/σ(x) + μ(x)
is x itself, α-interpolation also equals AdaIN with the statistics α·(μ_s, σ_s) + (1 − α)·(μ_c, σ_c) (how
``AdaINStyle.vector_for`` states it). A style is therefore one vector ``[μ; σ]`` (``2·512`` numbers), mixed with
``nn.arbitrary.mix_vectors`` like the Magenta network's style vectors.

The decoder mirrors the encoder (Huang's layout, here scaled to the encoder's architecture: for VGG16 up to
relu4_1 it is conv 512→256, ×2, conv 256→256 ×2, conv 256→128, ×2, conv 128→128, conv 128→64, ×2, conv 64→64,
conv 64→3): reflect padding, 3×3 convolutions with bias and ReLU (none after the last), nearest ×2 upsampling
before the first convolution of each block. It outputs what the encoder takes in (the VGG's own preprocessed
space, as Huang's decoder outputs the 0–1 image his VGG takes), mapped back to RGB 0–255 by the inverse of the
VGG file's preprocessing; pixels are RGB 0–255 in and out, as everywhere in the package.

Shape:
    - ``AdaINNet``: ``(B, H, W, 3)`` and a style vector ``(2C,)`` or ``(B, 2C)`` → ``(B, H, W, 3)``; any H and W
      (padded to a multiple of 8, at least 16, inside and cropped back)
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_style.pixels import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    PREPROCESSING,
    resize_max_side,
    resize_shorter,
)
from mlx_style.nn.ops import relu
from mlx_style.nn.config import check_choice, check_int, check_ints, check_number, from_json, to_json
from mlx_style.nn.style import FrameFunction
from mlx_style.nn.transformer import ConvLayer, TransformerConfig, UpsampleConvLayer
from mlx_style.nn.vgg import ARCHS, BLOCK_CHANNELS, VGG
from mlx_style.errors import UsageError

ENCODER_LAYER = "relu4_1"  # where AdaIN works (Huang's choice)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # Huang's style loss layers
MAX_STYLE_SIZE = 1024  # a larger style picture needs gigabytes in the encoder for no better statistics
STYLE_IMAGE_SIZE = 512  # shorter side of a style picture before its statistics are taken (Huang's test size)
# The decoder's convolutions: reflect padding, biases, nearest ×2 upsampling (``nn.transformer``'s layers).
LAYERS = TransformerConfig(padding="reflect", upsample="nearest", conv_bias=True)


@dataclass(frozen=True)
class AdaINConfig:
    """Everything that defines an AdaIN network; stored in its weight file's metadata."""

    arch: str = "vgg16"  # the encoder: the project's VGG loss network (Huang used VGG19; VGG16 has relu4_1 too)
    preprocess: str = "caffe"  # what the encoder's weights expect (the VGG file's ``preprocess``)
    decoder_widths: tuple[int, ...] = (256, 128, 64)  # decoder channels of blocks 3, 2, 1: the encoder's own
    eps: float = 1e-5  # added to the variance (Huang's calc_mean_std)
    style_size: int = STYLE_IMAGE_SIZE  # shorter side of a style picture at inference (Huang tests at 512)

    def __post_init__(self):
        owner = "AdaINConfig"
        check_choice(owner, "arch", self.arch, sorted(ARCHS))
        check_choice(owner, "preprocess", self.preprocess, PREPROCESSING)
        check_ints(owner, "decoder_widths", self.decoder_widths, 3, 1, 4096)
        check_number(owner, "eps", self.eps, 0, 1)
        check_int(owner, "style_size", self.style_size, 16, MAX_STYLE_SIZE)

    @property
    def channels(self) -> int:
        """Channels at relu4_1: the length of μ (and of σ) in a style vector."""
        return BLOCK_CHANNELS[3]

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "AdaINConfig":
        return from_json(cls, text)


def wide(x: mx.array) -> mx.array:
    """``x`` in float32, or float64 when it is (the gradient check runs the network in float64): statistics of
    0–255-scale features overflow float16."""
    return x if x.dtype in (mx.float32, mx.float64) else x.astype(mx.float32)


def channel_stats(x: mx.array, eps: float = 1e-5) -> tuple[mx.array, mx.array]:
    """Per image and channel: the mean and ``sqrt(biased variance + eps)`` over H and W, in float32 (or float64).

    Shape: ``(B, H, W, C)`` → two ``(B, C)``.
    """
    x = wide(x)
    mean = mx.mean(x, axis=(1, 2))
    centred = x - mean[:, None, None, :]
    return mean, mx.sqrt(mx.mean(centred * centred, axis=(1, 2)) + eps)


def adain_from_stats(content_feat: mx.array, mean: mx.array, std: mx.array, eps: float = 1e-5) -> mx.array:
    """``content_feat`` ``(B, H, W, C)`` normalised per channel, then scaled by ``std`` and shifted by ``mean``
    (``(C,)``, ``(1, C)`` or ``(B, C)``)."""
    c_mean, c_std = channel_stats(content_feat, eps)
    B, C = content_feat.shape[0], content_feat.shape[-1]
    mean = mx.broadcast_to(wide(mean).reshape(-1, C), (B, C))[:, None, None, :]
    std = mx.broadcast_to(wide(std).reshape(-1, C), (B, C))[:, None, None, :]
    normalised = (wide(content_feat) - c_mean[:, None, None, :]) / c_std[:, None, None, :]
    return normalised * std + mean


def adain(content_feat: mx.array, style_feat: mx.array, eps: float = 1e-5) -> mx.array:
    """Huang & Belongie's AdaIN: the content features take the style features' per-channel mean and std.

    Shape: ``content_feat`` ``(B, H, W, C)``; ``style_feat`` ``(B or 1, H', W', C)`` → ``(B, H, W, C)`` float32.
    """
    if content_feat.shape[-1] != style_feat.shape[-1]:
        raise UsageError(f"[adain] content has {content_feat.shape[-1]} channels, style {style_feat.shape[-1]}")
    return adain_from_stats(content_feat, *channel_stats(style_feat, eps), eps)


def stats_vector(mean: mx.array, std: mx.array) -> mx.array:
    """``[μ; σ]``: one style as one vector ``(..., 2C)`` (what ``nn.arbitrary.mix_vectors`` averages)."""
    return mx.concatenate([mean, std], axis=-1)


def split_vector(vector: mx.array, channels: int) -> tuple[mx.array, mx.array]:
    """``(μ, σ)`` of a style vector ``(2C,)`` or ``(B, 2C)``."""
    if vector.shape[-1] != 2 * channels:
        raise UsageError(
            f"[AdaIN] a style vector holds {2 * channels} numbers (μ and σ of {channels} channels), "
            f"got shape {vector.shape}"
        )
    return vector[..., :channels], vector[..., channels:]


def interpolate(content_feat: mx.array, target: mx.array, alpha: float) -> mx.array:
    """``α·target + (1 − α)·content_feat`` (the style strength, in feature space)."""
    if alpha == 1.0:
        return target
    return alpha * target + (1.0 - alpha) * wide(content_feat)


def decoder_layout(arch: str, widths: tuple[int, int, int]) -> list[tuple[int, int, bool]]:
    """``(in, out, upsample first?)`` per decoder convolution: the encoder up to relu4_1, mirrored.

    Block 4 contributes its first convolution (512 → block 3's width); blocks 3, 2, 1 each have as many
    convolutions as the encoder's: all keep the width but the last, which narrows to the next block's (3 RGB
    channels at the end). Each block starts with the ×2 upsampling that undoes the encoder's pool.
    """
    w3, w2, w1 = widths
    n1, n2, n3 = ARCHS[arch][:3]
    layout = [(BLOCK_CHANNELS[3], w3, False)]
    for n, width, following in ((n3, w3, w2), (n2, w2, w1), (n1, w1, 3)):
        for i in range(n):
            layout.append((width, following if i == n - 1 else width, i == 0))
    return layout


class Decoder(nn.Module):
    """relu4_1 features → the encoder's input space (``AdaINNet`` maps it to pixels)."""

    def __init__(self, config: AdaINConfig):
        super().__init__()
        self.layout = decoder_layout(config.arch, config.decoder_widths)
        self.layers = [
            UpsampleConvLayer(cin, cout, LAYERS) if up else ConvLayer(cin, cout, 3, 1, LAYERS)
            for cin, cout, up in self.layout
        ]

    def __call__(self, features: mx.array) -> mx.array:
        y = features
        for i, layer in enumerate(self.layers):
            y = layer(y)
            y = relu(y) if i < len(self.layers) - 1 else y
        return y


def encoder_depth(arch: str) -> int:
    """How many ``features`` entries the encoder keeps: up to and including relu4_1."""
    from mlx_style.nn.vgg import layer_names

    return layer_names(arch).index(ENCODER_LAYER) + 1


def truncate_to_encoder(vgg: VGG) -> VGG:
    """The VGG cut after relu4_1 (in place; returns it). Raises ``ValueError`` when it stops before."""
    depth = encoder_depth(vgg.arch)
    if len(vgg.features) < depth:
        raise UsageError(f"[AdaIN] the VGG stops at {vgg.names[-1]}; the encoder needs it up to {ENCODER_LAYER}")
    vgg.features, vgg.names = vgg.features[:depth], vgg.names[:depth]
    vgg.freeze()
    return vgg


def to_pixels(y: mx.array, preprocess: str) -> mx.array:
    """The inverse of ``io.image.vgg_preprocess``: the encoder's input space → RGB 0–255."""
    if preprocess == "caffe":
        return (y + mx.array(CAFFE_MEAN_BGR, dtype=y.dtype))[..., ::-1]
    if preprocess == "torchvision":
        std, mean = mx.array(IMAGENET_STD_RGB, dtype=y.dtype), mx.array(IMAGENET_MEAN_RGB, dtype=y.dtype)
        return (y * std + mean) * 255.0
    raise UsageError(f"[to_pixels] preprocess must be one of {PREPROCESSING}, got {preprocess!r}")


def padded_size(size: int) -> int:
    """The size the network runs at: a multiple of 8 (three pools), at least 16 (reflect pads at relu4_1)."""
    return max(16, -(-size // 8) * 8)


class AdaINNet(nn.Module):
    """The frozen encoder and the trained decoder: ``style_vector(painting)``, then ``net(photo, vector, α)``."""

    def __init__(self, config: AdaINConfig | None = None, encoder: VGG | None = None):
        super().__init__()
        self.config = config = config or AdaINConfig()
        if encoder is None:
            encoder = VGG(config.arch, config.preprocess)
        if (encoder.arch, encoder.preprocess) != (config.arch, config.preprocess):
            raise UsageError(
                f"[AdaINNet] the encoder is {encoder.arch}/{encoder.preprocess}, the config says "
                f"{config.arch}/{config.preprocess}"
            )
        self.encoder = truncate_to_encoder(encoder)
        self.decoder = Decoder(config)

    def encode(self, images: mx.array, layers: tuple[str, ...] = (ENCODER_LAYER,)) -> dict[str, mx.array]:
        """VGG features of 0–255 RGB ``images`` at ``layers`` (all at or above relu4_1)."""
        return self.encoder(images, layers)

    def decode(self, features: mx.array) -> mx.array:
        """relu4_1-shaped features → RGB 0–255 (float32, not clipped)."""
        y = self.decoder(features.astype(self.decoder.layers[0].conv2d.weight.dtype))
        return to_pixels(wide(y), self.config.preprocess)

    def style_features(self, images: mx.array) -> tuple[mx.array, mx.array]:
        """``(μ, σ)`` ``(B, C)`` of 0–255 RGB ``images`` ``(B, H, W, 3)`` at relu4_1: a style's statistics."""
        return channel_stats(self.encode(images)[ENCODER_LAYER], self.config.eps)

    def style_vector(self, image: np.ndarray, size: int | None = None) -> mx.array:
        """The style vector ``[μ; σ]`` ``(2C,)`` of one uint8 RGB picture ``(H, W, 3)``, its shorter side resized
        to ``size`` first (None: the config's ``style_size``; 0 keeps it as it is)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise UsageError(f"[AdaINNet] expected a uint8 (H, W, 3) style image, got {image.dtype} {image.shape}")
        size = self.config.style_size if size is None else size
        if size:
            image = resize_shorter(image, size)
            if max(image.shape[:2]) > 2 * size:  # a panorama: its longer side bounded too, so memory is
                image = resize_max_side(image, 2 * size)
        if min(image.shape[:2]) < 16:
            raise UsageError(
                f"[AdaINNet] a style image needs at least 16×16 pixels, got {image.shape[1]}×{image.shape[0]}"
            )
        return stats_vector(*self.style_features(mx.array(image.astype(np.float32))[None]))[0]

    def __call__(self, content: mx.array, style_stats, alpha: float = 1.0) -> mx.array:
        """Stylise 0–255 RGB ``content`` with ``style_stats``: a vector ``[μ; σ]`` (``(2C,)`` or ``(B, 2C)``) or
        a ``(μ, σ)`` pair; ``alpha`` the style strength (1: the style's statistics, 0: the photo rebuilt)."""
        B, H, W, C = content.shape
        if C != 3:
            raise UsageError(f"[AdaINNet] expected NHWC RGB input with 3 channels, got shape {content.shape}")
        if not 0.0 <= alpha <= 1.0:
            raise UsageError(f"--style-strength must be between 0 and 1, got {alpha}")
        mean, std = (
            style_stats if isinstance(style_stats, (tuple, list)) else split_vector(style_stats, self.config.channels)
        )
        Hp, Wp = padded_size(H), padded_size(W)
        x = content if (Hp, Wp) == (H, W) else mx.pad(content, ((0, 0), (0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
        features = self.encode(x)[ENCODER_LAYER]
        t = interpolate(features, adain_from_stats(features, mean, std, self.config.eps), alpha)
        return self.decode(t)[:, :H, :W, :]


class AdaINStyle(FrameFunction):
    """An AdaIN network bound to one style vector and a style strength: an image in, the stylised image out, as a
    single-style network is called (``stylize_array``, ``bench``, the cam) — ``nn.arbitrary.VectorStyle``'s
    pattern. The strength costs nothing extra: it interpolates the features inside the one encoder pass."""

    def __init__(self, net: AdaINNet, vector: mx.array, style_strength: float = 1.0):
        super().__init__()
        if not 0.0 <= style_strength <= 1.0:
            raise UsageError(f"--style-strength must be between 0 and 1, got {style_strength}")
        split_vector(vector, net.config.channels)  # the right length, or a clear error now
        self.net = net
        self.vector = vector.astype(mx.float32)
        self.style_strength = float(style_strength)
        self.freeze(keys=["vector"], strict=False)

    @property
    def config(self):
        return self.net.config

    def vector_for(self, x: mx.array) -> mx.array:
        """The style vector that stylises ``x`` at strength 1 as this does at its strength: the bound one mixed
        with each image's own statistics (the same result as α-interpolation; one more encoder pass)."""
        if self.style_strength == 1.0:
            return self.vector
        own = stats_vector(*self.net.style_features(x))
        return self.style_strength * self.vector + (1.0 - self.style_strength) * own

    def __call__(self, x: mx.array) -> mx.array:
        return self.net(x, self.vector, self.style_strength)

    def style_inputs(self, x: mx.array) -> tuple[mx.array, ...]:
        return (self.vector,)

    def apply_style(self, x: mx.array, vector: mx.array) -> mx.array:
        return self.net(x, vector, self.style_strength)

    @property
    def compute_dtype(self) -> mx.Dtype:
        return mx.float32  # the encoder stays float32; the decoder casts for itself


# ---------------------------------------------------------------------------------------------------------------
# The training loss (Huang & Belongie §4.2)


@dataclass(frozen=True)
class AdaINLossConfig:
    """What the decoder is trained on: ``content_weight·ℓ_c + style_weight·ℓ_s``."""

    content_weight: float = 1.0  # Huang's (the style weight is the one to tune)
    style_weight: float = 10.0  # Huang's λ; both terms are MSEs of the same VGG's features, so the ratio holds
    style_layers: tuple[str, ...] = STYLE_LAYERS  # Huang's relu1_1 … relu4_1
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # equal, as Huang

    def __post_init__(self):
        if len(self.style_layers) != len(self.style_layer_weights) or not self.style_layers:
            raise UsageError(
                f"[AdaINLossConfig] {len(self.style_layers)} style layers but "
                f"{len(self.style_layer_weights)} style layer weights"
            )
        if min(self.content_weight, self.style_weight, *self.style_layer_weights) < 0:
            raise UsageError("[AdaINLossConfig] loss weights must be ≥ 0")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, ENCODER_LAYER)))


def mse(a: mx.array, b: mx.array) -> mx.array:
    """Mean of the squared differences over every element (torch's ``MSELoss``), in float32 (or float64).

    One axis at a time: MLX's CPU full reduction loses precision over 1e5+ terms (see ``losses._sum_all``).
    """
    diff = wide(a) - wide(b)
    x = diff * diff
    while x.ndim:
        x = mx.mean(x, axis=-1)
    return x


def mean_std_loss(output_feat: mx.array, target_mean: mx.array, target_std: mx.array, eps: float) -> mx.array:
    """``MSE(μ(out), μ_s) + MSE(σ(out), σ_s)`` over images and channels (Huang's style term at one layer)."""
    mean, std = channel_stats(output_feat, eps)
    return mse(mean, target_mean) + mse(std, target_std)


def adain_loss(net: AdaINNet, content: mx.array, style: mx.array, config: AdaINLossConfig):
    """Decode the AdaIN target of a batch of content and style crops and score it; ``(total, terms)``.

    ``content`` and ``style`` are ``(B, H, W, 3)`` 0–255, paired image by image. The target
    ``t = AdaIN(f(content), f(style))`` (no gradient), the output ``g(t)``; ``terms["content"] = MSE(f(g(t)), t)``
    at relu4_1 and ``terms["style"] = Σ_l w_l·mean_std_loss`` at the style layers against the style crops. Returns
    the weighted total and the unweighted terms; the gradient reaches the decoder through the frozen encoder.
    """
    eps = net.config.eps
    B = content.shape[0]
    both = {k: mx.stop_gradient(v) for k, v in net.encode(mx.concatenate([content, style]), config.layers).items()}
    t = adain(both[ENCODER_LAYER][:B], both[ENCODER_LAYER][B:], eps)
    output = net.decode(t)
    features = net.encode(output, config.layers)
    terms = {"content": mse(features[ENCODER_LAYER], t)}
    style_term = mx.array(0.0)
    for name, w in zip(config.style_layers, config.style_layer_weights):
        target_mean, target_std = channel_stats(both[name][B:], eps)
        style_term = style_term + w * mean_std_loss(features[name], target_mean, target_std, eps)
    terms["style"] = style_term
    return config.content_weight * terms["content"] + config.style_weight * terms["style"], terms
