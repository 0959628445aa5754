"""The feed-forward transformer network of Johnson et al. 2016, as in the report's Table 1.

Layers (channels for the default width 32): 9×9 conv 3→32; 3×3 stride-2 conv 32→64; 3×3 stride-2 conv 64→128;
five residual blocks (conv–norm–ReLU–conv–norm, plus the identity); ×2 upsample + 3×3 conv 128→64; the same
64→32; 9×9 conv 32→3. Every conv but the last is followed by normalisation and ReLU. Parameter names follow
pytorch/examples' ``TransformerNet`` (``conv1.conv2d.weight``, ``in1.weight``, ``res1.conv1.conv2d.weight``, …),
so converting its checkpoints is a layout change only.

With ``styles`` above 1 it is Dumoulin et al.'s multi-style network in Table 1's layout: every instance norm holds
one scale and shift per style (``(styles, C)``; the convolutions are shared), and the network takes a style blend
(``(styles,)`` weights: a one-hot picks a style) beside the image.

``TransformerConfig.fst()`` describes Engstrom's fast-style-transfer network (TF): zero 'SAME' padding, no conv
bias, transposed convs with TF's alignment, instance-norm eps 1e-3, an instance norm after the output conv too
(``in6``) and output ``tanh(x)·150 + 127.5``.

Pixels are RGB in 0–255, in and out (see ``mlx_style.pixels``). Any height and width work: the input is padded to
a multiple of 4 (and at least 8) inside and the output cropped back.

Shape:
    - Input: ``(B, H, W, 3)``, float, 0–255
    - Output: ``(B, H, W, 3)``, float, about 0–255 (clip when saving)
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.nn.ops import (
    Conv2d,
    ConvTranspose2d,
    instance_norm,
    pad_spatial,
    reflect_pad,
    relu,
    same_pad,
    subpixel_conv,
)
from mlx_style.nn.config import check_choice, check_flag, check_int, check_number, from_json, to_json
from mlx_style.nn.style import FrameFunction
from mlx_style.errors import UsageError

NORMS = ("instance", "batch")
UPSAMPLES = ("nearest", "deconv")
PADDINGS = ("reflect", "same")
OUTPUTS = ("linear", "tanh")


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that defines a transformer network; stored in each weight file's metadata."""

    norm: str = "instance"  # "instance" (Ulyanov et al., the report's choice) or "batch" (Johnson's original)
    upsample: str = "nearest"  # "nearest" + conv avoids the checkerboard artefacts of "deconv" (Odena et al.)
    padding: str = "reflect"  # "reflect" avoids dark borders; "same" is TF zero padding (Engstrom's nets)
    conv_bias: bool = True  # pytorch/examples keeps biases; Engstrom's convs have none (IN removes them anyway)
    norm_eps: float = 1e-5  # torch's InstanceNorm2d default; TF models used 1e-3
    output: str = "linear"  # "linear" as pytorch/examples; "tanh" maps to tanh(x)·150 + 127.5 (Johnson, Engstrom)
    width: int = 32  # channels after the first conv; 64 and 128 follow. 16 gives the light network
    num_residual: int = 5  # residual blocks at 1/4 resolution
    final_norm: bool = False  # Engstrom's nets also instance-normalise the output conv ("in6") before the tanh
    styles: int = 1  # scale-and-shift pairs per instance norm: > 1 is a multi-style network (Dumoulin et al.)

    def __post_init__(self):  # a weight file's config is untrusted input: types and ranges before anything else
        owner = "TransformerConfig"
        for name, allowed in (("norm", NORMS), ("upsample", UPSAMPLES), ("padding", PADDINGS), ("output", OUTPUTS)):
            check_choice(owner, name, getattr(self, name), allowed)
        check_flag(owner, "conv_bias", self.conv_bias)
        check_flag(owner, "final_norm", self.final_norm)
        check_int(owner, "width", self.width, 1, 4096)
        check_int(owner, "num_residual", self.num_residual, 0, 256)
        check_int(owner, "styles", self.styles, 1, 4096)
        check_number(owner, "norm_eps", self.norm_eps, 0, 1)
        if self.styles > 1 and self.norm != "instance":
            raise UsageError(f"[{owner}] more than one style needs norm 'instance'")

    @classmethod
    def fst(cls) -> "TransformerConfig":
        """Engstrom's lengstrom/fast-style-transfer network (the published pretrained styles)."""
        return cls(
            norm="instance",
            upsample="deconv",
            padding="same",
            conv_bias=False,
            norm_eps=1e-3,
            output="tanh",
            final_norm=True,
        )

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "TransformerConfig":
        return from_json(cls, text)


