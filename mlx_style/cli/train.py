"""``mlx-style train`` (``python -m mlx_style.train``): train a style network; see ``mlx_style.training``.

``--method johnson`` (the default) trains Johnson et al.'s network for one picture, or several in one network, or
steadier for video (``--stable``); ``--method adain`` an AdaIN decoder that takes any picture as its style (Huang &
Belongie 2017), which takes its style at inference (``stylize --model adain --style-image PAINTING.jpg``). The flags
after the method are its own (``mlx-style train --method adain --help``)::

    mlx-style train --style wave.jpg --data photos/
    mlx-style train --method adain --styles paintings/ --data photos/
"""

from __future__ import annotations

import argparse
import sys

from mlx_style.backend import keep_freed_memory
from mlx_style.cli.common import comma_floats, comma_ints, comma_names, fail
from mlx_style.errors import MlxStyleError
from mlx_style.nn.transformer import NORMS, UPSAMPLES
from mlx_style.training import train
from mlx_style.training.checkpoint import check_run_free
from mlx_style.training.config import LATEST, STABLE_DEFAULT_WEIGHT, AdaINTrainConfig, TrainConfig
from mlx_style.training.johnson import check_inputs
from mlx_style.training.launch import launched, run_local
from mlx_style.training.step import CLIP_MODES

METHODS = {"johnson": TrainConfig, "adain": AdaINTrainConfig}  # --method → its settings


def _processes(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more) or auto, got {text!r}")
    return value


def method_of(argv: list[str]) -> str:
    """The ``--method`` of a command line (``johnson`` without one), read before the method's own flags are known."""
    peek = argparse.ArgumentParser(prog="mlx-style train", add_help=False)
    peek.add_argument("--method", default="johnson")
    return peek.parse_known_args(argv)[0].method


def build_parser(method: str = "johnson") -> argparse.ArgumentParser:
    """The parser of ``method``'s flags; those every method has are spelt the same, with the method's defaults."""
    d = METHODS[method]()
    adain = method == "adain"
    summary = __doc__.splitlines()[0].replace("``", "`")
    p = argparse.ArgumentParser(
        prog="mlx-style train",
        description=summary,
        epilog=""
        if adain
        else "--method adain trains an AdaIN decoder instead (any picture "
        "as a style; mlx-style train --method adain --help)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=method,
        help="johnson: a network per picture (or per set of pictures); adain: one decoder for any picture",
    )
    g = p.add_argument_group("data")
    if adain:
        g.add_argument("--styles", required=True, metavar="DIR", help="folder of style pictures (paintings)")
    else:
        g.add_argument(
            "--style",
            required=True,
            nargs="+",
            metavar="PICTURE",
            help="the style image (a path, or a built-in style's name); several train one network that "
            "holds them all (a scale and shift per style in every norm), taken in turn, one per step",
        )
    g.add_argument(
        "--data",
        default=d.data,
        metavar="DIR",
        help="folder of content photos, searched recursively (COCO: `python scripts/download_coco.py`)",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="side of the square content crops" + (" and style crops" if adain else ""),
    )
    if adain:
        g.add_argument(
            "--style-resize",
            type=int,
            default=d.style_resize,
            metavar="PX",
            help="shorter side of the style pictures before the random crops (default: 2 × --image-size)",
        )
    else:
        g.add_argument(
            "--style-size",
            type=int,
            default=d.style_size,
            help="longer side of the style image (default: --image-size, as Johnson)",
        )
        g.add_argument("--subset", type=int, default=d.subset, metavar="N", help="train on N images only")
    g.add_argument(
        "--min-side",
        type=int,
        default=d.min_side,
        metavar="PX",
        help="skip content images whose shorter side is below PX (default: half of --image-size)",
    )
    if not adain:
        g.add_argument(
            "--sample-images",
            default=d.sample_images,
            metavar="DIR",
            help="content images for the sample grids (default: the last few of --data, held out)",
        )
    g = p.add_argument_group("optimisation")
    g.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="images a step" if adain else "global batch over all processes",
    )
    g.add_argument(
        "--iters", type=int, default=d.iters, help="total steps" + ("" if adain else " (default: --epochs epochs)")
    )
    if not adain:
        g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    if adain:
        g.add_argument("--lr-decay", type=float, default=d.lr_decay, help="lr / (1 + decay·step), Huang's schedule")
    else:
        g.add_argument(
            "--clip",
            choices=CLIP_MODES,
            default=d.clip,
            help="gradient clipping: per tensor to norm 1 (the report's), global norm 1, or none",
        )
    g.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="decoder initialisation, data order and style crops" if adain else "network initialisation and data order",
    )
    g.add_argument(
        "--no-tune",
        dest="tune",
        action="store_false",
        help="skip timing the convolution strategies for this batch shape (done once per size and "
        "cached; the first run at a size waits for it)",
    )
    g.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="run the step uncompiled (skips the one-off kernel compilation; slower steps)",
    )
    if not adain:
        add_johnson_optimisation(g, d)
    g = p.add_argument_group(
        "loss" + ("" if adain else " (weights default to the VGG file's recommended_loss_weights)")
    )
    g.add_argument(
        "--vgg",
        default=d.vgg,
        help="converted VGG weights (scripts/convert_vgg.py)" + ("; the encoder" if adain else ""),
    )
    g.add_argument("--content-weight", type=float, default=d.content_weight)
    g.add_argument("--style-weight", type=float, default=d.style_weight, help="Huang's λ" if adain else None)
    if not adain:
        scale_help = "several --style: multiply --style-weight for each, in their order (e.g. 1 1.5 0.6)"
        g.add_argument("--style-scale", dest="style_scales", type=float, nargs="+", metavar="X", help=scale_help)
        g.add_argument("--tv-weight", type=float, default=d.tv_weight)
    g.add_argument("--style-layers", type=comma_names, default=d.style_layers, help="e.g. " + ",".join(d.style_layers))
    g.add_argument(
        "--style-layer-weights",
        type=comma_floats,
        default=d.style_layer_weights,
        help="one per style layer, e.g. 0.7,0.3,0.03,0.03 (default: equal)",
    )
    (add_adain_network if adain else add_johnson_loss_and_network)(p, g, d)
    add_output(p.add_argument_group("output and resuming"), d, adain)
    return p


