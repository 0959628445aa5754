"""What every command shares: one error line on stderr and the exit status it implies (``mlx_style.errors``)."""

from __future__ import annotations

import sys

from mlx_style.errors import MlxStyleError


def fail(problem: str | BaseException, code: int | None = None) -> int:
    """Print ``error: <first line of problem>`` on stderr; return the exit status (2 unless the error says)."""
    if code is None:
        code = problem.exit_code if isinstance(problem, MlxStyleError) else 2
    text = str(problem).strip().splitlines()
    print(f"error: {text[0] if text else type(problem).__name__}", file=sys.stderr)
    return code
