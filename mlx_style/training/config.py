"""The settings of a training run, one dataclass per method (``TrainConfig``: Johnson et al.; ``AdaINTrainConfig``:
Huang & Belongie), what a run returns (``TrainResult``), and the loss weights it uses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


from mlx_style.errors import MlxStyleError
from mlx_style.io.vgg_weights import CONVERT_HINT, default_vgg
from mlx_style.io.weights import WeightFileError, read_metadata
from mlx_style.nn import adain
from mlx_style.nn.losses import STYLE_LAYERS, LossConfig
from mlx_style.nn.transformer import TransformerConfig
from mlx_style.backend import backend_name, processes_for_training, recompute_above_pixels
from mlx_style.training.launch import usable_cores
from mlx_style.training.motion import StableConfig

LATEST = "latest"  # --resume without a path
_MOTION = StableConfig()
# λ_temporal of a bare --stable (provisional, until scripts/bench/stable_compare.py has measured a sweep): the
# built-in wave's temporal term at 128² is 300–490 levels² against a weighted perceptual loss of 0.8–1.2e6, so 500
# makes it 15–25% of the total when a fine-tune starts: felt, without swamping the style term.
STABLE_DEFAULT_WEIGHT = 500.0


@dataclass
class TrainConfig:
    """Every setting of a training run; the CLI's defaults come from here."""

    style: str = ""  # the style image (the first of ``styles`` when there are several)
    styles: tuple[str, ...] = ()  # several style images: one multi-style network (Dumoulin et al.); () for one
    train_all: bool = False  # --from a multi-style network with new styles: train every weight, not only new rows
    data: str | None = None  # folder of content photos (COCO); required
    vgg: str = field(default_factory=default_vgg)  # yours in weights/, else the shipped one
    image_size: int = 256  # content crops are image_size² (the report's 256)
    batch_size: int = 8  # the report's; the global batch over all processes, so results do not depend on them
    iters: int | None = None  # total steps; None: epochs × steps per epoch
    epochs: int = 1  # the report: one epoch of COCO train2017 (118k images, ~14.8k steps at batch 8)
    lr: float = 1e-3  # Adam, as Johnson
    clip: str = "tensor"  # per-tensor norm-1 clipping (the report); "global" or "none"
    content_weight: float | None = None  # None: from the VGG file's recommended_loss_weights
    style_weight: float | None = None
    style_scales: tuple[float, ...] = ()  # several styles: each one's multiplier of style_weight; (): all 1
    tv_weight: float | None = None
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights (losses.LossConfig)
    style_layers: tuple[str, ...] = STYLE_LAYERS  # relu1_2, relu2_2, relu3_3, relu4_3
    content_layer: str = "relu3_3"
    stable_weight: float = 0.0  # --stable: λ of the temporal term (training.motion); 0: off (a plain network)
    stable_shift: float = _MOTION.shift  # px: a hand-held camera moves a few px between frames
    stable_rotate: float = _MOTION.rotate  # degrees: its slight roll
    stable_zoom: float = _MOTION.zoom  # ±fraction of scale: a slow push in or out
    stable_noise: float = _MOTION.noise  # σ in 0–255 levels: webcam sensor noise, what shimmers on a still scene
    stable_fixed_target: bool = False  # the unmoved output is a constant target (training.motion.StableConfig)
    style_size: int | None = None  # longer side of the style image; None: image_size (Johnson's choice)
    norm: str = "instance"
    upsample: str = "nearest"
    width: int = 32  # 16 gives the light network
    residual_blocks: int = 5
    subset: int | None = None  # train on N images only (chosen by the seed)
    seed: int = 0  # network initialisation and data order
    output: str | None = None  # None: weights/<style stem>.safetensors
    run_dir: str | None = None  # None: runs/<output stem>
    checkpoint_every: int = 1000  # steps; 0: only at the end and on Ctrl-C
    keep_checkpoints: int = 3
    resume: str | None = None  # a checkpoint path, or LATEST
    init_from: str | None = None  # start from this trained network's weights (fine-tune), not a random one
    allow_change: bool = False  # --resume with another style image or loss settings (a deliberate change)
    overwrite: bool = False  # start afresh even if --output or the run folder's checkpoints exist
    sample_every: int = 500  # steps; 0: none
    sample_images: str | None = None  # folder of sample content; None: hold out sample_count images of --data
    sample_count: int = 4
    log: str | None = None  # None: <run dir>/log.jsonl
    log_every: int = 10  # steps between progress lines (the only host reads of the losses)
    dtype: str = "float32"  # the loss network's dtype: float32 or bfloat16
    low_memory: bool | None = None  # recompute the residual blocks in the backward pass; None: see recomputes()
    min_side: int | None = None  # skip content images with a shorter side below this; None: image_size // 2
    prefetch: int = 2  # batches decoded ahead
    tune: bool = True  # autotune the convolution strategies for this batch shape first (cached on disk)
    compile: bool = True  # mx.compile the step (False: no start-up kernel compilation, for tiny CPU runs)
    processes: int | None = None  # processes on this machine (the CLI starts them); None: launch.auto_processes

    def style_list(self) -> tuple[str, ...]:
        """The style images this run trains, in order (one for a single-style network)."""
        return tuple(self.styles) or (self.style,)

    def output_path(self) -> Path:
        """``--output``, else ``weights/<style>.safetensors`` (several styles: ``a-b-c``, or ``a-and-N-more``)."""
        if self.output:
            return Path(self.output)
        stems = [Path(s).stem for s in self.style_list()]
        name = "-".join(stems) if len(stems) <= 3 else f"{stems[0]}-and-{len(stems) - 1}-more"
        return Path("weights") / f"{name}.safetensors"

    def recomputes(self, backend: str | None = None, processes: int = 1, local: int = 1) -> bool:
        """Whether the step recomputes the residual blocks (``--low-memory``).

        By default: with instance norm (batch norm's running statistics would be updated twice), when the pixels
        this machine holds, one process's share of the batch (``batch_size // processes``) times the ``local``
        processes on this machine, exceed the backend's ``RECOMPUTE_ABOVE_PIXELS`` (``backend``:
        ``mlx_style.backend.backend_name()`` when None; an unknown backend always recomputes).
        """
        if self.low_memory is not None:
            return self.low_memory
        above = recompute_above_pixels(backend)
        pixels = self.batch_size // processes * local * self.image_size**2
        return self.norm == "instance" and above is not None and pixels > above

    def planned_processes(self) -> int:
        """The local processes this run trains as: ``processes``, or ``backend.processes_for_training``."""
        return self.processes or processes_for_training(backend_name(), self.batch_size, usable_cores())

    def shareable(self) -> dict:
        """The settings as recorded in weight files: paths reduced to their file names (no local folders)."""
        record = asdict(self)
        for key in ("style", "data", "vgg", "output", "run_dir", "log", "sample_images", "resume", "init_from"):
            if record.get(key) not in (None, LATEST):
                record[key] = Path(record[key]).name
        record["styles"] = [Path(s).name for s in self.styles]
        return record

    def check(self) -> None:
        """Refuse settings no run can use, with the flag to change (the CLI and the Python API alike)."""
        for name in ("image_size", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1")
        if self.iters is not None and self.iters < 0:
            raise TrainingError(f"--iters must be at least 0, got {self.iters}")
        if not self.lr >= 0:  # 0 is allowed: a run that only evaluates (tests use it)
            raise TrainingError(f"--lr must be at least 0, got {self.lr}")
        if self.style_scales:
            if len(self.style_list()) < 2:
                raise TrainingError("--style-scale is for several styles; one style's weight is --style-weight")
            if len(self.style_scales) != len(self.style_list()):
                raise TrainingError(
                    f"--style-scale takes one value per --style: {len(self.style_scales)} for "
                    f"{len(self.style_list())} styles"
                )
            if not all(0 < s < float("inf") for s in self.style_scales):
                raise TrainingError("--style-scale values must be positive and finite")

    def stable(self) -> StableConfig:
        """The temporal term's settings (``StableConfig``; raises ``ValueError`` for a negative one)."""
        return StableConfig(
            self.stable_weight,
            self.stable_shift,
            self.stable_rotate,
            self.stable_zoom,
            self.stable_noise,
            self.stable_fixed_target,
        )

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.output_path().stem

    def log_path(self) -> Path:
        return Path(self.log) if self.log else self.run_path() / "log.jsonl"

    def network_config(self, styles: int | None = None) -> TransformerConfig:
        """The network trained: one norm row per style of the run, or ``styles`` rows (``--from`` a multi-style
        network adds its rows)."""
        return TransformerConfig(
            norm=self.norm,
            upsample=self.upsample,
            width=self.width,
            num_residual=self.residual_blocks,
            styles=styles or len(self.style_list()),
        )


@dataclass
class TrainResult:
    """What a run did: ``status`` is ``done``, ``interrupted``, ``diverged`` or ``failed`` (a write failed)."""

    status: str
    step: int
    output: Path | None = None
    checkpoint: Path | None = None
    records: list[dict] = field(default_factory=list)
    skipped: int = 0
    peak_memory_gb: float = 0.0  # MLX's memory in use at its peak
    resident_gb: float = 0.0  # the process's resident size at the end (MLX, Python, the data loader)
    styles: list[str] = field(default_factory=list)  # the names of the pictures trained on


class TrainingError(MlxStyleError, RuntimeError):
    """A run that cannot start or continue; the message says what to do."""


def vgg_header(path: str) -> dict[str, str]:
    """The metadata of the VGG file at ``path``, read without its tensors (``io.vgg_weights.load_vgg`` checks those
    later), so that a missing or wrong file fails before any heavy work."""
    if not Path(path).exists():
        raise WeightFileError(f"no VGG weights at {path}: {CONVERT_HINT}, or pass --vgg PATH")
    try:
        meta = read_metadata(path)
    except (OSError, ValueError) as exc:
        raise WeightFileError(f"{path} is not a readable safetensors file ({exc}): {CONVERT_HINT}")
    if meta.get("kind") != "vgg":
        raise WeightFileError(
            f"{path} holds a {meta.get('kind', 'unknown')!r} network, not VGG weights: "
            f"{CONVERT_HINT}, or pass --vgg PATH"
        )
    return meta


def loss_config(config: TrainConfig, vgg_meta: dict[str, str]) -> LossConfig:
    """Loss weights: the flags where given, else the VGG file's recommendation (right for its input scale)."""
    recommended = json.loads(vgg_meta.get("recommended_loss_weights", "{}"))
    weights = {}
    for key in ("content", "style", "tv"):
        value = getattr(config, f"{key}_weight")
        if value is None:
            if key not in recommended:
                raise TrainingError(
                    f"{config.vgg} carries no recommended loss weights: pass --{key}-weight "
                    "(or re-convert it with scripts/convert_vgg.py)"
                )
            value = recommended[key]
        weights[f"{key}_weight"] = float(value)
    layer_weights = config.style_layer_weights or (1.0,) * len(config.style_layers)
    return LossConfig(
        content_layer=config.content_layer,
        style_layers=tuple(config.style_layers),
        style_layer_weights=tuple(layer_weights),
        style_scales=tuple(float(x) for x in config.style_scales),
        **weights,
    )


@dataclass
class AdaINTrainConfig:
    """Every setting of an AdaIN training run (``train --method adain``); the CLI's defaults come from here."""

    styles: str = ""  # folder of style pictures (searched recursively); required
    data: str | None = None  # folder of content photos (COCO); required
    vgg: str = field(default_factory=default_vgg)  # yours in weights/, else the shipped one
    image_size: int = 256  # content and style crops are image_size² (Huang's 256)
    style_resize: int | None = None  # shorter side of the pictures before the crops; None: 2 × image_size (Huang)
    batch_size: int = 8  # Huang's
    iters: int = 160_000  # Huang's schedule; a CPU run uses far fewer (see the report / docs)
    lr: float = 1e-4  # Adam, Huang's
    lr_decay: float = 5e-5  # lr / (1 + lr_decay·step), Huang's
    content_weight: float = 1.0  # Huang's
    style_weight: float = 10.0  # Huang's λ (a ratio of two MSEs of the same features: no VGG-scale correction)
    style_layers: tuple[str, ...] = adain.STYLE_LAYERS  # relu1_1, relu2_1, relu3_1, relu4_1
    style_layer_weights: tuple[float, ...] | None = None  # None: equal, as Huang
    decoder_widths: tuple[int, ...] = (256, 128, 64)  # the encoder's own widths (Huang); smaller: a lighter decoder
    style_size: int = adain.STYLE_IMAGE_SIZE  # written into the network: a style picture's shorter side at inference
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

    def log_path(self) -> Path:
        return self.run_path() / "log.jsonl"

    def style_crop_source(self) -> int:
        return self.style_resize or 2 * self.image_size

    def network_config(self, preprocess: str, arch: str) -> adain.AdaINConfig:
        return adain.AdaINConfig(
            arch=arch, preprocess=preprocess, decoder_widths=tuple(self.decoder_widths), style_size=self.style_size
        )

    def loss_config(self) -> adain.AdaINLossConfig:
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        return adain.AdaINLossConfig(self.content_weight, self.style_weight, tuple(self.style_layers), tuple(weights))

    def recipe(self) -> dict:
        """What a resume must find unchanged besides the network and the data (else it would not be exact)."""
        return {
            "loss": json.loads(json.dumps(asdict(self.loss_config()))),
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "style_resize": self.style_crop_source(),
        }

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
            raise TrainingError(
                f"--image-size must be a multiple of 8 and at least 16 (the encoder pools three "
                f"times), got {self.image_size}"
            )
        if self.style_crop_source() < self.image_size:
            raise TrainingError(
                f"--style-resize {self.style_resize} is smaller than the crops (--image-size {self.image_size})"
            )
        if not self.lr > 0 or self.lr_decay < 0:
            raise TrainingError("--lr must be positive and --lr-decay at least 0")
