"""The platform seam: every choice that depends on the operating system or the machine, in one place.

``mlx_style.backend`` decides what depends on MLX's backend (CPU, CUDA, Metal); this module decides what depends on
the platform under it (macOS or Linux, Apple silicon or Intel, Rosetta), so tests can play a Mac by patching
``system`` and ``sysctl`` here. Nothing here imports MLX: ``mlx_style/__init__`` uses it to explain an MLX that
does not import.

- ``system()`` / ``is_macos()``, ``machine()``, ``under_rosetta()``, ``macos_version()``, ``describe()``.
- ``install_problems()``: why MLX cannot run here, each with what to do (``mlx-style info``, the import error).
- ``camera_not_opened()``: what a camera that does not open means here (on macOS: the privacy permission).
- ``window_flags()`` / ``window_close_detectable()``: the cam window's flags and whether closing it can be seen
  (Cocoa's OpenCV window differs from Qt's).
- ``resident_bytes()`` / ``available_memory_bytes()``: from ``/proc`` on Linux, from ``ps``/``vm_stat`` on macOS.

Measured nowhere yet on a Mac: docs/mac.md says which of these only a Mac can confirm.
"""

from __future__ import annotations

import os
import platform as _platform
import re
import subprocess
import sys

MIN_MACOS = (14, 0)  # MLX's macOS wheels need Sonoma or later
MIN_PYTHON = (3, 10)  # pyproject's requires-python; macOS's own python3 is 3.9
PYTHON_HINT = "install Python 3.12 (`brew install python@3.12`, or python.org's macOS installer) and make a new venv"
PROBE_TIMEOUT = 2.0  # seconds for sysctl, ps and vm_stat: none should take more than a few milliseconds


def system() -> str:
    """``sys.platform``: ``"darwin"``, ``"linux"``, … (tests patch this to play another platform)."""
    return sys.platform


def is_macos() -> bool:
    return system() == "darwin"


def machine() -> str:
    """The interpreter's architecture (``"arm64"``, ``"x86_64"``): an x86_64 Python on Apple silicon says x86_64."""
    return _platform.machine()


def _run(args: list[str]) -> str | None:
    """The output of a small system tool, or None when it is missing or fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def sysctl(name: str) -> str | None:
    """``sysctl -n name`` on macOS (stripped), or None."""
    out = _run(["sysctl", "-n", name]) if is_macos() else None
    return out.strip() if out is not None else None


def under_rosetta() -> bool:
    """Whether this process is an x86_64 one translated by Rosetta 2 on Apple silicon (macOS only)."""
    return is_macos() and sysctl("sysctl.proc_translated") == "1"


def macos_version() -> tuple[int, ...] | None:
    """``(14, 5)`` on macOS 14.5; None elsewhere or when it cannot be read."""
    if not is_macos():
        return None
    text = _platform.mac_ver()[0] or sysctl("kern.osproductversion") or ""
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts) if parts else None


def describe() -> str:
    """``"macOS 15.1 arm64"``, ``"macOS 14.5 x86_64 under Rosetta"``, ``"Linux x86_64"``."""
    if is_macos():
        version = ".".join(map(str, macos_version() or ())) or "(version unknown)"
        return f"macOS {version} {machine()}" + (" under Rosetta" if under_rosetta() else "")
    return f"{_platform.system() or system()} {machine()}"


def install_problems() -> list[str]:
    """Why MLX (or this package) cannot run on this machine, one line each with what to do; empty when nothing is
    known to be wrong. Only macOS has rules here: MLX's Linux wheels exist for every Python it supports."""
    problems = []
    if sys.version_info[:2] < MIN_PYTHON:
        problems.append(
            f"Python {_platform.python_version()} is older than 3.10, which mlx_style needs: " + PYTHON_HINT
        )
    if not is_macos():
        return problems
    if under_rosetta():
        problems.append(
            "this Python is x86_64 running under Rosetta, and MLX has no x86_64 macOS build: "
            "use a native arm64 Python (" + PYTHON_HINT + "; check with "
            "`python3 -c 'import platform; print(platform.machine())'`, which must say arm64)"
        )
    elif machine() != "arm64":
        problems.append(
            f"this Mac is {machine()}, not Apple silicon: MLX runs on M1 or later Macs only "
            "(on Linux, mlx_style runs on MLX's CPU backend)"
        )
    version = macos_version()
    if version is not None and version < MIN_MACOS:
        problems.append(
            f"macOS {'.'.join(map(str, version))} is older than 14 (Sonoma), the oldest MLX's wheels "
            "install on: update macOS"
        )
    return problems


