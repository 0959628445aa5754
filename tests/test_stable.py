"""``train --stable``: the synthetic motion (warp, mask, noise), the temporal term, and training with it.

The warp is checked against a plain-loop numpy reference (float64) and OpenCV's ``warpAffine``, its gradient
against finite differences, the temporal term against numpy; then runs on the tiny workspace of the other
training tests: compiled and not, recomputed, one and two processes, resumed exactly, refused on a changed
setting, and a few steps that must lower the temporal term well below what the same plain run reaches.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from train_helpers import cli_args, make_workspace, tiny_config

import mlx_style  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from mlx_style.cli.train import main
from mlx_style.io.image import list_images, load_image
from mlx_style.io.models import load_transformer
from mlx_style.io.weights import read_metadata
from mlx_style.nn.losses import LossConfig, gram_matrix
from mlx_style.nn.transformer import TransformerNet
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import STABLE_DEFAULT_WEIGHT, TrainingError
from mlx_style.training.data import prepare
from mlx_style.training import train
from mlx_style.training.johnson import describe_stable
from mlx_style.training.motion import (
    StableConfig,
    masked_mean_square,
    motion_noise,
    random_motion,
    similarity_matrix,
    temporal_loss,
    warp,
)
from mlx_style.training.progress import format_progress, read_log
from mlx_style.training.step import make_train_step

REPO = Path(__file__).resolve().parents[1]
STABLE = 100.0  # the tiny workspace's temporal term is ~0.2 against a total of ~120: this weight makes it felt


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("stable_ws"))


def weights_of(path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(path)).items()}


# --- the warp ----------------------------------------------------------------------------------------------------


def reference_warp(images: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear resampling pixel by pixel in float64: the border repeated, the mask where the source is inside."""
    B, H, W, C = images.shape
    out = np.zeros((B, H, W, C))
    mask = np.zeros((B, H, W, 1))
    for b in range(B):
        m = matrices[b].astype(np.float64)
        for y in range(H):
            for x in range(W):
                sx, sy = m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]
                mask[b, y, x, 0] = -1e-3 <= sx <= W - 1 + 1e-3 and -1e-3 <= sy <= H - 1 + 1e-3
                sx, sy = min(max(sx, 0.0), W - 1.0), min(max(sy, 0.0), H - 1.0)
                x0, y0 = int(math.floor(sx)), int(math.floor(sy))
                x1, y1 = min(x0 + 1, W - 1), min(y0 + 1, H - 1)
                fx, fy = sx - x0, sy - y0
                out[b, y, x] = (1 - fy) * ((1 - fx) * images[b, y0, x0] + fx * images[b, y0, x1]) + fy * (
                    (1 - fx) * images[b, y1, x0] + fx * images[b, y1, x1]
                )
    return out, mask


def smooth_images(rng, B, H, W, C=3) -> np.ndarray:
    """Random images with moderate neighbour differences (≤ ~20 levels), 0–255 float32."""
    coarse = rng.uniform(0, 255, (B, H // 4 + 2, W // 4 + 2, C)).astype(np.float32)
    return np.stack([cv2.resize(c, (W, H), interpolation=cv2.INTER_CUBIC) for c in coarse]).reshape(B, H, W, C)


def test_warp_matches_a_numpy_reference_to_float32_precision():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 13, 17, 3)).astype(np.float32)
    # larger motions than training uses, so that every border case (clamping, mask) occurs
    motion = random_motion(7, 3, 3, 13, 17, StableConfig(1.0, shift=4.0, rotate=20.0, zoom=0.2))
    got, mask = warp(mx.array(images), mx.array(motion.matrices))
    want, want_mask = reference_warp(images, motion.matrices)
    # float32 coordinates are ~1e-6 px off; times neighbour differences of up to 255 levels: ~3e-4
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(mask), want_mask)
    assert 0.5 < want_mask.mean() < 0.98  # the motions do move pixels out of the frame


