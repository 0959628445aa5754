"""Write the PyTorch reference fixtures for the parity tests: ``python -m scripts.bench.make_golden`` (needs torch).

The reference is built from PyTorch's own ops, independently of mlx_style: torchvision's VGG16 ``features``
written out by hand, pytorch/examples fast_neural_style's ``TransformerNet`` (and its variants: transposed-conv
upsampling, batch norm, Engstrom's TF network), and the loss terms as documented in ``mlx_style/nn/losses.py``.
All weights come from ``tests/conftest.py`` (numpy, fixed seeds), so the ``.npz`` files hold only inputs and
reference outputs and stay small. The tests never import torch.

Fixtures written to ``tests/fixtures/``:
- ``vgg_torchvision.npz``, ``vgg_caffe.npz``: an image and VGG16 features at relu1_1 … relu5_3.
- ``transformer.npz``: a batch of inputs and each variant's output (plus batch norm's updated running statistics).
- ``grams.npz``: a style image and its Gram matrices (upper triangles) at the four style layers.
- ``loss_default.npz``, ``loss_fst.npz``: every loss term, the total, and its gradient with respect to every
  transformer parameter and to the input image.
- ``tv.npz``: isotropic total variation and its gradient on an image with flat regions (the zero-safe gradient).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlx_style.bench.torch_twin import build_transformer

TESTS = Path(__file__).resolve().parents[2] / "tests"


def _golden():
    """The shared weight generator (tests/conftest.py), imported from the repository root (run as a module)."""
    from tests import conftest

    return conftest


@dataclass
class GoldenConfig:
    out: str = str(TESTS / "fixtures")  # where the .npz files go
    image_size: tuple[int, int] = (20, 24)  # tiny; a multiple of 4 so the MLX network does not pad
    vgg_size: tuple[int, int] = (33, 32)  # relu5_3 is 2×2; the odd 33 checks the pools floor (33 → 16)
    style_size: tuple[int, int] = (28, 20)  # a different shape from the content, as in training
    dtype: str = "float64"  # the reference's arithmetic: float64 gives the exact answer for the float32 inputs
    content_seed: int = 4  # first seed tried for the gradient fixtures' content batch
    max_tries: int = 20
    conditioning: float = 3e-5  # accept a content batch when torch's float32 gradients are this close to float64


# ---------------------------------------------------------------------------------------------------------------
# The reference networks, in PyTorch (NCHW)


def build_torch(torch):
    """Define the reference modules once torch is imported (the module imports nothing heavy at load time)."""
    nn = torch.nn

    class VGG16Features(nn.Module):
        """torchvision's ``vgg16().features``, written out: 3×3 convs (padding 1) + ReLU, 2×2 max-pools."""

        def __init__(self, convs):
            super().__init__()
            layers = []
            for item in convs:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(item[0], item[1], 3, padding=1), nn.ReLU()]
            self.features = nn.Sequential(*layers)

        def forward(self, x, relu_names):
            out, block, index = {}, 1, 1
            for layer in self.features:
                x = layer(x)
                if isinstance(layer, nn.ReLU):
                    out[f"relu{block}_{index}"] = x
                    index += 1
                    if all(name in out for name in relu_names):
                        break  # stop at the deepest layer asked for, as torchvision users slice features
                elif isinstance(layer, nn.MaxPool2d):
                    block, index = block + 1, 1
            return {name: out[name] for name in relu_names}

    def TransformerNet(cfg):  # noqa: N802  (the one twin, mlx_style/bench/torch_twin.py)
        return build_transformer(torch, cfg)

    return VGG16Features, TransformerNet