def mlx_import_advice(exc: BaseException) -> str:
    """One line for an MLX that does not import: what failed, and what to do."""
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    problems = install_problems()
    todo = (
        "; ".join(problems)
        if problems
        else (
            "install it into this Python: `pip install -e .` in the repository "
            "brings the right MLX (macOS 14+ on Apple silicon, or Linux; "
            "docs/mac.md)"
        )
    )
    return f"cannot import MLX ({what}) on {describe()}, Python {_platform.python_version()}: {todo}"


# ---------------------------------------------------------------------------------------------------------------
# The cam: camera permission and the window


def terminal_app() -> str:
    """The app a command runs in, as the privacy settings list it (``TERM_PROGRAM``), or a generic name."""
    names = {
        "Apple_Terminal": "Terminal",
        "iTerm.app": "iTerm",
        "vscode": "Visual Studio Code",
        "WezTerm": "WezTerm",
        "ghostty": "Ghostty",
        "WarpTerminal": "Warp",
    }
    program = os.environ.get("TERM_PROGRAM", "")
    return names.get(program, program or "your terminal app")


def camera_not_opened(index: int) -> str:
    """The one-line reason camera ``index`` did not open, and what to do. On macOS the first cause is the camera
    permission: a terminal app never allowed is asked once, and OpenCV does not wait for the answer."""
    if is_macos():
        app = terminal_app()
        return (
            f"cannot open camera {index}: macOS has probably not allowed {app} to use the camera (the first "
            f"run asks and fails): allow {app} in System Settings → Privacy & Security → Camera, then run again "
            "(after a refusal, `tccutil reset Camera` makes macOS ask again); else no camera is connected or "
            "another app is using it (or pass --source VIDEO.mp4)"
        )
    return (
        f"cannot open camera {index}: no camera found, or another program is using it; "
        "pass a video file instead with --source VIDEO.mp4"
    )


def window_flags() -> int:
    """``cv2.namedWindow`` flags for the cam. Qt (Linux): AUTOSIZE follows side by side, GUI_NORMAL drops the
    toolbar. Cocoa (macOS) autosizes only when the flags are exactly ``WINDOW_AUTOSIZE``: any other bit leaves the
    window at its first size, so side by side was cut off."""
    import cv2

    return cv2.WINDOW_AUTOSIZE if is_macos() else cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL


def window_close_detectable() -> bool:
    """Whether a window closed with the mouse shows as ``WND_PROP_VISIBLE < 1``. Not on macOS: Cocoa's OpenCV
    window has no close button, and a minimised window reads as not visible, so minimising would quit the cam
    (q or Esc quits there)."""
    return not is_macos()


# ---------------------------------------------------------------------------------------------------------------
# Memory as the operating system reports it


def resident_bytes() -> int:
    """This process's resident set size now: Linux ``/proc/self/statm``; macOS ``ps -o rss=``; else 0."""
    if is_macos():
        out = _run(["ps", "-o", "rss=", "-p", str(os.getpid())])
        try:
            return int(out.split()[0]) * 1024 if out else 0  # ps reports KiB
        except (ValueError, IndexError):
            return 0
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def parse_vm_stat(text: str) -> int | None:
    """Bytes that can be had without swapping from ``vm_stat``'s output: free + inactive + speculative pages (what
    psutil and Activity Monitor count as available, about), or None when the output is not understood."""
    size = re.search(r"page size of (\d+) bytes", text)
    pages = dict(re.findall(r"^Pages (free|inactive|speculative):\s+(\d+)\.?\s*$", text, re.MULTILINE))
    if size is None or "free" not in pages or "inactive" not in pages:
        return None
    return int(size.group(1)) * sum(int(n) for n in pages.values())


def available_memory_bytes() -> int | None:
    """Memory the process could still take without swapping: Linux ``MemAvailable``; macOS from ``vm_stat``;
    elsewhere the machine's total. None (unknown) where it cannot be read: callers then skip memory checks."""
    if is_macos():
        out = _run(["vm_stat"])
        return parse_vm_stat(out) if out else None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None
