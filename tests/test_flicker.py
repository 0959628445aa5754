"""Stability of stylised video: the warping error and static flicker metrics, and temporal smoothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)

from mlx_style.cli import flicker as flicker_cli
from mlx_style.infer.flicker import consistent, luma, stability, warp
from mlx_style.infer.smoothing import TemporalSmoother


def textured(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return np.clip((base - base.mean()) * 4 + 128, 0, 255).astype(np.uint8)


def panning(frames: int = 8, step: int = 2) -> list[np.ndarray]:
    """A textured scene moving ``step`` pixels right per frame."""
    scene = textured(64, 96 + step * frames)
    return [np.ascontiguousarray(scene[:, step * (frames - t) : step * (frames - t) + 96]) for t in range(frames)]


def test_warp_by_the_flow_of_a_known_shift_recovers_the_frame():
    a = textured()
    flow = np.zeros((64, 96, 2), np.float32)
    flow[..., 0] = 3.0  # every pixel of the new frame lies 3 px to the right in the old one
    shifted = warp(a, flow)
    assert np.array_equal(shifted[:, :90], a[:, 3:93])
    back = np.zeros_like(flow)
    back[..., 0] = -3.0
    assert consistent(flow, back)[:, 5:85].all() and not consistent(flow, flow)[:, 5:85].any()


def test_a_stable_stylisation_scores_at_the_floor_and_shimmer_scores_far_above():
    original = panning()
    steady = [cv2.bitwise_not(f) for f in original]  # a "style" that moves with the content
    rng = np.random.default_rng(1)
    shimmer = [np.clip(f.astype(np.int16) + rng.integers(-25, 26, f.shape), 0, 255).astype(np.uint8) for f in steady]
    floor, good, bad = stability(original, original), stability(original, steady), stability(original, shimmer)
    assert good.warping_error < 2 * floor.warping_error + 1e-4
    assert bad.warping_error > 10 * good.warping_error
    still = [original[0]] * 6
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-25, 26, f.shape), 0, 255).astype(np.uint8) for f in still]
    assert stability(still, still).static_flicker == 0.0
    assert stability(still, noisy).static_flicker > 5.0


def test_a_texture_moving_with_faint_content_is_not_static_flicker():
    """A faint scene pans 1 px a frame: its luma changes by less than 2 levels, so luma alone would call it still
    (and score the strong texture that rightly moves with it about 3.4 levels of shimmer). Its flow shows that
    every pixel moved, so no pixel counts as still."""
    scene = textured(64, 96 + 8, seed=3)
    moving = [np.ascontiguousarray(scene[:, 8 - t : 104 - t]) for t in range(8)]
    faint = [np.clip((f.astype(np.float32) - 128) / 8 + 128, 0, 255).astype(np.uint8) for f in moving]
    assert np.mean(np.abs(luma(faint[1]) - luma(faint[0])) < 2) > 0.99
    assert np.isnan(stability(faint, moving).static_flicker)
    assert stability(faint, moving).warping_error < 1e-3


def test_smoothing_calms_shimmer_on_a_still_scene_and_restarts_at_a_cut():
    frame = textured()
    rng = np.random.default_rng(2)
    raw = [
        np.clip(frame.astype(np.int16) + rng.integers(-30, 31, frame.shape), 0, 255).astype(np.uint8) for _ in range(12)
    ]
    smoother = TemporalSmoother(0.5)
    smoothed = [smoother(frame, s) for s in raw]

    def change(video):
        return np.mean([np.abs(luma(b) - luma(a)).mean() for a, b in zip(video[4:], video[5:])])

    assert change(smoothed) < 0.8 * change(raw)  # two frames' noise averaged: about 1/√2 of it
    other = textured(seed=9)  # a cut: nothing of the previous frame is in this one
    stylised = cv2.bitwise_not(other)
    assert np.array_equal(smoother(other, stylised), stylised) and smoother.cuts == 1
    assert not np.array_equal(smoother(other, raw[0][: other.shape[0]]), raw[0])  # blends again after the cut
    assert np.array_equal(TemporalSmoother(0.0)(frame, raw[0]), raw[0])
    with pytest.raises(ValueError):
        TemporalSmoother(1.0)


def write(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_the_flicker_command_reports_the_video_and_the_floor(tmp_path, capsys):
    original = write(tmp_path / "o.avi", panning())
    stylised = write(tmp_path / "s.avi", [cv2.bitwise_not(f) for f in panning()])
    assert flicker_cli.main([str(original), str(stylised), "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "stylised" in out and "(the floor)" in out and (tmp_path / "f.json").exists()
    assert flicker_cli.main([str(original), str(tmp_path / "missing.avi")]) == 2


def test_cam_and_stylize_take_smooth_and_refuse_a_bad_weight(tmp_path, capsys):
    import mlx.core as mx

    from mlx_style.cli import cam as cam_cli
    from mlx_style.cli import stylize as stylize_cli
    from mlx_style.io.models import save_transformer
    from mlx_style.nn.transformer import TransformerConfig, TransformerNet

    mx.random.seed(0)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1))
    out_conv = net.deconv3.conv2d  # image-like output (mid-grey, tens of levels of contrast), not clipped to 0
    out_conv.weight = out_conv.weight * 40.0
    out_conv.bias = mx.full(out_conv.bias.shape, 128.0)
    model = save_transformer(tmp_path / "m.safetensors", net)
    clip = write(tmp_path / "clip.avi", panning(6))
    assert (
        cam_cli.main(
            [
                "--headless",
                "--source",
                str(clip),
                "--model",
                str(model),
                "--smooth",
                "--size",
                "32",
                "--output",
                str(tmp_path / "cam.avi"),
            ]
        )
        == 0
    )
    from mlx_style.infer.flicker import read_video

    assert len(read_video(tmp_path / "cam.avi")) == 6
    # the cam smooths by default; --smooth 0 turns it off
    assert (
        cam_cli.main(
            [
                "--headless",
                "--source",
                str(clip),
                "--model",
                str(model),
                "--size",
                "32",
                "--output",
                str(tmp_path / "cam_default.avi"),
            ]
        )
        == 0
    )
    assert "smoothing 0.5" in capsys.readouterr().out
    assert (
        cam_cli.main(
            [
                "--headless",
                "--source",
                str(clip),
                "--model",
                str(model),
                "--size",
                "32",
                "--smooth",
                "0",
                "--output",
                str(tmp_path / "cam_off.avi"),
            ]
        )
        == 0
    )
    assert "smoothing off" in capsys.readouterr().out
    default, off = read_video(tmp_path / "cam_default.avi"), read_video(tmp_path / "cam_off.avi")
    assert np.array_equal(default[0], off[0]) and not np.array_equal(default[3], off[3])
    assert np.array_equal(default[3], read_video(tmp_path / "cam.avi")[3])  # the default is --smooth's weight
    assert stylize_cli.main(["-m", str(model), str(clip), "-o", str(tmp_path / "s.avi"), "--smooth", "0.5"]) == 0
    smoothed = read_video(tmp_path / "s.avi")
    assert len(smoothed) == 6 and smoothed[0].shape == (64, 96, 3)
    assert stylize_cli.main(["-m", str(model), str(clip), "-o", str(tmp_path / "p.avi"), "--smooth", "0"]) == 0
    plain = read_video(tmp_path / "p.avi")
    assert np.array_equal(plain[0], smoothed[0])  # nothing to blend with in the first frame
    assert not np.array_equal(plain[3], smoothed[3])  # later frames are blended
    assert stylize_cli.main(["-m", str(model), str(clip), "-o", str(tmp_path / "d.avi")]) == 0
    assert np.array_equal(read_video(tmp_path / "d.avi")[3], smoothed[3])  # stylize smooths by default, as the cam
    assert cam_cli.main(["--headless", "--source", str(clip), "--model", str(model), "--smooth", "1.5"]) == 2
    assert stylize_cli.main(["-m", str(model), str(clip), "-o", str(tmp_path / "t.avi"), "--smooth", "2"]) == 2
    capsys.readouterr()


def test_videos_of_other_sizes_or_lengths_are_said_and_measured_in_bounded_memory(tmp_path, capsys):
    from mlx_style.infer import flicker

    original = write(tmp_path / "o.avi", panning(8))
    small = write(tmp_path / "s.avi", [cv2.resize(f, (48, 32)) for f in panning(6)])
    result = flicker.compare(original, small)
    assert result["stylised"]["frames"] == 6 and result["original"]["frames"] == 8
    assert any("48×32, the original 96×64" in n for n in result["notes"])
    assert any("6 frames, the original 8: compared over the first 6" in n for n in result["notes"])
    assert flicker_cli.main([str(original), str(small)]) == 0
    assert capsys.readouterr().err.count("note: ") == 2
    frames = flicker.iter_video(original)
    assert next(frames).shape == (64, 96, 3)  # one frame at a time, not a list of them all


@pytest.mark.builtin_styles
def test_flicker_table_runs_a_builtin_style_with_its_losses(tmp_path, capsys):
    """``scripts/bench/flicker_table.py`` on the built-in wave (one style of the built-ins' network): a plain and a
    smoothed row per clip, the same floor in both, and the frames' losses measured."""
    import json

    from conftest import shared_data
    from mlx_style.io.vgg_weights import SHIPPED_VGG
    from scripts.bench import flicker_table

    clip = shared_data("video", "fox.mp4")
    out = tmp_path / "table.json"
    argv = ["--model", "wave", "--clips", str(clip), "--size", "64", "--frames", "4", "--vgg", str(SHIPPED_VGG)]
    assert flicker_table.main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["setting"] for r in rows] == ["plain", "--smooth 0.5"] and all(r["frames"] == 4 for r in rows)
    assert rows[0]["floor_warping_error"] == rows[1]["floor_warping_error"]
    assert all(r["style_loss"] > 0 and r["content_loss"] > 0 for r in rows)
    assert rows[0]["warping_error"] != rows[1]["warping_error"]  # the smoothing changed the frames
    assert capsys.readouterr().out.count("| fox.mp4 |") == 2
