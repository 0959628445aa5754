"""Train an AdaIN decoder (Huang & Belongie 2017, §4.2): ``mlx-style train --method adain --styles DIR --data DIR``.

Each step pairs a batch of content crops (``training.data``: shorter side ``image_size``, centre crop, the epoch
order a function of the seed; unreadable photos are skipped and counted) with a batch of random style crops: each
slot's painting and crop position are drawn from ``(seed, step)`` alone, from pictures resized once so that their
shorter side is ``style_resize`` (Huang: 512, crops of 256). The encoder is the frozen VGG up to relu4_1; only
the decoder learns (``nn.value_and_grad`` over it), with Adam and Huang's decay ``lr / (1 + lr_decay·step)``,
the whole step under ``mx.compile``. Loss: ``nn.adain.adain_loss``.

Nothing else is random: the decoder's initial weights come from ``mx.random.seed(seed)`` and the checkpoints
(``training.checkpoint``, atomic) hold the decoder and Adam's state, so ``--resume`` continues exactly (the same
weights, bit for bit, as a run that was never stopped); Ctrl-C finishes the step and writes a checkpoint first.

This module is the method (``AdaINMethod``); ``training.runner`` runs it. The run leaves, under
``runs/<output stem>/``, a JSON-lines log, a loss curve, sample grids (held-out photos stylised with a few of the
styles) and checkpoints, and writes one standalone weight file (``io.models.save_adain``: kind ``adain``, the encoder
up to relu4_1 and the decoder, the config in the metadata). Settings: ``config.AdaINTrainConfig``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mlx_style.io.image import ImageError, list_images, load_image, resize_shorter
from mlx_style.io.models import save_adain
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.vgg_weights import load_vgg
from mlx_style.io.weights import file_sha256
from mlx_style.nn.adain import AdaINConfig, AdaINLossConfig, AdaINNet, AdaINStyle, adain_loss, truncate_to_encoder
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import LATEST, AdaINTrainConfig, TrainingError, TrainResult, vgg_header
from mlx_style.training.data import DatasetError, find_images, plan_data
from mlx_style.training.progress import ProgressLine
from mlx_style.training.runner import Method, run

STYLE_STREAM = 0xADA1  # the style crops' random stream, apart from any other use of (seed, step)
AdaINResult = TrainResult  # what a run did (one result type for every method)


# --- styles ------------------------------------------------------------------------------------------------------


@dataclass
class StyleSet:
    """The style pictures of a run, each resized once (shorter side ``size``), with their names and hashes."""

    images: list[np.ndarray]
    names: list[str]
    sha256: list[str]

    def digest(self) -> str:
        return hashlib.sha256("".join(self.sha256).encode()).hexdigest()[:16]

    def record(self) -> str:
        return json.dumps([{"name": n, "sha256": h} for n, h in zip(self.names, self.sha256)])


def load_styles(folder: str | Path, size: int, skipped: list[str], say) -> StyleSet:
    """Every readable picture under ``folder``, shorter side resized to ``size``; an unreadable one is skipped,
    said and appended to ``skipped``. Raises ``DatasetError`` when the folder has none usable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no style folder at {folder}: pass --styles DIR, a folder of paintings")
    images, names, hashes = [], [], []
    for path in list_images(folder):
        try:
            image = load_image(path)
        except ImageError as exc:
            skipped.append(str(exc))
            say(f"skipping {exc}")
            continue
        images.append(resize_shorter(image, size))
        names.append(str(path.relative_to(folder)))
        hashes.append(file_sha256(path))
    if not images:
        raise DatasetError(f"no usable style pictures (jpg, png, …) in {folder}: put a few paintings there")
    return StyleSet(images, names, hashes)


def style_crops(styles: StyleSet, seed: int, step: int, batch: int, size: int) -> np.ndarray:
    """The style crops of step ``step`` (0-based): a painting and a crop position per slot, drawn from
    ``(seed, step)`` alone, so a resumed run sees exactly the crops an uninterrupted one would. ``(B, S, S, 3)``."""
    rng = np.random.Generator(np.random.PCG64([seed, step, STYLE_STREAM]))
    crops = []
    for index in rng.integers(len(styles.images), size=batch):
        image = styles.images[int(index)]
        H, W = image.shape[:2]
        top, left = int(rng.integers(H - size + 1)), int(rng.integers(W - size + 1))
        crops.append(image[top : top + size, left : left + size])
    return np.stack(crops)


# --- the step ----------------------------------------------------------------------------------------------------


