"""Video files through ``io.video`` (PyAV): what ``stylize`` and the cam write (H.264, the source's timing, sound and
orientation), resuming after ``kill -9``, and every way a video can fail (a full disk, a file cut short, bad input).

The clips are made here with PyAV: a moving pattern with a sine tone, a variable-rate clip, a rotated clip, an odd
size; the network is a tiny random one.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import cv2
import mlx.core as mx
from mlx.utils import tree_map

from conftest import REPO_ROOT, shared_data
from mlx_style.cli import cam as cam_cli
from mlx_style.cli import stylize as stylize_cli
from mlx_style.infer import jobs, video_files
from mlx_style.infer.flicker import read_video
from mlx_style.io import video
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet

TONE, RATE = 440.0, 22050


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny random network with an image-like output (mid-grey, tens of levels of contrast)."""
    mx.random.seed(3)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1))
    net.update(tree_map(lambda p: p + 0.3 * mx.random.normal(p.shape), net.parameters()))
    net.deconv3.conv2d.weight = net.deconv3.conv2d.weight * 40.0
    net.deconv3.conv2d.bias = mx.array([140.0, 120.0, 100.0])
    return save_transformer(tmp_path_factory.mktemp("models") / "tiny.safetensors", net, {"style": "tiny"})


def pattern(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a bar moving right over a red ramp, a green block in the top-left corner (shows orientation)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(40, 200, width, dtype=np.uint8)
    image[:, (3 * i) % width : (3 * i) % width + 6] = 230
    image[: height // 4, : width // 4] = (0, 255, 0)
    return image


def make_clip(
    path: Path,
    frames: int = 20,
    size=(64, 48),
    fps: int = 10,
    tone: bool = True,
    rotation: int = 0,
    vfr: bool = False,
    faststart: bool = False,
    codec: str = "libx264",
    noise: bool = False,
) -> Path:
    """A clip written with PyAV; ``vfr``: frame durations of 50 and 150 ms in turn (time base 1/1000); ``noise``:
    fresh noise in every frame (frames of similar sizes in bytes)."""
    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=RATE, layout="mono") if tone else None
        pts = 0
        for i in range(frames):
            image = pattern(i, width, height)
            if noise:
                image = np.clip(image + rng.normal(0, 30, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            pts += (50 if i % 2 else 150) if vfr else 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            samples = int(float(pts * time_base) * RATE)
            wave = (0.3 * np.sin(2 * np.pi * TONE * np.arange(samples) / RATE)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = RATE, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def stylize(*args, capsys=None) -> tuple[int, str, str]:
    code = stylize_cli.main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def video_timing(path: Path) -> tuple[list[Fraction], Fraction]:
    """Every frame's presentation time in seconds, and the video stream's end (start + duration)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [frame.pts * stream.time_base for frame in container.decode(stream)]
        return times, ((stream.start_time or 0) + stream.duration) * stream.time_base


def audio_of(path: Path) -> tuple[list[bytes], float, np.ndarray, str]:
    """The first audio stream's packets (bytes), its duration in seconds, its decoded samples and its codec."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        packets = [bytes(p) for p in container.demux(stream) if p.size]
    with av.open(str(path)) as container:
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    return packets, duration, samples, stream.codec_context.name


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# ---------------------------------------------------------------------------------------------------------------
# What is written


def test_a_stylised_clip_is_h264_with_the_source_timing_and_its_sound_copied(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4")
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", capsys=capsys)
    assert code == 0 and "sound kept (1 stream)" in out and "20 frames" in out
    with av.open(str(tmp_path / "out.mp4")) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt, context.width, context.height) == ("h264", "yuv420p", 64, 48)
        assert (context.colorspace, context.color_primaries, context.color_trc) == (1, 1, 1)  # BT.709
        assert container.streams.video[0].frames == 20
    assert video_timing(tmp_path / "out.mp4") == video_timing(clip)  # every frame at its time, same end
    source, styled = audio_of(clip), audio_of(tmp_path / "out.mp4")
    assert styled[0] == source[0] and styled[1] == pytest.approx(source[1], abs=1e-6)  # copied packet for packet
    assert abs(peak_frequency(styled[2], RATE) - TONE) < 2.0
    assert np.abs(decoded(tmp_path / "out.mp4")[5].astype(int) - pattern(5, 64, 48)).mean() > 10  # stylised


def test_a_variable_rate_clip_keeps_every_timestamp(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "vfr.mp4", frames=12, vfr=True)
    times, end = video_timing(clip)
    assert len(set(np.diff(times))) == 2  # really variable: 50 and 150 ms
    assert stylize("-m", model, clip, "-o", tmp_path / "out.mp4", capsys=capsys)[0] == 0
    assert video_timing(tmp_path / "out.mp4") == (times, end)
    assert audio_of(tmp_path / "out.mp4")[1] == pytest.approx(audio_of(clip)[1], abs=1e-6)


def test_a_rotated_clip_comes_out_upright(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "portrait.mp4", frames=4, rotation=90, tone=False)
    with av.open(str(clip)) as container:
        assert next(container.decode(video=0)).rotation == 90  # stored sideways, with a display matrix
    capture = cv2.VideoCapture(str(clip))  # OpenCV turns it upright: the reference
    upright = capture.read()[1][..., ::-1]
    capture.release()
    assert upright.shape == (64, 48, 3)
    # strength 0: the output is the input, so its orientation can be compared
    code, out, _ = stylize(
        "-m", model, clip, "-o", tmp_path / "out.mp4", "--strength", "0", "--smooth", "0", capsys=capsys
    )
    assert code == 0 and "48×64, 4 frames" in out
    first = decoded(tmp_path / "out.mp4")[0]
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 0
    assert first.shape == (64, 48, 3) and np.abs(first.astype(int) - upright).mean() < 4
    assert first[-8:, :8, 1].mean() > 200 and first[:8, :8, 1].mean() < 100  # turned counter-clockwise


def test_an_odd_size_is_padded_for_h264_and_kept_for_vp9_and_said(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "odd.mkv", frames=4, size=(65, 47), codec="libvpx-vp9", tone=False)
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", capsys=capsys)
    assert code == 0 and "65×47 has an odd side" in out and "the video is 66×48" in out
    assert decoded(tmp_path / "out.mp4")[0].shape == (48, 66, 3)
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "out.webm", capsys=capsys)
    assert code == 0 and "odd side" not in out
    with av.open(str(tmp_path / "out.webm")) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.width, context.height) == ("vp9", 65, 47)


def test_webm_gets_opus_sound_and_no_audio_drops_it(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=10)
    assert stylize("-m", model, clip, "-o", tmp_path / "out.webm", capsys=capsys)[0] == 0
    _, duration, samples, codec = audio_of(tmp_path / "out.webm")
    assert codec == "opus" and duration == pytest.approx(1.0, abs=0.05)  # AAC does not go in WebM: re-encoded
    assert abs(peak_frequency(samples, 48000) - TONE) < 3.0
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "silent.mp4", "--no-audio", capsys=capsys)
    assert code == 0 and "sound dropped (--no-audio)" in out
    with av.open(str(tmp_path / "silent.mp4")) as container:
        assert not container.streams.audio and container.streams.video[0].frames == 10


def test_the_encoder_follows_the_suffix_and_the_platform(monkeypatch):
    assert video.video_encoder(".MP4", "linux") == "libx264" and video.video_encoder(".webm") == "libvpx-vp9"
    monkeypatch.setattr(video, "has_codec", lambda name, mode="w": name == "h264_videotoolbox")
    assert video.video_encoder(".mov", "darwin") == "h264_videotoolbox"
    assert video.video_encoder(".mov", "linux") == "libx264"
    assert video.writable_size("libx264", 641, 359) == (642, 360) and video.writable_size("mjpeg", 5, 3) == (5, 3)


def first_frames_of(source: Path, target: Path, at_least: int) -> Path:
    """The first ``at_least`` (or a few more) frames of ``source``, its packets copied: cut where the packets so far
    are the first frames in display order, so that every B-frame kept has its references."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        seen = []
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            if len(seen) >= at_least and packet.pts > max(seen):
                break  # every frame shown before this one is in
            seen.append(packet.pts)
            packet.stream = stream
            out.mux(packet)
    return target


def test_fox_keeps_its_frames_timing_and_size(model, tmp_path, capsys):
    """A real phone-made H.264 clip (B-frames, 29.97 fps, time base 1/11988): its first 30-odd frames, since all 420
    at 640×640 take a minute on two cores."""
    fox = first_frames_of(shared_data("video", "fox.mp4"), tmp_path / "fox.mp4", at_least=30)
    code, out, _ = stylize(
        "-m", model, fox, "-o", tmp_path / "out.mp4", "--size", "32", "--quality", "35", capsys=capsys
    )
    assert code == 0, out
    info = video.probe(tmp_path / "out.mp4")
    assert info.frames == video.probe(fox).frames >= 30 and (info.width, info.height) == (640, 640)
    assert video_timing(tmp_path / "out.mp4") == video_timing(fox) and info.rate == Fraction(2997, 100)


# ---------------------------------------------------------------------------------------------------------------
# Long runs: progress, interruption, resume


def test_kill_9_then_resume_equals_an_uninterrupted_run(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "long.mp4", frames=30, fps=5)  # 4-s segments: two, of 20 and 10 frames
    assert stylize("-m", model, clip, "-o", tmp_path / "reference.mp4", capsys=capsys)[0] == 0
    target = tmp_path / "out.mp4"
    target.write_bytes(b"an older result")
    env = {
        **os.environ,
        video.SLOW_FRAME_ENV: "0.15",
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlx_style.stylize", "-m", str(model), str(clip), "-o", str(target)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = tmp_path / ".out.mp4.partial" / "00000.mp4"
    try:
        deadline = time.monotonic() + 60
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"an older result"  # not replaced by an unfinished video
    code, out, _ = stylize("-m", model, clip, "-o", target, "--resume", capsys=capsys)
    assert code == 0 and "resuming after frame 20" in out and "20 of them from the interrupted run" in out
    reference, resumed = decoded(tmp_path / "reference.mp4"), decoded(target)
    assert len(resumed) == 30 and all(np.array_equal(a, b) for a, b in zip(reference, resumed))
    assert video_timing(target) == video_timing(clip) and audio_of(target)[0] == audio_of(clip)[0]
    assert not (tmp_path / ".out.mp4.partial").exists()


def test_resume_refuses_other_settings_and_a_plain_run_starts_over(model, tmp_path, capsys, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=30, fps=5, tone=False)
    monkeypatch.setattr(video.SegmentWriter, "close", _fail_on_second_segment(video.SegmentWriter.close))
    code, out, err = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", "--smooth", "0", capsys=capsys)
    monkeypatch.undo()
    assert code == 130 and "interrupted: 20 finished frames" in out and "--resume continues" in out
    assert (tmp_path / ".out.mp4.partial" / "00000.mp4").exists()
    code, _, err = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", "--resume", capsys=capsys)
    assert code == 2 and "made with other settings (smooth)" in err
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", capsys=capsys)
    assert code == 0 and "removing the unfinished .out.mp4.partial (no --resume)" in out


def _fail_on_second_segment(close):
    calls = []

    def interrupted(self):
        calls.append(self.path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return close(self)

    return interrupted


def test_progress_lines_give_frames_rate_and_time_left():
    clock = iter([0.0, 6.0, 7.0, 12.5])
    lines = []
    progress = video_files.Progress(total=100, done=40, log=lines.append, clock=lambda: next(clock))
    progress.tick(), progress.tick(), progress.tick()
    assert lines == ["  frame 41/100 (41%): 0.17 frames/s, 5:54 left", "  frame 43/100 (43%): 0.24 frames/s, 3:58 left"]


# ---------------------------------------------------------------------------------------------------------------
# The other readers of the new files: the flicker measure and the cam


def test_flicker_and_the_cam_read_the_new_files_and_the_cam_keeps_the_sound(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    assert stylize("-m", model, clip, "-o", tmp_path / "styled.mp4", capsys=capsys)[0] == 0
    frames = read_video(tmp_path / "styled.mp4")
    assert len(frames) == 8 and frames[0].shape == (48, 64, 3)
    out = tmp_path / "cam.mp4"
    assert (
        cam_cli.main(
            [
                "--headless",
                "--source",
                str(tmp_path / "styled.mp4"),
                "--model",
                str(model),
                "--size",
                "32",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "sound of" in printed and f"wrote {out} (8 frames)" in printed
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264" and container.streams.video[0].frames == 8
        assert len(container.streams.audio) == 1
    assert audio_of(out)[0] == audio_of(clip)[0]
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
                "--frames",
                "3",
                "--output",
                str(tmp_path / "part.mp4"),
            ]
        )
        == 0
    )
    assert "no sound added: 3 of the source's 8 frames were written" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# Failures: a full disk, a file cut short, bad input, too large for memory


def full_disk_after(calls: int, only: str = ""):
    """``io.video.mux`` that raises ENOSPC from its ``calls``-th call on (on files whose name holds ``only``)."""
    real, count = video.mux, [0]

    def mux(container, packets):
        if only in container.name:
            count[0] += 1
            if count[0] >= calls:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(container, packets)

    return mux


@pytest.mark.parametrize("moment", ["encoding", "joining"])
def test_a_full_disk_leaves_the_existing_output_untouched(model, tmp_path, capsys, monkeypatch, moment):
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"the user's earlier video")
    monkeypatch.setattr(video, "mux", full_disk_after(3) if moment == "encoding" else full_disk_after(1, ".partial."))
    code, _, err = stylize("-m", model, clip, "-o", target, capsys=capsys)
    assert code == 1 and err.strip() == f"error: could not write {target}: the disk is full"
    assert target.read_bytes() == b"the user's earlier video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]  # nothing partial left


def test_a_full_disk_under_resume_keeps_the_finished_segments_and_says_so(model, tmp_path, capsys, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=30, fps=5, tone=False)
    monkeypatch.setattr(video, "mux", full_disk_after(1, "00001.tmp"))
    code, _, err = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", "--resume", capsys=capsys)
    assert code == 1 and "the disk is full (20 finished frames kept in" in err and "for --resume)" in err
    monkeypatch.undo()
    code, out, _ = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", "--resume", capsys=capsys)
    assert code == 0 and "resuming after frame 20" in out and len(decoded(tmp_path / "out.mp4")) == 30


def test_the_cam_output_on_a_full_disk_is_one_line_and_exit_1(model, tmp_path, capsys, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=6, tone=False)
    target = tmp_path / "cam.mp4"
    target.write_bytes(b"earlier")
    monkeypatch.setattr(video, "mux", full_disk_after(2))
    code = cam_cli.main(
        ["--headless", "--source", str(clip), "--model", str(model), "--size", "32", "--output", str(target)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [f"error: could not write {target}: the disk is full"]
    assert target.read_bytes() == b"earlier" and not list(tmp_path.glob(".cam*"))


def test_a_truncated_video_fails_with_one_line_and_exit_1(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=10, faststart=True, tone=False, noise=True)  # the index first
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    target = tmp_path / "out.mp4"
    target.write_bytes(b"earlier")
    code, _, err = stylize("-m", model, cut, "-o", target, capsys=capsys)
    assert code == 1
    line = [l for l in err.splitlines() if "cut.mp4" in l]
    assert len(line) == 1 and "end of video after" in line[0] and "of its 10 frames (the file is cut short" in line[0]
    assert target.read_bytes() == b"earlier" and not list(tmp_path.glob(".out*"))


def test_bad_videos_in_a_folder_are_one_line_each_and_the_rest_goes_on(model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "good.mp4", frames=3, tone=False)
    cv2.imwrite(str(folder / "photo.png"), pattern(0, 32, 24))
    (folder / "notes.mp4").write_text("not a video")
    with av.open(str(folder / "sound_only.m4a.mp4"), "w") as out:  # an audio stream and nothing else
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = RATE, 0
        out.mux(stream.encode(frame)), out.mux(stream.encode(None))
    with av.open(str(folder / "empty.avi"), "w") as out:  # a video stream without a frame
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuvj420p"
        out.start_encoding()
    data = make_clip(tmp_path / "mjpeg.avi", frames=2, codec="mjpeg", tone=False).read_bytes()
    assert b"MJPG" in data
    (folder / "alien.avi").write_bytes(data.replace(b"MJPG", b"ZQZQ"))  # a codec FFmpeg does not know
    code, out, err = stylize("-m", model, folder, "-o", tmp_path / "out", capsys=capsys)
    assert code == 1 and "done: 2 stylised, 4 failed" in out
    skipped = {
        line.split(": skipped: ")[0].rsplit("/", 1)[-1]: line.split(": skipped: ")[1]
        for line in err.splitlines()
        if ": skipped: " in line
    }
    assert skipped.keys() == {"notes.mp4", "sound_only.m4a.mp4", "empty.avi", "alien.avi"}
    assert "not a video FFmpeg can read" in skipped["notes.mp4"]
    assert "no video stream" in skipped["sound_only.m4a.mp4"]
    assert skipped["empty.avi"] == "the video has no frames"
    assert "cannot be decoded" in skipped["alien.avi"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4", "photo.png"]


def test_a_video_too_large_for_memory_is_refused_before_decoding(model, tmp_path, capsys, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=3, tone=False)
    monkeypatch.setattr(jobs.backend, "available_memory_bytes", lambda: 2_000_000_000)
    monkeypatch.setattr(video.VideoReader, "__iter__", lambda self: pytest.fail("decoded"))
    code, _, err = stylize("-m", model, clip, "-o", tmp_path / "out.mp4", "--size", "20000", capsys=capsys)
    assert code == 2 and "network size 20000×15000 needs about" in err and "pass --size" in err
    assert not list(tmp_path.glob("*out*")) and not list(tmp_path.glob(".*"))