def test_warp_follows_opencvs_pixel_centres_and_moves_the_content_the_stated_way():
    rng = np.random.default_rng(1)
    H, W = 24, 32
    image = smooth_images(rng, 1, H, W)[0]
    flags, border = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, cv2.BORDER_REPLICATE

    def both(matrix):
        ours = np.asarray(warp(mx.array(image[None]), mx.array(matrix[None].astype(np.float32)))[0])[0]
        return ours, cv2.warpAffine(image, matrix, (W, H), flags=flags, borderMode=border)

    # Half-pixel shifts and a 90° turn about the centre: coordinates OpenCV represents exactly (its 1/32 px grid)
    for matrix in (similarity_matrix(0.5, -1.5, 0.0, 1.0, H, W), similarity_matrix(0.0, 0.0, 90.0, 1.0, W, W)):
        if matrix[0, 1] != 0:  # the turn: a square image, so that the frame maps onto itself
            square = smooth_images(rng, 1, W, W)[0]
            ours = np.asarray(warp(mx.array(square[None]), mx.array(matrix[None].astype(np.float32)))[0])[0]
            np.testing.assert_allclose(
                ours, cv2.warpAffine(square, matrix, (W, W), flags=flags, borderMode=border), atol=1e-3
            )
            np.testing.assert_allclose(ours, np.rot90(square, k=-1), atol=1e-3)  # clockwise on the screen
        else:
            ours, theirs = both(matrix)
            np.testing.assert_allclose(ours, theirs, atol=1e-3)
    # A whole-pixel shift moves the content right and down by (dx, dy)
    ours, _ = both(similarity_matrix(2.0, 1.0, 0.0, 1.0, H, W))
    np.testing.assert_allclose(ours[1:, 2:], image[:-1, :-2], atol=1e-4)
    # A random training-sized motion: within OpenCV's rounding of the coordinates to 1/32 px
    motion = random_motion(0, 0, 1, H, W, StableConfig(1.0))
    ours, theirs = both(motion.matrices[0].astype(np.float64))
    step = max(np.abs(np.diff(image, axis=0)).max(), np.abs(np.diff(image, axis=1)).max())
    assert np.abs(ours - theirs).max() <= step / 16, (np.abs(ours - theirs).max(), step)


def test_warp_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (2, 9, 11, 3)).astype(np.float32)
    matrices = mx.array(random_motion(1, 0, 2, 9, 11, StableConfig(1.0, rotate=10.0, zoom=0.1)).matrices)
    cotangent = mx.array(rng.normal(size=images.shape).astype(np.float32))

    def f(x):
        warped, mask = warp(x, matrices)
        return mx.sum(warped * mask * cotangent)

    grad = np.asarray(mx.grad(f)(mx.array(images)))
    assert np.abs(grad).max() > 0.1
    h = 0.5  # the warp is linear in the image: central differences are exact up to rounding
    for index in [tuple(rng.integers(0, n) for n in images.shape) for _ in range(40)] + [(0, 0, 0, 0), (1, 8, 10, 2)]:
        plus, minus = images.copy(), images.copy()
        plus[index] += h
        minus[index] -= h
        numeric = (f(mx.array(plus)).item() - f(mx.array(minus)).item()) / (2 * h)
        assert numeric == pytest.approx(grad[index], abs=2e-3), index


