"""Hostile-user cases (docs/hardening.md): no command destroys one of its inputs, weight files are untrusted,
checkpoints survive crashes and full disks, and every failure is one line."""

from __future__ import annotations

import io
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli import cam as cam_cli
from mlx_style.cli import convert_vgg as convert_vgg_cli
from mlx_style.cli import layers as layers_cli
from mlx_style.cli import optimize as optimize_cli
from mlx_style.cli import train as train_cli
from mlx_style.infer import files
from mlx_style.io import weights
from mlx_style.io.models import load_transformer, save_transformer
from mlx_style.io.weights import WeightFileError
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.training import checkpoint as ckpt
from mlx_style.training import launch
from mlx_style.training import train
from train_helpers import make_workspace, tiny_config

TINY = TransformerConfig(width=4, num_residual=1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("hardening_ws"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def write_clip(path: Path, frames: int = 4) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    return path


def tiny_model(folder: Path) -> Path:
    mx.random.seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    return save_transformer(folder / "tiny.safetensors", TransformerNet(TINY))


# ---------------------------------------------------------------------------------------------------------------
# 0. No command overwrites one of its inputs, whatever the spelling


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_cam_refuses_to_write_over_its_source(tmp_path, capsys, spelling):
    clip = write_clip(tmp_path / "clip.mp4")
    before = clip.read_bytes()
    model = tiny_model(tmp_path / "w")
    (tmp_path / "sub").mkdir()
    output = {"same": clip, "dotdot": tmp_path / "sub" / ".." / "clip.mp4", "symlink": tmp_path / "link.mp4"}[spelling]
    if spelling == "symlink":
        output.symlink_to(clip)
    rc = cam_cli.main(
        ["--headless", "--source", str(clip), "--model", str(model), "--output", str(output), "--size", "32"]
    )
    assert rc == 2 and "is the input" in one_error_line(capsys)
    assert clip.read_bytes() == before


def test_cam_output_replaces_a_file_only_when_finished(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=3)
    model = tiny_model(tmp_path / "w")
    out = tmp_path / "out.mp4"
    assert (
        cam_cli.main(["--headless", "--source", str(clip), "--model", str(model), "--output", str(out), "--size", "32"])
        == 0
    )
    from mlx_style.infer.flicker import read_video

    assert len(read_video(out)) == 3 and not list(tmp_path.glob(".out.partial*"))


def test_optimize_refuses_its_content_as_output_and_a_bad_suffix_before_any_work(tmp_path, capsys):
    content = tmp_path / "photo.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(content)
    before = content.read_bytes()
    missing_vgg = tmp_path / "no_vgg.safetensors"  # the checks come first: no VGG needed to be refused
    start = time.perf_counter()
    assert (
        optimize_cli.main(
            ["--content", str(content), "--style", str(content), "-o", str(content), "--vgg", str(missing_vgg)]
        )
        == 2
    )
    assert "is the input" in one_error_line(capsys)
    assert (
        optimize_cli.main(
            [
                "--content",
                str(content),
                "--style",
                str(content),
                "-o",
                str(tmp_path / "x.xyz"),
                "--vgg",
                str(missing_vgg),
            ]
        )
        == 2
    )
    assert "cannot write .xyz" in one_error_line(capsys)
    assert time.perf_counter() - start < 5 and content.read_bytes() == before


def test_layers_refuses_its_style_as_output(tmp_path, capsys):
    style = tmp_path / "style.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(style)
    before = style.read_bytes()
    assert layers_cli.main(["--style", str(style), "-o", str(style), "--vgg", str(tmp_path / "v.safetensors")]) == 2
    assert "is the input" in one_error_line(capsys) and style.read_bytes() == before


def test_train_refuses_an_output_that_is_an_input_or_not_safetensors(ws, tmp_path, capsys):
    vgg_before = Path(ws["vgg"]).read_bytes()
    base = ["--style", str(ws["style"]), "--data", str(ws["data"]), "--vgg", str(ws["vgg"]), "--processes", "1"]
    assert train_cli.main([*base, "--output", str(ws["vgg"]), "--overwrite"]) == 2
    assert "is the input" in one_error_line(capsys)
    assert train_cli.main([*base, "--output", str(tmp_path / "net.pt")]) == 2
    assert "cannot write .pt" in one_error_line(capsys)
    assert Path(ws["vgg"]).read_bytes() == vgg_before


def test_convert_vgg_refuses_to_write_over_its_source(ws, tmp_path, capsys):
    copy = tmp_path / "vgg.safetensors"
    copy.write_bytes(Path(ws["vgg"]).read_bytes())
    before = copy.read_bytes()
    assert convert_vgg_cli.main(["--from", str(copy), "--out", str(copy)]) == 2
    assert "is the input" in one_error_line(capsys) and copy.read_bytes() == before


# ---------------------------------------------------------------------------------------------------------------
# 1. Weight files are untrusted input


def rewrite_metadata(path: Path, **changes) -> None:
    """Change metadata fields and recompute both checksums, as a crafted (not a damaged) file would."""
    arrays, meta = mx.load(str(path), return_metadata=True)
    meta.update({k: str(v) for k, v in changes.items()})
    meta["metadata_sha256"] = weights.metadata_sha256(meta)
    mx.save_safetensors(str(path), arrays, metadata=meta)


@pytest.mark.parametrize(
    "config, words",
    [
        ({"num_residual": 10_000_000, "width": 4}, "num_residual must be an integer from 0 to 256"),
        ({"num_residual": 3, "width": 4}, "says 3 residual blocks, but its tensors hold 1"),
        ({"width": "x", "num_residual": 1}, "width must be an integer"),
        ({"width": 4096, "num_residual": 1}, "says width 4096"),
        ({"norm_eps": -1.0, "width": 4, "num_residual": 1}, "norm_eps > 0"),
    ],
)
def test_a_crafted_network_config_is_refused_fast_without_building_it(tmp_path, config, words):
    path = tiny_model(tmp_path)
    full = {**json.loads(TINY.to_json()), **config}
    rewrite_metadata(path, config=json.dumps(full))
    start = time.perf_counter()
    with pytest.raises(WeightFileError, match=words):
        load_transformer(path)
    assert time.perf_counter() - start < 2


def test_changed_metadata_bytes_are_reported_as_corrupt_not_as_another_network(tmp_path):
    path = tiny_model(tmp_path)
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", bytes(data[:8]))
    header = data[8 : 8 + length].decode()
    at = header.index('"architecture":"johnson2016"') + len('"architecture":"')
    data[8 + at] = ord("J")  # one byte of the metadata, the length unchanged
    path.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match="metadata does not match its checksum"):
        load_transformer(path)


def test_weight_files_record_no_local_folders(ws, tmp_path):
    config = tiny_config(ws, tmp_path, iters=1)
    train(config, stream=io.StringIO())
    meta = weights.read_metadata(config.output)
    text = json.dumps(meta)
    for folder in (str(tmp_path), str(Path(ws["data"]).parent)):
        assert folder not in text, f"{folder} leaks into the weight file's metadata"
    assert json.loads(meta["train_config"])["style"] == Path(ws["style"]).name


def test_a_pth_that_torch_refuses_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    import pickle

    bad = tmp_path / "vgg.pth"
    bad.write_bytes(pickle.dumps({"features.0.weight": len}))  # a pickled global, not a tensor
    assert convert_vgg_cli.main(["--from", str(bad), "--out", str(tmp_path / "o.safetensors")]) == 2
    line = one_error_line(capsys)
    assert "weights_only=False" not in line and "vgg.pth" in line


# ---------------------------------------------------------------------------------------------------------------
# 2. Checkpoints survive the machine


def test_atomic_writes_fsync_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    weights.save_weights(tmp_path / "a.safetensors", {"x": mx.zeros((2,))}, {"kind": "test"})
    assert len(synced) >= 2  # the temporary file before its rename, then the folder after it


def test_resume_refuses_another_style_or_other_loss_weights_unless_asked(ws, tmp_path):
    first = tiny_config(ws, tmp_path, iters=2, checkpoint_every=1)
    train(first, stream=io.StringIO())
    other_style = tmp_path / "other.png"
    Image.fromarray(np.full((40, 40, 3), 10, np.uint8)).save(other_style)
    with pytest.raises(Exception, match="another style image"):
        train(tiny_config(ws, tmp_path, iters=3, style=str(other_style), resume="latest"), stream=io.StringIO())
    with pytest.raises(Exception, match="other loss settings .*style_weight"):
        train(tiny_config(ws, tmp_path, iters=3, style_weight=123.0, resume="latest"), stream=io.StringIO())
    result = train(
        tiny_config(ws, tmp_path, iters=3, style=str(other_style), resume="latest", allow_change=True),
        stream=io.StringIO(),
    )
    assert result.status == "done" and result.step == 3


def test_resume_skips_a_damaged_newest_checkpoint_and_says_so(ws, tmp_path):
    config = tiny_config(ws, tmp_path, iters=3, checkpoint_every=1, keep_checkpoints=0)
    train(config, stream=io.StringIO())
    folder = Path(config.run_dir) / "checkpoints"
    newest = ckpt.list_checkpoints(folder)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    said = io.StringIO()
    result = train(
        tiny_config(ws, tmp_path, iters=4, checkpoint_every=1, keep_checkpoints=0, resume="latest"), stream=said
    )
    assert "skipping unreadable checkpoint step_00000003" in said.getvalue()
    assert "resumed from" in said.getvalue() and "step_00000002" in said.getvalue()
    assert result.status == "done" and result.step == 4


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(ws, tmp_path):
    config = tiny_config(ws, tmp_path, iters=1, checkpoint_every=1)
    train(config, stream=io.StringIO())
    for path in ckpt.list_checkpoints(Path(config.run_dir) / "checkpoints"):
        path.write_bytes(b"garbage")
    with pytest.raises(WeightFileError, match="no readable checkpoint"):
        train(tiny_config(ws, tmp_path, iters=2, resume="latest"), stream=io.StringIO())


def test_temporary_files_of_a_killed_write_are_removed_at_the_next_start(ws, tmp_path):
    config = tiny_config(ws, tmp_path, iters=1)
    folder = Path(config.run_dir) / "checkpoints"
    folder.mkdir(parents=True)
    litter = folder / f".step_00000004{weights.TEMP_MARK}abc123.safetensors"
    litter.write_bytes(b"half a checkpoint")
    said = io.StringIO()
    train(config, stream=said)
    assert not litter.exists() and "cut short" in said.getvalue()


def test_a_full_disk_while_checkpointing_stops_with_one_line_naming_the_last_good_checkpoint(ws, tmp_path, monkeypatch):
    config = tiny_config(ws, tmp_path, iters=4, checkpoint_every=1)
    real = mx.save_safetensors
    calls = []

    def fill_up(file, arrays, metadata=None):
        calls.append(file)
        if len(calls) >= 3:  # the step-0 and step-1 checkpoints are written, then the disk is full
            Path(file).write_bytes(b"\0" * 16)
            raise RuntimeError("[write] Unable to write 47607 bytes to file.")
        return real(file, arrays, metadata=metadata)

    monkeypatch.setattr(mx, "save_safetensors", fill_up)
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 0})())
    said = io.StringIO()
    result = train(config, stream=said)
    assert result.status == "failed"
    lines = [line for line in said.getvalue().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and "step_00000001.safetensors" in lines[0]
    assert "--resume" in lines[0]
    folder = Path(config.run_dir) / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["step_00000000.safetensors", "step_00000001.safetensors"]
    assert not [p for p in folder.iterdir() if weights.TEMP_MARK in p.name]


def test_the_cli_exits_1_when_a_write_fails_mid_run(ws, tmp_path, monkeypatch, capsys):
    config = tiny_config(ws, tmp_path, iters=2)
    monkeypatch.setattr(
        mx, "save_safetensors", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
    )
    from train_helpers import cli_args

    assert train_cli.main([*cli_args(config), "--processes", "1"]) == 1
    assert "no permission to write there" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Litter and memory


def test_hostfile_folders_of_dead_launchers_are_removed(tmp_path):
    dead = tmp_path / f"{launch.RING_FOLDER_PREFIX}999999999_x"
    alive = tmp_path / f"{launch.RING_FOLDER_PREFIX}{os.getpid()}_y"
    other = tmp_path / "someone_elses"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert launch.remove_stale_ring_folders(str(tmp_path)) == [dead]
    assert alive.exists() and other.exists() and not dead.exists()


def test_an_image_too_large_for_memory_is_refused_before_decoding_with_a_size_that_fits(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (1200, 900)).save(big)
    net = TransformerNet(TransformerConfig())
    config = files.StylizeConfig(tile_size=64)
    with pytest.raises(files.StylizeError, match=r"needs about .* GB.*pass --size (\d+)") as info:
        files.check_memory(net, big, config, available=100_000_000)
    size = int(info.value.args[0].rsplit("--size ", 1)[1].split()[0])
    files.check_memory(net, big, files.StylizeConfig(size=size, tile_size=64), available=100_000_000)
    files.check_memory(net, big, config, available=10**12)  # enough memory: no complaint


# ---------------------------------------------------------------------------------------------------------------
# The cam for hours: --loop, and sources that fail mid-run


def test_cam_loop_plays_a_file_again_and_again(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", frames=4)
    model = tiny_model(tmp_path / "w")
    assert (
        cam_cli.main(
            ["--headless", "--source", str(clip), "--model", str(model), "--loop", "--frames", "11", "--size", "32"]
        )
        == 0
    )
    assert "11 frames done" in capsys.readouterr().out


class CutShort:
    """A capture whose file says 10 frames but delivers 3, then fails (a download cut short)."""

    def __init__(self):
        self.reads = 0

    def read(self):
        self.reads += 1
        return (True, np.zeros((8, 8, 3), np.uint8)) if self.reads <= 3 else (False, None)

    def set(self, *args):
        return False

    def release(self):
        pass


def test_a_file_cut_short_ends_with_one_line_saying_so():
    from mlx_style.infer.capture import CaptureThread, FrameSlot

    slot = FrameSlot()
    reader = CaptureThread(
        CutShort(), slot, every_frame=True, end_on_failure=True, expected_frames=10, loop=True, label="clip.mp4"
    )
    reader.start()
    frames = []
    while (frame := slot.get(timeout=2)) is not None:
        frames.append(frame)
    assert len(frames) == 3 and "after 3 of its 10 frames (the file is cut short" in slot.reason


# ---------------------------------------------------------------------------------------------------------------
# 3. Fault injection: kill -9, then --resume, equals an uninterrupted run


def final_weights(path) -> dict[str, np.ndarray]:
    arrays, _ = weights.load_weights(path)
    return {k: np.asarray(v) for k, v in arrays.items()}


@pytest.mark.parametrize("processes, moment", [(1, "mid-write"), (1, "between steps"), (2, "mid-write")])
def test_kill_9_then_resume_gives_the_uninterrupted_weights(ws, tmp_path, processes, moment):
    import signal
    import subprocess
    import sys

    from train_helpers import cli_args

    iters = 6
    reference = tiny_config(ws, tmp_path / "reference", iters=iters, processes=processes, checkpoint_every=1)
    interrupted = tiny_config(ws, tmp_path / "killed", iters=iters, processes=processes, checkpoint_every=1)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for config, slow in ((reference, None), (interrupted, "1.0" if moment == "mid-write" else None)):
        run_env = {**env, weights.SLOW_WRITE_ENV: slow} if slow else env
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlx_style.train", *cli_args(config)],
            env=run_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if config is reference:
            assert proc.wait(timeout=240) == 0, proc.stderr.read()
            continue
        folder = Path(config.run_dir) / "checkpoints"
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                written = ckpt.list_checkpoints(folder)
                partial = [p for p in folder.glob("*") if weights.TEMP_MARK in p.name] if folder.exists() else []
                if moment == "mid-write" and partial and len(written) >= 2:
                    break  # a checkpoint write is under way (the hook holds it before its rename)
                if moment == "between steps" and len(written) >= 3:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be killed"
            proc.send_signal(signal.SIGKILL)  # the launcher, for two processes: its ranks die with it
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    time.sleep(0.5)  # let ranks whose launcher was killed exit
    resumed = subprocess.run(
        [sys.executable, "-m", "mlx_style.train", *cli_args(interrupted), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    if moment == "mid-write":
        assert "cut short" in resumed.stderr  # the half-written checkpoint's temporary file was found and removed
    a, b = final_weights(reference.output), final_weights(interrupted.output)
    assert a.keys() == b.keys()
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) == 0.0


def test_frame_statistics_stay_bounded_over_long_runs():
    from mlx_style.infer.cam_controls import FrameStats

    stats = FrameStats(history=100)
    for i in range(10_000):
        stats.add(i * 0.05, 0.04)
    assert stats.frames == 10_000 and len(stats.latencies) == 100 and len(stats.intervals) == 100
    assert abs(stats.recent_fps() - 20.0) < 1e-6 and abs(stats.summary()["latency_ms_p50"] - 40.0) < 1e-9


def test_a_style_network_given_as_vgg_is_named_for_what_it_is(ws, tmp_path, capsys):
    model = tiny_model(tmp_path / "w")
    base = [
        "--style",
        str(ws["style"]),
        "--data",
        str(ws["data"]),
        "--processes",
        "1",
        "--image-size",
        "32",
        "--output",
        str(tmp_path / "n.safetensors"),
    ]
    assert train_cli.main([*base, "--vgg", str(model)]) == 2
    line = one_error_line(capsys)
    assert "holds a 'transformer' network, not VGG weights" in line and "recommended loss weights" not in line
