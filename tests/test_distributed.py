"""Data-parallel training: 2 processes over loopback (``mlx.launch --backend ring`` or ``--processes 2``) match 1.

Both runs use the same global batch (4: two images per rank against four in one process), so averaging the two
ranks' gradients gives the one-process gradient up to float rounding. The runs are compared by their per-step
losses and by what the trained networks compute. Raw weights are not compared element by element: the conv
biases in front of an instance norm (and the last residual norm's shift) have an exactly-zero true gradient, so
Adam turns their float-rounding noise into ±lr steps that differ between any two summation orders without
changing the network's output at all.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train_helpers import cli_args, make_workspace, tiny_config

import mlx_style  # noqa: F401
import mlx.core as mx

from mlx_style.io.models import load_transformer
from mlx_style.training.progress import read_log
from mlx_style.training import train
from mlx_style.nn.transformer import TransformerNet

REPO = Path(__file__).resolve().parents[1]
STEPS = 3


def launcher() -> str | None:
    beside = Path(sys.executable).parent / "mlx.launch"
    return str(beside) if beside.exists() else shutil.which("mlx.launch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["mlx.launch", "--processes 2"])
def test_two_ranks_match_one_process(tmp_path, how):
    """Started by ``mlx.launch`` (as on several machines) or by the CLI itself (``--processes 2``, one machine)."""
    ws = make_workspace(tmp_path / "ws")
    single = tiny_config(ws, tmp_path / "one", iters=STEPS, processes=1)
    train(single, stream=io.StringIO())

    double = tiny_config(ws, tmp_path / "two", iters=STEPS, sample_every=2)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if how == "mlx.launch":
        launch = launcher()
        if launch is None:
            pytest.skip("mlx.launch not found (it comes with the mlx package)")
        command = [
            launch,
            "-n",
            "2",
            "--backend",
            "ring",
            "--starting-port",
            str(free_port()),
            "--python",
            sys.executable,
            "--",
            "-m",
            "mlx_style.train",
            *cli_args(double),
        ]
    else:
        command = [sys.executable, "-m", "mlx_style.train", *cli_args(double), "--processes", "2"]
    try:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the 2-process run did not finish in 180 s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stderr.count("2 process(es)") == 1  # only rank 0 speaks
    assert done.stdout.count("wrote ") == 1, done.stdout

    one = read_log(Path(single.run_dir) / "log.jsonl")
    two = read_log(Path(double.run_dir) / "log.jsonl")
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))  # only rank 0 writes the log: no duplicates
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-4)
    np.testing.assert_allclose([r["style"] for r in two], [r["style"] for r in one], rtol=1e-4)

    net_one, _ = load_transformer(single.output)
    net_two, meta = load_transformer(double.output)
    x = mx.random.uniform(0, 255, (2, 32, 32, 3), key=mx.random.key(7))
    y1, y2 = np.asarray(net_one(x)), np.asarray(net_two(x))
    mx.random.seed(single.seed)
    y0 = np.asarray(TransformerNet(single.network_config())(x))  # the common starting point
    # Adam divides each update by its gradient's running RMS, so a component whose gradient is near 0 can take a
    # ±lr step on float rounding alone (the 2-rank batch sums in another order): the weights agree to a small
    # fraction of what training changed, not to float32 precision.
    assert np.abs(y1 - y2).max() <= 0.02 * np.abs(y1 - y0).max()  # measured: 0.6%
    assert meta["steps"] == str(STEPS)
    mx.random.seed(single.seed)  # the network both runs started from
    y0 = np.asarray(TransformerNet(single.network_config())(x))
    assert np.abs(y1 - y0).max() > 20 * np.abs(y1 - y2).max()  # the steps moved it far more than they differ
    samples = sorted(p.name for p in (Path(double.run_dir) / "samples").iterdir())
    assert samples == ["final.png", "step_00000002.png"]


def test_two_ranks_resume_exactly_where_they_stopped(tmp_path):
    """A 2-process run resumed by 2 processes (rank 0 reads the checkpoint and gives it to the other rank, whose
    fresh optimizer state lists its entries in another order) continues as one uninterrupted 2-process run."""
    ws = make_workspace(tmp_path / "ws")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def run(config, *extra):
        command = [sys.executable, "-m", "mlx_style.train", *cli_args(config), "--processes", "2", *extra]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    whole = tiny_config(ws, tmp_path / "whole", iters=STEPS + 2)
    run(whole)
    part = tiny_config(ws, tmp_path / "part", iters=STEPS)
    run(part)
    run(tiny_config(ws, tmp_path / "part", iters=STEPS + 2), "--resume")
    one = read_log(Path(whole.run_dir) / "log.jsonl")
    two = read_log(Path(part.run_dir) / "log.jsonl")
    assert [r["step"] for r in two] == list(range(1, STEPS + 3))
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
