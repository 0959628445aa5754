"""Run a command as several MLX processes on this machine, joined by MLX's ring backend over loopback.

On MLX's CPU backend every elementwise op, copy and reduction runs on one core; only the matrix products use
more (docs/benchmarks.md). Two processes with half the batch each and one BLAS thread each keep both cores of a
2-core machine busy, and exchange their gradients with ``mx.distributed.all_sum``: a training step of batch
4 × 128² went from 1.5-1.7 to 2.2-2.4 images/s. ``mlx-style train`` does this by itself on a CPU
(``--processes``; how many: ``backend.processes_for_training``); several machines are still started with ``mlx.launch``.

Why not ``mlx.launch -n N``: it works, but its output-forwarding threads poll the children's stdin in a busy
loop, which took a core away from the ranks here (the same 2 ranks ran at 1.1 instead of 2.2 images/s).

Each child gets ``MLX_HOSTFILE`` (a JSON list of ``["127.0.0.1:port"]``, one per rank), ``MLX_RANK``,
``OPENBLAS_NUM_THREADS`` (the cores divided among the ranks) and ``MLX_STYLE_LOCAL_PROCESSES`` (so a rank knows
all ranks share this machine). The children run in their own session: a Ctrl-C in the terminal reaches only this
process, which passes it on once to each child (twice pressed: twice passed, as for a single process). On Linux a
child is killed when the launcher dies without passing anything on (``kill -9``).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mlx_style.errors import UsageError

LOCAL_ENV = "MLX_STYLE_LOCAL_PROCESSES"
FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
# Environment variables by which a launcher (mlx.launch for ring/JACCL/NCCL, mpirun) marks a distributed process.
LAUNCHED_MARKERS = ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", LOCAL_ENV)


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def launched() -> bool:
    """Whether this process was started as one rank of a distributed run (by us, ``mlx.launch`` or MPI)."""
    return any(name in os.environ for name in LAUNCHED_MARKERS)


def local_processes() -> int:
    """The ranks on this machine, as told by ``run_local`` (1 when started otherwise)."""
    try:
        return max(1, int(os.environ.get(LOCAL_ENV, "1")))
    except ValueError:
        return 1


def launcher_bytes(field: str = "VmRSS") -> int:
    """The launcher's memory in bytes (``VmRSS``: now, ``VmHWM``: its peak) when this rank was started by
    ``run_local`` on Linux, else 0: it belongs to the run's memory on this machine, so rank 0 counts it."""
    if LOCAL_ENV not in os.environ:
        return 0
    try:
        with open(f"/proc/{os.getppid()}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def ring_hostfile(ports: list[int]) -> str:
    """MLX's ring hostfile for one rank per port on loopback, as ``mlx.launch`` writes it."""
    return json.dumps([[f"127.0.0.1:{port}"] for port in ports])


def child_env(base: dict[str, str], rank: int, processes: int, hostfile: str, blas_threads: int) -> dict[str, str]:
    """The environment of one rank."""
    env = dict(base)
    env.update(
        {
            "MLX_HOSTFILE": hostfile,
            "MLX_RANK": str(rank),
            LOCAL_ENV: str(processes),
            "OPENBLAS_NUM_THREADS": str(blas_threads),
        }
    )
    return env


def _stop(children: list[subprocess.Popen], grace_s: float, term_s: float = 5.0) -> None:
    """Let the children still running finish by themselves for ``grace_s`` (rank 0 may be writing a checkpoint),
    then send SIGTERM, then SIGKILL after ``term_s`` (a rank whose peer died can wait forever in a collective)."""
    for wait_s, then in ((grace_s, signal.SIGTERM), (term_s, signal.SIGKILL)):
        deadline = time.monotonic() + wait_s
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            if child.poll() is None:
                child.send_signal(then)
    for child in children:
        child.wait()


def _die_with_parent() -> None:
    """In a child before it runs (Linux): SIGKILL when the launcher dies, since a rank whose launcher was killed
    outright would otherwise keep computing, or wait forever in a collective for a peer that is gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


RING_FOLDER_PREFIX = "mlx_style_ring_"


def remove_stale_ring_folders(root: str | None = None) -> list[Path]:
    """Delete the hostfile folders of launchers that are gone (killed with ``kill -9``): their names carry the
    launcher's pid. Returns what was removed."""
    import shutil

    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{RING_FOLDER_PREFIX}*"):
        try:
            pid = int(folder.name[len(RING_FOLDER_PREFIX) :].split("_", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue  # that launcher still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _forward_stderr(pipe, quiet_prefixes=("[ring]",)) -> threading.Thread:
    """Copy a rank's stderr to ours, without the ring's socket noise that follows a peer's exit (the peer has
    said what went wrong)."""

    def copy():
        for raw in iter(pipe.readline, b""):
            if not raw.lstrip().startswith(tuple(p.encode() for p in quiet_prefixes)):
                sys.stderr.buffer.write(raw)
                sys.stderr.buffer.flush()
        pipe.close()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def run_local(
    processes: int,
    args: list[str],
    env: dict[str, str] | None = None,
    blas_threads: int | None = None,
    grace_s: float = 20.0,
    poll_s: float = 0.2,
) -> int:
    """Run ``python *args`` as ``processes`` ranks of one MLX ring on this machine; return the run's exit code.

    Rank 0's exit code if it failed, else the first failing rank's, else 0. Ctrl-C, SIGTERM and SIGHUP are passed
    on to every rank. When a rank fails, the others could wait forever in a collective: those still running after
    ``grace_s`` get SIGTERM, then SIGKILL.
    """
    if processes < 1:
        raise UsageError(f"[run_local] processes must be at least 1, got {processes}")
    base = dict(os.environ if env is None else env)
    threads = blas_threads or max(1, usable_cores() // processes)
    remove_stale_ring_folders()
    with tempfile.TemporaryDirectory(prefix=f"{RING_FOLDER_PREFIX}{os.getpid()}_") as folder:
        hostfile = Path(folder) / "hosts.json"
        hostfile.write_text(ring_hostfile(free_ports(processes)))
        children: list[subprocess.Popen] = []
        previous = {}

        def forward(signum, frame):
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        try:
            for sig in FORWARDED_SIGNALS:
                previous[sig] = signal.signal(sig, forward)
            for rank in range(processes):
                children.append(
                    subprocess.Popen(
                        [sys.executable, *args],
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                        stderr=subprocess.PIPE if rank else None,
                        env=child_env(base, rank, processes, str(hostfile), threads),
                    )
                )
                if rank:
                    _forward_stderr(children[-1].stderr)
            while True:
                codes = [child.poll() for child in children]
                failed = [code for code in codes if code not in (None, 0)]
                if failed:
                    _stop(children, grace_s)
                    return codes[0] if codes[0] not in (None, 0) else failed[0]
                if all(code == 0 for code in codes):
                    return 0
                time.sleep(poll_s)
        finally:
            _stop(children, grace_s)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
