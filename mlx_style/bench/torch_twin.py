"""PyTorch twins of mlx_style's loss network, losses and training step, for side-by-side dev checks only.

The one PyTorch twin of each network: the golden fixtures (``make_golden``), ``mlx-style bench --torch``,
``bench_train`` (the same step timed in both frameworks) and ``train_torch_reference`` (the same recipe trained in
both) all use it. It never imports torch itself (callers pass the module in): ``pip install -e ".[bench]"``.

Everything follows ``mlx_style.nn.losses`` term for term: content ``‖φ−φ̂‖²/(2·B·C·H·W)``, Gram ``φᵀφ/(C·H·W)``,
style ``Σ_j w_j·mean((G−Ĝ)²)``, isotropic TV averaged over the batch; VGG reads RGB 0–255 NCHW and applies
the preprocessing named in its weight file. The style network is ``build_transformer``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_torch_vgg(torch, path: str | Path, device: str = "cpu"):
    """``(vgg, metadata)``: ``vgg(x, layers) -> {relu name: NCHW activations}`` from a converted weight file,
    its layers on ``device``."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    arch = json.loads(meta.get("config", "{}")).get("arch", "vgg16")
    blocks = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}[arch]
    channels = (64, 128, 256, 512, 512)
    layers, names, index, cin = [], [], 0, 3
    for block, (count, cout) in enumerate(zip(blocks, channels), start=1):
        for i in range(1, count + 1):
            key = f"features.{index}.weight"
            if key not in arrays:
                break
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data = torch.from_numpy(arrays[key].transpose(0, 3, 1, 2).copy())
            conv.bias.data = torch.from_numpy(arrays[f"features.{index}.bias"].copy())
            conv.requires_grad_(False)
            conv.to(device)
            layers += [conv, torch.nn.ReLU()]
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            index, cin = index + 2, cout
        layers.append(torch.nn.MaxPool2d(2))
        names.append(f"pool{block}")
        index += 1
    preprocess = meta.get("preprocess", "torchvision")

    def vgg(x, wanted):
        if preprocess == "caffe":
            y = x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        else:
            mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            y = (x / 255.0 - mean) / std
        out, last = {}, max(names.index(n) for n in wanted)
        for name, layer in zip(names[: last + 1], layers[: last + 1]):
            y = layer(y)
            if name in wanted:
                out[name] = y
        return out

    return vgg, meta


def gram(f):
    B, C, H, W = f.shape
    f = f.reshape(B, C, H * W)
    return f @ f.transpose(1, 2) / (C * H * W)


def total_variation(torch, x):
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    sq = dx * dx + dy * dy
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), 0.0).sum() / x.shape[0]


def make_loss(torch, vgg, target_grams: dict, loss_config):
    """``loss(output, content) -> (total, {"content", "style", "tv"})`` exactly as ``perceptual_loss``."""
    c = loss_config
    layers = tuple(dict.fromkeys((c.content_layer, *c.style_layers)))

    def loss(output, content):
        with torch.no_grad():
            content_features = vgg(content, (c.content_layer,))[c.content_layer]
        feats = vgg(output, layers)
        B, C, H, W = content_features.shape
        l_content = ((feats[c.content_layer] - content_features) ** 2).sum() / (2.0 * B * C * H * W)
        l_style = sum(
            w * ((gram(feats[k]) - target_grams[k]) ** 2).mean() for k, w in zip(c.style_layers, c.style_layer_weights)
        )
        l_tv = total_variation(torch, output)
        total = c.content_weight * l_content + c.style_weight * l_style + c.tv_weight * l_tv
        return total, {"content": l_content, "style": l_style, "tv": l_tv}

    return loss


def style_grams(torch, vgg, style_nhwc: np.ndarray, layers, device: str = "cpu") -> dict:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(style_nhwc, np.float32)).permute(0, 3, 1, 2).to(device)
        feats = vgg(x, layers)
    return {k: gram(v) for k, v in feats.items()}


