"""``scripts/bench/stable_compare.py``'s bookkeeping: which networks a run trains, and when a rerun may reuse a
network's clip measurements instead of stylising the clips again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scripts.bench import stable_compare


def args(*argv):
    return stable_compare.build_parser().parse_args(list(argv))


def test_every_weight_is_trained_at_every_noise_beside_one_plain_network():
    got = stable_compare.variants(args("--weights", "300,1000", "--noise", "3,8"))
    assert got == [
        ("plain", 0.0, 3.0),
        ("stable 300", 300.0, 3.0),
        ("stable 300 noise 8", 300.0, 8.0),
        ("stable 1000", 1000.0, 3.0),
        ("stable 1000 noise 8", 1000.0, 8.0),
    ]
    assert [v[0] for v in stable_compare.variants(args("--weights", "1000", "--fixed-target"))] == [
        "plain",
        "stable 1000 fixed",
    ]
    for bad in (["--weights", "0"], ["--noise", "-1"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            stable_compare.variants(args(*bad))


def test_clip_measurements_are_reused_only_for_the_same_network_clips_and_settings(tmp_path):
    net = tmp_path / "net.safetensors"
    net.write_bytes(b"x")
    clips = [Path("fox.mp4"), Path("pan.avi")]
    rows = [{"clip": c.name, "setting": s, "frames": 60} for c in clips for s in ("plain", "--smooth 0.5")]
    target = tmp_path / "flicker_net.json"
    target.write_text(json.dumps({"model": str(net), "size": 256, "rows": rows}))
    os.utime(net, (1, 1))  # the network is older than its measurements
    a = args("--frames", "60")
    assert stable_compare.measured(target, str(net), clips, a)
    assert not stable_compare.measured(target, str(net), clips[:1], a)  # another set of clips
    assert not stable_compare.measured(target, str(net), clips, args("--frames", "90"))
    assert not stable_compare.measured(target, str(net), clips, args("--frames", "60", "--size", "128"))
    assert not stable_compare.measured(target, str(net), clips, args("--frames", "60", "--smooth", "0.3"))
    assert not stable_compare.measured(target, str(tmp_path / "other.safetensors"), clips, a)
    os.utime(net, None)
    os.utime(target, (1, 1))  # retrained after it was measured
    assert not stable_compare.measured(target, str(net), clips, a)
    assert not stable_compare.measured(tmp_path / "missing.json", str(net), clips, a)