def add_johnson_optimisation(g, d: TrainConfig) -> None:
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default=d.dtype, help="the loss network's dtype")
    g.add_argument(
        "--low-memory",
        action="store_const",
        const=True,
        default=d.low_memory,
        help="recompute the style network's residual blocks in the backward pass: the same result with "
        "less memory, at the cost of one more forward pass of the blocks (docs/benchmarks.md). "
        "The default with --norm instance on a Mac's GPU, and on a CPU above 2 × 256² pixels a "
        "batch on this machine; never by default on CUDA",
    )
    g.add_argument(
        "--no-low-memory",
        dest="low_memory",
        action="store_const",
        const=False,
        help="keep the residual blocks' activations instead",
    )
    g.add_argument(
        "--processes",
        type=_processes,
        default=d.processes,
        metavar="N|auto",
        help="train as N processes on this machine, each with its share of the batch and of the cores "
        "(MLX's CPU ops run on one core each, so more processes use more cores; "
        "docs/benchmarks.md). "
        "auto (default): on the CPU backend the largest divisor of --batch-size up to the cores "
        "(at most 8); 1 on a GPU",
    )


def add_johnson_loss_and_network(p, g, d: TrainConfig) -> None:
    g.add_argument("--content-layer", default=d.content_layer)
    g.add_argument(
        "--stable",
        dest="stable_weight",
        type=float,
        nargs="?",
        const=STABLE_DEFAULT_WEIGHT,
        default=d.stable_weight,
        metavar="WEIGHT",
        help="train a steadier network for video: also show each crop moved (random shift, rotation, "
        "zoom and noise) and penalise the difference between the moved output and the output of the "
        f"moved crop, with this weight (bare --stable: {STABLE_DEFAULT_WEIGHT:g}; default off)",
    )
    g.add_argument("--stable-shift", type=float, default=d.stable_shift, metavar="PX", help="--stable: largest shift")
    g.add_argument(
        "--stable-rotate", type=float, default=d.stable_rotate, metavar="DEGREES", help="--stable: largest rotation"
    )
    zoom_help = "--stable: largest change of scale (0.03: ±3%%)"
    g.add_argument("--stable-zoom", type=float, default=d.stable_zoom, metavar="FRACTION", help=zoom_help)
    g.add_argument(
        "--stable-noise",
        type=float,
        default=d.stable_noise,
        metavar="SIGMA",
        help="--stable: standard deviation of the pixel noise, in 0-255 levels",
    )
    g.add_argument(
        "--stable-fixed-target",
        action="store_true",
        default=d.stable_fixed_target,
        help="--stable: hold the unmoved crop's output fixed, so the term moves only the moved crop's "
        "output towards it instead of also flattening the first",
    )
    g = p.add_argument_group("network")
    g.add_argument("--norm", choices=NORMS, default=d.norm)
    g.add_argument("--upsample", choices=UPSAMPLES, default=d.upsample)
    g.add_argument("--width", type=int, default=d.width, help="channels of the first layer (16: light network)")
    g.add_argument("--residual-blocks", type=int, default=d.residual_blocks)
    g.add_argument(
        "--from",
        dest="init_from",
        default=d.init_from,
        metavar="MODEL",
        help="fine-tune: start from this trained network (a path, a name in weights/ or a built-in "
        "such as wave) instead of random weights, with a fresh optimizer. From a network of several "
        "styles, new pictures are added to it as new styles and only their norms train",
    )
    g.add_argument(
        "--train-all",
        action="store_true",
        default=d.train_all,
        help="with --from a network of several styles: train every weight for the new styles, not only their norms",
    )


