"""How long things take, as people read it: shared by training's progress line and a video's."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """``3725`` → ``1:02:05``; ``65`` → ``1:05``; unknown → ``?``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
