"""Write one multi-style network (``train --style A B C ...``) into the package as a float16 built-in file.

    python -m scripts.bench.build_multistyle_builtin weights/builtin6.safetensors \
        --out mlx_style/styles/builtin6.safetensors
    python -m scripts.bench.build_multistyle_builtin runs/builtin6/checkpoints/step_00000900.safetensors \
        --out runs/quality/builtin6_step900.safetensors      # a training checkpoint works too

The single-style counterpart is ``scripts/bench/build_builtins.py`` (one file per painting); this one keeps the
network's styles together (``stylize --model FILE --style udnie``). Every painting the network holds must be one of
the public-domain pictures and the very file it was trained on (sha256 against ``--styles``, default
``../shared/data/styles``); each is written beside the network at most 512 px on a side, if not there already.
The optimizer state of a checkpoint is dropped; its step is kept as ``steps``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
from PIL import Image

from mlx_style.io.image import load_image, resize_max_side
from mlx_style.io.weights import atomic_write, file_sha256, load_weights, read_metadata, save_weights

REPO = Path(__file__).resolve().parents[2]
PUBLIC_DOMAIN = {  # as scripts/bench/build_builtins.py, plus Turner
    "wave": "Hokusai, The Great Wave off Kanagawa (c. 1831), public domain",
    "starry_night": "Van Gogh, The Starry Night (1889), public domain",
    "the_scream": "Munch, The Scream (1893), public domain",
    "udnie": "Picabia, Udnie (1913), public domain",
    "composition_vii": "Kandinsky, Composition VII (1913), public domain",
    "the_shipwreck_of_the_minotaur": "J.M.W. Turner, The Shipwreck of the Minotaur (c. 1810), public domain",
}
MAX_PICTURE = 512
DROPPED = ("sha256", "metadata_sha256", "format", "kind", "step", "data")  # checkpoint and checksum fields


def read_network(path: Path) -> tuple[dict[str, mx.array], dict[str, str]]:
    """The network's arrays and metadata, from a trained file or a training checkpoint."""
    kind = read_metadata(path).get("kind")
    if kind == "checkpoint":
        arrays, meta = load_weights(path, kind="checkpoint")
        arrays = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
        meta = {**meta, "steps": meta["step"]}
    elif kind == "transformer":
        arrays, meta = load_weights(path, kind="transformer")
    else:
        raise SystemExit(f"{path}: a {kind} file; expected a network trained by `mlx-style train` or its checkpoint")
    return arrays, {k: v for k, v in meta.items() if k not in DROPPED}


def training_command(config: dict) -> str:
    """The ``mlx-style train`` line of a recorded multi-style config (paths reduced to names)."""
    styles = " ".join(Path(s).name for s in config["styles"])
    flags = [
        f"--style {styles}",
        "--data content/train+more/bsds500",
        f"--image-size {config['image_size']}",
        f"--style-size {config.get('style_size') or config['image_size']}",
        f"--batch-size {config['batch_size']}",
        f"--iters {config['iters']}",
        f"--seed {config['seed']}",
        f"--lr {config['lr']}",
    ]
    for key in ("content_weight", "style_weight", "tv_weight"):
        if config.get(key) is not None:
            flags.append(f"--{key.replace('_', '-')} {config[key]}")
    if config.get("style_scales"):
        flags.append("--style-scale " + " ".join(f"{x:g}" for x in config["style_scales"]))
    if config.get("init_from"):
        flags.append(f"--from {Path(config['init_from']).stem}")
    return "mlx-style train " + " ".join(flags) + " --vgg weights/vgg16.safetensors (Caffe VGG16)"


def build(network: Path, styles: Path, out: Path, recipe: str = "") -> list[Path]:
    """Write the float16 network and its paintings; ``recipe``: the run's stages, when it was trained in several
    (each resumed with new settings), recorded as ``training_recipe`` beside the last stage's command."""
    arrays, meta = read_network(network)
    records = json.loads(meta.get("styles", "[]"))
    if len(records) < 2:
        raise SystemExit(f"{network} holds one style: use scripts/bench/build_builtins.py")
    licences = {}
    for record in records:
        name = record["name"]
        if name not in PUBLIC_DOMAIN:
            raise SystemExit(f"{network}: its style {name} is not in the public-domain list; not shipped")
        if file_sha256(styles / f"{name}.jpg") != record["sha256"]:
            raise SystemExit(f"{styles / name}.jpg is not the picture {network} was trained on (sha256 differs)")
        licences[name] = PUBLIC_DOMAIN[name]
    config = json.loads(meta["train_config"])
    for key in ("style", "data", "vgg", "output", "run_dir", "log", "sample_images", "resume", "init_from"):
        if config.get(key) not in (None, "latest"):
            config[key] = Path(config[key]).name  # file names only: no local folders in a shipped file
    config["styles"] = [Path(s).name for s in config.get("styles", [])]
    meta = {
        **meta,
        "kind": "transformer",
        "architecture": meta.get("architecture", "johnson2016"),
        "train_config": json.dumps(config),
        "built_in": "true",
        "dtype": "float16",
        "style_licence": json.dumps(licences),
        "licence": "MIT (mlx_style); trained with the ImageNet VGG16 (CC BY 4.0) on research photos",
        "training_command": training_command(config),
    }
    if recipe:
        meta["training_recipe"] = recipe
    half = {k: v.astype(mx.float16) for k, v in arrays.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [save_weights(out, half, meta)]
    for name in licences:
        target = out.parent / f"{name}.jpg"
        if target.exists():
            continue
        picture = load_image(styles / f"{name}.jpg")
        small = resize_max_side(picture, MAX_PICTURE) if max(picture.shape[:2]) > MAX_PICTURE else picture
        written.append(
            atomic_write(target, lambda tmp: Image.fromarray(np.asarray(small)).save(tmp, format="JPEG", quality=90))
        )
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench.build_multistyle_builtin", description=__doc__.splitlines()[0]
    )
    p.add_argument("network", type=Path, help="a multi-style network or training checkpoint (.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="the float16 file to write")
    p.add_argument(
        "--styles",
        type=Path,
        default=REPO.parent / "shared" / "data" / "styles",
        help="folder of the original style pictures",
    )
    p.add_argument("--recipe", type=Path, help="a text file describing the run's stages (stored in the metadata)")
    args = p.parse_args(argv)
    recipe = args.recipe.read_text(encoding="utf-8").strip() if args.recipe else ""
    for path in build(args.network, args.styles, args.out, recipe):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