def add_adain_network(p, g, d: AdaINTrainConfig) -> None:
    g.add_argument(
        "--decoder-widths",
        type=comma_ints,
        default=d.decoder_widths,
        metavar="W3,W2,W1",
        help="decoder channels of blocks 3, 2 and 1 (default: the encoder's, 256,128,64)",
    )
    g.add_argument(
        "--style-size",
        type=int,
        default=d.style_size,
        metavar="PX",
        help="shorter side a style picture is resized to at inference (stored in the network)",
    )


def add_output(g, d, adain: bool) -> None:
    g.add_argument(
        "--output",
        default=d.output,
        help="default: weights/adain.safetensors"
        if adain
        else "default: weights/<style stem>.safetensors (several styles: <a>-<b>-<c>)",
    )
    g.add_argument("--run-dir", default=d.run_dir, help="log, samples, checkpoints (default: runs/<output stem>)")
    if not adain:
        g.add_argument("--log", default=d.log, help="JSON-lines log (default: <run dir>/log.jsonl)")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between progress lines")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (0: end and Ctrl-C only)")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K")
    g.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        default=d.resume,
        metavar="PATH",
        help="continue a run: from PATH, or without one from the latest checkpoint of its run folder",
    )
    if not adain:
        g.add_argument(
            "--allow-change",
            action="store_true",
            help="with --resume: continue although the style image, the loss settings or the --stable "
            "settings differ from the checkpoint's (without it such a resume is refused)",
        )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="start again even if --output exists or the run folder has checkpoints (they are replaced)",
    )
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids (0: none)")
    if adain:
        g.add_argument(
            "--sample-styles",
            nargs="+",
            default=list(d.sample_styles),
            metavar="PICTURE",
            help="style pictures for the sample grids, e.g. held-out ones (default: two training styles)",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig | AdaINTrainConfig:
    settings = METHODS[args.method]
    values = {k: v for k, v in vars(args).items() if k in settings.__dataclass_fields__}
    if settings is AdaINTrainConfig:
        values["sample_styles"] = tuple(values.get("sample_styles") or ())
        return AdaINTrainConfig(**values)
    pictures = values.pop("style")
    pictures = [pictures] if isinstance(pictures, str) else list(pictures)
    values["style_scales"] = tuple(values.get("style_scales") or ())
    return TrainConfig(style=pictures[0], styles=tuple(pictures) if len(pictures) > 1 else (), **values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    method = method_of(argv)
    if method not in METHODS:
        return fail(f"train --method must be one of {', '.join(METHODS)}, got {method!r}")
    config = config_from_args(build_parser(method).parse_args(argv))
    keep_freed_memory()
    try:
        processes = config.planned_processes() if isinstance(config, TrainConfig) else 1
        if processes > 1 and not launched():
            check_inputs(config, processes, lambda text: None)  # report a bad input once, not once per process
            check_run_free(config.run_path())
            return run_local(processes, ["-m", "mlx_style.train", *argv])
        result = train(config)
    except MlxStyleError as exc:
        return fail(exc)
    except RuntimeError as exc:
        if launched() and "[ring]" in str(exc):  # a peer rank ended (it has said why): end quietly
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted before the first step: nothing to save", file=sys.stderr)
        return 130
    if result.status in ("diverged", "failed"):
        return 1
    if result.status == "interrupted":
        return 130
    if result.output is not None:  # rank 0's: only it writes
        last = result.records[-1] if result.records else {}
        print(
            f"wrote {result.output} after {result.step} steps (last loss {last.get('loss', float('nan')):.4g}, "
            f"{last.get('images_per_s', 0):.2f} img/s, peak memory {result.peak_memory_gb:.2f} GB in use, "
            f"{result.resident_gb:.2f} GB resident, {result.skipped} unusable images skipped)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
