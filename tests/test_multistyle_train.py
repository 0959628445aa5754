"""Training several styles in one network (``train --style A B C``) and adding a style to it (``--from``).

The step is checked against an independent computation: the single-style network of the picked row
(``TransformerNet.with_style``) with that style's Gram targets. Runs are the tiny ones of ``train_helpers``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train_helpers import cli_args, make_workspace, photo, tiny_config

import mlx_style  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from mlx_style.cli.train import build_parser, config_from_args, main
from mlx_style.infer.stylize import load_network
from mlx_style.io.models import load_transformer
from mlx_style.io.weights import file_sha256, read_metadata
from mlx_style.nn.losses import LossConfig, style_targets
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.vgg_weights import load_vgg
from mlx_style.training.config import TrainingError
from mlx_style.training import train
from mlx_style.training.progress import read_log
from mlx_style.training.step import make_loss_fn, make_train_step
from mlx_style.training.styles import freeze_shared, plan_styles, start_from

REPO = Path(__file__).resolve().parents[1]
TINY_LOSS = LossConfig(
    content_layer="relu2_2",
    style_layers=("relu1_2", "relu2_2"),
    style_layer_weights=(1.0, 1.0),
    content_weight=1.0,
    style_weight=5.0,
    tv_weight=1e-5,
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_ws")
    ws = make_workspace(root)
    for i, seed in enumerate((5, 6, 7)):  # three more pictures, of other colours
        path = root / f"painting{i}.png"
        Image.fromarray(photo(np.random.default_rng(seed), 44 + 4 * i, 40)).save(path)
        ws[f"p{i}"] = path
    return ws


def multi(ws, out, names=("style", "p0", "p1"), **overrides):
    pictures = [str(ws[n]) for n in names]
    return tiny_config(ws, out, style=pictures[0], styles=tuple(pictures), **overrides)


def weights_of(path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(path)).items()}


# --- the step ----------------------------------------------------------------------------------------------------


def _grams(ws, vgg, names):
    from mlx_style.io.image import load_image, resize_max_side, to_batch

    return [style_targets(vgg, to_batch(resize_max_side(load_image(ws[n]), 32)), TINY_LOSS.style_layers) for n in names]


def test_the_multistyle_loss_is_the_picked_rows_single_style_loss(ws):
    """Loss and gradients of row k equal those of the single-style network of row k with style k's targets."""
    vgg, _ = load_vgg(ws["vgg"])
    per_style = _grams(ws, vgg, ("style", "p0", "p1"))
    stacked = {k: mx.stack([g[k] for g in per_style]) for k in TINY_LOSS.style_layers}
    mx.random.seed(3)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=3))
    rng = np.random.default_rng(0)  # distinct rows, so picking the wrong one would show
    net.update({k: v for k, v in net.parameters().items()})
    for _, m in net.named_modules():
        if hasattr(m, "weight") and getattr(m, "weight").ndim == 2:
            m.weight = mx.array(rng.uniform(0.5, 1.5, m.weight.shape).astype(np.float32))
            m.bias = mx.array(rng.normal(0, 0.3, m.bias.shape).astype(np.float32))
    content = mx.array(rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    rows = mx.eye(3)[mx.array([2, 0])]  # the run trains styles 2 and 0 of the network, in that order
    loss = make_loss_fn(net, vgg, {k: v[mx.array([2, 0])] for k, v in stacked.items()}, TINY_LOSS, style_rows=rows)
    for pick, row in ((0, 2), (1, 0)):
        got, got_terms = loss(content, mx.eye(2)[pick])
        single = net.with_style(mx.eye(3)[row])
        want, want_terms = make_loss_fn(single, vgg, per_style[row], TINY_LOSS)(content)
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
        for k in ("content", "style", "tv"):
            assert got_terms[k].item() == pytest.approx(want_terms[k].item(), rel=1e-5), k
        _, grads = nn.value_and_grad(net, lambda c: loss(c, mx.eye(2)[pick]))(content)
        _, single_grads = nn.value_and_grad(single, make_loss_fn(single, vgg, per_style[row], TINY_LOSS))(content)
        flat, single_flat = dict(tree_flatten(grads)), dict(tree_flatten(single_grads))
        for key, g in flat.items():
            if g.ndim == 2:  # a norm: only the picked row has a gradient, and it is the single network's
                np.testing.assert_allclose(np.asarray(g[row]), np.asarray(single_flat[key]), rtol=1e-4, atol=1e-6)
                others = [r for r in range(3) if r != row]
                assert float(mx.abs(g[mx.array(others)]).max()) == 0.0, key
            else:
                np.testing.assert_allclose(
                    np.asarray(g), np.asarray(single_flat[key]), rtol=1e-4, atol=1e-5, err_msg=key
                )


def test_style_scales_weight_each_styles_style_term(ws):
    """With --style-scale, a step of style k has the loss and gradients of style weight × scale k, all else equal."""
    from dataclasses import replace

    vgg, _ = load_vgg(ws["vgg"])
    per_style = _grams(ws, vgg, ("style", "p0"))
    stacked = {k: mx.stack([g[k] for g in per_style]) for k in TINY_LOSS.style_layers}
    mx.random.seed(5)
    net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=2))
    content = mx.array(np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    scaled = make_loss_fn(net, vgg, stacked, replace(TINY_LOSS, style_scales=(1.0, 3.0)), style_rows=mx.eye(2))
    for pick, scale in ((0, 1.0), (1, 3.0)):
        plain = make_loss_fn(net, vgg, stacked, replace(TINY_LOSS, style_weight=5.0 * scale), style_rows=mx.eye(2))
        (got, terms), grads = nn.value_and_grad(net, lambda c: scaled(c, mx.eye(2)[pick]))(content)
        (want, want_terms), want_grads = nn.value_and_grad(net, lambda c: plain(c, mx.eye(2)[pick]))(content)
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
        assert terms["style"].item() == pytest.approx(want_terms["style"].item(), rel=1e-6)  # terms stay unweighted
        for (key, g), (_, w) in zip(tree_flatten(grads), tree_flatten(want_grads)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6, err_msg=key)
    with pytest.raises(ValueError, match="3 style scales for 2 styles"):
        make_loss_fn(net, vgg, stacked, replace(TINY_LOSS, style_scales=(1.0, 1.0, 1.0)), style_rows=mx.eye(2))
    with pytest.raises(ValueError, match="positive and finite"):
        replace(TINY_LOSS, style_scales=(1.0, float("nan")))


def test_style_scale_flags_are_checked_and_recorded(ws, tmp_path):
    args = build_parser().parse_args(["--style", "wave", "udnie", "--data", "d", "--style-scale", "1", "0.5"])
    config = config_from_args(args)
    assert config.style_scales == (1.0, 0.5)
    config.check()
    for bad, message in (
        (["--style", "wave", "udnie", "--style-scale", "1"], "one value per --style: 1 for 2 styles"),
        (["--style", "wave", "udnie", "--style-scale", "1", "0"], "positive and finite"),
        (["--style", "wave", "--style-scale", "2"], "one style's weight is --style-weight"),
    ):
        with pytest.raises(TrainingError, match=message):
            config_from_args(build_parser().parse_args([*bad, "--data", "d"])).check()
    train(multi(ws, tmp_path, iters=2, style_scales=(1.0, 2.0, 0.5)), stream=io.StringIO())
    loss = json.loads(read_metadata(tmp_path / "net.safetensors")["loss_config"])
    assert loss["style_scales"] == [1.0, 2.0, 0.5]


def test_the_compiled_multistyle_step_matches_the_uncompiled_one_and_needs_its_style(ws):
    vgg, _ = load_vgg(ws["vgg"])
    per_style = _grams(ws, vgg, ("style", "p0"))
    stacked = {k: mx.stack([g[k] for g in per_style]) for k in TINY_LOSS.style_layers}
    content = mx.array(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    results = []
    for compile_step in (False, True):
        mx.random.seed(4)
        net = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=2))
        optimizer = optim.Adam(learning_rate=1e-2)
        optimizer.init(net.trainable_parameters())
        step = make_train_step(net, vgg, optimizer, stacked, TINY_LOSS, compile=compile_step, style_rows=mx.eye(2))
        losses = []
        for i in range(4):
            total, _ = step(content, style=i % 2)
            mx.eval(total, net.parameters(), optimizer.state)
            losses.append(total.item())
        results.append(losses)
        with pytest.raises(ValueError, match="pass the batch's style index"):
            step(content)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)
    single = make_train_step(net, vgg, optimizer, per_style[0], TINY_LOSS, compile=False)
    with pytest.raises(ValueError, match="built for one style"):
        single(content, style=0)


