"""The stability table: each clip stylised plain and with ``--smooth``, measured by ``mlx-style flicker``.

    python -m scripts.bench.make_clips ../shared/data/content/holdout/deeptransfer_fullhd.jpg --out runs/clips
    python -m scripts.bench.flicker_table --model wave --clips ../shared/data/video/fox.mp4 runs/clips/pan.avi \
        runs/clips/still_noise.avi --size 256 --frames 90 --json runs/flicker.json

Prints one markdown row per clip and setting: warping error and static flicker of the stylised video, the same
for the original (the floor), the style and content losses of its frames (with ``--vgg``: the network's own loss
settings, every 10th frame at 256 px, so that stability is never bought with less style), and the stylising time
per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

from mlx_style.backend import keep_freed_memory
from mlx_style.infer.files import StylizeConfig, VIDEO_EXTENSIONS, Job, stylize_video_file
from mlx_style.infer.flicker import read_video, stability
from mlx_style.infer.stylize import load_network
from mlx_style.io.image import load_image, resize_max_side, to_batch
from mlx_style.io.registry import resolve_style_image


def frame_losses(vgg, losses, grams, original, stylised, every: int = 10, size: int = 256) -> tuple[float, float]:
    """Mean style and content terms (unweighted) of every ``every``-th stylised frame against its original."""
    import mlx.core as mx

    from mlx_style.nn.losses import perceptual_loss

    styles, contents = [], []
    for o, s in list(zip(original, stylised))[::every]:
        out = to_batch(resize_max_side(s[..., ::-1].copy(), size))
        content = to_batch(resize_max_side(o[..., ::-1].copy(), size))
        _, terms = perceptual_loss(vgg, out, content, grams, losses)
        mx.eval(terms)
        styles.append(terms["style"].item())
        contents.append(terms["content"].item())
    return sum(styles) / len(styles), sum(contents) / len(contents)


def clip_prefix(path: Path, frames: int, folder: Path) -> Path:
    """The first ``frames`` frames of a clip, as a lossless-enough MJPG .avi (so every setting sees the same)."""
    out = folder / f"{path.stem}_{frames}.avi"
    video = read_video(path, frames)
    h, w = video[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for frame in video:
        writer.write(frame)
    writer.release()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.flicker_table", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wave")
    p.add_argument("--clips", nargs="+", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--smooth", type=float, default=0.5)
    p.add_argument("--vgg", default=None, help="converted VGG weights: also measure the frames' losses")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    keep_freed_memory()  # as the stylize and cam commands do: the frame times are theirs
    net, meta = load_network(args.model)  # a built-in name binds its style of the built-ins' network
    loss_parts = None
    if args.vgg:
        from mlx_style.nn.losses import LossConfig, style_targets
        from mlx_style.io.vgg_weights import load_vgg

        cfg = json.loads(meta["loss_config"])
        cfg.pop("style_scales", None)  # the per-style training weights: this measures one style
        losses = LossConfig(
            **{
                **cfg,
                "style_layers": tuple(cfg["style_layers"]),
                "style_layer_weights": tuple(cfg["style_layer_weights"]),
            }
        )
        vgg, _ = load_vgg(args.vgg)
        style = resize_max_side(load_image(resolve_style_image(meta["style"])), 256)
        loss_parts = (vgg, losses, style_targets(vgg, to_batch(style), losses.style_layers))
    rows = []
    print(
        "| clip | setting | warping error | static flicker | original's (floor) | style loss | content loss "
        "| ms per frame |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for clip in map(Path, args.clips):
            if clip.suffix.lower() not in VIDEO_EXTENSIONS:
                raise SystemExit(f"{clip} is not a video")
            source = clip_prefix(clip, args.frames, folder)
            original = read_video(source)
            floor = stability(original, original)
            for setting, smooth in (("plain", 0.0), (f"--smooth {args.smooth:g}", args.smooth)):
                target = folder / f"{clip.stem}_{smooth:g}.avi"
                config = StylizeConfig(size=args.size, smooth=smooth)
                start = time.perf_counter()
                stylize_video_file(net, Job(source, target, "video"), config, log=lambda line: None)
                ms = 1000 * (time.perf_counter() - start) / len(original)
                video = read_video(target)
                s = stability(original, video)
                style_l, content_l = frame_losses(*loss_parts, original, video) if loss_parts else (float("nan"),) * 2
                rows.append(
                    {
                        "clip": clip.name,
                        "setting": setting,
                        "warping_error": s.warping_error,
                        "static_flicker": s.static_flicker,
                        "floor_warping_error": floor.warping_error,
                        "floor_static_flicker": floor.static_flicker,
                        "style_loss": style_l,
                        "content_loss": content_l,
                        "ms_per_frame": ms,
                        "frames": s.frames,
                    }
                )
                print(
                    f"| {clip.name} | {setting} | {s.warping_error:.5f} | {s.static_flicker:.2f} | "
                    f"{floor.warping_error:.5f} / {floor.static_flicker:.2f} | {style_l:.4g} | {content_l:.4g} | "
                    f"{ms:.0f} |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "size": args.size, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
