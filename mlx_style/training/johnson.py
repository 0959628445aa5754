"""Train a style network (Johnson et al. 2016, §3): ``python -m mlx_style.train --style wave.jpg --data DIR``.

Content images are resized so the shorter side is ``--image-size`` and centre-cropped square; batch 8, Adam
lr 1e-3, gradient clipping per parameter tensor, one epoch (or ``--iters N``). The perceptual loss reads a frozen
VGG whose weight file also supplies the default loss weights. Several pictures (``--style A B C``) train one
network that holds them all (``training.styles``); ``--stable`` adds a temporal term (``training.motion``).

This module is the method (``JohnsonMethod``: inputs, networks, step, metadata, samples); ``training.runner`` runs
it: the run folder under ``runs/<output stem>/`` (a JSON-lines log, a loss curve, sample grids, checkpoints), exact
``--resume``, Ctrl-C, and the network written to ``--output``. Data-parallel (``--batch-size`` is the global batch;
each process reads its share of it; only rank 0 writes): on a CPU the command starts one process per core by itself
(``--processes``, ``training.launch``), since MLX's CPU ops run on one core each; over several machines with
``mlx.launch --hostfile hosts.json --backend ring --python PYTHON -- -m mlx_style.train --style wave.jpg --data DIR``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from mlx_style.io.models import load_transformer, save_transformer
from mlx_style.io.paths import check_not_an_input, check_suffix
from mlx_style.io.registry import resolve_style
from mlx_style.io.style_models import style_names
from mlx_style.io.vgg_weights import load_vgg
from mlx_style.io.weights import WeightFileError
from mlx_style.nn.losses import LossConfig
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.training import checkpoint as ckpt
from mlx_style.training.config import LATEST, TrainConfig, TrainingError, loss_config, vgg_header
from mlx_style.training.data import plan_data
from mlx_style.training.distributed import agree
from mlx_style.training.launch import local_processes
from mlx_style.training.motion import StableConfig, random_motion
from mlx_style.training.runner import Method, check_run
from mlx_style.training.step import make_train_step, tune_step_convs
from mlx_style.training.styles import freeze_shared, plan_styles, start_from, style_grams


def stylize_samples(net: TransformerNet, samples: np.ndarray, blends=(None,)) -> list[list[np.ndarray]]:
    """Rows for a sample grid: the contents, then the network's outputs for each style blend (``None``: a
    single-style network), in eval mode, uncompiled."""
    net.eval()
    rows = [list(samples)]
    for blend in blends:
        out = net(mx.array(samples).astype(mx.float32), *(() if blend is None else (blend,)))
        rows.append(list(np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)))
    net.train()
    return rows


def check_resumable(
    found: ckpt.Checkpoint,
    net_config: TransformerConfig,
    style_sha256: str = "",
    losses: LossConfig | None = None,
    allow_change: bool = False,
    stable: StableConfig | None = None,
) -> None:
    """Refuse a resume whose network would differ from the checkpoint's (it would not be exact), or whose style
    image, loss settings or temporal term (``stable``; a checkpoint that records none had it off) differ, unless
    ``allow_change`` (a deliberate change of recipe). The data order is the runner's check (``runner.check_run``)."""
    if not allow_change:
        saved_style = found.metadata.get("style_sha256")
        if style_sha256 and saved_style and saved_style != style_sha256:
            raise TrainingError(
                f"{found.path.name} was trained on another style image "
                f"({found.metadata.get('style', '?')}, sha256 {saved_style[:12]}…): resume with the "
                "same --style, or pass --allow-change to continue on the new one"
            )
        saved_losses = found.json("loss_config")
        if losses is not None and saved_losses:
            now = json.loads(json.dumps(asdict(losses)))
            defaults = json.loads(json.dumps(asdict(LossConfig())))
            saved_losses = {**{k: v for k, v in defaults.items() if k == "style_scales"}, **saved_losses}
            changed = sorted(k for k in set(now) | set(saved_losses) if now.get(k) != saved_losses.get(k))
            if changed:
                what = ", ".join(f"{k} {saved_losses.get(k)!r} → {now.get(k)!r}" for k in changed[:3])
                raise TrainingError(
                    f"{found.path.name} was trained with other loss settings ({what}): resume "
                    "with the same loss flags, or pass --allow-change to continue with the new ones"
                )
        saved_stable = found.json("stable") or StableConfig().record()
        if stable is not None and stable.record() != saved_stable:
            raise TrainingError(
                f"{found.path.name} was trained with another temporal term (--stable "
                f"{describe_stable(saved_stable)}, now {describe_stable(stable.record())}): resume "
                "with the same --stable flags, or pass --allow-change to continue with the new ones"
            )
    if found.metadata.get("config") != net_config.to_json():
        raise TrainingError(
            f"{found.path} is of another network ({found.metadata.get('config')}); resume with "
            "the same --norm/--upsample/--width/--residual-blocks"
        )