def test_random_motion_is_a_function_of_seed_step_and_image_and_within_its_bounds():
    config = StableConfig(1.0, shift=3.0, rotate=2.0, zoom=0.03)
    whole = random_motion(5, 11, 8, 64, 48, config)
    again = random_motion(5, 11, 8, 64, 48, config)
    np.testing.assert_array_equal(whole.matrices, again.matrices)
    np.testing.assert_array_equal(whole.keys, again.keys)
    half = random_motion(5, 11, 4, 64, 48, config, first=4)  # rank 1 of 2: the second half of the global batch
    np.testing.assert_array_equal(half.matrices, whole.matrices[4:])
    np.testing.assert_array_equal(half.keys, whole.keys[4:])
    other = random_motion(5, 12, 8, 64, 48, config)
    assert not np.array_equal(other.matrices, whole.matrices) and not np.array_equal(other.keys, whole.keys)
    assert not np.array_equal(random_motion(6, 11, 8, 64, 48, config).keys, whole.keys)
    many = random_motion(0, 0, 200, 64, 48, config).matrices.astype(np.float64)
    A = many[:, :, :2]
    scale = 1 / np.sqrt(np.linalg.det(A))  # the inverse map holds Rᵀ/s
    degrees = np.degrees(np.arctan2(A[:, 0, 1], A[:, 0, 0]))
    centre = np.array([(48 - 1) / 2, (64 - 1) / 2])
    shift = np.linalg.solve(A, (centre - many[:, :, 2])[..., None])[..., 0] - centre  # the map's image of c
    assert np.abs(scale - 1).max() <= 0.03 + 1e-6 and np.abs(scale - 1).max() > 0.02
    assert np.abs(degrees).max() <= 2 + 1e-6 and np.abs(degrees).max() > 1.5
    assert np.abs(shift).max() <= 3 + 1e-4 and np.abs(shift).max() > 2.5
    with pytest.raises(ValueError, match="StableConfig.*shift"):
        StableConfig(1.0, shift=-1.0)


def test_motion_noise_is_deterministic_per_image_and_standard_normal():
    keys = mx.array(random_motion(0, 0, 3, 8, 8, StableConfig(1.0)).keys)
    a = np.asarray(motion_noise(keys, (3, 64, 64, 3)))
    np.testing.assert_array_equal(a, np.asarray(motion_noise(keys, (3, 64, 64, 3))))
    np.testing.assert_array_equal(a[1:], np.asarray(motion_noise(keys[1:], (2, 64, 64, 3))))  # per image
    assert abs(a.mean()) < 0.03 and abs(a.std() - 1) < 0.03
    assert not np.array_equal(a[0], a[1])


# --- the temporal term -------------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def __call__(self, x):
        return self.conv(x) + x


def test_temporal_loss_matches_numpy_and_is_zero_without_motion():
    mx.random.seed(4)
    net = TinyNet()
    rng = np.random.default_rng(4)
    content = rng.uniform(0, 255, (3, 16, 20, 3)).astype(np.float32)
    motion = random_motion(2, 9, 3, 16, 20, StableConfig(1.0, shift=3.0, rotate=5.0, zoom=0.05))
    x = mx.array(content)
    output = net(x)
    got = temporal_loss(net, x, output, mx.array(motion.matrices), mx.array(motion.keys), 3.0).item()
    # numpy: the moved input (reference warp, the same noise, clipped), the network on it, the masked mean
    noise = np.asarray(motion_noise(mx.array(motion.keys), content.shape))
    moved, mask = reference_warp(content, motion.matrices)
    moved = np.clip(moved + 3.0 * noise, 0, 255).astype(np.float32)
    target, _ = reference_warp(np.asarray(output), motion.matrices)
    diff = target - np.asarray(net(mx.array(moved)), dtype=np.float64)
    per_image = (mask * diff**2).sum(axis=(1, 2, 3)) / (3 * mask.sum(axis=(1, 2, 3)))
    assert got == pytest.approx(per_image.mean(), rel=1e-4)
    assert got > 1.0
    identity = mx.array(np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (3, 1, 1)))
    assert temporal_loss(net, x, output, identity, mx.array(motion.keys), 0.0).item() == 0.0
    assert temporal_loss(net, x, output, identity, mx.array(motion.keys), 3.0).item() > 0  # the noise alone counts
    # an image whose every pixel leaves the frame counts zero, never NaN
    away = mx.array(np.tile(np.array([[1, 0, 100], [0, 1, 0]], np.float32), (3, 1, 1)))
    assert temporal_loss(net, x, output, away, mx.array(motion.keys), 0.0).item() == 0.0
    assert masked_mean_square(mx.ones((2, 4, 4, 3)), mx.zeros((2, 4, 4, 1))).item() == 0.0


