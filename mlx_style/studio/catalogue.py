"""Every style the studio offers, one entry per style the page can pick: the built-in networks with their
paintings, each style of a network of several (Magenta's 26, your multi-style runs), your ``weights/`` folder,
networks pulled from the Hub by ``hf:user/name``, and the networks that take any picture as their style.

It is read again on every ``entries()`` call (headers only), so a style a run has just written appears at once.
A painting is shown only when it is the very picture the network was trained on: its file's sha256 is the one the
weight file records (a built-in picture, or one the studio kept in ``runs/<name>/paintings/``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlx_style.io.image import IMAGE_EXTENSIONS
from mlx_style.io import registry
from mlx_style.io.registry import DEFAULT_STYLE, available_models, network_styles
from mlx_style.io.style_models import PICTURE_KINDS, model_kind, style_licence
from mlx_style.io.weights import WeightFileError, file_sha256, read_metadata
from mlx_style.studio.paths import StudioError

PAINTINGS = "paintings"  # runs/<name>/paintings/: the pictures a studio run trained on (kept for the gallery)
ORDER = ("built-in", "weights", "hub")  # the gallery's order: paintings that ship first, then yours, then pulled


@dataclass(frozen=True)
class StyleEntry:
    """One style the page can pick: ``key`` is what the page sends back (looked up here, never opened)."""

    key: str
    name: str  # the style's own name: the network's, or the style's within a network of several
    network: Path
    network_name: str
    origin: str  # built-in, weights or hub
    kind: str  # the weight file's kind (io.style_models)
    style: str | None = None  # the style within a network of several; None for one style or any picture
    index: int | None = None  # its row in that network
    painting: Path | None = None  # the picture it was trained on, when known for sure

    @property
    def takes_picture(self) -> bool:
        return self.kind in PICTURE_KINDS

    @property
    def caption(self) -> str:
        """The short name under a gallery tile."""
        if self.takes_picture:
            return "any picture"
        return f"{self.network_name} {self.style}" if self.style is not None else self.name

    @property
    def label(self) -> str:
        if self.takes_picture:
            return f"any picture ({self.network_name})"
        if self.style is not None:
            return f"{self.network_name}: {self.style}"
        return self.name if self.origin == "built-in" else f"{self.name} ({self.origin})"


@lru_cache(maxsize=256)
def _sha256(path: Path, size: int, mtime: int) -> str:
    return file_sha256(path)


def picture_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def _listing(folder: Path) -> tuple:
    """What a folder's network files are now (names, sizes, times): a change means the catalogue is stale."""
    if not folder.is_dir():
        return ()
    found = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def _pictures(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")  # not one being written
    )


