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

The run leaves, under ``runs/<output stem>/``, a JSON-lines log, a loss curve, sample grids (held-out photos
stylised with a few of the styles) and checkpoints, and writes one standalone weight file (``io.models.save_adain``:
kind ``adain``, the encoder up to relu4_1 and the decoder, the config in the metadata).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mlx_style.io.image import ImageError, list_images, load_image, resize_shorter
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.weights import WeightFileError, WeightWriteError, file_sha256, remove_partial_writes
from mlx_style.nn.adain import (STYLE_IMAGE_SIZE, STYLE_LAYERS, AdaINConfig, AdaINLossConfig, AdaINNet,
                                AdaINStyle, adain_loss, truncate_to_encoder)
from mlx_style.nn.vgg import CONVERT_HINT, DEFAULT_VGG_PATH, load_vgg
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import LATEST, TrainingError
from mlx_style.training.loop import find_resume  # the one rule: --resume, --overwrite, fresh
from mlx_style.training.data import (BatchIterator, DatasetError, ImageSource, check_dataset, file_list_digest,
                                     find_images, prepare, steps_per_epoch)
from mlx_style.training.progress import JsonlLog, ProgressLine, format_duration, save_loss_curve, save_sample_grid

STYLE_STREAM = 0xADA1  # the style crops' random stream, apart from any other use of (seed, step)