# --- runs --------------------------------------------------------------------------------------------------------


def test_a_multistyle_run_takes_the_styles_in_turn_and_lists_them(ws, tmp_path):
    said = io.StringIO()
    config = multi(ws, tmp_path / "m", iters=5, sample_every=5, sample_images=str(ws["data"]))
    result = train(config, stream=said)
    assert result.status == "done"
    assert [r["style_index"] for r in result.records] == [0, 1, 2, 0, 1]
    assert "3 of its 3 styles in turn (style, painting0, painting1)" in said.getvalue()
    meta = read_metadata(config.output)
    listed = json.loads(meta["styles"])
    assert [s["name"] for s in listed] == ["style", "painting0", "painting1"]
    assert [s["sha256"] for s in listed] == [file_sha256(ws[n]) for n in ("style", "p0", "p1")]
    assert all(len(s["thumbnail_sha256"]) == 64 for s in listed)
    assert len({s["thumbnail_sha256"] for s in listed}) == 3
    net, _ = load_transformer(config.output)
    assert net.config.styles == 3
    grid = np.asarray(Image.open(Path(config.run_dir) / "samples" / "final.png"))
    one = np.asarray(Image.open(Path(config.run_dir) / "samples" / "step_00000005.png"))
    assert grid.shape == one.shape and grid.shape[0] > 3.5 * 32  # contents + one row per style
    # stylize finds each style by name, and blends them
    styled, meta = load_network(config.output, style="painting1")
    assert meta["style"] == "painting1"
    x = mx.array(np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32))
    net.eval()
    np.testing.assert_allclose(np.asarray(styled(x)), np.asarray(net(x, mx.eye(3)[2])), rtol=1e-5, atol=1e-3)
    blend, _ = load_network(config.output, style="style:0.5,painting0:0.5")
    half = mx.array([0.5, 0.5, 0.0])
    np.testing.assert_allclose(np.asarray(blend(x)), np.asarray(net(x, half)), rtol=1e-5, atol=1e-4)
    assert np.abs(np.asarray(blend(x)) - np.asarray(styled(x))).max() > 1e-3  # the rows differ after training