def test_temporal_gradient_flows_through_both_branches_and_matches_finite_differences():
    mx.random.seed(5)
    net = TinyNet()
    x = mx.array(np.random.default_rng(5).uniform(0, 255, (2, 12, 12, 3)).astype(np.float32))
    motion = random_motion(0, 1, 2, 12, 12, StableConfig(1.0, rotate=5.0))
    matrices, keys = mx.array(motion.matrices), mx.array(motion.keys)

    def loss(model):
        return temporal_loss(model, x, model(x), matrices, keys, 3.0)

    grads = dict(tree_flatten(nn.value_and_grad(net, lambda: loss(net))()[1]))
    only_moved = dict(
        tree_flatten(
            nn.value_and_grad(net, lambda: temporal_loss(net, x, mx.stop_gradient(net(x)), matrices, keys, 3.0))()[1]
        )
    )
    assert not np.allclose(np.asarray(grads["conv.weight"]), np.asarray(only_moved["conv.weight"]))  # T(f(x)) too
    fixed = dict(
        tree_flatten(
            nn.value_and_grad(net, lambda: temporal_loss(net, x, net(x), matrices, keys, 3.0, fixed_target=True))()[1]
        )
    )
    for name in only_moved:  # --stable-fixed-target: the moved crop's branch alone
        assert np.array_equal(np.asarray(fixed[name]), np.asarray(only_moved[name])), name
    params = dict(tree_flatten(net.parameters()))
    h = 0.05  # the term is quadratic in this network's weights: central differences are exact but for rounding
    for name, index in (
        ("conv.weight", (1, 2, 0, 2)),
        ("conv.weight", (0, 1, 1, 0)),
        ("conv.weight", (2, 0, 2, 1)),
        ("conv.bias", (2,)),
    ):  # (a bias moves both branches alike: its gradient is ~0)
        base = np.asarray(params[name]).copy()
        values = []
        for sign in (1, -1):
            moved = base.copy()
            moved[index] += sign * h
            net.update(tree_unflatten([(name, mx.array(moved))]))
            values.append(loss(net).item())
        net.update(tree_unflatten([(name, mx.array(base))]))
        numeric = (values[0] - values[1]) / (2 * h)
        assert numeric == pytest.approx(float(np.asarray(grads[name])[index]), rel=1e-3, abs=1e-3), name
        assert name == "conv.bias" or abs(numeric) > 1.0


class TinyLossNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.freeze()

    def __call__(self, x, layers):
        return {name: nn.relu(self.a(x / 255.0)) for name in layers}


