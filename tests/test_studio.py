"""The studio's handlers without a browser (``mlx_style.studio``): what the page may name, the style catalogue,
binding and blending, photos, videos, the live stream, training runs, export and sharing, and the command's
refusals. The browser drives the same handlers in tests/test_studio_browser.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from mlx_style.api import load_style, stylize
from mlx_style.errors import UsageError
from mlx_style.infer.stylizer import processing_shape
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.pixels import resize
from mlx_style.studio import engine
from mlx_style.studio.catalogue import Catalogue
from mlx_style.studio.config import StudioConfig, check_serving, is_loopback
from mlx_style.studio.live import LiveSession
from mlx_style.studio.media import Settings, VideoJob, stylise_photos
from mlx_style.studio.paths import StudioError, allowed_roots, check_name, check_upload, confine, load_upload_image
from mlx_style.studio.server import Choice, Studio
from mlx_style.studio.training import PRESETS, Trainer, TrainRequest, flag_args, run_view, settings_for
from train_helpers import TINY_LAYERS, make_workspace

TRAIN_DEFAULTS = {**TINY_LAYERS, "compile": False, "tune": False, "processes": 1}  # a seconds-long run


# ---------------------------------------------------------------------------------------------------------------
# Helpers (the browser tests use them too)


def tiny_network(path: Path, seed: int = 0, styles: int = 1, names: list[str] | None = None) -> Path:
    """A width-4 network with one residual block whose output looks like a picture (mid-grey, tens of levels of
    contrast) and whose styles differ (random norm rows)."""
    mx.random.seed(seed)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=styles))
    rng = np.random.default_rng(seed)
    params = []
    for key, value in tree_flatten(net.parameters()):
        a = np.array(value)
        if key.split(".")[-2].startswith("in"):  # a norm's scale or shift: one row per style
            a = a + rng.normal(0, 0.5, a.shape)
        if key == "deconv3.conv2d.weight":
            a = a * 40
        if key == "deconv3.conv2d.bias":
            a = rng.uniform(100, 150, a.shape)
        params.append((key, mx.array(a.astype(np.float32))))
    net.update(tree_unflatten(params))
    extra = {"style": path.stem}
    if names:
        extra["styles"] = json.dumps(names)
    return save_transformer(path, net, extra)


def photo(path: Path, size=(48, 64), seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    H, W = size
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    image = np.stack([200 * x + 20, 180 * y + 30, 120 + 60 * np.sin(8 * x)], -1) + rng.normal(0, 12, (H, W, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return path


def make_weights(folder: Path) -> Path:
    """``tiny_a``, ``tiny_b`` (one style each) and ``duo`` (two styles, ``left`` and ``right``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_network(folder / "tiny_a.safetensors", 1)
    tiny_network(folder / "tiny_b.safetensors", 2)
    tiny_network(folder / "duo.safetensors", 3, styles=2, names=["left", "right"])
    return folder


@pytest.fixture
def studio(tmp_path):
    make_weights(tmp_path / "weights")
    config = StudioConfig(
        roots=(str(tmp_path),),
        weights_dir=str(tmp_path / "weights"),
        runs_dir=str(tmp_path / "runs"),
        work_dir=str(tmp_path / "work"),
        open_browser=False,
    )
    s = Studio(config, upload_root=tmp_path / "uploads")
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------------------------
# Serving and paths


def test_serving_beyond_loopback_needs_a_password(monkeypatch):
    monkeypatch.delenv("MLX_STYLE_STUDIO_PASSWORD", raising=False)
    assert check_serving(StudioConfig()) is None
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    with pytest.raises(UsageError, match="needs a password"):
        check_serving(StudioConfig(host="0.0.0.0"))
    with pytest.raises(UsageError, match="at least 8"):
        check_serving(StudioConfig(host="0.0.0.0", password="short"))
    assert check_serving(StudioConfig(host="0.0.0.0", password="long enough")) == ("studio", "long enough")
    monkeypatch.setenv("MLX_STYLE_STUDIO_PASSWORD", "from the environment")
    assert check_serving(StudioConfig(host="0.0.0.0"))[1] == "from the environment"
    with pytest.raises(UsageError, match="--port"):
        check_serving(StudioConfig(port=70000))


def test_the_command_refuses_the_network_without_a_password(monkeypatch, capsys):
    from mlx_style.cli import main

    monkeypatch.delenv("MLX_STYLE_STUDIO_PASSWORD", raising=False)
    assert main(["studio", "--share-lan", "--no-browser"]) == 2
    assert "needs a password" in capsys.readouterr().err
    assert main(["studio", "--root", "/no/such/folder", "--no-browser"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_typed_folders_stay_inside_the_roots(tmp_path):
    root = tmp_path / "root"
    (root / "photos" / "deep").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "file.txt").write_text("x")
    roots = allowed_roots([str(root)])
    assert confine("photos", roots) == (root / "photos").resolve()
    assert confine(str(root / "photos" / "deep"), roots) == (root / "photos" / "deep").resolve()
    assert confine("photos/deep/..", roots) == (root / "photos").resolve()
    for outside in ("..", "../secret", str(tmp_path / "secret"), "escape", "photos/../../secret", "/etc", "/"):
        with pytest.raises(StudioError, match="outside the folders"):
            confine(outside, roots)
    for bad, reason in (
        ("", "type a folder"),
        ("a\x00b", "NUL"),
        ("missing", "no such folder"),
        ("file.txt", "not a folder"),
    ):
        with pytest.raises(StudioError, match=reason):
            confine(bad, roots)
    with pytest.raises(StudioError, match="not a folder"):
        allowed_roots([str(tmp_path / "nowhere")])


def test_names_and_uploads_are_checked(tmp_path):
    assert check_name("my_style-2.0") == "my_style-2.0"
    for bad in ("", "../x", "a/b", ".hidden", "-flag", "x" * 65, "a b", "w.safetensors"):
        with pytest.raises(StudioError):
            check_name(bad)
    uploads = tmp_path / "uploads"
    inside = photo(uploads / "p.png")
    outside = photo(tmp_path / "elsewhere.png")
    assert check_upload(inside, uploads) == inside.resolve()
    with pytest.raises(StudioError, match="not an upload"):
        check_upload(outside, uploads)
    with pytest.raises(StudioError, match="not an upload"):
        check_upload(uploads / ".." / "elsewhere.png", uploads)
    (uploads / "fake.png").write_bytes(b"not an image at all")
    with pytest.raises(StudioError, match="fake.png: not a readable image"):
        load_upload_image(uploads / "fake.png", uploads)
    Image.new("1", (10000, 9000)).save(uploads / "huge.png")  # 90 MP: refused from its header
    with pytest.raises(StudioError, match="megapixels"):
        load_upload_image(uploads / "huge.png", uploads)


# ---------------------------------------------------------------------------------------------------------------
# The catalogue and the networks


def test_the_catalogue_lists_every_style_and_knows_the_paintings(tmp_path):
    weights = make_weights(tmp_path / "weights")
    catalogue = Catalogue(weights, tmp_path / "runs")
    keys = [e.key for e in catalogue.entries()]
    assert keys == ["tiny_a", "tiny_b", "duo/left", "duo/right"]
    duo = catalogue.get("duo/right")
    assert (duo.style, duo.index, duo.origin, duo.painting) == ("right", 1, "weights", None)
    with pytest.raises(StudioError, match="no style"):
        catalogue.get("../etc/passwd")
    # a painting is shown only when its sha256 is the one the network records
    painting = photo(tmp_path / "runs" / "kept" / "paintings" / "mine.png")
    from mlx_style.io.weights import file_sha256

    tiny_network(weights / "kept.safetensors", 4)
    assert catalogue.get("kept").painting is None
    path = weights / "kept.safetensors"
    path.unlink()
    net = TransformerNet(TransformerConfig(width=4, num_residual=1))
    save_transformer(path, net, {"style": "mine.png", "style_sha256": file_sha256(painting)})
    assert catalogue.get("kept").painting == painting  # a new file: seen at once


def test_a_bound_style_stylises_as_the_library_does(studio, tmp_path):
    image = np.asarray(Image.open(photo(tmp_path / "p.png")))
    entry = studio.catalogue.get("tiny_a")
    net = studio.networks.bind(entry)
    expected = stylize(load_style(entry.network), image, size=40)
    assert np.array_equal(engine.stylise(net, image, 40), expected)
    assert np.abs(expected.astype(int) - image).mean() > 10  # a style, not the photo
    assert studio.networks.bind(entry) is net  # bound once


def test_blends_mix_norms_within_a_network_and_outputs_across_two(studio, tmp_path):
    image = np.asarray(Image.open(photo(tmp_path / "p.png")))
    get = studio.catalogue.get
    left, right = (engine.stylise(studio.networks.bind(get(k)), image, None) for k in ("duo/left", "duo/right"))
    assert np.abs(left.astype(int) - right).mean() > 3
    half = engine.stylise(studio.networks.bind(get("duo/left"), get("duo/right"), 0.5), image, None)
    expected = stylize(load_style(get("duo/left").network, style="left:0.5,right:0.5"), image)
    assert np.array_equal(half, expected)
    a, b = (engine.stylise(studio.networks.bind(get(k)), image, None).astype(float) for k in ("tiny_a", "tiny_b"))
    mixed = engine.stylise(studio.networks.bind(get("tiny_a"), get("tiny_b"), 0.25), image, None).astype(float)
    assert np.abs(mixed - (0.75 * a + 0.25 * b)).max() <= 1.0  # the two outputs, mixed (rounding apart)
    assert np.array_equal(engine.stylise(studio.networks.bind(get("tiny_a"), get("tiny_b"), 1.0), image, None), b)
    with pytest.raises(StudioError, match="between 0 and 1"):
        studio.networks.bind(get("tiny_a"), get("tiny_b"), 1.5)


@pytest.mark.builtin_styles
def test_any_picture_needs_a_painting(tmp_path):
    from mlx_style.io.registry import BUILTIN_DIR

    if not (BUILTIN_DIR / "magenta_arbitrary.safetensors").exists():
        pytest.skip("no shipped arbitrary-style network")
    catalogue = Catalogue(tmp_path / "no_weights", tmp_path / "runs")
    entry = next(e for e in catalogue.entries() if e.takes_picture)
    networks = engine.Networks()
    with pytest.raises(StudioError, match="upload one"):
        networks.bind(entry)
    painting = np.asarray(Image.open(BUILTIN_DIR / "wave.jpg").convert("RGB"))
    image = np.asarray(Image.open(photo(tmp_path / "p.png")))
    out = engine.stylise(networks.bind(entry, picture=painting), image, None)
    expected = stylize(load_style(entry.network, style_image=painting), image)
    assert np.array_equal(out, expected)


# ---------------------------------------------------------------------------------------------------------------
# Photos, videos, the live stream


def test_photos_are_stylised_into_the_tabs_folder(studio, tmp_path):
    uploads = tmp_path / "uploads"
    first, second = photo(uploads / "a b?.png"), photo(uploads / "two.jpg", seed=4)
    photos, job = studio.stylise("tab1", [str(first), str(second)], Choice("tiny_a"), Settings(size=32))
    assert job is None and [p.name for p in photos] == ["a b?.png", "two.jpg"]
    expected = stylize(load_style(studio.catalogue.get("tiny_a").network), np.asarray(Image.open(first)), size=32)
    assert np.array_equal(np.asarray(Image.open(photos[0].path)), expected)
    assert photos[0].path.parent == studio.session("tab1").out_dir and " " not in photos[0].path.name
    other, _ = studio.stylise("tab2", [str(first)], Choice("tiny_a", "tiny_b", 0.5), Settings(size=32))
    assert other[0].path.parent != photos[0].path.parent  # two tabs, two folders
    assert not np.array_equal(other[0].after, photos[0].after)
    weak, _ = studio.stylise("tab1", [str(first)], Choice("tiny_a"), Settings(size=32, strength=0.5))
    assert np.abs(weak[0].after.astype(float) - (photos[0].after / 2 + photos[0].before / 2)).max() <= 1.0
    with pytest.raises(StudioError, match="upload photos"):
        studio.stylise("tab1", [], Choice("tiny_a"), Settings())
    with pytest.raises(StudioError, match="not an upload"):
        studio.stylise("tab1", [str(tmp_path / "weights" / "tiny_a.safetensors")], Choice("tiny_a"), Settings())
    (uploads / "notes.txt").write_text("hello")
    with pytest.raises(StudioError, match="not a picture"):
        studio.stylise("tab1", [str(uploads / "notes.txt")], Choice("tiny_a"), Settings())
    with pytest.raises(StudioError, match="processing size"):
        stylise_photos(
            studio.networks.bind(studio.catalogue.get("tiny_a")), [str(first)], Settings(size=0), tmp_path, uploads
        )
    studio.close_session("tab1")
    assert not photos[0].path.exists()


def test_a_video_runs_in_the_background_and_can_be_cancelled(studio, tmp_path, monkeypatch):
    from mlx_style.io import video
    from test_video import make_clip

    (tmp_path / "uploads").mkdir()
    clip = make_clip(tmp_path / "uploads" / "clip.mp4", frames=6, size=(32, 24))
    photos, job = studio.stylise("tab", [str(clip)], Choice("tiny_a"), Settings(size=32))
    assert photos == [] and job is not None
    assert job.wait(60) and job.state == "done", job.message
    assert job.progress() == (1.0, "clip.mp4: 6 frames stylised")
    assert video.count_frames(job.target) == 6
    monkeypatch.setenv(video.SLOW_FRAME_ENV, "0.2")  # each frame's write waits: time to cancel
    slow = make_clip(tmp_path / "uploads" / "slow.mp4", frames=30, size=(32, 24))
    _, job = studio.stylise("tab", [str(slow)], Choice("tiny_a"), Settings(size=32))
    with pytest.raises(StudioError, match="still running"):
        studio.stylise("tab", [str(slow)], Choice("tiny_a"), Settings(size=32))
    while job.done < 2:
        time.sleep(0.05)
    assert "frame" in job.progress()[1]
    assert studio.cancel_video("tab") == "cancelling…"
    assert job.wait(30) and job.state == "cancelled"
    assert not job.target.exists() and not any(p.name.startswith(".") for p in job.target.parent.iterdir())
    assert 2 <= job.done < 30
    with pytest.raises(StudioError, match="bad.mp4: not a video"):
        (tmp_path / "uploads" / "bad.mp4").write_bytes(b"\x00" * 100)
        VideoJob(
            studio.networks.bind(studio.catalogue.get("tiny_a")),
            str(tmp_path / "uploads" / "bad.mp4"),
            Settings(),
            tmp_path,
            tmp_path / "uploads",
        )


def test_live_frames_are_smoothed_per_tab_and_dropped_while_busy(studio, tmp_path):
    rng = np.random.default_rng(0)
    frame = np.asarray(Image.open(photo(tmp_path / "p.png")))
    out, line = studio.live_frame("tab", frame, Choice("tiny_a"), Settings(size=32))
    assert out.shape == frame.shape and "fps" in line
    again, _ = studio.live_frame("tab", frame, Choice("tiny_a"), Settings(size=32))
    assert again.shape == frame.shape  # the second frame is blended with the first along the (zero) motion
    with engine.compute:  # the network is busy (a photo, another tab): the frame is dropped, not queued
        dropped, line = studio.live_frame("tab", frame, Choice("tiny_a"), Settings(size=32))
    assert dropped is None and "1 dropped" in line
    other, line = studio.live_frame(
        "other", rng.integers(0, 255, frame.shape, dtype=np.uint8), Choice("tiny_b"), Settings(size=32)
    )
    assert studio.session("other").live.frames == 1 and studio.session("tab").live.frames == 2
    plain = LiveSession()
    net = studio.networks.bind(studio.catalogue.get("tiny_a"))
    first = plain.frame(frame, net, ("a",), 32, smooth=False)
    small = resize(frame, *processing_shape(*frame.shape[:2], 32))
    assert np.array_equal(first, resize(stylize(net, small), *frame.shape[:2]))  # no smoothing: the network's frame
    assert plain.last.shape == small.shape  # kept (and smoothed) at the processing size, as the cam does
    assert plain.stats().startswith("0.0 fps")


def test_live_automatic_size_is_measured_once_per_network(studio, tmp_path, monkeypatch):
    from mlx_style.infer import stylizer
    from mlx_style.studio import live

    now, calls = [0.0], []

    def fake_stylize(net, rgb, **kwargs):  # 2 µs a pixel: 80% of a 5 FPS frame fits 80,000 pixels
        assert "size" not in kwargs  # the frame comes at its processing size
        now[0] += rgb.shape[0] * rgb.shape[1] * 2e-6
        calls.append(max(rgb.shape[:2]))
        return rgb

    monkeypatch.setattr(live, "stylize_array", fake_stylize)
    monkeypatch.setattr(stylizer, "cam_default_size", lambda: None)  # the CPU's rule wherever the test runs
    session = LiveSession(clock=lambda: now[0])
    frame = np.zeros((480, 640, 3), np.uint8)
    session.frame(frame, None, ("a", 512), 512, smooth=False, auto_size=True)
    assert session.auto_sizes == {("a", (480, 640), False): 320}  # 240 × 320 fits; 288 × 384 does not
    assert calls[-1] == 320 and len(calls) > 3 and "size 320 (automatic)" in session.stats()
    before = len(calls)
    session.frame(frame, None, ("a", 512, "another strength"), 512, smooth=False, auto_size=True, network="a")
    assert calls[before:] == [320]  # measured once per network: only the frame itself ran
    session.frame(frame, None, ("b", 512), 512, smooth=False, auto_size=True)
    assert len(calls) > before + 2 and set(session.auto_sizes) == {("a", (480, 640), False), ("b", (480, 640), False)}
    session.frame(frame, None, ("b", 512), 512, smooth=False)  # automatic off: the slider's size
    assert calls[-1] == 512 and "size 512 ·" in session.stats()
    monkeypatch.setattr(stylizer, "cam_default_size", lambda: 448)  # a GPU: its fixed size, nothing measured
    before = len(calls)
    session.frame(frame, None, ("c", 512), 512, smooth=False, auto_size=True)
    assert calls[before:] == [448]
    monkeypatch.undo()
    out, line = studio.live_frame("auto", frame, Choice("tiny_a"), Settings(size=32), auto_size=True)
    assert out.shape == frame.shape and "(automatic)" in line


# ---------------------------------------------------------------------------------------------------------------
# Training


def test_the_flags_of_a_studio_run_are_the_commands(tmp_path):
    from mlx_style.cli.train import build_parser, config_from_args

    request = TrainRequest(
        "mine", [tmp_path / "a.png"], tmp_path / "photos", "good", {"width": 8, "stable_weight": 500.0}
    )
    values = settings_for(request, TRAIN_DEFAULTS)
    assert values["iters"] == 1200 and values["width"] == 8 and values["compile"] is False
    from mlx_style.training.config import TrainConfig

    config = TrainConfig(
        style="a.png",
        styles=("a.png", "b.png"),
        data="photos",
        output="w/mine.safetensors",
        run_dir="runs/mine",
        vgg="vgg.safetensors",
        **values,
    )
    parsed = config_from_args(build_parser().parse_args(flag_args(config)))
    assert parsed == config
    assert set(PRESETS) == {"quick preview", "good", "best"}
    assert settings_for(TrainRequest("x", [], tmp_path, "best"), {})["iters"] is None  # one epoch
    with pytest.raises(StudioError, match="preset"):
        settings_for(TrainRequest("x", [], tmp_path, "fastest"), {})
    with pytest.raises(StudioError, match="unknown settings"):
        settings_for(TrainRequest("x", [], tmp_path, "good", {"vgg": "/etc/passwd"}), {})


@pytest.fixture
def trainer(tmp_path):
    ws = make_workspace(tmp_path / "ws", images=6)
    t = Trainer(tmp_path / "weights", tmp_path / "runs", str(ws["vgg"]), TRAIN_DEFAULTS)
    yield t, ws
    t.stop_all(30)


def tiny_request(ws, name="mine", iters=3, **fields):
    return TrainRequest(
        name,
        [ws["style"]],
        ws["data"],
        "quick preview",
        {"image_size": 32, "batch_size": 2, "width": 4, "residual_blocks": 1, "iters": iters},
        **fields,
    )


def test_a_run_from_the_studio_is_the_commands_run(trainer, tmp_path):
    t, ws = trainer
    job = t.start(tiny_request(ws))
    with pytest.raises(StudioError, match="already training"):
        t.start(tiny_request(ws))  # a second tab on the same run
    assert job.wait(120) == 0, "\n".join(job.lines)
    assert job.state == "done" and (tmp_path / "weights" / "mine.safetensors").exists()
    run = tmp_path / "runs" / "mine"
    assert list((run / "checkpoints").glob("*.safetensors")) and (run / "log.jsonl").exists()
    assert (run / "paintings" / "style.png").read_bytes() == ws["style"].read_bytes()
    view = run_view(run, job)
    assert view.state == "done" and view.records[-1]["step"] == 3 and "in the gallery" in view.status
    assert [p.name for p in view.samples][-1] == "final.png"
    catalogue = Catalogue(tmp_path / "weights", tmp_path / "runs")
    entry = catalogue.get("mine")  # the new style, with the very painting it learnt
    assert entry.painting == run / "paintings" / "style.png"
    with pytest.raises(StudioError, match="already has a run"):
        t.start(tiny_request(ws))
    assert t.start(tiny_request(ws, overwrite=True)).wait(120) == 0


def test_stop_writes_a_checkpoint_and_resume_continues(trainer, tmp_path):
    from mlx_style.training.checkpoint import list_checkpoints

    t, ws = trainer
    from mlx_style.training.progress import read_log

    def until_logged(job, past: int) -> None:
        deadline = time.monotonic() + 60
        while not any(r["step"] > past for r in read_log(run / "log.jsonl")):
            assert time.monotonic() < deadline and job.running, "\n".join(job.lines)
            time.sleep(0.1)

    run = tmp_path / "runs" / "long"
    job = t.start(tiny_request(ws, iters=400, name="long"))
    until_logged(job, 1)
    job.stop()
    assert job.wait(60) == 130 and job.state == "stopped"
    step = int(list_checkpoints(run / "checkpoints")[-1].stem.split("_")[-1])
    assert 1 < step < 400 and "Resume continues" in run_view(run, job).status
    resumed = t.resume("long")
    until_logged(resumed, step)
    resumed.stop()
    assert resumed.wait(60) == 130, "\n".join(resumed.lines)
    assert any("resumed from" in line and f"{step:08d}" in line for line in resumed.lines), resumed.lines
    with pytest.raises(StudioError, match="no run nothing started from the studio"):
        t.resume("nothing")


def test_a_run_folder_in_use_elsewhere_is_refused(trainer, tmp_path):
    from mlx_style.training.checkpoint import run_lock

    t, ws = trainer
    done = threading.Event()
    held = threading.Event()

    def hold():  # another process's `mlx-style train` (the lock is per open file, so a thread shows it too)
        with run_lock(tmp_path / "runs" / "busy"):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(StudioError, match="in use by a training run"):
            t.start(tiny_request(ws, name="busy"))
    finally:
        done.set()
        thread.join()


def test_the_training_view_sends_only_what_is_new(studio, tmp_path):
    run = tmp_path / "runs" / "shown"
    (run / "samples").mkdir(parents=True)
    log = run / "log.jsonl"
    log.write_text(
        json.dumps({"step": 1, "loss": 5e5, "content": 1e5, "style": 4e5, "tv": 10.0, "images_per_s": 3.0}) + "\n"
    )
    view = studio.training_view("tab", "shown")
    assert "step 1" in view["status"] and view["curve"].shape[2] == 3 and view["samples"] == []
    assert studio.training_view("tab", "shown") is None  # nothing new
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run / "samples" / "step_00000010.png")
    assert studio.training_view("tab", "shown")["samples"][0][1] == "step 10"
    # A grid being written (atomic_write's hidden temporary, cut short) is not shown, and does not stop the view
    (run / "samples" / ".step_00000020.partial-x1y2.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in run_view(run, None).samples] == ["step_00000010.png"]
    # A finished name that cannot be read (rewritten while read) is skipped for this poll, the rest still shown
    (run / "samples" / "step_00000030.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert [caption for _, caption in studio.training_view("tab", "shown")["samples"]] == ["step 10"]
    assert studio.training_view("tab", "../..") is None and studio.training_view("tab", "none") is None
    with pytest.raises(StudioError, match="outside the folders"):
        studio.start_training("x", [], [str(photo(tmp_path / "uploads" / "s.png"))], "/etc", "quick preview")
    with pytest.raises(StudioError, match="no built-in painting"):
        studio.start_training("x", ["../../secret"], [], str(tmp_path), "quick preview")


# ---------------------------------------------------------------------------------------------------------------
# Export and sharing


def test_export_and_details(studio, tmp_path):
    import onnx

    path = studio.export("tab", "duo/right", "ONNX")
    assert path.suffix == ".onnx" and path.parent == studio.session("tab").out_dir
    names = {p.key for p in onnx.load(str(path)).metadata_props}
    assert "mlx_style_style" in names
    tile, table = studio.details("duo/left")
    assert tile.ndim == 3 and "duo (transformer, weights)" in table
    with pytest.raises(StudioError, match="format"):
        studio.export("tab", "tiny_a", "pickle")
    pytest.importorskip("coremltools")
    package = studio.export("tab", "tiny_a", "Core ML")  # a folder: zipped for the download
    import zipfile

    assert package.name.endswith(".mlpackage.zip")
    assert any(n.endswith("Manifest.json") for n in zipfile.ZipFile(package).namelist())


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A local stand-in for the Hub (tests/hub_server.py), as tests/test_hub.py sets it up."""
    from hub_server import FakeHub
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", "test-token")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        yield fake


def test_push_and_pull_through_the_hub(studio, hub, tmp_path):
    assert "commit" in studio.push("tiny_a", "carol/tiny", None, False)
    files = hub.repos["carol/tiny"][hub.repos["carol/tiny"]["main"]]
    assert files["model.safetensors"] == (tmp_path / "weights" / "tiny_a.safetensors").read_bytes()
    with pytest.raises(StudioError, match="user/name"):
        studio.push("tiny_a", "no-slash", None, False)
    assert studio.pull("hf:carol/tiny") == "hf:carol/tiny"  # typed in the page: now in every gallery
    entry = studio.catalogue.get("hf:carol/tiny")
    assert entry.origin == "hub" and entry.network.read_bytes() == files["model.safetensors"]
    for bad, reason in (("carol/tiny", "hf:user/name"), ("hf:carol/missing", "carol/missing"), ("hf:../../etc", "hf:")):
        with pytest.raises(StudioError, match=reason):
            studio.pull(bad)


def test_the_gallery_shows_each_style_of_a_built_in_network_with_its_painting(tmp_path, monkeypatch):
    from mlx_style.io import registry
    from mlx_style.studio.catalogue import Catalogue
    from test_builtins import multi_builtin

    folder = tmp_path / "builtin"
    multi_builtin(folder)  # styles named, no picture hashes: each style's own picture
    monkeypatch.setattr(registry, "BUILTIN_DIR", folder)
    entries = Catalogue(tmp_path / "weights", tmp_path / "runs").entries()
    got = {e.style: e.painting for e in entries if e.network.name == "builtin.safetensors"}
    assert got == {name: folder / f"{name}.jpg" for name in ("wave", "udnie", "the_scream")}


@pytest.mark.builtin_styles
def test_the_shipped_built_ins_show_the_paintings_they_were_trained_on(tmp_path):
    from mlx_style.io import registry
    from mlx_style.studio.catalogue import Catalogue

    entries = [e for e in Catalogue(tmp_path / "weights", tmp_path / "runs").entries() if e.network.stem == "builtin"]
    assert len(entries) == 6
    assert all(e.painting == registry.BUILTIN_DIR / f"{e.style}.jpg" for e in entries)


@pytest.mark.builtin_styles
def test_studio_live_script_times_the_automatic_size_beside_fixed_ones(capsys):
    from conftest import shared_data
    from mlx_style.infer.cam_controls import SIZE_STEPS
    from scripts.bench import studio_live

    clip = shared_data("video", "fox.mp4")
    assert studio_live.main(["--clip", str(clip), "--camera", "64", "--sizes", "32", "--frames", "3"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r[0] for r in rows] == ["| automatic", "| fixed"] and rows[1][1] == "32"
    assert int(rows[0][1]) in SIZE_STEPS  # measured: one of the cam's sizes
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)


def test_style_licence_reads_one_style_of_several():
    from mlx_style.io.style_models import style_licence

    several = {"style_licence": json.dumps({"wave": "Hokusai, public domain", "udnie": "Picabia, public domain"})}
    assert style_licence(several, "udnie") == "Picabia, public domain"
    assert style_licence(several) == "wave: Hokusai, public domain; udnie: Picabia, public domain"
    assert style_licence({"style_licence": "Van Gogh, public domain"}, "x") == "Van Gogh, public domain"
    assert style_licence({}) == "" and style_licence({"style_licence": "{not json"}) == "{not json"


@pytest.mark.builtin_styles
def test_the_styles_tab_shows_the_licence_of_the_picked_builtin_style():
    from mlx_style.io.registry import BUILTIN_DIR
    from mlx_style.studio.catalogue import StyleEntry, describe

    entry = StyleEntry(
        "builtin/udnie",
        "udnie",
        BUILTIN_DIR / "builtin.safetensors",
        "builtin",
        "built-in",
        "transformer",
        style="udnie",
        index=3,
    )
    shown = describe(entry)["style licence"]
    assert shown.startswith("Picabia, Udnie") and "{" not in shown and "Hokusai" not in shown