def test_resume_of_a_multistyle_run_is_exact(ws, tmp_path):
    whole = multi(ws, tmp_path / "whole", iters=7, width=8)
    train(whole, stream=io.StringIO())
    part = multi(ws, tmp_path / "part", iters=4, checkpoint_every=2, width=8)
    assert train(part, stream=io.StringIO()).step == 4
    second = train(multi(ws, tmp_path / "part", iters=7, resume="latest", width=8), stream=io.StringIO())
    assert second.status == "done" and second.step == 7
    ref, got = read_log(Path(whole.run_dir) / "log.jsonl"), read_log(Path(part.run_dir) / "log.jsonl")
    assert [(r["loss"], r["style_index"]) for r in got] == [(r["loss"], r["style_index"]) for r in ref]
    a, b = weights_of(whole.output), weights_of(part.output)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with pytest.raises(TrainingError, match="another style image"):  # other pictures: refused
        train(
            multi(ws, tmp_path / "part", ("style", "p0", "p2"), iters=8, resume="latest", width=8), stream=io.StringIO()
        )


def test_adding_a_style_trains_only_its_norm_rows(ws, tmp_path):
    base = multi(ws, tmp_path / "base", ("style", "p0"), iters=3)
    train(base, stream=io.StringIO())
    said = io.StringIO()
    add = tiny_config(ws, tmp_path / "add", style=str(ws["p2"]), init_from=base.output, iters=3)
    result = train(add, stream=said)
    assert result.status == "done"
    assert "1 of its 3 styles in turn (painting2); only their norms train" in said.getvalue()
    before, after = weights_of(base.output), weights_of(add.output)
    assert set(before) == set(after)
    changed = []
    for key, old in before.items():
        new = after[key]
        if old.ndim == 2:  # a norm: the two old rows exactly as they were, a third row that trained
            assert new.shape == (3, old.shape[1])
            np.testing.assert_array_equal(new[:2], old, err_msg=key)
            changed.append(not np.array_equal(new[2], old.mean(axis=0)))
        else:
            np.testing.assert_array_equal(new, old, err_msg=key)  # the shared convolutions did not move
    assert all(changed)
    listed = json.loads(read_metadata(add.output)["styles"])
    assert [s["name"] for s in listed] == ["style", "painting0", "painting2"]
    assert read_metadata(add.output)["started_from"] == Path(base.output).name
    # --train-all trains the convolutions too
    free = tiny_config(ws, tmp_path / "free", style=str(ws["p2"]), init_from=base.output, iters=2, train_all=True)
    train(free, stream=io.StringIO())
    moved = weights_of(free.output)
    assert any(not np.array_equal(moved[k], v) for k, v in before.items() if v.ndim == 4)