def tf_same_deconv_check(torch) -> float:
    """TF defines conv2d_transpose as the input-gradient of conv2d; check our crop equals it for SAME, stride 2."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 7, generator=g)  # (B, in, H, W) for the transposed conv
    w = torch.randn(5, 4, 3, 3, generator=g)  # (in, out, kH, kW) = the forward conv's (O, I, kH, kW)
    H, W = x.shape[2:]
    z = torch.zeros(2, 4, 2 * H, 2 * W, requires_grad=True)
    # forward conv with SAME padding on a 2H×2W input, stride 2: total padding 1, all of it after.
    y = F.conv2d(F.pad(z, (0, 1, 0, 1)), w, stride=2)
    (grad,) = torch.autograd.grad(y, z, grad_outputs=x)
    crop = F.conv_transpose2d(x, w, stride=2)[:, :, : 2 * H, : 2 * W]
    return float((grad - crop).abs().max())


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing and losses, written from mlx_style's documentation (image.py, losses.py)


def preprocess(torch, x_nchw, mode):
    if mode == "torchvision":
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=x_nchw.dtype).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], dtype=x_nchw.dtype).view(1, 3, 1, 1)
        return (x_nchw / 255.0 - mean) / std
    bgr = x_nchw[:, [2, 1, 0]]
    return bgr - torch.tensor([103.939, 116.779, 123.68], dtype=x_nchw.dtype).view(1, 3, 1, 1)


def gram(torch, f):
    """pytorch/examples' gram_matrix: (B, C, H·W) · its transpose / (C·H·W)."""
    B, C, H, W = f.shape
    f = f.reshape(B, C, H * W)
    return torch.bmm(f, f.transpose(1, 2)) / (C * H * W)


def content_term(torch, a, b):
    return 0.5 * torch.nn.functional.mse_loss(a, b)  # 1/(2·C·H·W)·‖a − b‖², averaged over the batch


def style_term(torch, g_out, g_target):
    return torch.nn.functional.mse_loss(g_out, g_target.expand_as(g_out))


def tv_term(torch, x_nchw):
    """Σ sqrt(Δx² + Δy²) over the (H−1)×(W−1) grid and channels, per image; zero gradient where both are 0."""
    dy = x_nchw[:, :, 1:, :-1] - x_nchw[:, :, :-1, :-1]
    dx = x_nchw[:, :, :-1, 1:] - x_nchw[:, :, :-1, :-1]
    sq = dx**2 + dy**2
    nonzero = sq > 0
    safe = torch.where(nonzero, sq, torch.ones_like(sq))
    return torch.where(nonzero, torch.sqrt(safe), torch.zeros_like(sq)).sum() / x_nchw.shape[0]


# ---------------------------------------------------------------------------------------------------------------
# Fixture builders


def nchw(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(torch.get_default_dtype())


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1).astype(np.float32)


def load_state(torch, module, state, golden_specs):
    """Strictly load numpy weights; the spec must name exactly the module's tensors (guards the spec)."""
    own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    spec = {name: shape for name, shape, _ in golden_specs}
    if {k: tuple(v.shape) for k, v in own.items()} != spec:
        raise SystemExit(f"spec and torch module differ: {sorted(set(own) ^ set(spec))}")
    with torch.no_grad():
        params = dict(module.named_parameters())
        params.update(dict(module.named_buffers()))
        for name, value in state.items():
            params[name].copy_(torch.from_numpy(value))


def vgg_fixtures(torch, g, VGG16Features, config):
    """Features at every ReLU for both preprocessings; returns ``(fixtures, vgg)``."""
    vgg = VGG16Features(g.VGG16_CONVS)
    load_state(torch, vgg, g.golden_vgg_state(), [(k, v.shape, "") for k, v in g.golden_vgg_state().items()])
    vgg.eval()
    image = g.golden_images(2, (1, *config.vgg_size, 3))
    out = {}
    for mode in ("torchvision", "caffe"):
        with torch.no_grad():
            feats = vgg(preprocess(torch, nchw(torch, image), mode), g.VGG16_RELUS)
        out[f"vgg_{mode}"] = {"image": image, **{name: nhwc(f) for name, f in feats.items()}}
    return out, vgg


