"""The scripts behind the warm-start and training-method tables (``scripts/bench/warm_start.py``,
``method_table.py``), on tiny runs: they must measure the right style row of a multi-style network."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train_helpers import make_workspace, photo, tiny_config

import mlx_style  # noqa: F401
from mlx_style.training import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm_scripts")
    ws = make_workspace(root)
    new = root / "newstyle.png"
    Image.fromarray(photo(np.random.default_rng(8), 40, 44)).save(new)
    scratch = tiny_config(ws, root / "scratch", style=str(new), iters=4)
    base = tiny_config(ws, root / "base", styles=(str(ws["style"]), str(ws["data"] / "img000.png")), iters=2)
    warm = tiny_config(
        ws, root / "warm", style=str(new), init_from=base.output, iters=3, checkpoint_every=1, keep_checkpoints=0
    )
    for config in (scratch, base, warm):
        assert train(config, stream=io.StringIO()).status == "done"
    return ws, new, scratch, warm


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"scripts.bench.{name}", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_warm_start_measures_every_checkpoint_on_the_new_styles_row(runs, tmp_path):
    ws, new, scratch, warm = runs
    out = tmp_path / "warm.json"
    done = run_script(
        "warm_start",
        "--scratch",
        scratch.run_dir,
        "--runs",
        warm.run_dir,
        "--labels",
        "warm",
        "--style",
        new,
        "--data",
        ws["data"],
        "--vgg",
        ws["vgg"],
        "--size",
        32,
        "--json",
        out,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["runs"]["warm"]["checkpoints"]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["seconds"] == 0 and all(a["seconds"] < b["seconds"] for a, b in zip(rows, rows[1:]))
    assert report["scratch"]["step"] == 4
    # the last checkpoint is the written network: measured on its newstyle row, as compare_training measures it
    ref = tmp_path / "ref.json"
    done = run_script(
        "compare_training",
        f"{warm.output}#newstyle",
        "--style",
        new,
        "--data",
        ws["data"],
        "--vgg",
        ws["vgg"],
        "--size",
        32,
        "--json",
        ref,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ref_rows = json.loads(ref.read_text())["results"]["net"]
    assert rows[-1]["loss"] == pytest.approx(np.mean([r["loss"] for r in ref_rows]), rel=1e-5)
    assert rows[0]["loss"] != pytest.approx(rows[-1]["loss"], rel=1e-7)


def test_method_table_measures_each_network_on_the_styles_it_serves(runs, tmp_path):
    ws, new, scratch, warm = runs
    out = tmp_path / "table.json"
    done = run_script(
        "method_table",
        "--data",
        ws["data"],
        "--vgg",
        ws["vgg"],
        "--size",
        32,
        "--style",
        f"newstyle={new}",
        f"style={ws['style']}",
        "--single",
        f"newstyle={scratch.output}",
        "--multi",
        warm.output,
        "--grid",
        tmp_path / "grid.png",
        "--grid-styles",
        "newstyle",
        "--grid-size",
        32,
        "--json",
        out,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert set(results["newstyle"]) == {"single-style", "multi-style"} and set(results["style"]) == {"multi-style"}
    ref = tmp_path / "ref.json"
    run_script(
        "compare_training",
        scratch.output,
        f"{warm.output}#newstyle",
        "--labels",
        "s,m",
        "--style",
        new,
        "--data",
        ws["data"],
        "--vgg",
        ws["vgg"],
        "--size",
        32,
        "--json",
        ref,
    )
    ref_results = json.loads(ref.read_text())["results"]
    for kind, label in (("single-style", "s"), ("multi-style", "m")):
        assert results["newstyle"][kind]["loss"] == pytest.approx(
            np.mean([r["loss"] for r in ref_results[label]]), rel=1e-5
        )
    assert Image.open(tmp_path / "grid.png").size[0] == 4 * 32