def _steps(compile_step: bool, stable: StableConfig | None, steps: int = 3):
    mx.random.seed(3)
    net, vgg = TinyNet(), TinyLossNet()
    optimizer = optim.Adam(learning_rate=1e-2, bias_correction=True)
    optimizer.init(net.trainable_parameters())
    config = LossConfig(
        content_weight=1.0,
        style_weight=10.0,
        tv_weight=1e-4,
        content_layer="la",
        style_layers=("la",),
        style_layer_weights=(1.0,),
    )
    grams = {k: gram_matrix(v) for k, v in vgg(mx.random.uniform(0, 255, (1, 8, 8, 3)), ("la",)).items()}
    batch = mx.random.uniform(0, 255, (2, 8, 8, 3)).astype(mx.uint8)
    step = make_train_step(net, vgg, optimizer, grams, config, "tensor", compile=compile_step, stable=stable)
    records = []
    for i in range(steps):
        motion = random_motion(0, i, 2, 8, 8, stable) if stable and stable.on else None
        loss, terms = step(batch, motion)
        mx.eval(loss, terms, net.parameters(), optimizer.state)
        records.append({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
    return records


def test_a_fixed_target_is_recorded_only_when_set():
    on = StableConfig(100.0)
    assert "fixed_target" not in on.record()  # records written before the setting existed still compare equal
    assert StableConfig(100.0, fixed_target=True).record() == {**on.record(), "fixed_target": True}
    assert StableConfig(0.0, fixed_target=True).record() == {"weight": 0.0}
    assert describe_stable(StableConfig(100.0, fixed_target=True).record()).endswith(", fixed target")


def test_the_compiled_stable_step_matches_the_uncompiled_one():
    stable = StableConfig(2.0)
    eager, compiled = _steps(False, stable), _steps(True, stable)
    assert all("temporal" in r and r["temporal"] > 0 for r in compiled)
    for a, b in zip(eager, compiled):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5), k
    plain = _steps(False, None)
    assert "temporal" not in plain[0]
    assert plain[0]["loss"] == pytest.approx(eager[0]["loss"] - 2.0 * eager[0]["temporal"], abs=1e-5 * eager[0]["loss"])
    assert _steps(False, StableConfig(0.0))[0] == plain[0]  # weight 0 is off
    fixed = StableConfig(2.0, fixed_target=True)
    eager_fixed, compiled_fixed = _steps(False, fixed), _steps(True, fixed)
    for a, b in zip(eager_fixed, compiled_fixed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert eager_fixed[0]["loss"] == eager[0]["loss"]  # the same value; only the gradient differs
    assert eager_fixed[-1]["loss"] != pytest.approx(eager[-1]["loss"], rel=1e-6)


def test_a_stable_step_needs_its_motion_and_a_plain_one_refuses_one():
    net, vgg = TinyNet(), TinyLossNet()
    optimizer = optim.Adam(learning_rate=1e-2)
    optimizer.init(net.trainable_parameters())
    config = LossConfig(content_layer="la", style_layers=("la",), style_layer_weights=(1.0,))
    grams = {"la": mx.zeros((1, 4, 4))}
    batch = mx.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match="pass this batch's motion"):
        make_train_step(net, vgg, optimizer, grams, config, compile=False, stable=StableConfig(1.0))(batch)
    with pytest.raises(ValueError, match="without stable"):
        make_train_step(net, vgg, optimizer, grams, config, compile=False)(
            batch, random_motion(0, 0, 2, 8, 8, StableConfig(1.0))
        )


# --- training with --stable --------------------------------------------------------------------------------------


def test_a_stable_run_logs_the_term_and_records_its_settings(ws, tmp_path):
    said = io.StringIO()
    config = tiny_config(ws, tmp_path / "s", iters=2, stable_weight=STABLE, stable_noise=2.0)
    result = train(config, stream=said)
    assert result.status == "done"
    assert all(r["temporal"] > 0 for r in result.records)
    text = said.getvalue()
    assert "temporal 100 (--stable: shift ±3 px, rotation ±2°, zoom ±3%, noise σ 2)" in text
    assert text.count(", temporal ") == 3  # the settings line and each step's progress line
    meta = read_metadata(config.output)
    assert json.loads(meta["stable"]) == {"weight": STABLE, "shift": 3.0, "rotate": 2.0, "zoom": 0.03, "noise": 2.0}
    recorded = json.loads(meta["train_config"])
    assert recorded["stable_weight"] == STABLE and recorded["stable_noise"] == 2.0
    plain = tiny_config(ws, tmp_path / "p", iters=1)
    plain_result = train(plain, stream=said)
    assert "temporal" not in plain_result.records[0]
    assert json.loads(read_metadata(plain.output)["stable"]) == {"weight": 0.0}
    fixed = tiny_config(ws, tmp_path / "f", iters=1, stable_weight=STABLE, stable_fixed_target=True)
    train(fixed, stream=said)
    assert "noise σ 3, fixed target); " in said.getvalue()
    assert json.loads(read_metadata(fixed.output)["stable"])["fixed_target"] is True
    assert plain_result.records[0]["style"] == result.records[0]["style"]  # same first batch, same network
    assert "temporal" in format_progress({**result.records[0], "images_per_s": 1.0}, 2, 1.0)


def test_resume_with_stable_continues_exactly(ws, tmp_path):
    """6 steps in one go == 4, then --resume to 6 (mid-epoch), to the bit: the motions come from (seed, step)."""
    settings = dict(stable_weight=STABLE, width=8)
    whole = tiny_config(ws, tmp_path / "whole", iters=6, **settings)
    train(whole, stream=io.StringIO())
    part = tiny_config(ws, tmp_path / "part", iters=4, checkpoint_every=2, **settings)
    assert train(part, stream=io.StringIO()).step == 4
    second = train(tiny_config(ws, tmp_path / "part", iters=6, resume="latest", **settings), stream=io.StringIO())
    assert second.status == "done" and second.step == 6
    ref, got = read_log(Path(whole.run_dir) / "log.jsonl"), read_log(Path(part.run_dir) / "log.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss"], r["temporal"]) for r in got] == [(r["loss"], r["temporal"]) for r in ref]
    a, b = weights_of(whole.output), weights_of(part.output)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_refuses_a_changed_stable_setting_unless_allowed(ws, tmp_path):
    stable = tiny_config(ws, tmp_path / "s", iters=2, stable_weight=STABLE, checkpoint_every=1)
    train(stable, stream=io.StringIO())
    was = "weight 100, shift 3, rotate 2, zoom 0.03, noise 3"
    for change, now in (
        (dict(stable_weight=2 * STABLE), "weight 200, shift 3, rotate 2, zoom 0.03, noise 3"),
        (dict(stable_weight=STABLE, stable_shift=1.0), "weight 100, shift 1, rotate 2"),
        (dict(), "off"),
    ):
        with pytest.raises(TrainingError, match=f"another temporal term \\(--stable {was}, now {now}.*--allow-change"):
            train(tiny_config(ws, tmp_path / "s", iters=3, resume="latest", **change), stream=io.StringIO())
    resumed = train(
        tiny_config(ws, tmp_path / "s", iters=3, resume="latest", stable_weight=2 * STABLE, allow_change=True),
        stream=io.StringIO(),
    )
    assert resumed.status == "done" and resumed.step == 3
    assert json.loads(read_metadata(stable.output)["stable"])["weight"] == 2 * STABLE
    plain = tiny_config(ws, tmp_path / "p", iters=1)
    train(plain, stream=io.StringIO())
    with pytest.raises(TrainingError, match="--stable off, now weight 100,"):
        train(tiny_config(ws, tmp_path / "p", iters=2, resume="latest", stable_weight=STABLE), stream=io.StringIO())
    # a checkpoint written before --stable existed records nothing: it had the term off
    path = ckpt.latest_checkpoint(Path(plain.run_dir) / "checkpoints")
    old = ckpt.load_checkpoint(path)
    ckpt.save_checkpoint(
        path.parent,
        old.step,
        *_restored(old, plain),
        {k: v for k, v in old.metadata.items() if k not in ("stable", "kind", "step")},
    )
    assert "stable" not in ckpt.load_checkpoint(path).metadata
    with pytest.raises(TrainingError, match="--stable off, now weight 100,"):
        train(tiny_config(ws, tmp_path / "p", iters=2, resume="latest", stable_weight=STABLE), stream=io.StringIO())
    assert train(tiny_config(ws, tmp_path / "p", iters=2, resume="latest"), stream=io.StringIO()).status == "done"


