"""``mlx_style.stylize``: the library functions and the command, on a tiny random network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_map

from conftest import read_video, shared_data
from mlx_style.cli import stylize as stylize_cli
from mlx_style.infer import files
from mlx_style.infer import stylize as st
from mlx_style.infer import color
from mlx_style.nn import tiled
from mlx_style.io.image import load_image, resize, save_image
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.weights import save_weights

TINY = TransformerConfig(width=4, num_residual=1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny random network whose output spans mid-range colours (so clipping does not hide anything)."""
    mx.random.seed(3)
    net = TransformerNet(TINY)
    net.update(tree_map(lambda p: p + 0.3 * mx.random.normal(p.shape), net.parameters()))
    net.deconv3.conv2d.weight = net.deconv3.conv2d.weight * 40.0
    net.deconv3.conv2d.bias = mx.array([140.0, 120.0, 100.0])
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_transformer(path, net, {"style": "tiny"})
    return path


@pytest.fixture(scope="module")
def net(model_path):
    return st.load_network(model_path)[0]


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful uint8 image (gradients plus mild noise) in 40–215."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([128 + 70 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 2.0, 4.0)], axis=-1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 40, 215).astype(np.uint8)


def ycbcr(image) -> np.ndarray:
    return color.rgb_to_ycbcr(np.asarray(image, np.float32))


# ---------------------------------------------------------------------------------------------------------------
# stylize_array


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (37, 23), (33, 50)])
@pytest.mark.parametrize("options", [{}, {"size": 16}, {"scale": 0.5}, {"size": 61}, {"tile_size": 64}])
def test_output_keeps_the_exact_input_size(net, shape, options):
    image = photo_like(*shape)
    out = st.stylize_array(net, image, **options)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8


def test_network_shape_follows_size_and_scale():
    assert st.network_shape(37, 23) == (37, 23)
    assert st.network_shape(37, 23, size=16) == (16, 10)
    assert st.network_shape(500, 768, size=384) == (250, 384)
    assert st.network_shape(40, 30, scale=0.5) == (20, 15)
    with pytest.raises(ValueError, match="not both"):
        st.network_shape(40, 30, size=16, scale=0.5)
    with pytest.raises(ValueError, match="--scale"):
        st.network_shape(40, 30, scale=0)


def test_size_changes_the_resolution_the_network_runs_at(net):
    image = photo_like(48, 64)
    native = st.stylize_array(net, image)
    assert np.array_equal(st.stylize_array(net, image, size=64), native)  # the input's own longer side
    coarse = st.stylize_array(net, image, size=24)
    assert np.abs(coarse.astype(int) - native).mean() > 2.0


def test_strength_blends_with_the_input(net):
    image = photo_like(30, 40)
    styled = st.stylize_array(net, image)
    assert np.array_equal(st.stylize_array(net, image, strength=0.0), image)
    assert np.array_equal(st.stylize_array(net, image, strength=1.0), styled)
    half = st.stylize_array(net, image, strength=0.5).astype(np.float64)
    assert np.abs(half - (image.astype(np.float64) + styled) / 2).max() <= 1.0
    assert np.abs(styled.astype(int) - image).mean() > 10  # the blend is between two different images
    with pytest.raises(ValueError, match="--strength"):
        st.stylize_array(net, image, strength=1.5)


def test_preserve_color_keeps_the_input_chroma(net):
    image = photo_like(40, 48, seed=1)
    plain = st.stylize_array(net, image)
    kept = st.stylize_array(net, image, preserve_color=True)
    unclipped = np.all((kept > 0) & (kept < 255), axis=-1)
    assert unclipped.mean() > 0.9
    chroma_error = np.abs(ycbcr(kept)[..., 1:] - ycbcr(image)[..., 1:])[unclipped]
    assert chroma_error.max() <= 1.5
    luma_error = np.abs(ycbcr(kept)[..., 0] - ycbcr(plain)[..., 0])[unclipped]
    assert luma_error.max() <= 1.5
    # without the option the chroma does change, so the check above means something
    assert np.abs(ycbcr(plain)[..., 1:] - ycbcr(image)[..., 1:]).mean() > 3.0


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(0).uniform(0, 255, (10, 10, 3)).astype(np.float32)
    assert np.abs(color.ycbcr_to_rgb(color.rgb_to_ycbcr(rgb)) - rgb).max() < 1e-3
    assert np.allclose(color.rgb_to_ycbcr(np.full((1, 3), 200.0))[0], [200.0, 128.0, 128.0], atol=1e-3)


