"""How fast does a warm start reach a from-scratch network? Held-out losses of every checkpoint of the warm runs.

    python -m scripts.bench.warm_start --scratch runs/scratch_la_muse \
        --runs runs/multi6_la_muse runs/wave_to_la_muse --labels "add a style (norms only)" "fine-tune wave" \
        --style ../shared/data/styles/la_muse.jpg --data ../shared/data/content/holdout --size 128 \
        --json runs/warm_start.json

Each run folder is a ``train`` run (``--checkpoint-every N --keep-checkpoints 0`` keeps every checkpoint). Every
checkpoint, and the from-scratch run's final network, is measured with the same code (``compare_training``: the
perceptual loss of the scratch run's settings, the Grams of ``--style``) on every photo of ``--data``. A
multi-style checkpoint is measured on the row that trains ``--style`` (found by the picture's sha256). Times are
the runs' own step times from their logs (the first step's one-off kernel build included), so runs that shared
the machine with others read slower than they are.

The goal (issue #21): a warm run's held-out style and content losses at or below the from-scratch run's in at most
a tenth of its time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from mlx_style.backend import keep_freed_memory
from mlx_style.io.image import list_images, load_image, resize_max_side, to_batch
from mlx_style.io.weights import file_sha256
from mlx_style.nn.losses import style_targets
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.vgg_weights import default_vgg, load_vgg
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.data import prepare
from mlx_style.training.progress import read_log
from scripts.bench.compare_training import evaluate, loss_config_of


def step_seconds(log: list[dict], batch: int) -> dict[int, float]:
    """Cumulative seconds of the steps at each logged step (each record's rate covers the steps since the last)."""
    seconds, total, last = {}, 0.0, 0
    for record in log:
        total += (record["step"] - last) * batch / record["images_per_s"]
        seconds[record["step"]], last = total, record["step"]
    return seconds


def network_at(found: ckpt.Checkpoint, style_sha: str):
    """The checkpoint's network for the style with ``style_sha`` (bound to its row when it holds several)."""
    net = TransformerNet(TransformerConfig.from_json(found.metadata["config"]))
    net.load_weights(list(found.model.items()), strict=True)
    net.eval()
    if net.config.styles == 1:
        return net
    shas = [s.get("sha256") for s in json.loads(found.metadata.get("styles", "[]"))]
    if style_sha not in shas:
        raise SystemExit(f"error: {found.path} holds no style trained on that picture (its styles' sha256 differ)")
    return net.with_style(mx.eye(net.config.styles)[shas.index(style_sha)])


def measure_run(folder: Path, vgg, grams, losses, crops, style_sha: str) -> list[dict]:
    log = read_log(folder / "log.jsonl")
    batch = json.loads(ckpt.load_checkpoint(ckpt.latest_checkpoint(folder / "checkpoints")).metadata["train_config"])[
        "batch_size"
    ]
    seconds = step_seconds(log, batch)
    rows = []
    for path in ckpt.list_checkpoints(folder / "checkpoints"):
        found = ckpt.load_checkpoint(path)
        if found.step and found.step not in seconds:
            continue
        per_photo = evaluate(network_at(found, style_sha), vgg, grams, losses, crops)
        means = {k: float(np.mean([r[k] for r in per_photo])) for k in ("loss", "content", "style", "tv")}
        rows.append({"step": found.step, "seconds": seconds.get(found.step, 0.0), **means})
        print(
            f"  {folder.name} step {found.step:5d} {rows[-1]['seconds'] / 60:6.2f} min  total {means['loss']:.4g}  "
            f"content {means['content']:.4g}  style {means['style']:.4g}",
            flush=True,
        )
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scratch", required=True, help="the from-scratch run folder (its last checkpoint is measured)")
    p.add_argument("--runs", nargs="+", required=True, help="warm-started run folders")
    p.add_argument("--labels", nargs="+", help="names for the warm runs (default: folder names)")
    p.add_argument("--style", required=True, help="the style picture all of them train")
    p.add_argument("--data", required=True, help="folder of held-out photos")
    p.add_argument("--vgg", default=default_vgg())
    p.add_argument("--size", type=int, default=128, help="crop side for the losses (the training size)")
    p.add_argument("--json", help="write every measurement here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    labels = args.labels or [Path(r).name for r in args.runs]
    scratch_dir = Path(args.scratch)
    last = ckpt.load_checkpoint(ckpt.latest_checkpoint(scratch_dir / "checkpoints"))
    losses = loss_config_of(last.metadata)
    vgg, _ = load_vgg(args.vgg)
    style = resize_max_side(load_image(args.style), args.size)
    grams = style_targets(vgg, to_batch(style), losses.style_layers)
    crops = [prepare(load_image(f), args.size) for f in list_images(args.data)]
    sha = file_sha256(args.style)
    batch = json.loads(last.metadata["train_config"])["batch_size"]
    scratch_seconds = step_seconds(read_log(scratch_dir / "log.jsonl"), batch)[last.step]
    per_photo = evaluate(network_at(last, sha), vgg, grams, losses, crops)
    scratch = {
        "step": last.step,
        "seconds": scratch_seconds,
        **{k: float(np.mean([r[k] for r in per_photo])) for k in ("loss", "content", "style", "tv")},
    }
    print(
        f"from scratch: {last.step} steps, {scratch_seconds / 60:.1f} min; held-out total {scratch['loss']:.4g}, "
        f"content {scratch['content']:.4g}, style {scratch['style']:.4g} ({len(crops)} photos at {args.size}²)"
    )
    report = {"scratch": scratch, "runs": {}}
    for label, folder in zip(labels, args.runs):
        rows = measure_run(Path(folder), vgg, grams, losses, crops, sha)
        reach = next((r for r in rows if r["style"] <= scratch["style"] and r["content"] <= scratch["content"]), None)
        reach_total = next((r for r in rows if r["loss"] <= scratch["loss"]), None)
        report["runs"][label] = {"checkpoints": rows, "reaches_both": reach, "reaches_total": reach_total}
        for name, hit in (("style and content losses", reach), ("total loss", reach_total)):
            print(
                f"{label}: "
                + (
                    f"reaches the scratch run's {name} at step {hit['step']}, {hit['seconds'] / 60:.2f} "
                    f"min = {hit['seconds'] / scratch_seconds:.3f} of its time"
                    if hit
                    else f"does not reach the scratch run's {name} in {rows[-1]['step']} steps"
                )
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
