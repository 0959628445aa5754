"""Local ranks (``mlx_style.launch``): how many, their environment, exit codes, and Ctrl-C passed on once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlx_style import backend
from mlx_style.training import launch

REPO = Path(__file__).resolve().parents[1]


def test_auto_processes_uses_the_cores_only_on_a_cpu():
    assert backend.processes_for_training("cpu", 4, 2) == 2
    assert backend.processes_for_training("cpu", 8, 2) == 2
    assert backend.processes_for_training("cpu", 3, 2) == 1  # no divisor of 3 fits 2 cores but 1
    assert backend.processes_for_training("cpu", 6, 4) == 3  # the largest divisor of the batch up to the cores
    assert backend.processes_for_training("cpu", 8, 64) == 8
    assert backend.processes_for_training("cpu", 32, 64) == backend.MAX_AUTO_PROCESSES
    assert backend.processes_for_training("cpu", 1, 16) == 1
    assert backend.processes_for_training("cpu", 8, 1) == 1
    for gpu in ("metal", "cuda"):
        assert backend.processes_for_training(gpu, 8, 16) == 1


def test_hostfile_ports_and_environment():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    assert json.loads(launch.ring_hostfile(ports)) == [[f"127.0.0.1:{p}"] for p in ports]
    env = launch.child_env({"KEEP": "1", "MLX_RANK": "9"}, 1, 3, "/tmp/h.json", 2)
    assert env == {
        "KEEP": "1",
        "MLX_HOSTFILE": "/tmp/h.json",
        "MLX_RANK": "1",
        launch.LOCAL_ENV: "3",
        "OPENBLAS_NUM_THREADS": "2",
    }


def test_launched_and_local_processes(monkeypatch):
    for name in launch.LAUNCHED_MARKERS:
        monkeypatch.delenv(name, raising=False)
    assert not launch.launched() and launch.local_processes() == 1
    monkeypatch.setenv("MLX_RANK", "0")  # what mlx.launch sets
    assert launch.launched() and launch.local_processes() == 1
    monkeypatch.setenv(launch.LOCAL_ENV, "2")
    assert launch.local_processes() == 2


def run_children(code: str, tmp_path: Path, processes: int = 2, **kwargs) -> int:
    return launch.run_local(processes, ["-c", textwrap.dedent(code), str(tmp_path)], **kwargs)


def test_every_rank_runs_with_its_environment(tmp_path):
    code = """
        import json, os, sys
        keys = ("MLX_RANK", "MLX_HOSTFILE", "MLX_STYLE_LOCAL_PROCESSES", "OPENBLAS_NUM_THREADS")
        info = {k: os.environ[k] for k in keys}
        info["hosts"] = json.load(open(os.environ["MLX_HOSTFILE"]))
        open(os.path.join(sys.argv[1], "rank" + os.environ["MLX_RANK"]), "w").write(json.dumps(info))
    """
    assert run_children(code, tmp_path, blas_threads=1) == 0
    seen = [json.loads((tmp_path / f"rank{r}").read_text()) for r in range(2)]
    assert [s["MLX_RANK"] for s in seen] == ["0", "1"]
    assert all(s["MLX_STYLE_LOCAL_PROCESSES"] == "2" and s["OPENBLAS_NUM_THREADS"] == "1" for s in seen)
    assert seen[0]["hosts"] == seen[1]["hosts"] and len(seen[0]["hosts"]) == 2
    assert not Path(seen[0]["MLX_HOSTFILE"]).exists()  # removed with its temporary folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_rank_reads_its_launchers_memory(tmp_path, monkeypatch):
    monkeypatch.delenv(launch.LOCAL_ENV, raising=False)
    assert launch.launcher_bytes() == 0  # not started by run_local: nothing to count
    code = """
        import os, sys
        from mlx_style.training.launch import launcher_bytes
        open(os.path.join(sys.argv[1], "bytes" + os.environ["MLX_RANK"]), "w").write(
            f"{launcher_bytes()} {launcher_bytes('VmHWM')}")
    """
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert run_children(code, tmp_path, env=env) == 0
    now, peak = map(int, (tmp_path / "bytes0").read_text().split())
    mine = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) * 1024
    assert now == pytest.approx(mine, rel=0.5) and peak >= now > 10e6  # this test process is the launcher


def test_a_failing_rank_stops_the_others_and_gives_its_code(tmp_path):
    code = """
        import os, sys, time
        if os.environ["MLX_RANK"] == "1":
            sys.exit(3)
        time.sleep(60)  # as a rank waiting forever for its dead peer
    """
    began = time.monotonic()
    assert run_children(code, tmp_path, grace_s=0.5) == 3
    assert time.monotonic() - began < 20


def test_rank_zero_gets_time_to_finish_after_another_rank_exits(tmp_path):
    code = """
        import os, sys, time
        if os.environ["MLX_RANK"] == "0":
            time.sleep(1.0)  # as rank 0 writing its checkpoint after an interrupted step
            open(os.path.join(sys.argv[1], "saved"), "w").write("yes")
        sys.exit(130)
    """
    assert run_children(code, tmp_path, grace_s=20) == 130
    assert (tmp_path / "saved").read_text() == "yes"


def test_ctrl_c_reaches_each_rank_once(tmp_path):
    """The ranks run in their own session: only the launcher gets the terminal's Ctrl-C, and it passes it on once."""
    child = textwrap.dedent("""
        import os, signal, sys, time
        folder, rank = sys.argv[1], os.environ["MLX_RANK"]
        got = []
        signal.signal(signal.SIGINT, lambda s, f: got.append(s))
        open(os.path.join(folder, "ready" + rank), "w").close()
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second signal would arrive meanwhile
        open(os.path.join(folder, "signals" + rank), "w").write(str(len(got)))
        sys.exit(130 if got else 1)
    """)
    parent = (
        f"import sys; from mlx_style.training.launch import run_local; "
        f"sys.exit(run_local(2, ['-c', {child!r}, {str(tmp_path)!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready{r}").exists() for r in range(2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: the launcher's whole process group
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [(tmp_path / f"signals{r}").read_text() for r in range(2)] == ["1", "1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ranks_die_with_a_killed_launcher(tmp_path):
    child = textwrap.dedent("""
        import os, sys, time
        open(os.path.join(sys.argv[1], "pid" + os.environ["MLX_RANK"]), "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    parent = (
        f"import sys; from mlx_style.training.launch import run_local; "
        f"sys.exit(run_local(2, ['-c', {child!r}, {str(tmp_path)!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    pids = []
    try:
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            pids = [int(p.read_text()) for p in tmp_path.glob("pid*") if p.read_text()]
            time.sleep(0.05)
        assert len(pids) == 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in stat(pid)]
            time.sleep(0.05)
        assert not alive, "ranks outlived their launcher"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def stat(pid: int) -> str:
    """The process's state letter (Z: a zombie, dead but not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_processes_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        launch.run_local(0, ["-c", "pass"])