class Catalogue:
    """The styles found under ``weights_dir``, the built-ins and the Hub pulls of this server."""

    def __init__(self, weights_dir: str | Path = "weights", runs_dir: str | Path = "runs"):
        self.weights_dir, self.runs_dir = Path(weights_dir), Path(runs_dir)
        self._hub: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._cached: tuple | None = None  # (signature of the folders, entries)

    def entries(self) -> list[StyleEntry]:
        """Every style, built-in ones first; read again when a network file appears, changes or goes."""
        with self._lock:
            hub = dict(self._hub)
        signature = (_listing(self.weights_dir), _listing(registry.BUILTIN_DIR), tuple(hub.items()))
        with self._lock:
            if self._cached is not None and self._cached[0] == signature:
                return list(self._cached[1])
        found = [(m.name, m.path, m.origin) for m in available_models(self.weights_dir)]
        found += [(name, path, "hub") for name, path in hub.items()]
        entries = []
        for name, path, origin in found:
            entries += self._entries_of(name, path, origin)
        entries.sort(key=lambda e: (ORDER.index(e.origin), e.style is not None, e.takes_picture))
        with self._lock:
            self._cached = (signature, entries)
        return list(entries)

    def get(self, key: str) -> StyleEntry:
        """The entry the page picked.

        Raises:
            StudioError: no such style (the page's list is older than a deleted file, or a crafted request).
        """
        for entry in self.entries():
            if entry.key == key:
                return entry
        raise StudioError(f"no style {key!r} here (any more): pick another")

    def default_key(self) -> str | None:
        """The built-in default style when it is here, else the first that needs no picture."""
        entries = [e for e in self.entries() if not e.takes_picture]
        keys = [e.key for e in entries]
        return DEFAULT_STYLE if DEFAULT_STYLE in keys else (keys[0] if keys else None)

    def pull(self, name: str) -> list[StyleEntry]:
        """Fetch ``hf:user/name`` (``io.hub``: checked, into the Hub cache) and offer its styles.

        Raises:
            StudioError: not an ``hf:`` name, or the pull failed (its one-line reason).
        """
        from mlx_style.io.hub import HF_PREFIX, fetch_hub_model

        name = (name or "").strip()
        if not name.startswith(HF_PREFIX):
            raise StudioError(f"{name!r}: a Hub style is named hf:user/name")
        try:
            path = fetch_hub_model(name)
        except (WeightFileError, OSError, ValueError) as exc:
            raise StudioError(str(exc).splitlines()[0]) from None
        except Exception as exc:  # noqa: BLE001  (a download failure of any kind: one line for the page)
            raise StudioError(f"could not pull {name}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        entries = self._entries_of(name, path, "hub")
        if not entries:
            raise StudioError(f"{name} holds no style network this studio can run")
        with self._lock:
            self._hub[name] = path
        return entries

    def _entries_of(self, name: str, path: Path, origin: str) -> list[StyleEntry]:
        kind = model_kind(path)
        if kind is None:
            return []
        common = dict(network=path, network_name=name, origin=origin, kind=kind)
        if kind in PICTURE_KINDS:
            return [StyleEntry(key=name, name=name, **common)]
        try:
            styles = network_styles(path)
            meta = read_metadata(path)
        except (WeightFileError, OSError, ValueError):
            return []  # a damaged file: the commands say why; the gallery leaves it out
        if not styles:
            return [
                StyleEntry(
                    key=name, name=name, painting=self.painting(name, origin, (meta.get("style_sha256"),)), **common
                )
            ]
        hashes = _style_hashes(meta, len(styles))
        return [
            StyleEntry(
                key=f"{name}/{style}",
                name=style,
                style=style,
                index=i,
                painting=self.painting(name, origin, hashes[i], own=style),
                **common,
            )
            for i, style in enumerate(styles)
        ]

    def painting(self, network_name: str, origin: str, hashes, own: str | None = None) -> Path | None:
        """The picture a style was trained on: a built-in picture or one kept in its run folder whose sha256 is one
        the file records (the painting's, or its shipped thumbnail's); for a built-in, its own picture otherwise
        (``own``: the style's name in a network of several)."""
        builtin = registry.BUILTIN_DIR  # looked up on use: tests hide the built-in styles
        candidates = _pictures(self.runs_dir / Path(network_name).name / PAINTINGS) + _pictures(builtin)
        wanted = {h for h in hashes if h}
        for picture in candidates if wanted else ():
            if picture_sha256(picture) in wanted:
                return picture
        picture = builtin / f"{own or network_name}.jpg"
        return picture if origin == "built-in" and picture.is_file() else None


def _style_hashes(meta: dict[str, str], count: int) -> list[tuple]:
    """The sha256s of each style's picture (the painting's, and its shipped thumbnail's) from a multi-style network's
    ``styles`` list; () where absent."""
    try:
        records = json.loads(meta.get("styles", "[]"))
    except ValueError:
        records = []
    records = records if isinstance(records, list) else []
    hashes = [(r.get("sha256"), r.get("thumbnail_sha256")) if isinstance(r, dict) else () for r in records]
    return (hashes + [()] * count)[:count]


def _shown(path: Path) -> str:
    """A file as the user knows it: relative to the current folder when it lies there, else its name."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def describe(entry: StyleEntry) -> dict[str, str]:
    """What the Styles tab shows of a style: where it comes from, its licences and how it was trained."""
    try:
        meta = read_metadata(entry.network)
    except (OSError, ValueError):
        meta = {}
    config = {}
    try:
        config = json.loads(meta.get("train_config", "") or "{}")
    except ValueError:
        pass
    keys = (
        "image_size",
        "batch_size",
        "iters" if config.get("iters") else "epochs",
        "width",
        "residual_blocks",
        "style_weight",
        "stable_weight",
    )
    recipe = ", ".join(f"{k.replace('_', ' ')} {config[k]}" for k in keys if config.get(k) not in (None, 0, 0.0))
    return {
        "style": entry.label,
        "network": f"{entry.network_name} ({entry.kind}, {entry.origin})",
        "file": _shown(entry.network),
        "painting": entry.painting.name
        if entry.painting
        else ("any picture you give" if entry.takes_picture else "not known"),
        "source": meta.get("source") or meta.get("author") or ("mlx_style" if meta.get("train_config") else "?"),
        "licence": meta.get("licence") or meta.get("license") or "not recorded",
        "style licence": style_licence(meta, entry.style) or "not recorded",
        "trained": (f"{meta['steps']} steps" if meta.get("steps") else "") + (f"; {recipe}" if recipe else ""),
        "command": meta.get("training_command", ""),
    }