class InstanceNorm(nn.Module):
    """Affine instance normalisation over H and W (torch's ``InstanceNorm2d(affine=True)`` names).

    With ``styles`` above 1, conditional (Dumoulin et al.): ``weight`` and ``bias`` are ``(styles, C)`` and a
    call takes the style blend, applied as ``style @ weight`` and ``style @ bias``.
    """

    def __init__(self, channels: int, eps: float, styles: int = 1, conditional: bool | None = None):
        """``conditional`` (default: ``styles > 1``) keeps ``(styles, C)`` rows even for one style, as Magenta's
        26-style network (``nn.multistyle``) stores them."""
        super().__init__()
        conditional = styles > 1 if conditional is None else conditional
        shape = (styles, channels) if conditional else (channels,)
        self.weight = mx.ones(shape)
        self.bias = mx.zeros(shape)
        self.eps = eps

    @property
    def styles(self) -> int:
        return 1 if self.weight.ndim == 1 else self.weight.shape[0]

    def __call__(self, x: mx.array, style: mx.array | None = None) -> mx.array:
        if self.weight.ndim == 1:
            return instance_norm(x, self.weight, self.bias, self.eps)
        if style is None:
            raise UsageError(f"[InstanceNorm] a {self.styles}-style norm needs the style blend")
        style = style.astype(mx.float32)
        return instance_norm(x, style @ self.weight.astype(mx.float32), style @ self.bias.astype(mx.float32), self.eps)

    def bind(self, style: mx.array | None) -> "InstanceNorm":
        """The single-style norm this one is for ``style`` (itself when it holds one style; ``nn.tiled``)."""
        if self.weight.ndim == 1:
            return self
        norm = InstanceNorm(self.weight.shape[1], self.eps)
        norm.weight = style.astype(mx.float32) @ self.weight.astype(mx.float32)
        norm.bias = style.astype(mx.float32) @ self.bias.astype(mx.float32)
        return norm


def _norm(channels: int, config: TransformerConfig) -> nn.Module:
    if config.norm == "instance":
        return InstanceNorm(channels, config.norm_eps, config.styles)
    return nn.BatchNorm(channels, eps=config.norm_eps)


def apply_norm(norm: nn.Module, y: mx.array, style: mx.array | None) -> mx.array:
    """``norm(y)``, with the style blend for a multi-style instance norm."""
    return norm(y, style) if isinstance(norm, InstanceNorm) else norm(y)


class ConvLayer(nn.Module):
    """Padding (reflect or TF 'SAME') followed by a valid convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, config: TransformerConfig):
        super().__init__()
        self.conv2d = Conv2d(cin, cout, kernel, stride, bias=config.conv_bias)
        self.kernel, self.stride, self.padding = kernel, stride, config.padding

    def __call__(self, x: mx.array) -> mx.array:
        if self.padding == "reflect":
            x = reflect_pad(x, self.kernel // 2)
        else:
            x = same_pad(x, self.kernel, self.stride)
        return self.conv2d(x)


class UpsampleConvLayer(nn.Module):
    """×2 upsampling: nearest neighbour then a padded 3×3 conv, or a stride-2 transposed conv ("deconv")."""

    def __init__(self, cin: int, cout: int, config: TransformerConfig):
        super().__init__()
        self.mode, self.padding = config.upsample, config.padding
        if self.mode == "nearest":
            self.conv2d = Conv2d(cin, cout, 3, 1, bias=config.conv_bias)
        else:
            align = "tf_same" if config.padding == "same" else "torch"
            self.conv2d = ConvTranspose2d(cin, cout, 3, 2, bias=config.conv_bias, align=align)

    @property
    def input_padding(self) -> str:
        """How ``from_padded`` expects the input padded by 1: reflection by 1 of the upsampled map equals edge
        padding of the input; TF 'SAME' pads zeros."""
        return "edge" if self.padding == "reflect" else "constant"

    def from_padded(self, z: mx.array) -> mx.array:
        """The nearest layer on its input padded by 1 (``input_padding``); ``subpixel_conv`` never builds the
        upsampled map (16 instead of 36 multiplies per input pixel)."""
        conv = self.conv2d
        y = subpixel_conv(z, conv.weight, "nearest", training=conv.grad_mode())
        return y + conv.bias if "bias" in conv else y

    def __call__(self, x: mx.array) -> mx.array:
        if self.mode == "deconv":
            return self.conv2d(x)
        if self.input_padding == "edge":
            return self.from_padded(pad_spatial(x, 1, "edge"))
        return self.from_padded(mx.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))


class ResidualBlock(nn.Module):
    """conv–norm–ReLU–conv–norm plus the identity (Gross & Wilber's block, as Johnson uses)."""

    def __init__(self, channels: int, config: TransformerConfig):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1, config)
        self.in1 = _norm(channels, config)
        self.conv2 = ConvLayer(channels, channels, 3, 1, config)
        self.in2 = _norm(channels, config)

    def stages(self) -> list[tuple[nn.Module, nn.Module, bool]]:
        """``(conv, norm, relu?)`` in order; the identity is added to the last one's output."""
        return [(self.conv1, self.in1, True), (self.conv2, self.in2, False)]

    def __call__(self, x: mx.array, style: mx.array | None = None) -> mx.array:
        y = x
        for conv, norm, act in self.stages():
            y = apply_norm(norm, conv(y), style)
            y = relu(y) if act else y
        return x + y


