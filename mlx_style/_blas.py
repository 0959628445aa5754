"""Load a fast BLAS before MLX on Linux.

The Linux ``mlx-cpu`` wheel links the reference (netlib) BLAS, which runs large matrix products many times
slower than an optimised BLAS. If an OpenBLAS is already in the process's global symbol scope when ``mlx.core``
is first imported, MLX's ``cblas_sgemm`` calls resolve to it (far faster, equal results; docs/benchmarks.md).
This module finds one and loads it with ``RTLD_GLOBAL``. It is the package's single import-time side effect:
it only loads a shared library, and only on Linux, and only when ``mlx.core`` has not been imported yet.

Set ``MLX_STYLE_BLAS=none`` to skip it, or ``MLX_STYLE_BLAS=/path/to/libopenblas.so`` to choose the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import sys
from dataclasses import dataclass

ENV_VAR = "MLX_STYLE_BLAS"
_WHEEL_LIB_DIRS = (
    "opencv_python.libs",
    "opencv_python_headless.libs",
    "opencv_contrib_python.libs",
    "opencv_contrib_python_headless.libs",
)
_SYSTEM_NAMES = ("libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.so")


@dataclass
class BlasStatus:
    """What the loader did: ``loaded`` path (or None) and a one-line human ``reason``."""

    loaded: str | None
    reason: str


STATUS = BlasStatus(None, "not attempted")


def _site_dirs() -> list[str]:
    """Folders that hold installed packages, found without importing any of them."""
    dirs = []
    spec = importlib.util.find_spec("cv2")
    if spec is not None and spec.origin:
        dirs.append(os.path.dirname(os.path.dirname(spec.origin)))
    dirs.extend(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return list(dict.fromkeys(dirs))


def candidates() -> list[str]:
    """OpenBLAS libraries that could serve MLX, best first: the opencv wheel's, then the system's."""
    found = []
    for site in _site_dirs():
        for sub in _WHEEL_LIB_DIRS:
            found.extend(sorted(glob.glob(os.path.join(site, sub, "libopenblas*.so*"))))
    for name in _SYSTEM_NAMES:
        found.append(name)
    lib = ctypes.util.find_library("openblas")
    if lib:
        found.append(lib)
    return list(dict.fromkeys(found))


def setup() -> BlasStatus:
    """Load the first usable OpenBLAS globally; records and returns what happened. Never raises."""
    global STATUS
    choice = os.environ.get(ENV_VAR, "").strip()
    if not sys.platform.startswith("linux"):
        STATUS = BlasStatus(None, "not needed on this platform (MLX uses the system's fast BLAS)")
    elif choice.lower() in ("none", "0", "off"):
        STATUS = BlasStatus(None, f"skipped ({ENV_VAR}={choice})")
    elif "mlx.core" in sys.modules:
        STATUS = BlasStatus(
            None,
            "too late: mlx.core was imported before mlx_style, so MLX keeps its bundled "
            "reference BLAS (import mlx_style first)",
        )
    else:
        tried = [choice] if choice else candidates()
        for path in tried:
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
            except OSError:
                continue
            STATUS = BlasStatus(path, "OpenBLAS loaded before mlx.core")
            break
        else:
            STATUS = BlasStatus(
                None,
                "no OpenBLAS found: MLX uses its bundled reference BLAS (slow); "
                "`pip install opencv-python` or `apt-get install libopenblas0` fixes it",
            )
    return STATUS
