"""Checkpoints: exact round trip of network and Adam state, naming, pruning, atomic writes, refusals."""

from __future__ import annotations

import numpy as np
import pytest

import mlx_style  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from mlx_style.training import checkpoint as ckpt
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.weights import WeightFileError

CONFIG = TransformerConfig(width=4, num_residual=1)


def trained(seed: int = 0, steps: int = 2):
    """A tiny network and bias-corrected Adam after a few updates (so m, v and step are non-trivial)."""
    mx.random.seed(seed)
    net = TransformerNet(CONFIG)
    optimizer = optim.Adam(learning_rate=1e-3, bias_correction=True)
    optimizer.init(net.trainable_parameters())
    x = mx.random.uniform(0, 255, (1, 8, 8, 3))
    loss_and_grad = nn.value_and_grad(net, lambda x: mx.mean(net(x) ** 2))
    for _ in range(steps):
        _, grads = loss_and_grad(x)
        optimizer.update(net, grads)
    mx.eval(net.parameters(), optimizer.state)
    return net, optimizer


def flat(tree) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in tree_flatten(tree)}


def test_round_trip_restores_network_and_optimizer_exactly(tmp_path):
    net, optimizer = trained()
    path = ckpt.save_checkpoint(tmp_path, 2, net, optimizer, {"config": CONFIG.to_json(), "data": '{"seed": 0}'})
    assert path.name == "step_00000002.safetensors"
    found = ckpt.load_checkpoint(path)
    assert found.step == 2 and found.json("data") == {"seed": 0}
    fresh_net, fresh_opt = trained(seed=1, steps=1)
    ckpt.restore(found, fresh_net, fresh_opt)
    for mine, theirs in (
        (flat(net.parameters()), flat(fresh_net.parameters())),
        (flat(optimizer.state), flat(fresh_opt.state)),
    ):
        assert mine.keys() == theirs.keys()
        for k in mine:
            np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
    assert int(fresh_opt.step.item()) == 2 and fresh_opt.state["step"].dtype == mx.uint64


def test_restored_optimizer_continues_like_the_original(tmp_path):
    net, optimizer = trained(steps=2)
    ckpt.save_checkpoint(tmp_path, 2, net, optimizer, {})
    copy_net, copy_opt = trained(seed=5, steps=1)
    ckpt.restore(ckpt.load_checkpoint(tmp_path / "step_00000002.safetensors"), copy_net, copy_opt)
    grads = {k: mx.ones_like(v) for k, v in tree_flatten(net.trainable_parameters())}
    from mlx.utils import tree_unflatten

    grads = tree_unflatten(list(grads.items()))
    optimizer.update(net, grads)
    copy_opt.update(copy_net, grads)
    a, b = flat(net.parameters()), flat(copy_net.parameters())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_latest_and_pruning_follow_the_step_number(tmp_path):
    net, optimizer = trained(steps=1)
    for step in (5, 100, 20, 3):
        ckpt.save_checkpoint(tmp_path, step, net, optimizer, {})
    (tmp_path / ".step_00000999.tmp123.safetensors").write_bytes(b"half-written")  # an interrupted write
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_00000003.safetensors",
        "step_00000005.safetensors",
        "step_00000020.safetensors",
        "step_00000100.safetensors",
    ]
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000100.safetensors"
    removed = ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["step_00000003.safetensors", "step_00000005.safetensors"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_00000020.safetensors",
        "step_00000100.safetensors",
    ]
    assert ckpt.prune_checkpoints(tmp_path, keep=0) == []
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    net, optimizer = trained(steps=1)
    good = ckpt.save_checkpoint(tmp_path, 1, net, optimizer, {})
    before = good.read_bytes()

    def crash(path, arrays, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mx, "save_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 2, net, optimizer, {})
    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no partial file left behind
    assert good.read_bytes() == before


def test_corrupt_foreign_or_mismatched_checkpoints_are_refused(tmp_path):
    net, optimizer = trained(steps=1)
    path = ckpt.save_checkpoint(tmp_path, 1, net, optimizer, {})
    data = bytearray(path.read_bytes())
    data[-8:] = b"\xff" * 8  # flip the last tensor bytes: the checksum catches it
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match="corrupt"):
        ckpt.load_checkpoint(tmp_path / "bad.safetensors")
    from mlx_style.io.models import save_transformer

    save_transformer(tmp_path / "net.safetensors", net)
    with pytest.raises(WeightFileError, match="'checkpoint' network is needed"):
        ckpt.load_checkpoint(tmp_path / "net.safetensors")
    other = TransformerNet(TransformerConfig(width=8, num_residual=1))
    with pytest.raises(WeightFileError, match="do not fit"):
        ckpt.restore(ckpt.load_checkpoint(path), other, optim.Adam(learning_rate=1e-3))
    with pytest.raises(WeightFileError, match="optimizer"):
        ckpt.restore(ckpt.load_checkpoint(path), TransformerNet(CONFIG), optim.SGD(learning_rate=1e-3, momentum=0.9))
