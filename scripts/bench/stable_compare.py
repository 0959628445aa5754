"""Does ``train --stable`` steady a network? The built-in wave fine-tuned plain and with ``--stable W``, measured.

    python -m scripts.bench.stable_compare --steps 400 --weights 100,300,1000,3000 --frames 90

Every network starts from the built-in ``wave`` (``train --from wave``) and is fine-tuned with the same recipe
(``--steps`` steps on ``../shared/data/content/train`` at 128², batch 4, the Caffe VGG16, seed 0): once plain and
once per weight ``W`` with ``--stable W`` (and, with ``--noise``, at each ``--stable-noise``). Each network (and
the built-in it started from) is then measured

- on the clips, with ``scripts/bench/flicker_table.py``: warping error and static flicker of the stylised clip,
  plain and with ``--smooth``, and the style loss of its frames. Clips: ``../shared/data/video/fox.mp4`` and the
  pan and still-with-noise clips ``scripts/bench/make_clips.py`` makes from a held-out photo;
- on ``../shared/data/content/holdout`` with ``scripts/bench/compare_training.py``: the training losses at 128²,
  and the temporal term itself (``training.motion``, fixed motions).

It prints a markdown table and writes it (``stable_compare.md``) with a JSON of every number
(``stable_compare.json``) under ``--out``; the trained networks stay in ``--out/nets`` and a later run with the
same recipe reuses them. The issue's goal: warping error and static flicker ≥ 2.5× lower than the plain
network's, held-out style loss at most 10% higher. Run from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict
import sys
import time
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style.cli.train import main as train_main
from mlx_style.infer.stylize import load_network
from mlx_style.io.image import list_images, load_image
from mlx_style.io.registry import resolve_model
from mlx_style.io.vgg_convert import ConvertConfig, convert
from mlx_style.io.weights import read_metadata
from mlx_style.training.data import prepare
from mlx_style.training.motion import StableConfig, random_motion, temporal_loss
from scripts.bench import compare_training, flicker_table, make_clips

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CLIP_PHOTO = "deeptransfer_fullhd.jpg"  # a held-out photo large enough for a pan (make_clips' example)
HOLDOUT_MOTION_SEED = 1234  # the held-out temporal term's motions: fixed, and not a training seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.stable_compare", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400, help="fine-tuning steps of every network")
    p.add_argument("--weights", default="100,300,1000,3000", help="comma-separated --stable weights to compare")
    p.add_argument(
        "--noise",
        default=f"{StableConfig().noise:g}",
        help="comma-separated --stable-noise values: every weight is trained with each (a network "
        "with another than the default is labelled 'stable W noise S')",
    )
    p.add_argument(
        "--fixed-target",
        action="store_true",
        help="train the --stable networks with --stable-fixed-target (labelled '... fixed')",
    )
    p.add_argument("--frames", type=int, default=90, help="frames of each clip measured")
    p.add_argument("--size", type=int, default=256, help="stylising size of the clips (flicker_table --size)")
    p.add_argument("--smooth", type=float, default=0.5, help="the --smooth weight measured beside each network")
    p.add_argument("--image-size", type=int, default=128, help="training crop size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from", dest="init_from", default="wave", help="the network every run starts from")
    p.add_argument("--style", default=str(SHARED / "styles" / "wave.jpg"), help="the style image it was trained on")
    p.add_argument("--data", default=str(SHARED / "content" / "train"))
    p.add_argument("--holdout", default=str(SHARED / "content" / "holdout"))
    p.add_argument("--holdout-size", type=int, default=128, help="crop side of the held-out losses")
    p.add_argument(
        "--vgg",
        default="weights/vgg16.safetensors",
        help="converted Caffe VGG16; made under --out from ../shared/data when absent",
    )
    p.add_argument(
        "--clips",
        nargs="*",
        default=None,
        help="videos to measure (default: fox.mp4 and make_clips' pan and still-noise clips)",
    )
    p.add_argument("--processes", default=None, help="train --processes (default: auto)")
    p.add_argument("--no-compile", action="store_true", help="train --no-compile")
    p.add_argument("--retrain", action="store_true", help="train again even where a matching network exists")
    p.add_argument("--out", default="runs/stable_compare")
    return p


def vgg_path(args, out: Path) -> Path:
    """``--vgg`` if it exists, else the Caffe VGG16 of ../shared/data converted once under ``out``."""
    if Path(args.vgg).exists():
        return Path(args.vgg)
    made = out / "vgg16.safetensors"
    if not made.exists():
        say(f"converting {SHARED / 'weights' / 'vgg16_caffe_imagenet'} → {made}")
        convert(ConvertConfig(source=str(SHARED / "weights" / "vgg16_caffe_imagenet"), out=str(made)))
    return made


def clip_paths(args, out: Path, log) -> list[Path]:
    if args.clips:
        return [Path(c) for c in args.clips]
    folder = out / "clips"
    with contextlib.redirect_stdout(log):
        make_clips.main([str(Path(args.holdout) / CLIP_PHOTO), "--out", str(folder), "--frames", str(args.frames)])
    return [SHARED / "video" / "fox.mp4", folder / "pan.avi", folder / "still_noise.avi"]


def matches(path: Path, args, weight: float, noise: float) -> bool:
    """Whether ``path`` is a network this recipe already trained (so a rerun can skip it)."""
    try:
        meta = read_metadata(path)
        config = json.loads(meta["train_config"])
        recorded = json.loads(meta.get("stable", '{"weight": 0.0}'))
    except (OSError, ValueError, KeyError):
        return False
    return (
        meta.get("steps") == str(args.steps)
        and recorded["weight"] == weight
        and (
            weight == 0 or (recorded.get("noise") == noise and recorded.get("fixed_target", False) == args.fixed_target)
        )
        and config.get("seed") == args.seed
        and config.get("image_size") == args.image_size
        and config.get("batch_size") == args.batch_size
    )


def variants(args) -> list[tuple[str, float, float]]:
    """(label, weight, noise) of every network to train: the plain one, then each weight at each noise."""
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    noises = [float(n) for n in args.noise.split(",") if n.strip()]
    if any(w <= 0 for w in weights) or any(n < 0 for n in noises) or not noises or args.steps < 1:
        raise SystemExit("error: --weights must be positive numbers, --noise numbers ≥ 0 and --steps at least 1")
    default = StableConfig().noise
    fixed = " fixed" if args.fixed_target else ""
    return [("plain", 0.0, default)] + [
        (f"stable {w:g}" + ("" if n == default else f" noise {n:g}") + fixed, w, n) for w in weights for n in noises
    ]


def train_network(label: str, weight: float, args, vgg: Path, out: Path, noise: float | None = None) -> dict:
    """Fine-tune one network (``train`` with ``--stable weight`` when > 0); its path and the time it took."""
    path = out / "nets" / f"{label.replace(' ', '_')}.safetensors"
    noise = StableConfig().noise if noise is None else noise
    if not args.retrain and matches(path, args, weight, noise):
        say(f"{label}: reusing {path}")
        return {"path": str(path), "train_seconds": None}
    argv = [
        "--style",
        args.style,
        "--data",
        args.data,
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--iters",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--from",
        args.init_from,
        "--vgg",
        str(vgg),
        "--output",
        str(path),
        "--run-dir",
        str(out / "runs" / path.stem),
        "--sample-every",
        "0",
        "--checkpoint-every",
        "0",
        "--log-every",
        str(max(1, min(10, args.steps))),
        "--overwrite",
    ]
    argv += ["--stable", f"{weight:g}", "--stable-noise", f"{noise:g}"] if weight > 0 else []
    argv += ["--stable-fixed-target"] if weight > 0 and args.fixed_target else []
    argv += ["--processes", args.processes] if args.processes else []
    argv += ["--no-compile"] if args.no_compile else []
    say(f"{label}: mlx-style train {' '.join(argv)}")
    began = time.perf_counter()
    if train_main(argv) != 0:
        raise SystemExit(f"error: training {label} failed (see above)")
    return {"path": str(path), "train_seconds": time.perf_counter() - began}


def holdout_temporal(path: str, crops: np.ndarray, noise: float, batch: int = 8) -> float:
    """The temporal term (``motion.temporal_loss``, the default motion) of a network on the held-out crops."""
    net, _ = load_network(path)
    motion = random_motion(HOLDOUT_MOTION_SEED, 0, len(crops), crops.shape[1], crops.shape[2], StableConfig(1.0))
    values = []
    for i in range(0, len(crops), batch):
        x = mx.array(crops[i : i + batch].astype(np.float32))
        value = temporal_loss(
            net, x, net(x), mx.array(motion.matrices[i : i + batch]), mx.array(motion.keys[i : i + batch]), noise
        )
        values.append(value.item() * len(x))
    return sum(values) / len(crops)


def measured(target: Path, network: str, clips: list[Path], args) -> bool:
    """Whether ``target`` holds flicker_table's numbers for this network file (written after it), clips, size and
    smoothing: a rerun that adds a network then measures only the new one."""
    try:
        data = json.loads(target.read_text())
        fresh = target.stat().st_mtime > Path(network).stat().st_mtime
    except (OSError, ValueError):
        return False
    rows = data.get("rows", [])
    return (
        fresh
        and data.get("model") == network
        and data.get("size") == args.size
        and {r["clip"] for r in rows} == {c.name for c in clips}
        and all(r["frames"] == args.frames for r in rows)
        and {r["setting"] for r in rows} == {"plain", f"--smooth {args.smooth:g}"}
    )


def ratio(base: float, value: float) -> float:
    return base / value if value > 0 else float("nan")


def tables(networks: list[dict], rows: list[dict], args) -> str:
    """The markdown: one row per network (held-out losses, the goal), then one per network, clip and setting."""
    plain = next(n for n in networks if n["label"] == "plain")
    base = {(r["clip"]): r for r in rows if r["network"] == "plain" and r["setting"] == "plain"}
    lines = [
        f"Fine-tuned from `{args.init_from}` for {args.steps} steps at {args.image_size}², batch "
        f"{args.batch_size}, seed {args.seed}; clips at {args.size} px, {args.frames} frames; held-out losses "
        f"on {plain['holdout']['photos']} photos at {args.holdout_size}². × lower: the plain fine-tune's "
        "number (unsmoothed) divided by this one.",
        "",
        "| network | held-out style | vs plain | held-out content | held-out temporal | × lower | "
        "warping error × lower (min over clips) | static flicker × lower (min) | goal met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in networks:
        h, ph = n["holdout"], plain["holdout"]
        mine = [r for r in rows if r["network"] == n["label"] and r["setting"] == "plain"]
        warp_x = min(ratio(base[r["clip"]]["warping_error"], r["warping_error"]) for r in mine)
        flick_x = min(ratio(base[r["clip"]]["static_flicker"], r["static_flicker"]) for r in mine)
        style_up = h["style"] / ph["style"] - 1
        n["goal"] = {
            "warping_error_x": warp_x,
            "static_flicker_x": flick_x,
            "style_increase": style_up,
            "met": bool(warp_x >= 2.5 and flick_x >= 2.5 and style_up <= 0.10),
        }
        lines.append(
            f"| {n['label']} | {h['style']:.4g} | {100 * style_up:+.1f}% | {h['content']:.4g} | "
            f"{h['temporal']:.4g} | {ratio(ph['temporal'], h['temporal']):.2f} | {warp_x:.2f} | "
            f"{flick_x:.2f} | {'yes' if n['goal']['met'] else 'no'} |"
        )
    lines += [
        "",
        "| network | clip | setting | warping error | × lower | static flicker | × lower | "
        "original's (floor) | frames' style loss | ms per frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base[r["clip"]]
        lines.append(
            f"| {r['network']} | {r['clip']} | {r['setting']} | {r['warping_error']:.5f} | "
            f"{ratio(b['warping_error'], r['warping_error']):.2f} | {r['static_flicker']:.2f} | "
            f"{ratio(b['static_flicker'], r['static_flicker']):.2f} | {r['floor_warping_error']:.5f} / "
            f"{r['floor_static_flicker']:.2f} | {r['style_loss']:.4g} | {r['ms_per_frame']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    todo = variants(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    vgg = vgg_path(args, out)
    networks = [{"label": "built-in", "weight": None, "path": str(resolve_model(args.init_from)), "train_seconds": 0.0}]
    for label, weight, noise in todo:
        networks.append(
            {"label": label, "weight": weight, "noise": noise, **train_network(label, weight, args, vgg, out, noise)}
        )

    with open(out / "details.log", "w") as log:  # the helpers' own tables, kept for reference
        clips = clip_paths(args, out, log)
        say(f"measuring {len(networks)} networks on the held-out photos")
        holdout_json = out / "holdout.json"
        with contextlib.redirect_stdout(log):
            compare_training.main(
                [
                    *(n["path"] for n in networks),
                    "--labels",
                    ",".join(n["label"] for n in networks),
                    "--style",
                    args.style,
                    "--data",
                    args.holdout,
                    "--vgg",
                    str(vgg),
                    "--size",
                    str(args.holdout_size),
                    "--json",
                    str(holdout_json),
                ]
            )
        held = json.loads(holdout_json.read_text())
        crops = np.stack([prepare(load_image(p), args.holdout_size) for p in list_images(args.holdout)])
        for n in networks:
            per_image = held["results"][n["label"]]
            n["holdout"] = {k: float(np.mean([r[k] for r in per_image])) for k in ("loss", "content", "style", "tv")}
            n["holdout"]["temporal"] = holdout_temporal(n["path"], crops, StableConfig().noise)
            n["holdout"]["photos"] = len(per_image)
        rows = []
        for n in networks:
            say(f"measuring {n['label']} on {len(clips)} clips ({args.frames} frames at {args.size} px)")
            target = out / f"flicker_{n['label'].replace(' ', '_')}.json"
            if not args.retrain and measured(target, n["path"], clips, args):
                say(f"{n['label']}: reusing {target}")
            else:
                with contextlib.redirect_stdout(log):
                    flicker_table.main(
                        [
                            "--model",
                            n["path"],
                            "--clips",
                            *map(str, clips),
                            "--size",
                            str(args.size),
                            "--frames",
                            str(args.frames),
                            "--vgg",
                            str(vgg),
                            "--json",
                            str(target),
                            "--smooth",
                            f"{args.smooth:g}",
                        ]
                    )
            rows += [{"network": n["label"], **r} for r in json.loads(target.read_text())["rows"]]

    table = tables(networks, rows, args)
    settings = vars(args)
    (out / "stable_compare.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "motion": asdict(StableConfig()),
                "networks": networks,
                "clips": rows,
                "seconds": time.perf_counter() - began,
            },
            indent=1,
        )
    )
    (out / "stable_compare.md").write_text(table)
    print(table)
    say(f"wrote {out / 'stable_compare.md'} and {out / 'stable_compare.json'} in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
