"""The styles a run trains and the network rows they take (``train --style A B C``, ``train --from``).

One picture trains a single-style network. Several train Dumoulin et al.'s multi-style network: every instance norm
holds one scale and shift per style (``nn.transformer``; the convolutions are shared), step ``i`` trains style
``i mod T`` (a function of the step, so a resumed run is exact) and the weight file lists its styles.

``--from`` a multi-style network keeps its styles: a picture it already holds (same sha256) trains its own row, a
new one gets a new row, started from the mean of the others, and only the norms train while the convolutions stay
as they are (``--train-all`` trains them too). That is Dumoulin's way to add a style in minutes. ``--from`` a
single-style network fine-tunes it; with several pictures, each new row starts from its norms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_style.io.image import load_image, resize_max_side, to_batch
from mlx_style.io.registry import resolve_style_image
from mlx_style.io.weights import file_sha256
from mlx_style.nn.losses import style_targets
from mlx_style.nn.transformer import InstanceNorm, TransformerNet
from mlx_style.errors import UsageError


@dataclass
class StylePlan:
    """The run's pictures and where they sit in the network."""

    images: list[np.ndarray]  # the run's pictures, RGB uint8, as given
    paths: list[Path]
    records: list[dict]  # one per network row: {"name", "sha256", "thumbnail_sha256"} (what the weight file lists)
    rows: list[int]  # the network row each of the run's pictures trains
    network_styles: int  # norm rows in the network
    freeze_shared: bool  # train only the norms: new styles added to a trained multi-style network

    @property
    def multi(self) -> bool:
        return self.network_styles > 1

    def sha256(self) -> str:
        """The run's pictures' sha256 (comma-joined for several): what a resume must match."""
        return ",".join(self.records[r]["sha256"] for r in self.rows)

    def names(self) -> list[str]:
        return [self.records[r]["name"] for r in self.rows]

    def style_rows(self) -> mx.array | None:
        """``(T, S)``: the one-hot network row of each trained style (None for a single-style network)."""
        if not self.multi:
            return None
        return mx.eye(self.network_styles)[mx.array(self.rows)]

    def step_style(self, step_index: int) -> int | None:
        """Which of the run's styles step ``step_index`` (0-based) trains: the styles in turn."""
        return step_index % len(self.rows) if self.multi else None

    def sample_blends(self) -> list[mx.array | None]:
        """The style blend of each sample row: the trained styles' one-hots, or [None] for one style."""
        if not self.multi:
            return [None]
        return list(self.style_rows())


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """The style picture as the loss network sees it: its longer side ``size`` (Johnson's choice)."""
    return resize_max_side(image, size)


def style_record(path: Path, image: np.ndarray, size: int) -> dict:
    """How a weight file lists a style: its name, the picture's sha256, and the sha256 of the pixels trained on."""
    pixels = np.ascontiguousarray(thumbnail(image, size))
    return {
        "name": path.stem,
        "sha256": file_sha256(path),
        "thumbnail_sha256": hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest(),
    }


def read_styles(sources: tuple[str, ...], size: int) -> tuple[list[Path], list[np.ndarray], list[dict]]:
    """Find (``registry.resolve_style_image``), read and describe the run's pictures; one picture twice fails."""
    paths = [resolve_style_image(s) for s in sources]
    images = [load_image(p) for p in paths]
    records = [style_record(p, im, size) for p, im in zip(paths, images)]
    seen: dict[str, Path] = {}
    for path, record in zip(paths, records):
        if record["sha256"] in seen:
            raise UsageError(
                f"--style: {path.name} is the same picture as {seen[record['sha256']].name}; give each style once"
            )
        seen[record["sha256"]] = path
    return paths, images, records


def init_records(meta: dict[str, str], styles: int) -> list[dict]:
    """The style list of a ``--from`` multi-style network (its ``styles`` metadata; ``style 0``… without it)."""
    import json

    try:
        entries = json.loads(meta.get("styles", "[]"))
    except ValueError:
        entries = []
    if not isinstance(entries, list) or len(entries) != styles:
        entries = [{"name": f"style {i}"} for i in range(styles)]
    return [e if isinstance(e, dict) else {"name": str(e)} for e in entries]


def plan_styles(
    sources: tuple[str, ...],
    size: int,
    init: TransformerNet | None = None,
    init_meta: dict[str, str] | None = None,
    train_all: bool = False,
) -> StylePlan:
    """The plan of a run training ``sources`` (pictures or built-in names) at thumbnail size ``size``, starting
    fresh or from ``init`` (a trained network, with its metadata)."""
    paths, images, records = read_styles(sources, size)
    if init is None or init.config.styles == 1:  # fresh, or fine-tuning a single-style network
        return StylePlan(images, paths, records, list(range(len(paths))), len(paths), False)
    held = init_records(init_meta or {}, init.config.styles)
    rows, added = [], []
    for record in records:
        match = [i for i, h in enumerate(held) if h.get("sha256") == record["sha256"]]
        if match:
            rows.append(match[0])
        else:
            rows.append(len(held) + len(added))
            added.append(record)
    return StylePlan(images, paths, held + added, rows, len(held) + len(added), bool(added) and not train_all)


def style_grams(vgg, plan: StylePlan, size: int, layers: tuple[str, ...]) -> dict[str, mx.array]:
    """The Gram targets: one style's per layer, or the trained styles' stacked ``(T, …)`` (``step.make_loss_fn``)."""
    per_style = [style_targets(vgg, to_batch(thumbnail(im, size)), layers) for im in plan.images]
    if not plan.multi:
        return per_style[0]
    return {name: mx.stack([g[name] for g in per_style]) for name in layers}


def start_from(net: TransformerNet, init: TransformerNet) -> None:
    """Load ``init``'s weights into ``net`` (float32). ``net`` may hold more styles: rows ``init`` has are copied,
    the others start from the mean of its rows (a single-style network's norms, for every row)."""
    target = dict(tree_flatten(net.parameters()))
    weights = []
    for key, value in tree_flatten(init.parameters()):
        value = value.astype(mx.float32)
        shape = target[key].shape
        if value.shape != shape:  # a norm's scale or shift: (C,) or (S_init, C) into (S, C)
            rows = value[None] if value.ndim == 1 else value
            extra = mx.broadcast_to(mx.mean(rows, axis=0, keepdims=True), (shape[0] - rows.shape[0], shape[1]))
            value = mx.concatenate([rows, extra]) if extra.shape[0] else rows
        weights.append((key, value))
    net.load_weights(weights, strict=True)


def freeze_shared(net: TransformerNet) -> None:
    """Leave only the instance norms' scales and shifts trainable (the convolutions are shared by every style)."""
    net.freeze()
    for _, module in net.named_modules():
        if isinstance(module, InstanceNorm):
            module.unfreeze(keys=["weight", "bias"], recurse=False)
