"""``mlx-style train --method adain``: train an AdaIN decoder (Huang & Belongie 2017); see ``training.adain``.

    python -m mlx_style.cli.train_adain --styles runs/adain/styles --data data/coco/val2017 --image-size 128 \\
        --batch-size 4 --iters 1000 --lr 1e-3 --output weights/adain.safetensors

The result takes any picture as its style: ``mlx-style stylize --model adain --style-image PAINTING.jpg
--style-strength 0.8 photo.jpg``.
"""

from __future__ import annotations

import argparse
import sys

from mlx_style.cli.common import comma_floats, comma_ints, comma_names, fail
from mlx_style.errors import MlxStyleError
from mlx_style.training.adain import AdaINTrainConfig
from mlx_style.training.config import LATEST


def build_parser() -> argparse.ArgumentParser:
    d = AdaINTrainConfig()
    p = argparse.ArgumentParser(prog="mlx-style train --method adain",
                                description="train an AdaIN decoder (Huang & Belongie 2017): any picture as a style")
    g = p.add_argument_group("data")
    g.add_argument("--styles", required=True, metavar="DIR", help="folder of style pictures (paintings)")
    g.add_argument("--data", required=True, metavar="DIR", help="folder of content photos, searched recursively")
    g.add_argument("--image-size", type=int, default=d.image_size, help="side of the square content and style crops")
    g.add_argument("--style-resize", type=int, default=d.style_resize, metavar="PX",
                   help="shorter side of the style pictures before the random crops (default: 2 × --image-size)")
    g.add_argument("--min-side", type=int, default=d.min_side, metavar="PX",
                   help="skip content photos whose shorter side is below PX (default: half of --image-size)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--iters", type=int, default=d.iters, help="total steps")
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    g.add_argument("--lr-decay", type=float, default=d.lr_decay, help="lr / (1 + decay·step), Huang's schedule")
    g.add_argument("--seed", type=int, default=d.seed, help="decoder initialisation, data order and style crops")
    g = p.add_argument_group("network and loss")
    g.add_argument("--vgg", default=d.vgg, help="the encoder: converted VGG weights (scripts/convert_vgg.py)")
    g.add_argument("--decoder-widths", type=comma_ints, default=d.decoder_widths, metavar="W3,W2,W1",
                   help="decoder channels of blocks 3, 2 and 1 (default: the encoder's, 256,128,64)")
    g.add_argument("--content-weight", type=float, default=d.content_weight)
    g.add_argument("--style-weight", type=float, default=d.style_weight, help="Huang's λ")
    g.add_argument("--style-layers", type=comma_names, default=d.style_layers)
    g.add_argument("--style-layer-weights", type=comma_floats, default=d.style_layer_weights,
                   help="one per style layer (default: equal)")
    g.add_argument("--style-size", type=int, default=d.style_size, metavar="PX",
                   help="shorter side a style picture is resized to at inference (stored in the network)")
    g = p.add_argument_group("output and resuming")
    g.add_argument("--output", default=d.output, help="default: weights/adain.safetensors")
    g.add_argument("--run-dir", default=d.run_dir, help="log, samples, checkpoints (default: runs/<output stem>)")
    g.add_argument("--log-every", type=int, default=d.log_every)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (0: end and Ctrl-C only)")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K")
    g.add_argument("--resume", nargs="?", const=LATEST, default=d.resume, metavar="PATH",
                   help="continue a run: from PATH, or without one from the latest checkpoint of the run folder")
    g.add_argument("--overwrite", action="store_true", help="start again even if --output or checkpoints exist")
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids (0: none)")
    g.add_argument("--sample-styles", nargs="+", default=list(d.sample_styles), metavar="PICTURE",
                   help="style pictures for the sample grids, e.g. held-out ones (default: two training styles)")
    g.add_argument("--no-tune", dest="tune", action="store_false",
                   help="skip timing the convolution strategies for this batch shape (cached once per size)")
    g.add_argument("--no-compile", dest="compile", action="store_false",
                   help="run the step uncompiled (skips the one-off kernel compilation; slower steps)")
    return p


def config_from_args(args: argparse.Namespace) -> AdaINTrainConfig:
    values = {k: v for k, v in vars(args).items() if k in AdaINTrainConfig.__dataclass_fields__}
    values["sample_styles"] = tuple(values.get("sample_styles") or ())
    return AdaINTrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    from mlx_style.backend import keep_freed_memory
    from mlx_style.training.adain import train_adain

    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    keep_freed_memory()
    try:
        result = train_adain(config)
    except (MlxStyleError, ValueError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("interrupted before the first step: nothing to save", file=sys.stderr)
        return 130
    if result.status in ("diverged", "failed"):
        return 1
    if result.status == "interrupted":
        return 130
    last = result.records[-1] if result.records else {}
    print(f"wrote {result.output} after {result.step} steps (last loss {last.get('loss', float('nan')):.4g}, "
          f"{last.get('images_per_s', 0):.2f} img/s, {result.skipped} unusable images skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
