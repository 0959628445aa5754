"""Shared test helpers: the shared-data path, a tolerance helper and the golden weights.

The golden weights are generated with numpy from fixed seeds, identically here and in
``scripts/make_golden.py`` (which imports this module), so the fixtures under ``tests/fixtures/`` hold only
inputs and reference outputs. Weights are produced in PyTorch's layouts and names (pytorch/examples'
``TransformerNet``, torchvision's ``vgg16().features``); ``to_mlx_transformer_state`` converts them the way a
checkpoint converter would (OIHW → OHWI, ConvTranspose2d (in, out, kH, kW) → (out, kH, kW, in)).

This module imports neither torch nor MLX at import time, so the golden script can use it without MLX and the
tests without torch.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# MLX's CUDA backend runs float32 matmuls and convolutions in TF32 unless told otherwise (measured on an H200:
# rel. error 2.4e-4 against 1e-4 tolerances, a style network's output 5/255 off the CPU's). The references here
# are float32: ask for it before anything imports mlx.core. No effect on the CPU or Metal.
os.environ.setdefault("MLX_ENABLE_TF32", "0")
# Never read or write the user's convolution tuning cache (~/.cache/mlx_style): choices timed in earlier runs would
# change which strategies the tests run, and with them what the memory tests measure.
os.environ["MLX_STYLE_CACHE"] = tempfile.mkdtemp(prefix="mlx_style_tests_")
atexit.register(shutil.rmtree, os.environ["MLX_STYLE_CACHE"], ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

VGG16_CONVS = (
    (3, 64),
    (64, 64),
    "M",
    (64, 128),
    (128, 128),
    "M",
    (128, 256),
    (256, 256),
    (256, 256),
    "M",
    (256, 512),
    (512, 512),
    (512, 512),
    "M",
    (512, 512),
    (512, 512),
    (512, 512),
    "M",
)
VGG16_RELUS = (
    "relu1_1",
    "relu1_2",
    "relu2_1",
    "relu2_2",
    "relu3_1",
    "relu3_2",
    "relu3_3",
    "relu4_1",
    "relu4_2",
    "relu4_3",
    "relu5_1",
    "relu5_2",
    "relu5_3",
)
VGG_SEED = 1234

# Golden transformer variants: TransformerConfig fields, the torch module mode, and the seed of their weights.
# "batch_train" normalises with the batch statistics (torch's train mode, MLX's nn.BatchNorm in training);
# "batch_eval" with the (non-trivial) running statistics stored in the weights.
WIDE = {"width": 32, "num_residual": 5}
VARIANTS = {
    "default": ({**WIDE}, "train", 11),
    "deconv": ({**WIDE, "upsample": "deconv"}, "train", 12),
    "batch_train": ({**WIDE, "norm": "batch"}, "train", 13),
    "batch_eval": ({**WIDE, "norm": "batch"}, "eval", 14),
    "fst": (
        {
            **WIDE,
            "norm": "instance",
            "upsample": "deconv",
            "padding": "same",
            "conv_bias": False,
            "norm_eps": 1e-3,
            "output": "tanh",
            "final_norm": True,
        },
        "train",
        15,
    ),
}
# The gradient fixtures use a narrower network (same layers, width 8) so every parameter's gradient fits in a
# small file; the code paths are the same as at width 32. The λs (content, style, tv) make the three weighted
# terms about equal on these random networks, so each term's gradient shows in the total's.
GRAD_VARIANTS = {
    "default": ({"width": 8, "num_residual": 5}, 21, (2.0, 4.0, 0.12)),
    "fst": (
        {
            "width": 8,
            "num_residual": 5,
            "upsample": "deconv",
            "padding": "same",
            "conv_bias": False,
            "norm_eps": 1e-3,
            "output": "tanh",
            "final_norm": True,
        },
        22,
        (0.6, 0.6, 0.01),
    ),
}
# Loss layers of the gradient fixtures: content at relu3_3, unequal style layer weights (the report's appendix),
# caffe preprocessing.
LOSS = {
    "preprocess": "caffe",
    "content_layer": "relu3_3",
    "style_layers": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    "style_layer_weights": (0.7, 0.3, 0.03, 0.03),
}


# ---------------------------------------------------------------------------------------------------------------
# Shared data and tolerances


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (the real images and weights live in ../shared/data)")
    return path


def fixture(name: str) -> dict[str, np.ndarray]:
    """Load ``tests/fixtures/<name>.npz``; a missing file says how to regenerate it."""
    path = FIXTURES / f"{name}.npz"
    if not path.exists():
        pytest.fail(f"missing fixture {path}: run `python scripts/make_golden.py` (needs torch)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def rel_err(actual, expected) -> float:
    """max|a − b| / max(max|b|, tiny): one number per tensor, robust to entries near zero."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} vs expected {b.shape}"
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30))