@dataclass
class AdaINTrainConfig:
    """Every setting of an AdaIN training run; the CLI's defaults come from here."""

    styles: str = ""  # folder of style pictures (searched recursively); required
    data: str | None = None  # folder of content photos (COCO); required
    vgg: str = str(DEFAULT_VGG_PATH)  # the encoder: converted VGG weights up to at least relu4_1
    image_size: int = 256  # content and style crops are image_size² (Huang's 256)
    style_resize: int | None = None  # shorter side of the pictures before the crops; None: 2 × image_size (Huang)
    batch_size: int = 8  # Huang's
    iters: int = 160_000  # Huang's schedule; a CPU run uses far fewer (see the report / docs)
    lr: float = 1e-4  # Adam, Huang's
    lr_decay: float = 5e-5  # lr / (1 + lr_decay·step), Huang's
    content_weight: float = 1.0  # Huang's
    style_weight: float = 10.0  # Huang's λ (a ratio of two MSEs of the same features: no VGG-scale correction)
    style_layers: tuple[str, ...] = STYLE_LAYERS  # relu1_1, relu2_1, relu3_1, relu4_1
    style_layer_weights: tuple[float, ...] | None = None  # None: equal, as Huang
    decoder_widths: tuple[int, ...] = (256, 128, 64)  # the encoder's own widths (Huang); smaller: a lighter decoder
    style_size: int = STYLE_IMAGE_SIZE  # written into the network: a style picture's shorter side at inference
    seed: int = 0  # decoder initialisation, content order and style crops
    output: str | None = None  # None: weights/adain.safetensors
    run_dir: str | None = None  # None: runs/<output stem>
    checkpoint_every: int = 1000  # steps; 0: only at the end and on Ctrl-C
    keep_checkpoints: int = 3
    resume: str | None = None  # a checkpoint path, or LATEST
    overwrite: bool = False  # start afresh even if --output or the run folder's checkpoints exist
    sample_every: int = 500  # steps; 0: none
    sample_count: int = 4  # held-out photos in the sample grids (the last ones of --data)
    sample_styles: tuple[str, ...] = ()  # pictures for the sample grids (e.g. held-out styles); (): 2 training ones
    log_every: int = 10  # steps between progress lines (the only host reads of the losses)
    min_side: int | None = None  # skip content images with a shorter side below this; None: image_size // 2
    prefetch: int = 2  # content batches decoded ahead
    tune: bool = True  # autotune the convolution strategies for this batch shape first (cached on disk)
    compile: bool = True  # mx.compile the step (False: no start-up kernel compilation, for tiny CPU runs)

    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path("weights") / "adain.safetensors"

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.output_path().stem

    def style_crop_source(self) -> int:
        return self.style_resize or 2 * self.image_size

    def network_config(self, preprocess: str, arch: str) -> AdaINConfig:
        return AdaINConfig(arch=arch, preprocess=preprocess, decoder_widths=tuple(self.decoder_widths),
                           style_size=self.style_size)

    def loss_config(self) -> AdaINLossConfig:
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        return AdaINLossConfig(self.content_weight, self.style_weight, tuple(self.style_layers), tuple(weights))

    def recipe(self) -> dict:
        """What a resume must find unchanged besides the network and the data (else it would not be exact)."""
        return {"loss": json.loads(json.dumps(asdict(self.loss_config()))), "lr": self.lr, "lr_decay": self.lr_decay,
                "style_resize": self.style_crop_source()}

    def shareable(self) -> dict:
        """The settings as recorded in weight files: paths reduced to their file names (no local folders)."""
        record = asdict(self)
        for key in ("styles", "data", "vgg", "output", "run_dir", "resume"):
            if record.get(key) not in (None, LATEST):
                record[key] = Path(record[key]).name
        record["sample_styles"] = [Path(p).name for p in self.sample_styles]
        return record

    def check(self) -> None:
        """Refuse settings no run can use, with the flag to change."""
        for name in ("image_size", "batch_size", "log_every", "iters", "sample_count"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1")
        if self.image_size < 16 or self.image_size % 8:
            raise TrainingError(f"--image-size must be a multiple of 8 and at least 16 (the encoder pools three "
                                f"times), got {self.image_size}")
        if self.style_crop_source() < self.image_size:
            raise TrainingError(f"--style-resize {self.style_resize} is smaller than the crops (--image-size "
                                f"{self.image_size})")
        if not self.lr > 0 or self.lr_decay < 0:
            raise TrainingError("--lr must be positive and --lr-decay at least 0")


@dataclass
class AdaINResult:
    """What a run did: ``status`` is ``done``, ``interrupted``, ``diverged`` or ``failed`` (a write failed)."""

    status: str
    step: int
    output: Path | None = None
    checkpoint: Path | None = None
    records: list[dict] = field(default_factory=list)
    skipped: int = 0  # unusable content photos and style pictures
    styles: list[str] = field(default_factory=list)  # the pictures trained on


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
        crops.append(image[top:top + size, left:left + size])
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


# --- inputs, checkpoints, outputs --------------------------------------------------------------------------------


@dataclass
class Plan:
    """What ``plan_run`` read and checked before any heavy work."""

    source: ImageSource
    samples: np.ndarray | None  # held-out photos for the sample grids
    styles: StyleSet
    sample_vectors_from: list[np.ndarray]  # pictures whose styles the sample grids show
    per_epoch: int
    data_info: dict
    skipped: list[str]
    resume_from: ckpt.Checkpoint | None


def split_content(config: AdaINTrainConfig) -> tuple[list[Path], list[Path]]:
    """(training photos, sample photos): the last ``sample_count`` held out when there are ten times as many."""
    if not config.data:
        raise DatasetError("no --data folder given: a folder of content photos (COCO: "
                           "`python scripts/download_coco.py`)")
    files = find_images(config.data)
    if len(files) >= 10 * config.sample_count:
        return files[: -config.sample_count], files[-config.sample_count:]
    return files, files[: config.sample_count]


def check_resumable(found: ckpt.Checkpoint, net_config: AdaINConfig, data: dict, recipe: dict,
                    styles_digest: str) -> None:
    """Refuse a resume that would not continue the same run exactly, naming what changed."""
    if found.metadata.get("method") != "adain":
        raise TrainingError(f"{found.path} is a checkpoint of another kind of training, not of an AdaIN decoder")
    if found.metadata.get("config") != net_config.to_json():
        raise TrainingError(f"{found.path} is of another AdaIN network ({found.metadata.get('config')}): resume "
                            "with the same --vgg and --decoder-widths")
    saved = found.json("data")
    for key in ("seed", "files", "files_digest", "global_batch", "image_size"):
        if saved.get(key) != data[key]:
            raise TrainingError(f"cannot resume {found.path} exactly: {key} was {saved.get(key)!r}, now "
                                f"{data[key]!r}; use the same --data/--seed/--batch-size/--image-size")
    if found.metadata.get("styles_digest") != styles_digest:
        raise TrainingError(f"{found.path} was trained on other style pictures: resume with the same --styles")
    if found.json("recipe") != recipe:
        raise TrainingError(f"{found.path} was trained with other settings ({found.metadata.get('recipe')}): "
                            "resume with the same loss weights, --lr, --lr-decay and --style-resize")


def plan_run(config: AdaINTrainConfig, say) -> Plan:
    """Read and check every input cheaply (one photo proven usable, the styles read once), before the VGG."""
    config.check()
    output = config.output_path()
    check_suffix(output, (".safetensors",), "--output")
    check_not_an_input(output, [config.vgg, config.resume if config.resume != LATEST else None], "--output")
    if not Path(config.vgg).exists():
        raise WeightFileError(f"no VGG weights at {config.vgg}: {CONVERT_HINT}, or pass --vgg PATH")
    skipped: list[str] = []

    def on_skip(path, reason):
        skipped.append(reason)
        say(f"skipping {reason}")

    files, sample_paths = split_content(config)
    min_side = config.min_side if config.min_side is not None else config.image_size // 2
    source = ImageSource(files, config.image_size, min_side, on_skip)
    check_dataset(source)
    per_epoch = steps_per_epoch(len(files), config.batch_size)
    if per_epoch == 0:
        raise DatasetError(f"{len(files)} content images is fewer than one batch of {config.batch_size}: lower "
                           "--batch-size or add images")
    styles = load_styles(config.styles, config.style_crop_source(), skipped, say)
    samples = []
    for path in sample_paths if config.sample_every else []:
        try:
            samples.append(prepare(load_image(path), config.image_size))
        except ImageError:
            continue
    sample_styles = []
    for path in config.sample_styles:
        try:
            sample_styles.append(resize_shorter(load_image(path), config.style_crop_source()))
        except ImageError as exc:
            raise ImageError(f"--sample-styles: {exc}") from None
    data_info = {"seed": config.seed, "files": len(files),
                 "files_digest": file_list_digest([p.relative_to(config.data) for p in files]),
                 "global_batch": config.batch_size, "image_size": config.image_size}
    run_folder = config.run_path() / "checkpoints"
    if config.resume is None and output.exists() and not config.overwrite:
        raise TrainingError(f"{output} already exists: pass --resume to continue its run, choose another --output, "
                            "or --overwrite to replace it")
    found = find_resume(config, run_folder, say)
    return Plan(source, np.stack(samples) if samples else None, styles, sample_styles or styles.images[:2],
                per_epoch, data_info, skipped, found)


def build_network(config: AdaINTrainConfig) -> tuple[AdaINNet, dict[str, str]]:
    """The encoder from the VGG file (cut at relu4_1) and a fresh decoder seeded by ``seed``."""
    vgg, meta = load_vgg(config.vgg)
    try:
        truncate_to_encoder(vgg)
    except ValueError:
        raise TrainingError(f"{config.vgg} stops at {vgg.names[-1]}: the AdaIN encoder needs VGG weights up to "
                            "relu4_1 (re-convert the full VGG with scripts/convert_vgg.py)") from None
    mx.random.seed(config.seed)
    net = AdaINNet(config.network_config(vgg.preprocess, vgg.arch), encoder=vgg)
    net.decoder.train()
    return net, meta


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


def losses_finite(record: dict) -> bool:
    return all(math.isfinite(record[k]) for k in ("loss", "content", "style"))


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


# --- the run -----------------------------------------------------------------------------------------------------


def train_adain(config: AdaINTrainConfig, say=_say, line: ProgressLine | None = None,
                on_step=None) -> AdaINResult:
    """Train an AdaIN decoder as ``config`` says; returns what it did (``AdaINResult``).

    ``say`` prints a message line; ``line`` shows progress; ``on_step(step)`` is called after each step (tests).
    Raises ``MlxStyleError`` subclasses (``TrainingError``, ``DatasetError``, ``WeightFileError``, ``ImageError``)
    with one line saying what to do when the run cannot start.
    """
    from mlx_style.io.models import save_adain
    from mlx_style.training.loop import StopFlag

    line = line or ProgressLine()
    plan = plan_run(config, say)
    net, vgg_meta = build_network(config)
    losses = config.loss_config()
    for name in losses.layers:
        if name not in net.encoder.names:
            raise TrainingError(f"--style-layers: {name} is not a layer of the encoder (relu1_1 … relu4_1)")
    optimizer = make_optimizer(config)
    optimizer.init(net.decoder.trainable_parameters())
    found, recipe = plan.resume_from, config.recipe()
    start = 0
    if found is not None:
        check_resumable(found, net.config, plan.data_info, recipe, plan.styles.digest())
        ckpt.restore(found, net.decoder, optimizer)
        start = found.step
    total = config.iters
    if start > total:
        raise TrainingError(f"the checkpoint is at step {start}, past --iters {total}: pass a larger --iters")
    run_dir = config.run_path()
    folder = run_dir / "checkpoints"
    remove_partial_writes(folder)
    if found is None and config.overwrite:
        for path in ckpt.list_checkpoints(folder):
            path.unlink()
    S, B = config.image_size, config.batch_size
    if config.tune:
        tune_adain_convs(net, losses, (B, S, S, 3))
    step_fn = make_adain_step(net, optimizer, losses, config.compile)
    meta = {"method": "adain", "config": net.config.to_json(), "train_config": json.dumps(config.shareable()),
            "recipe": json.dumps(recipe), "styles": plan.styles.record(), "styles_digest": plan.styles.digest(),
            "vgg": vgg_meta.get("source", Path(config.vgg).name), "vgg_preprocess": vgg_meta.get("preprocess", "")}
    log = JsonlLog(run_dir / "log.jsonl", keep_through_step=start if found else None)
    result = AdaINResult("done", start, checkpoint=found.path if found else None, styles=plan.styles.names)

    def checkpoint(step: int) -> Path:
        data = {**plan.data_info, "next_step": step, "epoch": step // plan.per_epoch,
                "offset": (step % plan.per_epoch) * B}
        path = ckpt.save_checkpoint(folder, step, net.decoder, optimizer, {**meta, "data": json.dumps(data)})
        ckpt.prune_checkpoints(folder, config.keep_checkpoints)
        save_loss_curve(log.records, run_dir / "loss.png")
        return path

    def sample_grid(name: str) -> None:
        if plan.samples is not None:
            save_sample_grid(stylize_samples(net, plan.samples, plan.sample_vectors_from),
                             run_dir / "samples" / f"{name}.png")

    say(f"training the AdaIN decoder {config.output_path()} on {len(plan.source.files)} photos "
        f"({plan.per_epoch} steps/epoch) and {len(plan.styles.names)} style pictures, steps {start}→{total}, batch "
        f"{B} × {S}²; content {losses.content_weight:g}, style {losses.style_weight:g} at "
        f"{','.join(losses.style_layers)}; lr {config.lr:g} (decay {config.lr_decay:g}); run folder {run_dir}"
        + (f"; resumed from {found.path}" if found else ""))
    try:
        if found is None:
            result.checkpoint = checkpoint(0)
        saved_step = start
        window_start, window_steps = time.perf_counter(), 0
        with StopFlag() as stop, BatchIterator(plan.source, config.seed, start, total, B,
                                               prefetch=config.prefetch) as batches:
            for step_index, content in batches:
                step = step_index + 1
                style = style_crops(plan.styles, config.seed, step_index, B, S)
                total_loss, terms = step_fn(mx.array(content), mx.array(style))
                mx.eval(total_loss, terms, net.decoder.parameters(), optimizer.state)
                window_steps += 1
                stopping = stop.signum is not None
                due = bool(config.checkpoint_every) and step % config.checkpoint_every == 0
                if step % config.log_every == 0 or step == total or due or stopping:
                    now = time.perf_counter()
                    record = {"step": step, "loss": total_loss.item(), **{k: v.item() for k, v in terms.items()},
                              "images_per_s": window_steps * B / (now - window_start),
                              "lr": float(optimizer.learning_rate.item())}
                    window_start, window_steps = now, 0
                    if not losses_finite(record):
                        line.close()
                        say(f"error: the loss became {record['loss']} by step {step}: training stopped; the last "
                            f"good checkpoint is {result.checkpoint}. Lower --lr and continue from it with --resume")
                        result.status, result.records = "diverged", log.records
                        return result
                    log.write(record)
                    eta = (total - step) * B / record["images_per_s"]
                    line.update(f"step {step}/{total}  {record['images_per_s']:.2f} img/s  ETA "
                                f"{format_duration(eta)}  loss {record['loss']:.4g} (content "
                                f"{record['content']:.4g}, style {record['style']:.4g})")
                if config.sample_every and step % config.sample_every == 0:
                    sample_grid(f"step_{step:08d}")
                if due or stopping:
                    result.checkpoint, saved_step = checkpoint(step), step
                result.step = step
                if on_step is not None:
                    on_step(step)
                if stopping:
                    line.close()
                    say(f"interrupted after step {step}: wrote {result.checkpoint}; continue with the same command "
                        "plus --resume")
                    result.status = "interrupted"
                    break
        line.close()
        result.skipped, result.records = len(plan.skipped), log.records
        if result.status == "done":
            if saved_step != result.step:
                result.checkpoint = checkpoint(result.step)  # a larger --iters can continue from here
            sample_grid("final")
            save_loss_curve(log.records, run_dir / "loss.png")
            net.decoder.eval()
            result.output = save_adain(config.output_path(), net, {**meta, "steps": str(result.step)})
            if plan.skipped:
                say(f"{len(plan.skipped)} unusable images were skipped (listed above)")
        return result
    except WeightWriteError as exc:  # a full disk or lost permissions: stop cleanly, say how to continue
        line.close()
        say(f"error: {exc}; training stopped. The last good checkpoint is {result.checkpoint or 'none yet'}: make "
            "room, then run the same command with --resume")
        result.status, result.records = "failed", log.records
        return result
