"""Write the built-in styles into the package: trained networks as float16, with their pictures (≤ 512 px).

    python -m scripts.bench.build_builtins weights/wave.safetensors weights/starry_night.safetensors ...

Each network must have been trained by ``mlx-style train`` (its metadata holds the style image's name, sha256 and
the training config, which stay in the built-in file). The style picture is looked up by the name in the
metadata under ``--styles`` (default: ``../shared/data/styles``) and must be public domain (``PUBLIC_DOMAIN``).
The training command recorded in each file is rebuilt from its config, so anyone can retrain it.
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
from mlx_style.io.registry import BUILTIN_DIR
from mlx_style.io.weights import atomic_write, file_sha256, load_weights, save_weights

REPO = Path(__file__).resolve().parents[2]
PUBLIC_DOMAIN = {  # the paintings whose networks may ship: public domain, and their licence note
    "wave": "Hokusai, The Great Wave off Kanagawa (c. 1831), public domain",
    "starry_night": "Van Gogh, The Starry Night (1889), public domain",
    "the_scream": "Munch, The Scream (1893), public domain",
    "udnie": "Picabia, Udnie (1913), public domain",
    "composition_vii": "Kandinsky, Composition VII (1913), public domain",
}
MAX_PICTURE = 512


def training_command(config: dict) -> str:
    """The ``mlx-style train`` line that reproduces a recorded training config."""
    flags = [
        f"--style {Path(config['style']).stem}",
        "--data content/train",
        f"--image-size {config['image_size']}",
        f"--batch-size {config['batch_size']}",
        f"--iters {config['iters']}",
        f"--seed {config['seed']}",
    ]
    if config.get("width", 32) != 32:
        flags.append(f"--width {config['width']}")
    if config.get("processes"):
        flags.append(f"--processes {config['processes']}")
    if not config.get("compile", True):
        flags.append("--no-compile")
    return "mlx-style train " + " ".join(flags) + " --vgg weights/vgg16.safetensors (Caffe VGG16)"


def build(network: Path, styles: Path, out_dir: Path = BUILTIN_DIR) -> tuple[Path, Path]:
    arrays, meta = load_weights(network, kind="transformer")
    name = Path(meta["style"]).stem
    if name not in PUBLIC_DOMAIN:
        raise SystemExit(f"{network}: its style {meta['style']} is not in the public-domain list; not shipped")
    picture = styles / meta["style"]
    if file_sha256(picture) != meta["style_sha256"]:
        raise SystemExit(f"{picture} is not the picture {network} was trained on (sha256 differs)")
    config = json.loads(meta["train_config"])
    for key in ("style", "data", "vgg", "output", "run_dir", "log", "sample_images", "resume"):
        if config.get(key) not in (None, "latest"):
            config[key] = Path(config[key]).name  # file names only: no local folders in a shipped file
    meta = {
        **meta,
        "train_config": json.dumps(config),
        "built_in": "true",
        "dtype": "float16",
        "style_licence": PUBLIC_DOMAIN[name],
        "licence": "MIT (mlx_style); trained with the ImageNet VGG16 (CC BY 4.0) on research photos",
        "training_command": training_command(config),
    }
    for key in ("sha256", "metadata_sha256", "format"):
        meta.pop(key, None)
    half = {k: v.astype(mx.float16) for k, v in arrays.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    net_path = save_weights(out_dir / f"{name}.safetensors", half, meta)
    small = (
        resize_max_side(load_image(picture), MAX_PICTURE)
        if max(load_image(picture).shape[:2]) > MAX_PICTURE
        else load_image(picture)
    )
    pic_path = atomic_write(
        out_dir / f"{name}.jpg", lambda tmp: Image.fromarray(np.asarray(small)).save(tmp, format="JPEG", quality=90)
    )
    return net_path, pic_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.build_builtins", description=__doc__.splitlines()[0])
    p.add_argument("networks", nargs="+", help="trained style networks (.safetensors)")
    p.add_argument(
        "--styles",
        default=str(REPO.parent / "shared" / "data" / "styles"),
        help="folder of the original style pictures",
    )
    args = p.parse_args(argv)
    for network in args.networks:
        net_path, pic_path = build(Path(network), Path(args.styles))
        print(
            f"wrote {net_path} ({net_path.stat().st_size / 1e6:.1f} MB) and {pic_path} "
            f"({pic_path.stat().st_size / 1e3:.0f} kB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
