"""What every command shares: one error line on stderr and the exit status it implies (``mlx_style.errors``)."""

from __future__ import annotations

import argparse
import sys

from mlx_style.errors import MlxStyleError


def fail(problem: str | BaseException, code: int | None = None) -> int:
    """Print ``error: <first line of problem>`` on stderr; return the exit status (2 unless the error says)."""
    if code is None:
        code = problem.exit_code if isinstance(problem, MlxStyleError) else 2
    text = str(problem).strip().splitlines()
    print(f"error: {text[0] if text else type(problem).__name__}", file=sys.stderr)
    return code


def comma_floats(text: str) -> tuple[float, ...]:
    """An argparse type: ``0.7,0.3`` → ``(0.7, 0.3)``."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.7,0.3,0.03,0.03, got {text!r}")


def comma_ints(text: str) -> tuple[int, ...]:
    """An argparse type: ``256,128,64`` → ``(256, 128, 64)``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 256,128,64, got {text!r}")


def comma_names(text: str) -> tuple[str, ...]:
    """An argparse type: ``relu1_2, relu2_2`` → ``("relu1_2", "relu2_2")``."""
    return tuple(v.strip() for v in text.split(",") if v.strip())