# The tiny network amplifies its last layer 40×, so its rounding errors are larger than a real network's.
@pytest.mark.parametrize("dtype, max_error, mean_error", [("float16", 6, 0.6), ("bfloat16", 40, 4.0)])
def test_half_precision_stays_close_to_float32(model_path, dtype, max_error, mean_error):
    image = photo_like(48, 64, seed=2)
    full = st.stylize_array(st.load_network(model_path)[0], image).astype(int)
    half_net = st.load_network(model_path, dtype)[0]
    assert tiled.network_dtype(half_net) == stylize_cli.DTYPES[dtype]
    error = np.abs(st.stylize_array(half_net, image) - full)
    assert error.max() <= max_error and error.mean() <= mean_error


def test_half_precision_real_network(tmp_path):
    from mlx_style.io.fst import import_fst

    image = resize(load_image(shared_data("content", "holdout", "kodak_kodim03.png")), 96, 96)
    model = import_fst(shared_data("weights", "fast_style_transfer_ml5", "udnie"), tmp_path / "udnie.safetensors")
    full = st.stylize_array(st.load_network(model)[0], image).astype(int)
    # bfloat16 keeps 8 significant bits: its mean error depends on the convolution strategy's summation order
    # (0.3 with mx.conv2d, 0.57 with the GEMM-based strategies of mlx_style.conv).
    for dtype, max_error, mean_error in (("float16", 2, 0.5), ("bfloat16", 10, 1.0)):
        error = np.abs(st.stylize_array(st.load_network(model, dtype)[0], image) - full)
        assert error.max() <= max_error and error.mean() <= mean_error, (dtype, error.max(), error.mean())


