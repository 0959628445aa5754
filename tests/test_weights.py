"""Weight files: strict loading, checksums, foreign and pickled files refused, atomic writes."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import os
import pickle
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_style.io.weights import (
    FORMAT,
    WeightFileError,
    atomic_write,
    check_and_load,
    load_weights,
    save_weights,
    tensors_sha256,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)


def tiny_arrays(seed: int = 0) -> dict[str, mx.array]:
    rng = np.random.default_rng(seed)
    return {k: mx.array(rng.standard_normal(v.shape).astype(np.float32)) for k, v in tree_flatten(Tiny().parameters())}


def saved(tmp_path, name="tiny.safetensors", kind="transformer", seed=0) -> Path:
    return save_weights(tmp_path / name, tiny_arrays(seed), {"kind": kind, "config": "{}"})


# ---------------------------------------------------------------------------------------------------------------
# Strict loading


def test_check_and_load_loads_everything():
    module, arrays = Tiny(), tiny_arrays()
    check_and_load(module, arrays)
    for key, value in tree_flatten(module.parameters()):
        np.testing.assert_array_equal(np.array(value), np.array(arrays[key]))


def test_check_and_load_lists_missing_unexpected_and_misshaped():
    module = Tiny()
    before = {k: np.array(v) for k, v in tree_flatten(module.parameters())}
    arrays = tiny_arrays()
    del arrays["head.bias"]
    arrays["tail.weight"] = mx.zeros((2,))
    arrays["conv.weight"] = mx.zeros((4, 5, 5, 3))
    with pytest.raises(WeightFileError) as info:
        check_and_load(module, arrays, where="weights in x.safetensors")
    message = str(info.value)
    assert message.startswith("weights in x.safetensors do not fit the network")
    assert "missing: head.bias" in message
    assert "unexpected: tail.weight" in message
    assert "mis-shaped: conv.weight: file (4, 5, 5, 3) vs network (4, 3, 3, 3)" in message
    after = {k: np.array(v) for k, v in tree_flatten(module.parameters())}
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing half-loaded


def test_check_and_load_shortens_long_lists():
    arrays = {f"extra{i}": mx.zeros((1,)) for i in range(9)}
    with pytest.raises(WeightFileError, match=r"unexpected: extra0, .*\(9 in all\)"):
        check_and_load(Tiny(), {**tiny_arrays(), **arrays})


# ---------------------------------------------------------------------------------------------------------------
# Files


def test_round_trip_and_metadata(tmp_path):
    arrays = tiny_arrays(1)
    path = save_weights(tmp_path / "w.safetensors", arrays, {"kind": "vgg", "step": 12})
    loaded, meta = load_weights(path, kind="vgg")
    assert meta["format"] == FORMAT and meta["kind"] == "vgg" and meta["step"] == "12"
    assert meta["sha256"] == tensors_sha256(arrays)
    assert sorted(loaded) == sorted(arrays)
    for k in arrays:
        np.testing.assert_array_equal(np.array(loaded[k]), np.array(arrays[k]))
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_corrupted_tensor_bytes_fail_the_checksum(tmp_path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # tensor data sits at the end of a safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match="is corrupt: its tensors do not match the checksum"):
        load_weights(path)


def test_foreign_safetensors_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    mx.save_safetensors(str(path), tiny_arrays())
    with pytest.raises(WeightFileError, match="was not written by mlx_style .*convert it first"):
        load_weights(path)


def test_truncated_file_refused(tmp_path):
    path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightFileError, match="not a readable safetensors file"):
        load_weights(path)


def test_missing_file_refused(tmp_path):
    with pytest.raises(WeightFileError, match="no weight file at"):
        load_weights(tmp_path / "nope.safetensors")


class _Touch:
    """Unpickling this creates a file: proof of whether a pickle was ever loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".pt"])
def test_pickles_are_refused_unread(tmp_path, suffix):
    marker = tmp_path / "unpickled"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(WeightFileError, match="not a .safetensors file"):
        load_weights(path)
    assert not marker.exists()


def test_wrong_kind_refused(tmp_path):
    path = saved(tmp_path, kind="transformer")
    with pytest.raises(WeightFileError, match="holds a 'transformer' network, but a 'vgg' network is needed"):
        load_weights(path, kind="vgg")


def test_save_needs_safetensors_suffix(tmp_path):
    with pytest.raises(WeightFileError, match="must end in .safetensors"):
        save_weights(tmp_path / "w.npz", tiny_arrays(), {"kind": "vgg"})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = saved(tmp_path, "net.safetensors", seed=0)
    old = path.read_bytes()

    def write_then_crash(tmp):
        Path(tmp).write_bytes(b"half a file")
        raise KeyboardInterrupt  # even an interrupt leaves no trace

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_then_crash)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = saved(tmp_path, "net.safetensors", seed=0)
    old = path.read_bytes()

    def disk_full(file, arrays, metadata=None):
        Path(file).write_bytes(b"\0" * 64)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mx, "save_safetensors", disk_full)
    with pytest.raises(OSError, match="could not write .*net.safetensors: the disk is full"):
        save_weights(path, tiny_arrays(1), {"kind": "transformer"})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_atomic_write_replaces(tmp_path):
    path = saved(tmp_path, "net.safetensors", seed=0)
    saved(tmp_path, "net.safetensors", seed=1)
    loaded, _ = load_weights(path)
    np.testing.assert_array_equal(np.array(loaded["head.bias"]), np.array(tiny_arrays(1)["head.bias"]))
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]
