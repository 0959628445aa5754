"""Import Logan Engstrom's pretrained fast-style-transfer networks: ``python scripts/convert_fst.py --download wave``.

Engstrom's lengstrom/fast-style-transfer (TensorFlow, a Johnson et al. 2016 network with instance norm) published
six trained styles; reiinakano dumped them to one raw float32 file per variable, and ml5.js republished them
(github.com/ml5js/ml5-data-and-models, ``models/style-transfer/<style>/``). This module reads such a folder
(``manifest.json`` + ``Variable`` … ``Variable_47``), maps it onto ``TransformerNet(TransformerConfig.fst())``
and writes a self-describing ``weights/<style>.safetensors``:

- conv weights HWIO → OHWI; ``conv2d_transpose`` filters ``[h, w, out, in]`` → ``(out, h, w, in)``;
- each layer's variables are created as conv weight, IN shift, IN scale: shift → ``inN.bias``, scale →
  ``inN.weight``; the output conv has an instance norm too (``in6``);
- inputs are RGB 0–255, as Engstrom's ``evaluate.py`` feeds them.

The models are free for research use with attribution (Logan Engstrom); contact him for commercial use.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.download import DownloadError, failure_reason, reachable, ssl_context
from mlx_style.io.paths import check_input_file, read_input_file
from mlx_style.io.models import save_transformer
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.weights import WeightFileError, atomic_write, check_and_load
from mlx_style.errors import UsageError

ML5_REPO = "ml5js/ml5-data-and-models"
ML5_COMMIT = "0612a3e7c51cbffdc5db701dff49d16d1ac26fa8"  # pinned: the bytes behind a URL never change
ML5_BASE_URL = f"https://raw.githubusercontent.com/{ML5_REPO}/{ML5_COMMIT}/models/style-transfer"
LICENSE_NOTE = "research use with attribution (Logan Engstrom); contact the author for commercial use"

# The six published styles and the painting each was trained on.
STYLES = {
    "wave": "Hokusai, The Great Wave off Kanagawa (c. 1831)",
    "udnie": "Francis Picabia, Udnie (1913)",
    "la_muse": "Pablo Picasso, La Muse (1935)",
    "rain_princess": "Leonid Afremov, Rain Princess",
    "scream": "Edvard Munch, The Scream (1893)",
    "wreck": "J.M.W. Turner, The Shipwreck of the Minotaur (c. 1810)",
}
# sha256 of each style's variables (``ml5_sha256``) at the pinned commit, so a download is checked end to end.
# Computed from byte-identical copies of the ml5 files at that commit.
ML5_SHA256 = {
    "wave": "0cbcf7acfaf27ded53ebfafcf5b21be11304eb60283a7df7a6ba40950d3cb89d",
    "udnie": "725b68e312315bd5df2e45f2bf4eb225fd1c721c299803d683c6c01a408ad9a7",
    "la_muse": "c98c330e2dc697cabad4d99d4e932c24963903588381281705aafdc201db9dc5",
    "rain_princess": "e5a3310320b3da8f2f37201b48d7a3a173b58c4b8635d97846c4c5ee11ae6881",
    "scream": "0c6ccf4f62cdf1441ac528783e4973c8a29ae226d67ba955566d914dfbd3f1fe",
    "wreck": "c459aa3488b826b4ce6c2f780d8fb365c096bb910beeea0a13bc4a99cff2178e",
}

NUM_VARIABLES = 48
MAX_MANIFEST_BYTES = 1_000_000  # the published manifests have 4 kB
MAX_VARIABLE_BYTES = 10_000_000  # the largest variable (128×128×3×3 float32) has 0.6 MB


def variable_name(index: int) -> str:
    """TF1 auto-naming: ``Variable``, ``Variable_1``, ``Variable_2``, … in creation order."""
    return "Variable" if index == 0 else f"Variable_{index}"


def ml5_layout(num_residual: int = 5) -> list[tuple[str, str, str]]:
    """``(conv weight name, norm name, conv kind)`` per layer, in the order Engstrom's code creates variables."""
    layers = [("conv1", "in1", "conv"), ("conv2", "in2", "conv"), ("conv3", "in3", "conv")]
    for i in range(num_residual):
        layers += [(f"res.{i}.conv1", f"res.{i}.in1", "conv"), (f"res.{i}.conv2", f"res.{i}.in2", "conv")]
    layers += [("deconv1", "in4", "deconv"), ("deconv2", "in5", "deconv"), ("deconv3", "in6", "conv")]
    return layers