def test_stylize_array_rejects_non_uint8_rgb(net):
    with pytest.raises(ValueError, match="uint8 RGB"):
        st.stylize_array(net, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        st.stylize_array(net, np.zeros((8, 8), np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Tiles


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        TransformerConfig(width=4, num_residual=1, upsample="deconv"),
        TransformerConfig(width=4, num_residual=1, norm="batch", padding="same"),
        TransformerConfig(
            width=4,
            num_residual=1,
            upsample="deconv",
            padding="same",
            conv_bias=False,
            norm_eps=1e-3,
            output="tanh",
            final_norm=True,
        ),
    ],
    ids=["default", "deconv", "batch-same", "fst"],
)
def test_tiled_run_equals_the_whole_image_run(config):
    mx.random.seed(5)
    net = TransformerNet(config)
    net.update(tree_map(lambda p: p + 0.2 * mx.random.normal(p.shape), net.parameters()))
    net.eval()
    image = photo_like(53, 71).astype(np.float32)
    whole = st.run_network(net, image)
    for tile in (8, 20):
        in_tiles = tiled.run_tiled(net, image, tile)
        assert in_tiles.shape == whole.shape
        assert np.abs(in_tiles - whole).max() <= 1e-4 * max(1.0, np.abs(whole).max())


def test_run_any_size_tiles_only_above_the_budget(net, monkeypatch):
    calls = []
    monkeypatch.setattr(
        st, "run_tiled", lambda n, image, tile, style=None: calls.append(tile) or st.run_network(n, image)
    )
    st.run_any_size(net, photo_like(32, 32).astype(np.float32), tile_size=32)
    assert calls == []
    st.run_any_size(net, photo_like(33, 32).astype(np.float32), tile_size=32)
    assert calls == [32]
    st.run_any_size(net, photo_like(100, 100).astype(np.float32), tile_size=0)
    assert calls == [32]


def column_seam_ratio(image: np.ndarray, borders: list[int]) -> float:
    """Mean |horizontal gradient| at the worst tile border over the median column: a seam shows as a peak."""
    g = np.abs(np.diff(np.asarray(image, np.float64), axis=1)).mean(axis=(0, 2))
    return max(g[b - 1] for b in borders) / float(np.median(g))


def test_tiled_real_network_matches_untiled_without_seams(tmp_path):
    from mlx_style.io.fst import import_fst

    path = shared_data("content", "holdout", "kodak_kodim08.png")
    model = import_fst(shared_data("weights", "fast_style_transfer_ml5", "wave"), tmp_path / "wave.safetensors")
    net = st.load_network(model)[0]
    image = resize(load_image(path), 96, 128)
    whole = st.run_network(net, image)
    in_tiles = tiled.run_tiled(net, image, 32)
    assert np.abs(st.to_uint8(in_tiles).astype(int) - st.to_uint8(whole)).max() <= 1
    borders = [32, 64, 96]
    # independent tiles cut together (what tiling must avoid) show a clear seam with this metric …
    naive = np.concatenate([st.run_network(net, image[:, a : a + 32]) for a in range(0, 128, 32)], axis=1)
    assert column_seam_ratio(naive, borders) > 2.0
    # … ours shows none: its borders look like any other column, as in the untiled result
    assert column_seam_ratio(in_tiles, borders) < 1.5
    assert abs(column_seam_ratio(in_tiles, borders) - column_seam_ratio(whole, borders)) < 0.05


# ---------------------------------------------------------------------------------------------------------------
# The command


def run_cli(args, capsys):
    code = stylize_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_run_skips_a_corrupt_file_and_finishes(model_path, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    save_image(src / "a.png", photo_like(21, 34))
    save_image(src / "sub" / "b.jpg", photo_like(40, 25, seed=4))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    code, out, err = run_cli(["--model", model_path, src, "-o", tmp_path / "out"], capsys)
    assert code == 1  # some inputs failed, the rest were written
    assert load_image(tmp_path / "out" / "a.png").shape == (21, 34, 3)
    assert load_image(tmp_path / "out" / "sub" / "b.jpg").shape == (40, 25, 3)
    assert not (tmp_path / "out" / "broken.jpg").exists()
    assert "broken.jpg: skipped: not a readable image" in err
    assert "done: 2 stylised, 1 failed" in out and " ms" in out
    assert not list((tmp_path / "out").rglob(".*partial*"))


def test_single_image_to_a_file(model_path, tmp_path, capsys):
    save_image(tmp_path / "in.png", photo_like(19, 27))
    code, out, _ = run_cli(
        [
            "--model",
            model_path,
            tmp_path / "in.png",
            "-o",
            tmp_path / "res.png",
            "--size",
            "12",
            "--preserve-color",
            "--strength",
            "0.7",
        ],
        capsys,
    )
    assert code == 0 and load_image(tmp_path / "res.png").shape == (19, 27, 3)
    assert "network 12×8" in out and "done: 1 stylised" in out


def test_video_round_trip(model_path, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    src, dst = tmp_path / "clip.mp4", tmp_path / "styled.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (40, 32))
    assert writer.isOpened()
    for i in range(6):
        writer.write(np.ascontiguousarray(photo_like(32, 40, seed=i)[..., ::-1]))
    writer.release()
    code, out, _ = run_cli(["--model", model_path, src, "-o", dst], capsys)
    assert code == 0 and "no sound" in out and "6 frames" in out
    frames, fps = read_video(dst)
    assert len(frames) == 6 and abs(fps - 12.0) < 0.01
    assert frames[0].shape == (32, 40, 3)
    assert np.abs(frames[0].astype(int)[..., ::-1] - photo_like(32, 40, seed=0)).mean() > 10  # stylised
    assert "videos: temporal smoothing 0.5" in out  # on by default, as in the cam


def test_videos_are_smoothed_by_default_and_smooth_0_turns_it_off(model_path, tmp_path, capsys):
    """A still scene with fresh noise in every frame (a webcam on a still subject): the default output changes less
    from frame to frame than ``--smooth 0``'s, whose frames are the network's alone."""
    cv2 = pytest.importorskip("cv2")
    src = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 40))
    for i in range(8):
        writer.write(np.ascontiguousarray(photo_like(40, 48, seed=i)[..., ::-1]))  # same scene, new noise
    writer.release()
    assert run_cli(["--model", model_path, src, "-o", tmp_path / "default.avi"], capsys)[0] == 0
    code, out, _ = run_cli(["--model", model_path, src, "-o", tmp_path / "off.avi", "--smooth", "0"], capsys)
    assert code == 0 and "videos: temporal smoothing off" in out

    def change(path):
        frames = np.stack(read_video(path)[0]).astype(float)
        return np.abs(np.diff(frames, axis=0)).mean()

    assert change(tmp_path / "default.avi") < 0.8 * change(tmp_path / "off.avi")


def make_bad_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"\x80\x04 pickled")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    foreign = tmp_path / "foreign.safetensors"
    mx.save_safetensors(str(foreign), {"w": mx.zeros((2,))})
    vgg = tmp_path / "vgg16.safetensors"
    save_weights(vgg, {"features.0.weight": mx.zeros((4, 3, 3, 3))}, {"kind": "vgg", "config": "{}"})
    return {
        "missing": (tmp_path / "nothing.safetensors", "no style network at"),
        "pickle": (pth, "not a .safetensors file"),
        "garbage": (garbage, "not a readable safetensors file"),
        "foreign": (foreign, "not written by mlx_style"),
        "vgg": (vgg, "holds a 'vgg' network, but a 'transformer' network is needed"),
    }


