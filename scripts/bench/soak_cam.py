"""Soak test of the headless cam: run it for N minutes on a looping video and report, per minute, the resident
memory, the model latency p50/p95 and the frames processed and dropped; JSON out.

    python -m scripts.bench.soak_cam --source ../shared/data/video/fox.mp4 --minutes 30 --json soak.json

Pacing is ``realtime`` (the file at its own rate, stale frames dropped, as a camera), so dropped frames are
expected whenever the model is slower than the source: the report gives the drops the pacing explains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import numpy as np

from mlx_style.backend import keep_freed_memory, resident_bytes
from mlx_style.infer.live import CamConfig, run


@dataclass
class Minute:
    index: int
    frames: int
    dropped: int
    rss_mb: float
    latency_ms_p50: float
    latency_ms_p95: float


def soak(config: CamConfig, minutes: float, log=print) -> dict:
    """Run the cam for ``minutes`` and return the per-minute table and the goals' figures."""
    rows: list[Minute] = []
    window: list[float] = []
    start = time.monotonic()
    state = {"minute_start": start, "dropped_at_start": 0, "dropped": 0}

    def close_minute(now: float) -> None:
        lat = np.asarray(window) * 1000 if window else np.asarray([np.nan])
        row = Minute(
            len(rows) + 1,
            len(window),
            state["dropped"] - state["dropped_at_start"],
            resident_bytes() / 1e6,
            float(np.percentile(lat, 50)),
            float(np.percentile(lat, 95)),
        )
        rows.append(row)
        log(
            f"minute {row.index}: {row.frames} frames, {row.dropped} dropped, RSS {row.rss_mb:.1f} MB, "
            f"latency p50 {row.latency_ms_p50:.1f} ms, p95 {row.latency_ms_p95:.1f} ms"
        )
        window.clear()
        state["minute_start"], state["dropped_at_start"] = now, state["dropped"]

    def on_frame(latency: float, dropped: int) -> bool:
        now = time.monotonic()
        window.append(latency)
        state["dropped"] = dropped
        if now - state["minute_start"] >= 60:
            close_minute(now)
        return now - start >= minutes * 60

    result = run(config, log=log, on_frame=on_frame)
    if window:
        close_minute(time.monotonic())
    full = [r for r in rows if r.frames]
    summary = {
        "minutes": len(rows),
        "reason": result.reason,
        "frames": result.stats["frames"],
        "dropped": result.dropped,
        "rows": [r.__dict__ for r in rows],
    }
    if len(full) >= 2:
        after_first = full[1].rss_mb
        summary["rss_growth_after_first_minute"] = (max(r.rss_mb for r in full[1:]) - after_first) / after_first
        first5, last5 = full[:5], full[-5:]
        summary["p95_first5_ms"] = float(np.mean([r.latency_ms_p95 for r in first5]))
        summary["p95_last5_ms"] = float(np.mean([r.latency_ms_p95 for r in last5]))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.soak_cam", description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="a video file (it loops)")
    p.add_argument("--model", default=None, help="style network (default: the first one found)")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--size", type=int, default=None, help="processing size (default: the cam's own choice)")
    p.add_argument("--json", default=None, help="write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    config = CamConfig(
        model=args.model, source=args.source, size=args.size, headless=True, loop=True, pacing="realtime"
    )
    summary = soak(config, args.minutes)
    text = json.dumps(summary, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