def _restored(found: ckpt.Checkpoint, config):
    net = TransformerNet(config.network_config())
    optimizer = optim.Adam(learning_rate=config.lr, bias_correction=True)
    ckpt.restore(found, net, optimizer)
    return net, optimizer


def test_stable_training_compiled_and_recomputed_gives_the_same_losses(ws, tmp_path):
    base = dict(iters=3, stable_weight=STABLE, low_memory=False)
    ref = train(tiny_config(ws, tmp_path / "plain", **base), stream=io.StringIO())
    for name, change in (("compiled", dict(compile=True)), ("low", dict(low_memory=True))):
        got = train(tiny_config(ws, tmp_path / name, **{**base, **change}), stream=io.StringIO())
        assert got.status == "done", name
        for a, b in zip(ref.records, got.records):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["temporal"] == pytest.approx(
                a["temporal"], rel=1e-5
            ), name


def test_two_processes_with_stable_match_one(ws, tmp_path):
    """Each rank draws its own images' motions: two ranks of two images give one process's four-image losses."""
    single = tiny_config(ws, tmp_path / "one", iters=3, processes=1, stable_weight=STABLE)
    train(single, stream=io.StringIO())
    double = tiny_config(ws, tmp_path / "two", iters=3, stable_weight=STABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "mlx_style.train", *cli_args(double), "--processes", "2", "--stable", str(STABLE)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr and "temporal 100 (--stable" in done.stderr
    one = read_log(Path(single.run_dir) / "log.jsonl")
    two = read_log(Path(double.run_dir) / "log.jsonl")
    for key in ("loss", "temporal", "style"):
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in one], rtol=1e-4, err_msg=key)