def test_adding_a_style_resumes_exactly_and_a_picture_it_holds_keeps_its_row(ws, tmp_path):
    base = multi(ws, tmp_path / "base", ("style", "p0"), iters=2)
    train(base, stream=io.StringIO())
    settings = dict(style=str(ws["p2"]), styles=(str(ws["p2"]), str(ws["p0"])), init_from=base.output)
    whole = tiny_config(ws, tmp_path / "whole", iters=5, **settings)
    result = train(whole, stream=io.StringIO())
    assert [r["style_index"] for r in result.records] == [0, 1, 0, 1, 0]
    assert [s["name"] for s in json.loads(read_metadata(whole.output)["styles"])] == ["style", "painting0", "painting2"]
    part = tiny_config(ws, tmp_path / "part", iters=3, checkpoint_every=1, **settings)
    train(part, stream=io.StringIO())
    train(tiny_config(ws, tmp_path / "part", iters=5, resume="latest", **settings), stream=io.StringIO())
    a, b = weights_of(whole.output), weights_of(part.output)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    before = weights_of(base.output)
    for key, old in before.items():
        if old.ndim == 2:
            np.testing.assert_array_equal(a[key][0], old[0], err_msg=key)  # not in the run: untouched
            assert not np.array_equal(a[key][1], old[1])  # painting0 is in the run: its row trained


def test_start_from_copies_rows_and_starts_new_ones_from_their_mean():
    mx.random.seed(0)
    two = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=2))
    for _, m in two.named_modules():
        if hasattr(m, "weight") and getattr(m, "weight").ndim == 2:
            m.weight = mx.random.uniform(shape=m.weight.shape)
    four = TransformerNet(TransformerConfig(width=4, num_residual=1, styles=4))
    start_from(four, two)
    a, b = dict(tree_flatten(two.parameters())), dict(tree_flatten(four.parameters()))
    for key, v in a.items():
        if v.ndim == 2:
            np.testing.assert_array_equal(np.asarray(b[key][:2]), np.asarray(v))
            np.testing.assert_allclose(np.asarray(b[key][2:]), np.repeat(np.asarray(v).mean(0, keepdims=True), 2, 0))
        else:
            np.testing.assert_array_equal(np.asarray(b[key]), np.asarray(v))
    single = TransformerNet(TransformerConfig(width=4, num_residual=1))
    start_from(four, single)  # a single-style network's norms for every row
    for key, v in dict(tree_flatten(single.parameters())).items():
        got = dict(tree_flatten(four.parameters()))[key]
        np.testing.assert_array_equal(np.asarray(got), np.broadcast_to(np.asarray(v), got.shape))
    freeze_shared(four)
    assert {k.rsplit(".", 1)[1] for k, _ in tree_flatten(four.trainable_parameters())} == {"weight", "bias"}
    assert all(v.ndim == 2 for _, v in tree_flatten(four.trainable_parameters()))


def test_bad_style_lists_fail_in_one_line(ws, tmp_path, capsys):
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(ws["p0"]).read_bytes())
    with pytest.raises(ValueError, match="copy.png is the same picture as painting0.png"):
        plan_styles((str(ws["p0"]), str(copy)), 32)
    with pytest.raises(TrainingError, match="need --norm instance"):
        train(multi(ws, tmp_path / "b", norm="batch"), stream=io.StringIO())
    args = cli_args(multi(ws, tmp_path / "c"))
    assert main([*args, "--norm", "batch"]) == 2
    assert "need --norm instance" in capsys.readouterr().err
    missing = [a if a != str(ws["p1"]) else str(tmp_path / "nope.png") for a in args]
    assert main(missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.png" in err[0]


def test_cli_takes_several_styles_and_names_the_output_after_them(ws):
    config = config_from_args(build_parser().parse_args(["--style", "wave", "udnie", "the_scream", "--data", "d"]))
    assert config.style_list() == ("wave", "udnie", "the_scream")
    assert str(config.output_path()) == os.path.join("weights", "wave-udnie-the_scream.safetensors")
    assert config.network_config().styles == 3
    four = config_from_args(build_parser().parse_args(["--style", "a", "b", "c", "d", "--data", "d"]))
    assert four.output_path().name == "a-and-3-more.safetensors"
    one = config_from_args(build_parser().parse_args(["--style", "wave", "--data", "d"]))
    assert one.style == "wave" and one.styles == () and one.network_config().styles == 1


def test_two_processes_of_a_multistyle_run_match_one(ws, tmp_path):
    single = multi(ws, tmp_path / "one", iters=3, processes=1)
    train(single, stream=io.StringIO())
    double = multi(ws, tmp_path / "two", iters=3)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "mlx_style.train", *cli_args(double), "--processes", "2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = read_log(Path(single.run_dir) / "log.jsonl"), read_log(Path(double.run_dir) / "log.jsonl")
    assert [r["style_index"] for r in two] == [0, 1, 2]
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-4)