@pytest.mark.parametrize("case", ["missing", "pickle", "garbage", "foreign", "vgg"])
def test_bad_model_is_one_clear_line(case, tmp_path, capsys):
    model, message = make_bad_models(tmp_path)[case]
    save_image(tmp_path / "in.png", photo_like(8, 8))
    code, out, err = run_cli(["--model", model, tmp_path / "in.png", "-o", tmp_path / "o"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "o").exists()


def test_unreadable_single_input_fails_cleanly(model_path, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    code, out, err = run_cli(["--model", model_path, tmp_path / "bad.png", "-o", tmp_path / "o.png"], capsys)
    assert code == 2 and "bad.png: skipped: not a readable image" in err and "0 stylised, 1 failed" in out
    code, _, err = run_cli(["--model", model_path, tmp_path / "absent.png", "-o", tmp_path / "o.png"], capsys)
    assert code == 2 and "absent.png: skipped: no such file or folder" in err


def test_output_planning(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "clip.mov").write_bytes(b"")
    jobs, problems = files.plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "clip.mov")], str(tmp_path / "o"))
    assert [(j.target.relative_to(tmp_path), j.kind) for j in jobs] == [
        (Path("o/a.png"), "image"),
        (Path("o/clip.mp4"), "video"),
    ]
    assert problems == []
    with pytest.raises(ValueError, match="names one file"):
        files.plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "b.png")], str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="overwritten by its own result"):
        files.plan_jobs([str(tmp_path / "a.png")], str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="needs a video output"):
        files.plan_jobs([str(tmp_path / "clip.mov")], str(tmp_path / "x.png"))


def test_missing_model_flag_and_bad_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no weights/ folder: the networks a developer has imported must not count
    code, _, err = run_cli([tmp_path], capsys)
    assert code == 2 and err.startswith("error: no style network found: give one with --model")
    code, _, err = run_cli(["--model", "m.safetensors", "--strength", "2", tmp_path], capsys)
    assert code == 2 and "--strength must be between 0 and 1" in err
    code, _, err = run_cli(["--model", "m.safetensors", "--tile-size", "10", tmp_path], capsys)
    assert code == 2 and "--tile-size" in err
    assert "with the source's sound" in " ".join(stylize_cli.build_parser().format_help().split())