def transformer_fixture(torch, g, TransformerNet, config) -> dict[str, np.ndarray]:
    x = g.golden_images(1, (2, *config.image_size, 3))
    out = {"input": x}
    for variant, (overrides, mode, seed) in g.VARIANTS.items():
        cfg = g.config_fields(overrides)
        net = TransformerNet(cfg)
        load_state(torch, net, g.golden_transformer_state(overrides, seed), g.transformer_specs(overrides))
        net.train(mode == "train")
        with torch.no_grad():
            out[f"{variant}__output"] = nhwc(net(nchw(torch, x)))
        if cfg["norm"] == "batch" and mode == "train":
            for name, buf in net.named_buffers():
                if "running" in name:
                    out[f"{variant}__after__{name}"] = buf.numpy().astype(np.float32)
    return out


def style_grams(torch, g, vgg, style_image):
    layers = g.LOSS["style_layers"]
    with torch.no_grad():
        feats = vgg(preprocess(torch, nchw(torch, style_image), g.LOSS["preprocess"]), layers)
    return {name: gram(torch, feats[name]) for name in layers}


def grams_fixture(torch, g, vgg, config) -> dict[str, np.ndarray]:
    style = g.golden_images(3, (1, *config.style_size, 3))
    out = {"style": style}
    for name, G in style_grams(torch, g, vgg, style).items():
        G = G[0].numpy()
        rows, cols = np.triu_indices(G.shape[0])
        out[f"{name}__upper"] = G[rows, cols].astype(np.float32)  # symmetric: the upper triangle says it all
    return out


def loss_and_grads(torch, g, net, vgg, targets, content, weights, dtype) -> dict[str, np.ndarray]:
    """The loss terms, the total and its gradients, computed in ``dtype`` (modules converted to it)."""
    wc, ws, wtv = weights
    loss, mode = g.LOSS, g.LOSS["preprocess"]
    net, vgg = net.to(dtype), vgg.to(dtype)
    x = nchw(torch, content).to(dtype).requires_grad_(True)
    y = net(x)
    feats = vgg(preprocess(torch, y, mode), (loss["content_layer"], *loss["style_layers"]))
    with torch.no_grad():
        target_content = vgg(preprocess(torch, x.detach(), mode), (loss["content_layer"],))[loss["content_layer"]]
    c = content_term(torch, feats[loss["content_layer"]], target_content)
    per_layer = [style_term(torch, gram(torch, feats[n]), targets[n].to(dtype)) for n in loss["style_layers"]]
    s = sum(w * t for w, t in zip(loss["style_layer_weights"], per_layer))
    tv = tv_term(torch, y)
    total = wc * c + ws * s + wtv * tv
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(total, [x, *params.values()])
    out = {
        "content": content,
        "output": nhwc(y),
        "content_loss": np.float32(c.item()),
        "style_loss": np.float32(s.item()),
        "tv_loss": np.float32(tv.item()),
        "total_loss": np.float32(total.item()),
        "grad__input": nhwc(grads[0]),
    }
    for name, t in zip(loss["style_layers"], per_layer):
        out[f"style_loss__{name}"] = np.float32(t.item())
    for name, grad in zip(params, grads[1:]):
        out[f"grad__{name}"] = grad.detach().numpy().astype(np.float32)
    return out


def float32_gradient_error(torch, g, net, vgg, targets, content, weights) -> float:
    """How far torch's own float32 gradients are from float64 ones (max relative error over all tensors).

    The loss is only piecewise smooth (ReLU, max-pool): where float32 rounding flips a ReLU or a max-pool choice
    the gradient jumps, and no float32 implementation can match the float64 reference there (we saw 1e-3 to
    3e-2 for unlucky inputs, 2e-5 for the rest).
    """
    import copy

    ref = loss_and_grads(torch, g, copy.deepcopy(net), copy.deepcopy(vgg), targets, content, weights, torch.float64)
    f32 = loss_and_grads(torch, g, copy.deepcopy(net), copy.deepcopy(vgg), targets, content, weights, torch.float32)
    return max(rel_err(f32[k], ref[k]) for k in ref if k.startswith("grad__") and np.abs(ref[k]).max() > 1e-3)


def rel_err(a, b) -> float:
    return float(np.abs(np.float64(a) - b).max() / max(np.abs(np.float64(b)).max(), 1e-30))