def padded_size(size: int) -> int:
    """The size the network runs at: a multiple of 4 (two stride-2 stages), at least 8 (reflect pads)."""
    return max(8, -(-size // 4) * 4)


class TransformerNet(FrameFunction):
    """The image transformation network f_W: an image in, the stylised image of the same size out. A single-style
    one is its own frame function (``nn.style``); a multi-style one is bound to a blend (``nn.multistyle``)."""

    def tiled_stages(self):
        return self

    def __init__(self, config: TransformerConfig | None = None):
        super().__init__()
        self.config = config = config or TransformerConfig()
        c1, c2, c3 = config.width, 2 * config.width, 4 * config.width
        self.conv1 = ConvLayer(3, c1, 9, 1, config)
        self.in1 = _norm(c1, config)
        self.conv2 = ConvLayer(c1, c2, 3, 2, config)
        self.in2 = _norm(c2, config)
        self.conv3 = ConvLayer(c2, c3, 3, 2, config)
        self.in3 = _norm(c3, config)
        self.res = [ResidualBlock(c3, config) for _ in range(config.num_residual)]
        self.deconv1 = UpsampleConvLayer(c3, c2, config)
        self.in4 = _norm(c2, config)
        self.deconv2 = UpsampleConvLayer(c2, c1, config)
        self.in5 = _norm(c1, config)
        self.deconv3 = ConvLayer(c1, 3, 9, 1, config)
        if config.final_norm:
            self.in6 = _norm(3, config)
        # Training only: recompute each residual block in the backward pass instead of keeping its activations
        # (gradient checkpointing; ``train_step.make_loss_fn(recompute=True)`` sets it). Same outputs.
        self.recompute_residual = False

    def __call__(self, x: mx.array, style: mx.array | None = None) -> mx.array:
        """``x`` ``(B, H, W, 3)`` 0–255; ``style``: the ``(styles,)`` blend of a multi-style network."""
        B, H, W, C = x.shape
        if C != 3:
            raise UsageError(f"[TransformerNet] expected NHWC RGB input with 3 channels, got shape {x.shape}")
        if self.config.styles > 1 and (style is None or style.shape != (self.config.styles,)):
            raise UsageError(
                f"[TransformerNet] this network holds {self.config.styles} styles: give a "
                f"({self.config.styles},) style blend, got {None if style is None else style.shape}"
            )
        Hp, Wp = padded_size(H), padded_size(W)
        if (Hp, Wp) != (H, W):
            x = mx.pad(x, ((0, 0), (0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
        y = x
        for stage in self.stages():
            if isinstance(stage, ResidualBlock):
                extra = () if style is None else (style,)
                y = nn.utils.checkpoint(stage)(y, *extra) if self.recompute_residual else stage(y, *extra)
                continue
            conv, norm, act = stage
            y = conv(y)
            y = apply_norm(norm, y, style) if norm is not None else y
            y = relu(y) if act else y
        return self.output_transform(y)[:, :H, :W, :]

    def stages(self) -> list:
        """The network in order: ``(conv, norm or None, relu?)`` tuples and ``ResidualBlock``s.

        The one statement of the topology: ``__call__`` and the tiled forward (``nn.tiled``) both walk it.
        """
        final_norm = self.in6 if self.config.final_norm else None
        return [
            (self.conv1, self.in1, True),
            (self.conv2, self.in2, True),
            (self.conv3, self.in3, True),
            *self.res,
            (self.deconv1, self.in4, True),
            (self.deconv2, self.in5, True),
            (self.deconv3, final_norm, False),
        ]

    def with_style(self, style: mx.array) -> "TransformerNet":
        """A single-style copy of a multi-style network for the blend ``style`` (every norm's rows mixed): what
        export writes, so an exported file needs no blend input."""
        from dataclasses import replace

        single = TransformerNet(replace(self.config, styles=1))
        weights = style.astype(mx.float32)
        params = [(k, weights @ v.astype(mx.float32) if v.ndim == 2 else v) for k, v in tree_flatten(self.parameters())]
        single.load_weights(params, strict=True)
        single.eval()
        return single

    def output_transform(self, y):
        """The last step, on MLX or numpy arrays: identity, or ``tanh(y)·150 + 127.5`` for ``output="tanh"``."""
        if self.config.output != "tanh":
            return y
        if isinstance(y, mx.array):
            return mx.tanh(y) * 150.0 + 127.5
        return np.tanh(y) * np.float32(150.0) + np.float32(127.5)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (batch-norm running statistics excluded)."""

    return sum(v.size for _, v in tree_flatten(module.trainable_parameters()))
