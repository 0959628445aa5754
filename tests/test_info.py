"""``mlx_style.info`` and the BLAS loader (``mlx_style._blas``), with import order controlled in subprocesses."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import importlib.util
import json
import os
import subprocess
import sys

import mlx.core as mx
import pytest

from conftest import REPO_ROOT
from mlx_style.cli.info import main, report

LINUX_WITH_OPENCV = sys.platform.startswith("linux") and importlib.util.find_spec("cv2") is not None

PROBE = """
import json, sys
{first}
from mlx_style import _blas
import mlx.core as mx
mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64)))
maps = open("/proc/self/maps").read() if sys.platform.startswith("linux") else ""
print(json.dumps({{"loaded": _blas.STATUS.loaded, "reason": _blas.STATUS.reason,
                  "mapped": sorted({{l.split()[-1] for l in maps.splitlines() if "libopenblas" in l}})}}))
"""


def probe(first: str, **env: str) -> dict:
    """Run the BLAS probe in a fresh interpreter, importing ``first`` before anything else."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    if "MLX_STYLE_BLAS" not in env:
        environment.pop("MLX_STYLE_BLAS", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_report_lines(tmp_path):
    (tmp_path / "vgg16.safetensors").write_bytes(b"")
    lines = report(tmp_path, measure=False)
    assert lines[0].startswith(f"mlx_style {mlx_style.__version__}, Python ")
    assert lines[1] == f"MLX {mx.__version__}, default device: {mx.default_device()}"
    assert lines[2].startswith("BLAS: ")
    assert lines[3].startswith("freed memory: kept by ")
    assert lines[-3].startswith(f"loss network: {tmp_path}/vgg16.safetensors (unreadable")  # yours shadows ours
    assert lines[-2] == f"weights in {tmp_path}/: vgg16.safetensors"
    assert lines[-1] == "styles: none"  # no style network there, and the built-ins are hidden in tests
    assert len(lines) == 7


def test_report_measures_matmul(tmp_path):
    lines = report(tmp_path, measure=True)
    rate = [line for line in lines if line.startswith("matmul 1024³ float32: ")]
    assert len(rate) == 1 and float(rate[0].split(": ")[1].split()[0]) > 0
    assert lines[-2].endswith(": none")
    assert lines[-3].startswith("loss network: ") and "shipped with the package" in lines[-3] and "13" not in lines[-3]


def test_main_prints_report(tmp_path, capsys):
    assert main(["--no-measure", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MLX " in out and "BLAS: " in out and "matmul" not in out


@pytest.mark.skipif(not LINUX_WITH_OPENCV, reason="the OpenBLAS loader acts on Linux, with opencv-python's library")
def test_openblas_loaded_when_mlx_style_comes_first():
    status = probe("import mlx_style")
    assert status["loaded"] and "libopenblas" in os.path.basename(status["loaded"])
    assert "opencv_python" in status["loaded"]  # the wheel's copy is preferred
    assert status["reason"] == "OpenBLAS loaded before mlx.core"
    assert status["mapped"] == [os.path.realpath(status["loaded"])]  # and it is the only one in the process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loader only acts on Linux")
def test_blas_none_keeps_the_bundled_blas():
    status = probe("import mlx_style", MLX_STYLE_BLAS="none")
    assert status["loaded"] is None
    assert status["reason"] == "skipped (MLX_STYLE_BLAS=none)"
    assert status["mapped"] == []  # no OpenBLAS anywhere in the process: MLX uses its bundled BLAS


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loader only acts on Linux")
def test_importing_mlx_first_is_too_late():
    status = probe("import mlx.core\nimport mlx_style")
    assert status["loaded"] is None
    assert status["reason"].startswith("too late: mlx.core was imported before mlx_style")
    assert status["mapped"] == []


def test_report_shows_the_blas_status():
    from mlx_style import _blas

    line = report(REPO_ROOT / "no-such-folder", measure=False)[2]
    if _blas.STATUS.loaded:
        assert line == f"BLAS: OpenBLAS {_blas.STATUS.loaded} ({_blas.STATUS.reason})"
    else:
        assert line == f"BLAS: MLX bundled ({_blas.STATUS.reason})"