def make_optimizer(config: AdaINTrainConfig) -> optim.Optimizer:
    """Bias-corrected Adam (torch.optim.Adam, as Huang) with his decay ``lr / (1 + lr_decay·step)``."""
    lr, decay = config.lr, config.lr_decay
    schedule = (lambda step: lr / (1.0 + decay * step)) if decay else lr
    return optim.Adam(learning_rate=schedule, bias_correction=True)


def make_adain_step(net: AdaINNet, optimizer: optim.Optimizer, losses: AdaINLossConfig, compile: bool = True):
    """``step(content, style) -> (total, {"content", "style"})`` that trains ``net.decoder`` in place.

    mlx-examples' idiom: ``nn.value_and_grad`` over the decoder only (the encoder is frozen and never updated),
    ``optimizer.update``, the whole step under ``mx.compile`` with ``[decoder.state, optimizer.state]`` captured;
    the caller runs one ``mx.eval`` per step. ``content`` and ``style``: ``(B, H, W, 3)`` uint8 or float 0–255.
    """
    decoder = net.decoder
    loss_and_grad = nn.value_and_grad(decoder, lambda c, s: adain_loss(net, c, s, losses))
    state = [decoder.state, optimizer.state]

    def step(content, style):
        (total, terms), grads = loss_and_grad(content.astype(mx.float32), style.astype(mx.float32))
        optimizer.update(decoder, grads)
        return total, terms

    return mx.compile(step, inputs=state, outputs=state) if compile else step


def tune_adain_convs(net: AdaINNet, losses: AdaINLossConfig, batch_shape: tuple[int, ...]) -> dict:
    """Autotune (``conv.tune_convs``) every convolution of the step for batches of ``batch_shape`` (cached)."""
    from mlx_style.nn.conv import tune_convs

    zeros = mx.zeros(batch_shape, mx.float32)
    return tune_convs(lambda c, s: adain_loss(net, c, s, losses)[0], zeros, zeros)


# --- the method --------------------------------------------------------------------------------------------------


def split_content(config: AdaINTrainConfig) -> tuple[list[Path], list[Path]]:
    """(training photos, sample photos): the last ``sample_count`` held out when there are ten times as many."""
    if not config.data:
        raise DatasetError(
            "no --data folder given: a folder of content photos (COCO: `python scripts/download_coco.py`)"
        )
    files = find_images(config.data)
    if len(files) >= 10 * config.sample_count:
        return files[: -config.sample_count], files[-config.sample_count :]
    return files, files[: config.sample_count]


def check_resumable(found: ckpt.Checkpoint, net_config: AdaINConfig, recipe: dict, styles_digest: str) -> None:
    """Refuse a resume that would not continue the same run exactly, naming what changed (the data order is the
    runner's check, ``runner.check_run``)."""
    if found.metadata.get("method") != "adain":
        raise TrainingError(f"{found.path} is a checkpoint of another kind of training, not of an AdaIN decoder")
    if found.metadata.get("config") != net_config.to_json():
        raise TrainingError(
            f"{found.path} is of another AdaIN network ({found.metadata.get('config')}): resume "
            "with the same --vgg and --decoder-widths"
        )
    if found.metadata.get("styles_digest") != styles_digest:
        raise TrainingError(f"{found.path} was trained on other style pictures: resume with the same --styles")
    if found.json("recipe") != recipe:
        raise TrainingError(
            f"{found.path} was trained with other settings ({found.metadata.get('recipe')}): "
            "resume with the same loss weights, --lr, --lr-decay and --style-resize"
        )