def build_transformer(torch, cfg: dict):
    """pytorch/examples fast_neural_style's ``TransformerNet`` with this project's variants: the PyTorch twin of
    ``mlx_style.nn.transformer.TransformerNet(TransformerConfig(**cfg))``, NCHW, pytorch/examples' parameter
    names (``res1`` … where MLX has ``res.0`` …; ``mlx_name`` maps them). The one twin of the style network:
    the golden fixtures, ``mlx-style bench --torch`` and the PyTorch training reference all build it here."""
    nn, F = torch.nn, torch.nn.functional

    def tf_same_amounts(size, kernel, stride):
        # TF's 'SAME': output ceil(size/stride); any odd total padding puts the extra pixel after.
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def pad(x, k, stride, padding):
        if padding == "reflect":
            return F.pad(x, (k // 2,) * 4, mode="reflect")  # ReflectionPad2d(k // 2)
        top, bottom = tf_same_amounts(x.shape[2], k, stride)
        left, right = tf_same_amounts(x.shape[3], k, stride)
        return F.pad(x, (left, right, top, bottom))

    class ConvLayer(nn.Module):
        def __init__(self, cin, cout, k, stride, cfg):
            super().__init__()
            self.k, self.stride, self.padding = k, stride, cfg["padding"]
            self.conv2d = nn.Conv2d(cin, cout, k, stride, bias=cfg["conv_bias"])

        def forward(self, x):
            return self.conv2d(pad(x, self.k, self.stride, self.padding))

    class UpsampleConvLayer(nn.Module):
        def __init__(self, cin, cout, cfg):
            super().__init__()
            self.mode, self.padding = cfg["upsample"], cfg["padding"]
            if self.mode == "nearest":
                self.conv2d = nn.Conv2d(cin, cout, 3, 1, bias=cfg["conv_bias"])
            elif self.padding == "reflect":
                self.conv2d = nn.ConvTranspose2d(
                    cin, cout, 3, stride=2, padding=1, output_padding=1, bias=cfg["conv_bias"]
                )
            else:
                self.conv2d = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=0, bias=cfg["conv_bias"])

        def forward(self, x):
            if self.mode == "nearest":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                return self.conv2d(pad(x, 3, 1, self.padding))
            y = self.conv2d(x)
            if self.padding == "same":
                # TF conv2d_transpose(padding='SAME'): the first 2H rows/cols of the full (H-1)·2+3 output
                # (checked against TF's definition, the gradient of a SAME conv, in tf_same_deconv_check).
                y = y[:, :, : 2 * x.shape[2], : 2 * x.shape[3]]
            return y

    def make_norm(c, cfg):
        if cfg["norm"] == "instance":
            return nn.InstanceNorm2d(c, eps=cfg["norm_eps"], affine=True)
        return nn.BatchNorm2d(c, eps=cfg["norm_eps"])

    class ResidualBlock(nn.Module):
        def __init__(self, c, cfg):
            super().__init__()
            self.conv1, self.in1 = ConvLayer(c, c, 3, 1, cfg), make_norm(c, cfg)
            self.conv2, self.in2 = ConvLayer(c, c, 3, 1, cfg), make_norm(c, cfg)

        def forward(self, x):
            return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))

    class TransformerNet(nn.Module):
        """pytorch/examples fast_neural_style's TransformerNet, with the config's variants."""

        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            c1, c2, c3 = cfg["width"], 2 * cfg["width"], 4 * cfg["width"]
            self.conv1, self.in1 = ConvLayer(3, c1, 9, 1, cfg), make_norm(c1, cfg)
            self.conv2, self.in2 = ConvLayer(c1, c2, 3, 2, cfg), make_norm(c2, cfg)
            self.conv3, self.in3 = ConvLayer(c2, c3, 3, 2, cfg), make_norm(c3, cfg)
            for i in range(1, cfg["num_residual"] + 1):
                setattr(self, f"res{i}", ResidualBlock(c3, cfg))
            self.deconv1, self.in4 = UpsampleConvLayer(c3, c2, cfg), make_norm(c2, cfg)
            self.deconv2, self.in5 = UpsampleConvLayer(c2, c1, cfg), make_norm(c1, cfg)
            self.deconv3 = ConvLayer(c1, 3, 9, 1, cfg)
            if cfg["final_norm"]:
                self.in6 = make_norm(3, cfg)  # Engstrom's nets normalise the output conv too

        def forward(self, x):
            H, W = x.shape[2:]
            Hp, Wp = max(8, -(-H // 4) * 4), max(8, -(-W // 4) * 4)  # as the MLX network pads (edge) inside
            if (Hp, Wp) != (H, W):
                x = F.pad(x, (0, Wp - W, 0, Hp - H), mode="replicate")
            y = F.relu(self.in1(self.conv1(x)))
            y = F.relu(self.in2(self.conv2(y)))
            y = F.relu(self.in3(self.conv3(y)))
            for i in range(1, self.cfg["num_residual"] + 1):
                y = getattr(self, f"res{i}")(y)
            y = F.relu(self.in4(self.deconv1(y)))
            y = F.relu(self.in5(self.deconv2(y)))
            y = self.deconv3(y)
            if self.cfg["final_norm"]:
                y = self.in6(y)
            if self.cfg["output"] == "tanh":
                y = torch.tanh(y) * 150.0 + 127.5
            return y[:, :, :H, :W]

    return TransformerNet(dict(cfg))


def mlx_name(torch_name: str) -> str:
    """A twin parameter's name in the MLX network: ``res3.conv1…`` → ``res.2.conv1…``; the others are equal."""
    head, _, rest = torch_name.partition(".")
    if head.startswith("res") and head[3:].isdigit():
        return f"res.{int(head[3:]) - 1}.{rest}"
    return torch_name


def is_transposed_weight(name: str, cfg: dict) -> bool:
    """Whether parameter ``name`` is a transposed conv's weight: MLX (out, kH, kW, in), torch (in, out, kH, kW)."""
    return cfg["upsample"] == "deconv" and name.rsplit(".", 1)[0] in ("deconv1.conv2d", "deconv2.conv2d")


def torch_layout(name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
    """One MLX parameter in the twin's layout: conv OHWI → OIHW, transposed conv → (in, out, kH, kW)."""
    if array.ndim != 4:
        return array
    a = array.transpose(3, 0, 1, 2) if is_transposed_weight(name, cfg) else array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)


def config_dict(config) -> dict:
    """A ``TransformerConfig`` (or a dict of its fields) as the dict ``build_transformer`` takes."""
    from dataclasses import asdict, is_dataclass

    return asdict(config) if is_dataclass(config) else dict(config)


def net_from_mlx(torch, arrays: dict[str, np.ndarray], config):
    """The twin holding the given MLX (NHWC/OHWI) parameters, strictly: every tensor of the twin is given."""
    cfg = config_dict(config)
    net = build_transformer(torch, cfg)
    state = net.state_dict()
    own = {k for k in state if not k.endswith("num_batches_tracked")}
    given = {}
    for name in own:
        key = mlx_name(name)
        if key not in arrays:
            raise KeyError(f"the MLX parameters lack {key} (twin's {name})")
        given[name] = torch.from_numpy(np.ascontiguousarray(torch_layout(key, np.asarray(arrays[key]), cfg)))
    extra = set(arrays) - {mlx_name(k) for k in own}
    if extra:
        raise KeyError(f"MLX parameters the twin does not have: {sorted(extra)[:5]}")
    state.update(given)
    net.load_state_dict(state, strict=True)
    return net


def net_to_mlx_arrays(net, config) -> dict[str, np.ndarray]:
    """The inverse of ``net_from_mlx``: MLX-layout float32 arrays under the MLX names."""
    cfg = config_dict(config)
    out = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        name = mlx_name(k)
        a = v.detach().cpu().numpy().astype(np.float32)
        if a.ndim == 4:
            a = a.transpose(1, 2, 3, 0) if is_transposed_weight(name, cfg) else a.transpose(0, 2, 3, 1)
        out[name] = np.ascontiguousarray(a)
    return out


def twin_of(torch, net, device: str = "cpu"):
    """The twin of an MLX ``TransformerNet`` with its weights, in eval mode on ``device``."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    arrays = {k: np.asarray(v.astype(mx.float32)) for k, v in tree_flatten(net.parameters())}
    return net_from_mlx(torch, arrays, net.config).eval().to(device)


def clip_per_tensor_(torch, net, mode: str = "tensor") -> None:
    """The report's per-tensor clipping ``g ← min(1, 1/‖g‖)·g`` (or the global-norm variant), in place."""
    params = [p for p in net.parameters() if p.grad is not None]
    if mode == "tensor":
        with torch.no_grad():
            for p in params:
                p.grad.mul_(torch.clamp(1.0 / p.grad.norm(), max=1.0))
    elif mode == "global":
        torch.nn.utils.clip_grad_norm_(params, 1.0)