def read_ml5_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """Read an ml5 style folder into ``{variable name: float32 array}``.

    Checks that ``manifest.json`` parses and that every listed file exists with exactly ``prod(shape)·4``
    bytes. Raises ``WeightFileError`` naming the first problem and what to do about it.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not folder.is_dir():
        raise WeightFileError(
            f"no folder at {folder}: give an ml5 style folder (manifest.json + Variable files), or use --download NAME"
        )
    if not manifest_path.exists():
        raise WeightFileError(f"{folder} has no manifest.json: it is not an ml5 style folder")
    try:
        manifest = json.loads(read_input_file(manifest_path, MAX_MANIFEST_BYTES, "the manifest"))
        entries = {name: (str(e["filename"]), [int(d) for d in e["shape"]]) for name, e in manifest.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightFileError(f"{manifest_path} is not a valid ml5 manifest ({exc}); download it again")
    arrays = {}
    for name, (filename, shape) in entries.items():
        if Path(filename).name != filename:
            raise WeightFileError(f"{manifest_path}: {name} points outside the folder ({filename!r})")
        path = folder / filename
        if not path.exists():
            raise WeightFileError(
                f"{path} is missing ({name}, shape {shape}): the folder is incomplete; "
                "download it again (downloads resume)"
            )
        expected = math.prod(shape) * 4  # exact: a crafted shape cannot overflow
        if expected > MAX_VARIABLE_BYTES:
            raise WeightFileError(
                f"{manifest_path}: {name} has shape {shape}, far larger than any variable of "
                "Engstrom's network: not an ml5 style folder"
            )
        actual = check_input_file(path, MAX_VARIABLE_BYTES, f"{name} at").stat().st_size
        if actual != expected:
            raise WeightFileError(
                f"{path} has {actual} bytes, but shape {shape} needs {expected}: the file is "
                "truncated or not float32; download it again"
            )
        arrays[name] = np.fromfile(path, dtype="<f4").reshape(shape)
    return arrays


def ml5_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A checksum of the variables (names, shapes, little-endian float32 bytes) in creation order."""
    digest = hashlib.sha256()
    for i in range(len(arrays)):
        a = arrays.get(variable_name(i))
        if a is None:
            raise WeightFileError(f"ml5 variables are not numbered 0…{len(arrays) - 1}: {variable_name(i)} missing")
        digest.update(f"{variable_name(i)}|{list(a.shape)}|".encode())
        digest.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return digest.hexdigest()


def _to_mlx_layout(a: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # TF conv2d filter (h, w, in, out) → MLX (out, h, w, in)
        return a.transpose(3, 0, 1, 2)
    if kind == "deconv":  # TF conv2d_transpose filter (h, w, out, in) → MLX ConvTranspose2d (out, h, w, in)
        return a.transpose(2, 0, 1, 3)
    return a


def convert_ml5(arrays: dict[str, np.ndarray]) -> dict[str, mx.array]:
    """ml5 variables → ``TransformerNet(TransformerConfig.fst())`` parameters, checked against the network.

    Raises ``WeightFileError`` listing unexpected counts or shapes (e.g. a folder of another architecture).
    """
    expected = {k: tuple(v.shape) for k, v in tree_flatten(TransformerNet(TransformerConfig.fst()).parameters())}
    if len(arrays) != NUM_VARIABLES:
        raise WeightFileError(
            f"expected {NUM_VARIABLES} variables (Engstrom's network), found {len(arrays)}: "
            "not a fast-style-transfer checkpoint"
        )
    out, problems, index = {}, [], 0
    for conv, norm, kind in ml5_layout():
        # creation order inside a layer: conv weight, then instance norm shift, then scale
        for target, role in ((f"{conv}.conv2d.weight", kind), (f"{norm}.bias", "shift"), (f"{norm}.weight", "scale")):
            name = variable_name(index)
            index += 1
            if name not in arrays:
                problems.append(f"{name} missing")
                continue
            a = np.asarray(arrays[name], dtype=np.float32)
            if a.ndim != (4 if role in ("conv", "deconv") else 1):
                problems.append(f"{name} has shape {list(a.shape)}, expected a {role} for {target}")
                continue
            a = _to_mlx_layout(a, role)
            if a.shape != expected[target]:
                problems.append(f"{name} → {target}: shape {a.shape}, the network needs {expected[target]}")
                continue
            out[target] = mx.array(np.ascontiguousarray(a))
    if problems:
        shown = "; ".join(problems[:4]) + (f"; … ({len(problems)} problems)" if len(problems) > 4 else "")
        raise WeightFileError(f"not Engstrom's fast-style-transfer layout: {shown}")
    return out


def import_fst(folder: str | Path, out_path: str | Path, name: str | None = None, source: str | None = None) -> Path:
    """Read, convert and check an ml5 style folder, then write a self-describing transformer weight file.

    Args:
        folder: the ml5 folder (``manifest.json`` + variable files).
        out_path: the ``.safetensors`` file to write (atomically).
        name: the style name stored in the metadata; defaults to the folder's name.
        source: where the folder came from (a URL or a name, never a local path); defaults to its name.

    Returns:
        The path written. Nothing is written on any error.
    """
    folder = Path(folder)
    arrays = read_ml5_folder(folder)
    params = convert_ml5(arrays)
    net = TransformerNet(TransformerConfig.fst())
    check_and_load(net, params, where=f"converted {folder}")
    name = name or folder.name
    meta = {
        "style": name,
        "style_image": STYLES.get(name, "unknown"),
        "source": source or Path(folder).name,
        "ml5_sha256": ml5_sha256(arrays),
        "license": LICENSE_NOTE,
        "author": "Logan Engstrom (lengstrom/fast-style-transfer)",
        "input_range": "RGB 0-255",
    }
    return save_transformer(out_path, net, meta)


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout, context=ssl_context()) as response:
        data = response.read(max_bytes + 1)  # a server that sends without end is cut off, not held in memory
    if len(data) > max_bytes:
        raise DownloadError(f"{url} sent more than the {max_bytes} bytes expected; run the command again")
    return data