def describe_stable(record: dict) -> str:
    """``off``, or ``weight 100, shift 3, rotate 2, zoom 0.03, noise 3`` (a ``StableConfig.record()``)."""
    if not record.get("weight"):
        return "off"
    return ", ".join(
        k.replace("_", " ") if v is True else f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v!r}"
        for k, v in record.items()
    )


def load_init_network(config: TrainConfig) -> tuple[TransformerNet, dict[str, str]]:
    """The network ``--from`` names (a path, a name in weights/ or a built-in) and its metadata, checked to be of
    the architecture this run trains (its number of styles aside: ``training.styles``)."""
    try:
        path, held = resolve_style(config.init_from)
        net, meta = load_transformer(path)
    except WeightFileError as exc:
        raise TrainingError(f"--from: {exc}") from None
    if held is not None:  # one style of the built-ins' network (``--from udnie``): its norms for that style alone
        names = style_names(meta)
        net = net.with_style(mx.eye(net.config.styles)[names.index(held)])
    theirs, ours = asdict(net.config), asdict(config.network_config(styles=net.config.styles))
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs[k]!r}" for k in theirs if theirs[k] != ours[k])
        raise TrainingError(
            f"--from {config.init_from} is another network ({diff}); pass the same --norm, "
            "--upsample, --width and --residual-blocks, or start without --from"
        )
    return net, meta