def test_a_few_stable_steps_lower_the_temporal_term_well_below_a_plain_runs(ws, tmp_path):
    """Measured on fixed photos with fixed motions: after 5 steps the --stable network's temporal term is far
    below its start and below the plain network's after the same 5 steps (same seed, data and initialisation)."""
    photos = np.stack([prepare(load_image(p), 32) for p in list_images(ws["data"])[:8]]).astype(np.float32)
    x = mx.array(photos)
    motion = random_motion(123, 0, 8, 32, 32, StableConfig(1.0))
    matrices, keys = mx.array(motion.matrices), mx.array(motion.keys)

    def temporal(net):
        return temporal_loss(net, x, net(x), matrices, keys, 3.0).item()

    results = {}
    for name, weight in (("plain", 0.0), ("stable", STABLE)):
        config = tiny_config(ws, tmp_path / name, iters=5, width=8, stable_weight=weight)
        assert train(config, stream=io.StringIO()).status == "done"
        start = ckpt.load_checkpoint(ckpt.list_checkpoints(Path(config.run_dir) / "checkpoints")[0])
        assert start.step == 0
        results[name] = (temporal(_restored(start, config)[0]), temporal(load_transformer(config.output)[0]))
    (plain_start, plain_end), (stable_start, stable_end) = results["plain"], results["stable"]
    assert plain_start == stable_start  # the same initial network
    assert stable_end < 0.5 * stable_start, results
    assert stable_end < 0.5 * plain_end, results


def test_cli_stable_flag(ws, tmp_path, capsys):
    base = cli_args(tiny_config(ws, tmp_path, iters=1)) + ["--no-compile", "--no-tune", "--processes", "1"]
    assert main(base + ["--stable"]) == 0
    meta = read_metadata(tmp_path / "net.safetensors")
    assert json.loads(meta["stable"])["weight"] == STABLE_DEFAULT_WEIGHT
    assert main(base + ["--stable", "25", "--stable-zoom", "0.01", "--overwrite"]) == 0
    assert json.loads(read_metadata(tmp_path / "net.safetensors")["stable"])["zoom"] == 0.01
    assert "fixed_target" not in json.loads(read_metadata(tmp_path / "net.safetensors")["stable"])
    assert main(base + ["--stable", "25", "--stable-fixed-target", "--overwrite"]) == 0
    assert json.loads(read_metadata(tmp_path / "net.safetensors")["stable"])["fixed_target"] is True
    capsys.readouterr()
    assert main(base + ["--stable", "-1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--stable: weight must be a finite number ≥ 0" in err and err.count("\n") == 1
