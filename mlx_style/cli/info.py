"""Show what mlx_style runs on: ``python -m mlx_style.info``.

Prints the platform (and, on a Mac, plainly what keeps MLX from running there: a Python under Rosetta, an Intel
Mac, macOS older than 14), the MLX version, the default device, the BLAS in use (and a measured matmul rate, so a
slow reference BLAS is obvious), where freed memory is kept (``mlx_style.backend``), and the converted weights
found under ``weights/``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
from mlx_style import _blas
from mlx_style import platform as host
from mlx_style.io.registry import style_listing
from mlx_style import backend as memory


def matmul_gflops(n: int = 1024, repeats: int = 3) -> float:
    """Measured float32 matmul rate on the default device."""
    import mlx.core as mx

    a = mx.random.normal((n, n))
    mx.eval(a @ a)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(a @ a)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def report(weights_dir: str | Path = "weights", measure: bool = True) -> list[str]:
    import mlx.core as mx

    status = _blas.STATUS
    lines = [f"mlx_style {mlx_style.__version__}, Python {platform.python_version()} on {host.describe()}"]
    lines += [f"problem: {problem}" for problem in host.install_problems()]
    if host.is_macos() and memory.backend_name() == "cpu":
        lines.append("problem: MLX computes on the CPU here, not on the Mac's GPU (Metal is not available to it)")
    lines += [
        f"MLX {mx.__version__}, default device: {mx.default_device()}",
        f"BLAS: {'OpenBLAS ' + status.loaded if status.loaded else 'MLX bundled'} ({status.reason})",
    ]
    lines.append(
        "freed memory: "
        + (
            "kept by glibc's malloc heap, reused at any size (MLX_STYLE_MALLOC=mlx: MLX's size-matched cache instead)"
            if memory.uses_glibc_heap()
            else "kept in MLX's buffer cache"
        )
    )
    if measure:
        lines.append(f"matmul 1024³ float32: {matmul_gflops():.0f} GFLOP/s")
    lines.append("loss network: " + loss_network(weights_dir))
    found = sorted(Path(weights_dir).glob("*.safetensors"))
    lines.append(f"weights in {weights_dir}/: " + (", ".join(p.name for p in found) if found else "none"))
    styles = style_listing(weights_dir)
    lines.append("styles (name, from, painting, file):" if styles else "styles: none")
    lines += ["  " + line for line in styles]
    return lines


def loss_network(weights_dir: str | Path) -> str:
    """Which VGG ``train`` and ``optimize`` use without ``--vgg`` (``io.vgg_weights.default_vgg``'s rule)."""
    from mlx_style.io.vgg_weights import SHIPPED_VGG
    from mlx_style.io.weights import read_header

    yours = Path(weights_dir) / "vgg16.safetensors"
    path = yours if yours.exists() or not SHIPPED_VGG.exists() else SHIPPED_VGG
    if not path.exists():
        return "none (python scripts/convert_vgg.py makes one)"
    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        return f"{path} (unreadable: {exc})"
    meta = header.get("__metadata__") or {}
    convs = sum(1 for name in header if name.endswith(".weight"))
    where = "yours" if path == yours else "shipped with the package (Caffe VGG16, CC BY 4.0)"
    return f"{path}, {where}: {convs} convolutions, {meta.get('preprocess', '?')} preprocessing"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx-style info", description=__doc__.splitlines()[0])
    p.add_argument("--weights-dir", default="weights")
    p.add_argument("--no-measure", action="store_true", help="skip the matmul speed check")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print("\n".join(report(args.weights_dir, measure=not args.no_measure)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