def test_the_cams_playlist_holds_every_style_of_a_multistyle_network(ws, tmp_path):
    from mlx_style.infer.playlist import Styles, network_entries
    from mlx_style.infer.video_out import snapshot_path

    config = multi(ws, tmp_path / "m", ("style", "p0"), iters=2)
    train(config, stream=io.StringIO())
    single = tiny_config(ws, tmp_path / "s", iters=1)
    train(single, stream=io.StringIO())
    paths = [Path(single.output), Path(config.output)]
    assert [(e[1], e[2]) for e in network_entries(paths)] == [
        (None, "net"),
        ("0", "net: style"),
        ("1", "net: painting0"),
    ]
    styles = Styles(paths, 1, "float32", lambda net: net)
    assert len(styles) == 3 and styles.index == 1 and styles.name == "net: style"
    assert styles.select(2) and styles.name == "net: painting0"
    net, _ = load_transformer(config.output)
    net.eval()
    x = mx.array(np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32))
    np.testing.assert_allclose(np.asarray(styles.stylizer(x)), np.asarray(net(x, mx.eye(2)[1])), atol=1e-4)
    assert snapshot_path(tmp_path, "net: painting0", 0).name.startswith("mlx_style-net_painting0-")
    assert snapshot_path(tmp_path, "wave → udnie 40%", 0).name.startswith("mlx_style-wave-")


def test_a_multistyle_run_with_stable_takes_its_temporal_term(ws, tmp_path):
    result = train(multi(ws, tmp_path / "s", ("style", "p0"), iters=2, stable_weight=100.0), stream=io.StringIO())
    assert result.status == "done"
    assert [r["style_index"] for r in result.records] == [0, 1]
    assert all(r["temporal"] > 0 for r in result.records)


def test_resuming_a_fine_tune_whose_from_network_is_gone_says_how(ws, tmp_path):
    base = tiny_config(ws, tmp_path / "base", iters=1)
    train(base, stream=io.StringIO())
    tuned = tiny_config(ws, tmp_path / "tuned", init_from=base.output, iters=2, checkpoint_every=1)
    train(tuned, stream=io.StringIO())
    Path(base.output).unlink()
    with pytest.raises(TrainingError, match="resumes without --from"):
        train(
            tiny_config(ws, tmp_path / "tuned", init_from=base.output, iters=3, resume="latest"), stream=io.StringIO()
        )
    done = train(tiny_config(ws, tmp_path / "tuned", iters=3, resume="latest"), stream=io.StringIO())
    assert done.status == "done" and done.step == 3


def test_a_resume_must_keep_the_style_scales_and_older_checkpoints_still_resume():
    """A checkpoint written before --style-scale existed records no scales: it resumes with none given. Changed
    scales are refused unless --allow-change."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from mlx_style.training import checkpoint as ckpt
    from mlx_style.training.johnson import check_resumable

    config = TransformerConfig(width=4, num_residual=1, styles=2)

    def found(loss: LossConfig, drop_scales: bool = False):
        record = asdict(loss)
        if drop_scales:
            record.pop("style_scales")
        meta = {"config": config.to_json(), "loss_config": json.dumps(record)}
        return ckpt.Checkpoint(Path("step_00000010.safetensors"), 10, {}, {}, meta)

    old = found(TINY_LOSS, drop_scales=True)
    check_resumable(old, config, losses=TINY_LOSS)  # no scales then, none now: the same recipe
    scaled = replace(TINY_LOSS, style_scales=(1.0, 0.5))
    with pytest.raises(TrainingError, match=r"style_scales \[\] → \[1.0, 0.5\]"):
        check_resumable(old, config, losses=scaled)
    check_resumable(old, config, losses=scaled, allow_change=True)
    check_resumable(found(scaled), config, losses=scaled)
    with pytest.raises(TrainingError, match="other loss settings"):
        check_resumable(found(scaled), config, losses=replace(TINY_LOSS, style_scales=(1.0, 0.7)))