def loss_fixture(torch, g, TransformerNet, vgg, variant, config) -> dict[str, np.ndarray]:
    """Loss terms and gradients at a content batch where the float32 gradient is well conditioned."""
    overrides, seed, weights = g.GRAD_VARIANTS[variant]
    net = TransformerNet(g.config_fields(overrides))
    load_state(torch, net, g.golden_transformer_state(overrides, seed), g.transformer_specs(overrides))
    net.train()
    targets = style_grams(torch, g, vgg, g.golden_images(3, (1, *config.style_size, 3)))
    for content_seed in range(config.content_seed, config.content_seed + config.max_tries):
        content = g.golden_images(content_seed, (2, *config.image_size, 3))
        err = float32_gradient_error(torch, g, net, vgg, targets, content, weights)
        print(f"  loss_{variant}: content seed {content_seed}: torch float32 gradients within {err:.2g} of float64")
        if err <= config.conditioning:
            break
    else:
        raise SystemExit(f"no well-conditioned content batch in {config.max_tries} seeds for {variant}")
    dtype = getattr(torch, config.dtype)
    out = loss_and_grads(torch, g, net, vgg, targets, content, weights, dtype)
    out["content_seed"] = np.int64(content_seed)
    out["float32_gradient_error"] = np.float64(err)
    wc, ws, wtv = weights
    print(
        f"  loss_{variant}: content {out['content_loss']:.4g}, style {out['style_loss']:.4g} "
        f"({', '.join(f'{out[k]:.3g}' for k in out if k.startswith('style_loss__'))}), tv {out['tv_loss']:.4g}; "
        f"weighted {wc * out['content_loss']:.3g} / {ws * out['style_loss']:.3g} / {wtv * out['tv_loss']:.3g}, "
        f"total {out['total_loss']:.5g}"
    )
    return out


def tv_fixture(torch) -> dict[str, np.ndarray]:
    """Blocks of constant colour (zero differences inside, non-zero at the edges) plus one noisy patch."""
    rng = np.random.default_rng(5)
    image = np.repeat(np.repeat(rng.integers(0, 256, (2, 3, 4, 3)), 4, axis=1), 3, axis=2).astype(np.float32)
    image[:, 2:5, 2:6] += rng.uniform(-20, 20, (2, 3, 4, 3)).astype(np.float32)
    x = nchw(torch, image).requires_grad_(True)
    value = tv_term(torch, x)
    (grad,) = torch.autograd.grad(value, x)
    return {"image": image, "tv": np.float32(value.item()), "grad": nhwc(grad)}


def make_golden(config: GoldenConfig) -> dict[str, Path]:
    """Compute every fixture and write it; returns the paths written."""
    try:
        import torch
    except ImportError:
        raise SystemExit("error: make_golden.py needs PyTorch (`pip install torch`); the tests themselves do not")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.set_default_dtype(getattr(torch, config.dtype))
    g = _golden()
    VGG16Features, TransformerNet = build_torch(torch)
    deconv_err = tf_same_deconv_check(torch)
    if deconv_err > 1e-5:
        raise SystemExit(f"the TF 'SAME' transposed-conv crop disagrees with TF's definition ({deconv_err:.3g})")
    fixtures, vgg = vgg_fixtures(torch, g, VGG16Features, config)
    for p in vgg.parameters():
        p.requires_grad_(False)
    fixtures["transformer"] = transformer_fixture(torch, g, TransformerNet, config)
    fixtures["grams"] = grams_fixture(torch, g, vgg, config)
    for variant in g.GRAD_VARIANTS:
        fixtures[f"loss_{variant}"] = loss_fixture(torch, g, TransformerNet, vgg, variant, config)
    fixtures["tv"] = tv_fixture(torch)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, arrays in fixtures.items():
        path = out / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        written[name] = path
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(arrays)} arrays)")
    return written


def build_parser() -> argparse.ArgumentParser:
    d = GoldenConfig()
    p = argparse.ArgumentParser(prog="make_golden", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=d.out, help="folder for the .npz fixtures (default: tests/fixtures)")
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default=d.dtype,
        help="arithmetic of the reference (inputs and weights are float32 either way; fixtures are stored as float32)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    make_golden(GoldenConfig(out=args.out, dtype=args.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