class JohnsonMethod(Method):
    """Johnson et al.'s network for one picture, several (a scale and shift per style) or ``--stable``."""

    distributed = True  # make_train_step averages the gradients over the processes
    divergence_hint = "Lower --lr or --style-weight"
    data_flags = "--data/--subset/--seed/--batch-size/--image-size"

    def check(self, say, world: int, main_rank: bool) -> None:
        config = self.config
        config.check()
        if config.batch_size % world:
            raise TrainingError(
                f"--batch-size {config.batch_size} must be a multiple of the {world} processes (--processes)"
            )
        if config.low_memory and config.norm == "batch":
            raise TrainingError(
                "--low-memory needs --norm instance: recomputing a batch-norm network's forward "
                "would update its running statistics twice per step"
            )
        output = config.output_path()
        check_suffix(output, (".safetensors",), "--output")
        check_not_an_input(
            output, [*config.style_list(), config.vgg, config.resume if config.resume != LATEST else None], "--output"
        )
        if len(config.style_list()) > 1 and config.norm != "instance":
            raise TrainingError("several styles in one network need --norm instance (a scale and shift per style)")
        try:  # read even on --resume: the rows of a multi-style network's styles come from it
            self.init, init_meta = load_init_network(config) if config.init_from else (None, {})
        except TrainingError as exc:
            if config.resume is None:
                raise
            raise TrainingError(
                f"{exc}; resuming a run started with --from needs that network (a fine-tune of a "
                "single-style network also resumes without --from)"
            ) from None
        self.styles = plan_styles(
            config.style_list(), config.style_size or config.image_size, self.init, init_meta, config.train_all
        )
        self.style_names = self.styles.names()
        self.vgg_meta = vgg_header(config.vgg)
        self.plan = plan_data(config, say)
        self.losses = loss_config(config, self.vgg_meta)
        try:
            self.stable = config.stable()
        except ValueError as exc:
            raise TrainingError(f"--stable: {str(exc).removeprefix('[StableConfig] ')}") from None
        self.net_config = config.network_config(self.styles.network_styles)

    def resume_check(self, found: ckpt.Checkpoint) -> None:
        check_resumable(
            found, self.net_config, self.styles.sha256(), self.losses, self.config.allow_change, self.stable
        )

    def build(self, found: ckpt.Checkpoint | None) -> None:
        """The frozen VGG, the style Grams (computed once), a fresh network and its optimizer. Adding styles to a
        trained network leaves only its norms trainable."""
        config = self.config
        self.vgg, _ = load_vgg(config.vgg, {"float32": mx.float32, "bfloat16": mx.bfloat16}[config.dtype])
        self.grams = style_grams(
            self.vgg, self.styles, config.style_size or config.image_size, self.losses.style_layers
        )
        mx.eval(self.grams)
        mx.random.seed(config.seed)
        self.net = self.model = TransformerNet(self.net_config)
        self.started_from = self.init if found is None else None  # --from: the network a fresh run starts from
        if self.started_from is not None:  # fine-tune: the trained network's weights, in float32, then a fresh Adam
            start_from(self.net, self.started_from)
        if self.styles.freeze_shared:
            freeze_shared(self.net)
        self.net.train()
        # Bias-corrected Adam, as torch.optim.Adam and Lua's optim.adam that Johnson trained with.
        self.optimizer = optim.Adam(learning_rate=config.lr, bias_correction=True)
        self.optimizer.init(self.net.trainable_parameters())

    def prepare_step(self, group, say) -> None:
        config, world = self.config, group.size()
        self.optimizer.learning_rate = config.lr  # a new --lr on resume is a deliberate change
        self.group, self.share = group, config.batch_size // world
        rows = self.styles.style_rows()
        if config.tune:
            began = time.perf_counter()
            if group.rank() != 0:
                agree(False, group)  # a barrier: rank 0 tunes alone (undisturbed timings); the others read its cache
            tune_step_convs(
                self.net, self.vgg, self.grams, self.losses, (self.share, config.image_size, config.image_size, 3), rows
            )
            if group.rank() == 0:
                agree(False, group)
            say(
                f"convolution strategies tuned for batch {self.share} × {config.image_size}² in "
                f"{time.perf_counter() - began:.1f} s (cached for later runs)"
            )
        self.recompute = config.recomputes(processes=world, local=local_processes())  # this machine's share
        self.step_fn = make_train_step(
            self.net,
            self.vgg,
            self.optimizer,
            self.grams,
            self.losses,
            config.clip,
            group,
            config.compile,
            recompute=self.recompute,
            stable=self.stable,
            style_rows=rows,
        )

    def step(self, step_index: int, batch: np.ndarray):
        config, stable = self.config, self.stable
        # With --stable, this rank's images' motions: a function of (seed, step, image), never of the run's past
        motion = (
            random_motion(
                config.seed,
                step_index,
                self.share,
                config.image_size,
                config.image_size,
                stable,
                first=self.group.rank() * self.share,
            )
            if stable.on
            else None
        )
        style = self.styles.step_style(step_index)  # several styles: in turn, a function of the step
        return self.step_fn(mx.array(batch), motion, style)  # the step's host→MLX transfers

    def record(self, step_index: int) -> dict:
        style = self.styles.step_style(step_index)
        return {} if style is None else {"style_index": style}

    def metadata(self) -> dict[str, str]:
        config, styles = self.config, self.styles
        meta = {
            "config": self.net_config.to_json(),
            "train_config": json.dumps(config.shareable()),
            "loss_config": json.dumps(asdict(self.losses)),
            "stable": json.dumps(self.stable.record()),
            "style": (
                f"{styles.network_styles} styles: " + ", ".join(r["name"] for r in styles.records)
                if styles.multi
                else styles.paths[0].name
            ),
            "style_sha256": styles.sha256(),
            "vgg": self.vgg_meta.get("source", Path(config.vgg).name),
            "vgg_preprocess": self.vgg_meta.get("preprocess", ""),
        }
        if styles.multi:  # what stylize --style NAME and the cam's style keys read
            meta["styles"] = json.dumps(styles.records)
        if self.started_from is not None:
            path, held = resolve_style(config.init_from)
            meta["started_from"] = path.name + (f"#{held}" if held else "")
        return meta

    def describe(self, start: int, world: int) -> str:
        config, plan, losses, stable, styles = self.config, self.plan, self.losses, self.stable, self.styles
        parts = [
            f"training {config.output_path()} on {len(plan.source.files)} images ({plan.steps_per_epoch} "
            f"steps/epoch), steps {start}→{plan.total_steps}, batch {config.batch_size} × "
            f"{config.image_size}², {world} process(es)",
            f"loss weights content {losses.content_weight:g}, style {losses.style_weight:g}"
            + (f" × ({', '.join(f'{x:g}' for x in losses.style_scales)})" if losses.style_scales else "")
            + f", tv {losses.tv_weight:g}"
            + (
                f", temporal {stable.weight:g} (--stable: shift ±{stable.shift:g} px, rotation "
                f"±{stable.rotate:g}°, zoom ±{100 * stable.zoom:g}%, noise σ {stable.noise:g}"
                + (", fixed target" if stable.fixed_target else "")
                + ")"
                if stable.on
                else ""
            ),
        ]
        if self.recompute:
            parts.append("residual blocks recomputed (--low-memory)")
        if styles.multi:
            parts.append(
                f"{len(styles.rows)} of its {styles.network_styles} styles in turn "
                f"({', '.join(styles.names())})"
                + ("; only their norms train (--train-all: every weight)" if styles.freeze_shared else "")
            )
        return "; ".join(parts)

    def samples(self, images: np.ndarray) -> list[list[np.ndarray]]:
        return stylize_samples(self.net, images, self.styles.sample_blends())  # a row per trained style

    def save(self, metadata: dict[str, str]) -> Path:
        return save_transformer(self.config.output_path(), self.net, metadata)


def check_inputs(config: TrainConfig, processes: int, say, main_rank: bool = True) -> ckpt.Checkpoint | None:
    """Read and check every input of a run of ``processes`` processes, and the run folder, before any heavy work
    (``runner.check_run``); the CLI runs it once before it starts them, so that an error is reported once. It reads
    only the VGG file's header (the launcher stays small while the ranks train)."""
    return check_run(JohnsonMethod(config), say, processes, main_rank)