def stylize_samples(net: AdaINNet, samples: np.ndarray, pictures: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Rows for a sample grid: the photos, then one row per style picture (eval mode, uncompiled)."""
    net.decoder.eval()
    x = mx.array(samples.astype(np.float32))
    rows = [list(samples)]
    for picture in pictures:
        out = AdaINStyle(net, net.style_vector(picture, 0))(x)
        rows.append(list(np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)))
    net.decoder.train()
    return rows


class AdaINMethod(Method):
    """An AdaIN decoder over the frozen VGG encoder; each step pairs content crops with random style crops."""

    def check(self, say, world: int, main_rank: bool) -> None:
        """Read and check every input cheaply (one photo proven usable, the styles read once, the VGG's header)."""
        config = self.config
        config.check()
        output = config.output_path()
        check_suffix(output, (".safetensors",), "--output")
        check_not_an_input(output, [config.vgg, config.resume if config.resume != LATEST else None], "--output")
        self.vgg_meta = vgg_meta = vgg_header(config.vgg)
        # The network's config from the header, as load_vgg reads it: a resume is checked before the VGG loads.
        arch = json.loads(vgg_meta.get("config", "{}")).get("arch", "vgg16")
        self.net_config = config.network_config(vgg_meta.get("preprocess", "torchvision"), arch)
        self.plan = plan_data(config, say, split_content)
        self.styles = load_styles(config.styles, config.style_crop_source(), self.plan.skipped, say)
        self.style_names = self.styles.names
        sample_styles = []
        for path in config.sample_styles:
            try:
                sample_styles.append(resize_shorter(load_image(path), config.style_crop_source()))
            except ImageError as exc:
                raise ImageError(f"--sample-styles: {exc}") from None
        self.sample_pictures = sample_styles or self.styles.images[:2]  # whose styles the sample grids show
        self.losses = config.loss_config()

    def resume_check(self, found: ckpt.Checkpoint) -> None:
        check_resumable(found, self.net_config, self.config.recipe(), self.styles.digest())

    def build(self, found: ckpt.Checkpoint | None) -> None:
        """The encoder from the VGG file (cut at relu4_1) and a fresh decoder seeded by ``seed``; only it learns."""
        config = self.config
        vgg, _ = load_vgg(config.vgg)
        try:
            truncate_to_encoder(vgg)
        except ValueError:
            raise TrainingError(
                f"{config.vgg} stops at {vgg.names[-1]}: the AdaIN encoder needs VGG weights up to "
                "relu4_1 (re-convert the full VGG with scripts/convert_vgg.py)"
            ) from None
        for name in self.losses.layers:
            if name not in vgg.names:
                raise TrainingError(f"--style-layers: {name} is not a layer of the encoder (relu1_1 … relu4_1)")
        mx.random.seed(config.seed)
        self.net = AdaINNet(self.net_config, encoder=vgg)
        self.net.decoder.train()
        self.model = self.net.decoder
        self.optimizer = make_optimizer(config)
        self.optimizer.init(self.model.trainable_parameters())

    def prepare_step(self, group, say) -> None:
        S, B = self.config.image_size, self.config.batch_size
        if self.config.tune:
            tune_adain_convs(self.net, self.losses, (B, S, S, 3))
        self.step_fn = make_adain_step(self.net, self.optimizer, self.losses, self.config.compile)

    def step(self, step_index: int, batch: np.ndarray):
        S, B = self.config.image_size, self.config.batch_size
        style = style_crops(self.styles, self.config.seed, step_index, B, S)
        return self.step_fn(mx.array(batch), mx.array(style))

    def record(self, step_index: int) -> dict:
        return {"lr": float(self.optimizer.learning_rate.item())}

    def metadata(self) -> dict[str, str]:
        config = self.config
        return {
            "method": "adain",
            "config": self.net_config.to_json(),
            "train_config": json.dumps(config.shareable()),
            "recipe": json.dumps(config.recipe()),
            "styles": self.styles.record(),
            "styles_digest": self.styles.digest(),
            "vgg": self.vgg_meta.get("source", Path(config.vgg).name),
            "vgg_preprocess": self.vgg_meta.get("preprocess", ""),
        }

    def describe(self, start: int, world: int) -> str:
        config, plan, losses = self.config, self.plan, self.losses
        return (
            f"training the AdaIN decoder {config.output_path()} on {len(plan.source.files)} photos "
            f"({plan.steps_per_epoch} steps/epoch) and {len(self.styles.names)} style pictures, steps "
            f"{start}→{plan.total_steps}, batch {config.batch_size} × {config.image_size}²; content "
            f"{losses.content_weight:g}, style {losses.style_weight:g} at {','.join(losses.style_layers)}; lr "
            f"{config.lr:g} (decay {config.lr_decay:g})"
        )

    def samples(self, images: np.ndarray) -> list[list[np.ndarray]]:
        return stylize_samples(self.net, images, self.sample_pictures)

    def save(self, metadata: dict[str, str]) -> Path:
        self.net.decoder.eval()
        return save_adain(self.config.output_path(), self.net, metadata)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def train_adain(config: AdaINTrainConfig, say=_say, line: ProgressLine | None = None, on_step=None) -> AdaINResult:
    """Train an AdaIN decoder as ``config`` says (``runner.run``); returns what it did (``config.TrainResult``).

    ``say`` prints a message line; ``line`` shows progress; ``on_step(step)`` is called after each step (tests).
    Raises ``MlxStyleError`` subclasses (``TrainingError``, ``DatasetError``, ``WeightFileError``, ``ImageError``)
    with one line saying what to do when the run cannot start.
    """
    return run(AdaINMethod(config), line, say, on_step)