def download_fst(
    name: str, dest_dir: str | Path, base_url: str = ML5_BASE_URL, timeout: float = 60.0, log=print
) -> Path:
    """Fetch one of the six styles from ml5's repository at the pinned commit into ``dest_dir``.

    ``manifest.json`` first, then each variable file, each size-checked and written atomically; files already
    complete are skipped, so an interrupted download resumes. The whole set is checked against its pinned
    sha256. Returns ``dest_dir``. Raises ``DownloadError`` (offline, HTTP errors) or ``WeightFileError``.
    """
    if name not in STYLES:
        raise UsageError(f"[download_fst] unknown style {name!r}; choose one of {', '.join(STYLES)}")
    dest = Path(dest_dir)
    url = f"{base_url}/{name}"
    manual = (
        f"when online, run the command again, or copy models/style-transfer/{name}/ from "
        f"github.com/{ML5_REPO} (commit {ML5_COMMIT[:8]}) and run `python scripts/convert_fst.py FOLDER`"
    )
    if not reachable(base_url):
        raise DownloadError(f"cannot reach {base_url.split('/')[2]} (offline?): {manual}")
    try:
        manifest_path = dest / "manifest.json"
        if not manifest_path.exists():
            data = _fetch(f"{url}/manifest.json", timeout, MAX_MANIFEST_BYTES)
            json.loads(data)  # refuse an error page before it is kept
            atomic_write(manifest_path, lambda tmp: Path(tmp).write_bytes(data))
        manifest = json.loads(manifest_path.read_text())
        fetched, start = 0, time.perf_counter()
        for entry in manifest.values():
            filename, shape = str(entry["filename"]), entry["shape"]
            if Path(filename).name != filename:
                raise WeightFileError(f"{manifest_path} points outside the folder ({filename!r})")
            expected = int(np.prod(shape, dtype=np.int64)) * 4
            path = dest / filename
            if path.exists() and path.stat().st_size == expected:
                continue
            data = _fetch(f"{url}/{filename}", timeout, min(expected, MAX_VARIABLE_BYTES))
            if len(data) != expected:
                raise DownloadError(
                    f"{url}/{filename} sent {len(data)} bytes, shape {shape} needs {expected}; run the command again"
                )
            atomic_write(path, lambda tmp, data=data: Path(tmp).write_bytes(data))
            fetched += len(data)
    except (DownloadError, WeightFileError):
        raise
    except Exception as exc:  # HTTP errors, timeouts, a bad manifest: all mean "could not download"
        raise DownloadError(f"could not download {name} from {url} ({failure_reason(exc)}); {manual}") from None
    arrays = read_ml5_folder(dest)
    expected_sha = ML5_SHA256.get(name)
    if expected_sha and ml5_sha256(arrays) != expected_sha:
        raise WeightFileError(
            f"{dest} does not match the pinned checksum of {name}: delete the folder and download again"
        )
    if fetched:
        log(f"downloaded {name}: {fetched / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s to {dest}")
    return dest


@dataclass
class ConvertFstConfig:
    folder: str | None = None  # a local ml5 style folder (offline)
    download: str | None = None  # one of STYLES, or "all": fetched from ml5's repository at the pinned commit
    out: str | None = None  # None: weights/<style>.safetensors
    name: str | None = None  # the style name in the metadata; None: the folder's or download's name
    cache_dir: str = "weights/ml5"  # where downloaded ml5 folders are kept (resumable)


def convert_fst(config: ConvertFstConfig, log=print) -> list[Path]:
    """Run the command described by ``config``; returns the weight files written."""
    if (config.folder is None) == (config.download is None):
        raise UsageError("give either an ml5 FOLDER or --download NAME")
    if config.folder is not None:
        folder = Path(config.folder)
        name = config.name or folder.name
        out = Path(config.out or f"weights/{name}.safetensors")
        return [import_fst(folder, out, name=name, source=f"{Path(folder).name} (ml5 variables)")]
    names = list(STYLES) if config.download == "all" else [config.download]
    if (config.out or config.name) and len(names) > 1:
        raise UsageError(
            "-o and --name describe one style; with --download all the files go to weights/<style>.safetensors"
        )
    written = []
    for name in names:
        folder = download_fst(name, Path(config.cache_dir) / name, log=log)
        out = Path(config.out or f"weights/{name}.safetensors")
        source = f"github.com/{ML5_REPO}@{ML5_COMMIT}/models/style-transfer/{name}"
        written.append(import_fst(folder, out, name=config.name or name, source=source))
    return written
