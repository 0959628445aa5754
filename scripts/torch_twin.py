"""PyTorch twins of mlx_style's loss network, losses and training step, for side-by-side dev checks only.

Used by ``scripts/bench_train.py`` (the same step timed in both frameworks) and
``scripts/train_torch_reference.py`` (the same recipe trained in both). The package never imports torch; these
scripts need ``pip install torch safetensors``.

Everything follows ``mlx_style.losses`` term for term: content ``‖φ−φ̂‖²/(2·B·C·H·W)``, Gram ``φᵀφ/(C·H·W)``,
style ``Σ_j w_j·mean((G−Ĝ)²)``, isotropic TV averaged over the batch; VGG reads RGB 0–255 NCHW and applies
the preprocessing named in its weight file. The networks are ``mlx_style.bench.build_torch_net``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

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
        l_style = sum(w * ((gram(feats[k]) - target_grams[k]) ** 2).mean()
                      for k, w in zip(c.style_layers, c.style_layer_weights))
        l_tv = total_variation(torch, output)
        total = c.content_weight * l_content + c.style_weight * l_style + c.tv_weight * l_tv
        return total, {"content": l_content, "style": l_style, "tv": l_tv}

    return loss


def style_grams(torch, vgg, style_nhwc: np.ndarray, layers, device: str = "cpu") -> dict:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(style_nhwc, np.float32)).permute(0, 3, 1, 2).to(device)
        feats = vgg(x, layers)
    return {k: gram(v) for k, v in feats.items()}


def net_from_mlx(torch, arrays: dict[str, np.ndarray], config):
    """The PyTorch twin of ``TransformerNet(config)`` holding the given MLX (NHWC/OHWI) parameters."""
    from mlx_style.bench import build_torch_net, torch_layout

    net = build_torch_net(torch, config)
    net.load_state_dict({k: torch.from_numpy(torch_layout(k, a, config)) for k, a in arrays.items()}, strict=True)
    return net


def net_to_mlx_arrays(net, config) -> dict[str, np.ndarray]:
    """The inverse of ``net_from_mlx``: MLX-layout float32 arrays under the same names."""
    from mlx_style.bench import is_transposed_weight

    out = {}
    for k, v in net.state_dict().items():
        a = v.detach().cpu().numpy().astype(np.float32)
        if a.ndim == 4:
            a = a.transpose(1, 2, 3, 0) if is_transposed_weight(k, config) else a.transpose(0, 2, 3, 1)
        out[k] = np.ascontiguousarray(a)
    return out


def clip_per_tensor_(torch, net, mode: str = "tensor") -> None:
    """The report's per-tensor clipping ``g ← min(1, 1/‖g‖)·g`` (or the global-norm variant), in place."""
    params = [p for p in net.parameters() if p.grad is not None]
    if mode == "tensor":
        with torch.no_grad():
            for p in params:
                p.grad.mul_(torch.clamp(1.0 / p.grad.norm(), max=1.0))
    elif mode == "global":
        torch.nn.utils.clip_grad_norm_(params, 1.0)