def assert_close(actual, expected, tol: float = 1e-4, what: str = "value") -> None:
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


# ---------------------------------------------------------------------------------------------------------------
# Golden weights (numpy, deterministic, PyTorch layouts)


def config_fields(overrides: dict) -> dict:
    """The TransformerConfig defaults updated with ``overrides`` (kept here so torch needs no MLX)."""
    base = {
        "norm": "instance",
        "upsample": "nearest",
        "padding": "reflect",
        "conv_bias": True,
        "norm_eps": 1e-5,
        "output": "linear",
        "width": 32,
        "num_residual": 5,
        "final_norm": False,
        "styles": 1,
    }
    unknown = set(overrides) - set(base)
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}")
    return {**base, **overrides}


def transformer_specs(overrides: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """``(torch name, torch shape, role)`` of every tensor of pytorch/examples' TransformerNet for a config.

    Roles: ``conv`` (OIHW), ``deconv`` (ConvTranspose2d, (in, out, kH, kW)), ``bias``, ``scale``, ``shift``,
    ``mean`` and ``var`` (batch-norm running statistics).
    """
    cfg = config_fields(overrides)
    c1, c2, c3 = cfg["width"], 2 * cfg["width"], 4 * cfg["width"]
    specs = []

    def conv(name, cin, cout, k, transposed=False):
        shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        specs.append((f"{name}.conv2d.weight", shape, "deconv" if transposed else "conv"))
        if cfg["conv_bias"]:
            specs.append((f"{name}.conv2d.bias", (cout,), "bias"))

    def norm(name, c):
        specs.extend([(f"{name}.weight", (c,), "scale"), (f"{name}.bias", (c,), "shift")])
        if cfg["norm"] == "batch":
            specs.extend([(f"{name}.running_mean", (c,), "mean"), (f"{name}.running_var", (c,), "var")])

    deconv = cfg["upsample"] == "deconv"
    conv("conv1", 3, c1, 9), norm("in1", c1)
    conv("conv2", c1, c2, 3), norm("in2", c2)
    conv("conv3", c2, c3, 3), norm("in3", c3)
    for i in range(1, cfg["num_residual"] + 1):
        conv(f"res{i}.conv1", c3, c3, 3), norm(f"res{i}.in1", c3)
        conv(f"res{i}.conv2", c3, c3, 3), norm(f"res{i}.in2", c3)
    conv("deconv1", c3, c2, 3, deconv), norm("in4", c2)
    conv("deconv2", c2, c1, 3, deconv), norm("in5", c1)
    conv("deconv3", c1, 3, 9)
    if cfg["final_norm"]:
        norm("in6", 3)
    return specs


def golden_transformer_state(overrides: dict, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 weights in PyTorch layout; non-trivial norm parameters and running statistics."""
    rng = np.random.default_rng(seed)
    cfg = config_fields(overrides)
    state = {}
    for name, shape, role in transformer_specs(overrides):
        if role in ("conv", "deconv"):
            fan_in = shape[0 if role == "deconv" else 1] * shape[2] * shape[3]
            bound = 1.0 / np.sqrt(fan_in)  # torch's default init scale
            if name.startswith("deconv3.") and cfg["output"] == "linear":
                bound *= 40.0  # image-like contrast (tens of grey levels), as a trained network's output has
            a = rng.uniform(-bound, bound, shape)
        elif role == "bias" and name.startswith("deconv3.") and cfg["output"] == "linear":
            # Centre the linear output on mid-grey, as a trained network's is: a nearly flat output near 0
            # makes the loss gradients ill-conditioned (2% error in torch's own float32 gradients).
            a = rng.uniform(110.0, 145.0, shape)
        elif role == "bias":
            a = rng.uniform(-0.1, 0.1, shape)
        elif role == "scale":
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        elif role == "shift":
            a = 0.2 * rng.standard_normal(shape)
        elif role == "mean":
            a = 0.3 * rng.standard_normal(shape)
        else:  # var
            a = rng.uniform(0.5, 2.0, shape)
        state[name] = a.astype(np.float32)
    return state


def to_mlx_transformer_state(state: dict[str, np.ndarray], overrides: dict) -> dict[str, np.ndarray]:
    """pytorch/examples names and layouts → mlx_style's: ``resK.`` → ``res.{K-1}.``; conv OIHW → OHWI,
    ConvTranspose2d (in, out, kH, kW) → (out, kH, kW, in)."""
    roles = {name: role for name, _, role in transformer_specs(overrides)}
    out = {}
    for name, a in state.items():
        if roles[name] == "conv":
            a = a.transpose(0, 2, 3, 1)
        elif roles[name] == "deconv":
            a = a.transpose(1, 2, 3, 0)
        if name.startswith("res"):
            head, rest = name.split(".", 1)
            name = f"res.{int(head[3:]) - 1}.{rest}"
        out[name] = np.ascontiguousarray(a)
    return out


def golden_vgg_state(seed: int = VGG_SEED) -> dict[str, np.ndarray]:
    """Seeded VGG16 ``features`` weights with torchvision's keys and OIHW layout (He-scaled, so deep layers
    neither vanish nor explode)."""
    rng = np.random.default_rng(seed)
    state, index = {}, 0
    for item in VGG16_CONVS:
        if item == "M":
            index += 1
            continue
        cin, cout = item
        std = np.sqrt(2.0 / (cin * 9))
        state[f"features.{index}.weight"] = std * rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
        state[f"features.{index}.bias"] = 0.05 * rng.standard_normal(cout, dtype=np.float32)
        index += 2  # conv, relu
    return state


def golden_images(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth-ish random RGB images in 0–255 (float32): a random field plus a gradient, like photo content."""
    rng = np.random.default_rng(seed)
    B, H, W, C = shape
    ramp = np.linspace(0, 1, H)[:, None, None] * rng.uniform(-80, 80, (1, 1, C)) + np.linspace(0, 1, W)[
        None, :, None
    ] * rng.uniform(-80, 80, (1, 1, C))
    noise = rng.uniform(0, 255, shape)
    return np.clip(0.5 * noise + ramp + 64, 0, 255).astype(np.float32)


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame of a video file (BGR uint8) and its frame rate, through OpenCV (imported here, on use)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


@pytest.fixture
def untuned_convs(tmp_path, monkeypatch):
    """Convolutions by ``conv.heuristic`` alone: an empty cache folder (yielded) and tuning table, nothing forced.
    Timed choices vary from run to run; tests whose numbers depend on the strategies (peak memory) need this."""
    from mlx_style.nn import conv

    folder = tmp_path / "cache"
    monkeypatch.setenv(conv.ENV_CACHE, str(folder))
    monkeypatch.delenv(conv.ENV_METHOD, raising=False)
    conv.set_default_method(None)
    conv.clear_tuning()
    yield folder
    conv.set_default_method(None)
    conv.clear_tuning()


@pytest.fixture(autouse=True)
def no_builtin_styles(request, monkeypatch, tmp_path_factory):
    """The built-in styles shipped in mlx_style/styles/ stay out of tests that count or pick models, unless the
    test is marked ``builtin_styles``."""
    if "builtin_styles" not in request.keywords:
        monkeypatch.setattr("mlx_style.io.registry.BUILTIN_DIR", tmp_path_factory.mktemp("no_builtins"))
