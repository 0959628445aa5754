"""Style transfer by optimising the image itself (Gatys et al. 2016), the report's slow baseline.

``mlx-style optimize --content photo.jpg --style wave.jpg -o out.png``

The pixels of one image are the free variable; the objective is the same perceptual loss the feed-forward
networks are trained with (``mlx_style.nn.losses.perceptual_loss``: content at relu3_3, Gram matrices at
relu1_2 … relu4_3, total variation), minimised with L-BFGS (``mlx_style.optim.lbfgs``, as in the report) or Adam.

The image is optimised directly in RGB 0–255, the package's pixel convention, with no box constraint; pixels
that leave the range are clipped only when saving. No rescaled parameterisation is used because L-BFGS does not
need one: it is invariant to a linear change of variables apart from its first trial step (of length 1, which
the line search stretches in a few evaluations), and its history learns the curvature within a few iterations.
(Adam is not invariant; its ``--lr`` is in grey levels per step.)

Measured with the Caffe VGG16 and the wave at 192 px: from the content photo (``--init content``) most of the loss
drop comes in the first 50 L-BFGS iterations (3.1e6 → 2.0e5; 1.9e5 after 150), at about one loss evaluation per
iteration after the first. From noise (``--init noise``: mid-grey plus Gaussian noise, see ``noise_image``) the
loss after 40 iterations was 37% higher (128 px) and less of the photo survives.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path
from typing import Any, Callable, Iterator

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from mlx_style.optim import lbfgs
from mlx_style.io.paths import check_image_output
from mlx_style.io.image import load_image, resize_max_side, save_image, to_batch
from mlx_style.nn.losses import STYLE_LAYERS, LossConfig, perceptual_loss, recommended_weights, style_targets
from mlx_style.nn.vgg import VGG
from mlx_style.io.vgg_weights import USER_VGG, default_vgg, load_vgg
from mlx_style.io.weights import WeightFileError
from mlx_style.errors import UsageError

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 4.0}  # L-BFGS: the quasi-Newton step; Adam: grey levels per step
NOISE_STD = 32.0  # grey levels: strong enough to break symmetry, weak enough to stay inside 0–255


@dataclass
class OptimizeConfig:
    """Everything one ``optimize`` run needs; the CLI's defaults come from here."""

    content: str = ""
    style: str = ""
    output: str = ""
    vgg: str = field(default_factory=default_vgg)  # the loss network: yours in weights/, else the shipped one
    size: int = 256  # longer side of the content image: CPU-friendly; 0 keeps the photo's size
    style_size: int | None = None  # longer side of the style image; None: the content's longer side
    iters: int = 200  # L-BFGS iterations: at 192 px the loss fell < 2% between iterations 100 and 150
    optimizer: str = "lbfgs"  # the report's; Adam (lr 4) ended 11% higher after the same 40 evaluations
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    init: str = "content"  # start from the photo (faster, keeps more content) or from noise
    content_weight: float | None = None  # None: the VGG file's recommended weights
    style_weight: float | None = None
    tv_weight: float | None = None
    content_layer: str = "relu3_3"
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: 1.0 for every style layer
    seed: int = 0
    save_every: int = 0  # also write the image every N iterations (0: only at the end)
    log_every: int = 10  # print the loss terms every N iterations
    history_size: int = 10  # L-BFGS memory
    line_search: str = "strong_wolfe"


@dataclass(frozen=True)
class AdamState:
    """Adam's counterpart of ``lbfgs.LBFGSState`` (the fields the progress report reads)."""

    x: mx.array
    f: float
    aux: Any
    iteration: int
    evaluations: int
    converged: str | None = None


@dataclass
class OptimizeResult:
    image: mx.array  # (1, H, W, 3), 0–255, not clipped
    losses: list[float] = field(default_factory=list)  # total loss at iteration 0, 1, 2, …
    terms: list[dict[str, float]] = field(default_factory=list)  # weighted terms at each iteration
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why it stopped before the last iteration, if it did


# ---------------------------------------------------------------------------------------------------------------
# Library


def parse_layers(text: str) -> tuple[str, ...]:
    """``"relu1_2,relu2_2"`` → ``("relu1_2", "relu2_2")``."""
    layers = tuple(name.strip() for name in text.split(",") if name.strip())
    if not layers:
        raise argparse.ArgumentTypeError("give at least one layer name, e.g. relu1_2,relu2_2")
    return layers


def parse_weights(text: str) -> tuple[float, ...]:
    """``"0.7,0.3,0.03,0.03"`` → a tuple of non-negative floats."""
    try:
        weights = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0.7,0.3,0.03,0.03")
    if not weights or min(weights) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected non-negative numbers")
    return weights


def load_loss_network(path: str | Path) -> tuple[VGG, dict[str, str]]:
    """``load_vgg`` with the exact command that creates a missing file."""
    path = Path(path)
    if not path.exists():
        command = "python scripts/convert_vgg.py" + ("" if path == USER_VGG else f" -o {path}")
        raise WeightFileError(
            f"no VGG weights at {path}: run `{command}` to create them "
            "(add `--from FILE` to convert a local checkpoint offline)"
        )
    return load_vgg(path)


def check_layers(vgg: VGG, layers: tuple[str, ...], height: int, width: int) -> None:
    """Raise ``ValueError`` saying what to change when ``vgg`` lacks a layer or the image is too small for it."""
    missing = [name for name in layers if name not in vgg.names]
    if missing:
        known = [n for n in vgg.names if n.startswith("relu")]
        raise UsageError(
            f"layer(s) {', '.join(missing)} not in this VGG file ({vgg.arch}, relu1_1 … {known[-1]}): "
            "choose other layers or convert the full network"
        )
    deepest = max(layers, key=vgg.names.index)
    pools = sum(1 for n in vgg.names[: vgg.names.index(deepest)] if n.startswith("pool"))
    if min(height, width) < 2**pools:
        raise UsageError(
            f"a {width}×{height} image is too small for {deepest} (needs at least {2**pools} px "
            "on each side): use a larger --size"
        )


def loss_config_for(config: OptimizeConfig, meta: dict[str, str]) -> LossConfig:
    """The loss weights and layers of a run: flags first, else the VGG file's recommended weights."""
    recommended = (
        json.loads(meta["recommended_loss_weights"])
        if "recommended_loss_weights" in meta
        else recommended_weights(meta.get("preprocess", "torchvision"))
    )
    layer_weights = config.style_layer_weights or (1.0,) * len(config.style_layers)
    if len(layer_weights) != len(config.style_layers):
        raise UsageError(
            f"--style-layer-weights has {len(layer_weights)} values but --style-layers names "
            f"{len(config.style_layers)} layers: give one weight per layer"
        )
    flags = {"content": config.content_weight, "style": config.style_weight, "tv": config.tv_weight}
    weights = {key: recommended[key] if flag is None else flag for key, flag in flags.items()}
    return LossConfig(
        content_weight=weights["content"],
        style_weight=weights["style"],
        tv_weight=weights["tv"],
        content_layer=config.content_layer,
        style_layers=tuple(config.style_layers),
        style_layer_weights=tuple(layer_weights),
    )


def noise_image(shape: tuple[int, ...], seed: int, std: float = NOISE_STD) -> mx.array:
    """Mid-grey plus Gaussian noise, clipped to 0–255, float32 of ``shape`` (numpy's seeded generator).

    A moderate σ rather than full-range noise: deep layers barely constrain single pixels, so pixel noise they
    start with survives (see the relu4_3 and relu5_3 tiles of ``docs/layers_wave_fig3.jpg``, from σ = 32).
    """
    rng = np.random.default_rng(seed)
    return mx.array(np.clip(127.5 + std * rng.standard_normal(shape), 0, 255).astype(np.float32))


def initial_image(content: mx.array, init: str, seed: int) -> mx.array:
    if init == "content":
        return content
    if init == "noise":
        return noise_image(tuple(content.shape), seed)
    raise UsageError(f"[initial_image] init must be one of {INITS}, got {init!r}")


def weighted_terms(terms: dict[str, mx.array], loss_config: LossConfig) -> dict[str, float]:
    """λ·ℓ for each term, so the three add up to the total."""
    weights = {"content": loss_config.content_weight, "style": loss_config.style_weight, "tv": loss_config.tv_weight}
    return {name: weights[name] * value.item() for name, value in terms.items()}


def make_objective(vgg: VGG, content: mx.array, style: mx.array, loss_config: LossConfig) -> Callable:
    """``x → (loss, ∂loss/∂x, terms)`` for the image ``x``; the targets are computed once here."""
    target_grams = style_targets(vgg, style, loss_config.style_layers)
    content_features = vgg(content, (loss_config.content_layer,))[loss_config.content_layer]
    mx.eval(target_grams, content_features)
    value_and_grad = mx.value_and_grad(
        lambda x: perceptual_loss(vgg, x, content, target_grams, loss_config, content_features)
    )

    def objective(x: mx.array):
        (total, terms), grad = value_and_grad(x)
        return total, grad, terms

    return objective


def adam_iterate(objective: Callable, x0: mx.array, lr: float) -> Iterator[AdamState]:
    """Yield the state at ``x0``, then after every Adam step on the pixels (one evaluation each)."""
    optimizer = optim.Adam(learning_rate=lr)
    params = {"x": x0}
    f, g, aux = objective(params["x"])
    mx.eval(f, g, aux)
    for iteration in count():
        yield AdamState(params["x"], f.item(), aux, iteration, iteration + 1)
        params = optimizer.apply_gradients({"x": g}, params)
        f, g, aux = objective(params["x"])
        mx.eval(f, g, aux, params, optimizer.state)


def optimizer_states(
    objective: Callable,
    x0: mx.array,
    optimizer: str,
    lr: float | None,
    history_size: int = 10,
    line_search: str = "strong_wolfe",
) -> Iterator:
    """The chosen optimiser's states, from iteration 0 on; each has x, f, aux, iteration, evaluations."""
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    if optimizer == "lbfgs":
        config = lbfgs.LBFGSConfig(history_size=history_size, line_search=line_search, lr=lr)
        return lbfgs.iterate(objective, x0, config, has_aux=True)
    if optimizer == "adam":
        return adam_iterate(objective, x0, lr)
    raise UsageError(f"[optimize] optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def optimize_image(
    vgg: VGG,
    content: mx.array,
    style: mx.array,
    loss_config: LossConfig,
    iters: int,
    init: str = "content",
    optimizer: str = "lbfgs",
    lr: float | None = None,
    seed: int = 0,
    history_size: int = 10,
    line_search: str = "strong_wolfe",
    on_step: Callable[[Any, dict[str, float]], None] | None = None,
) -> OptimizeResult:
    """Minimise the perceptual loss over the pixels for ``iters`` iterations; returns the image and the curve.

    ``content`` and ``style`` are ``(1, H, W, 3)`` RGB 0–255 (sizes may differ). ``on_step(state, terms)`` is
    called at iteration 0 and after every iteration (for progress and snapshots). A KeyboardInterrupt ends the
    run early and keeps what it has (``stopped`` says so).
    """
    _, H, W, _ = content.shape
    check_layers(vgg, loss_config.layers, H, W)
    check_layers(vgg, loss_config.style_layers, style.shape[1], style.shape[2])
    objective = make_objective(vgg, content, style, loss_config)
    states = optimizer_states(objective, initial_image(content, init, seed), optimizer, lr, history_size, line_search)
    result, start, state = OptimizeResult(image=content), time.perf_counter(), None
    try:
        for state in islice(states, iters + 1):
            terms = weighted_terms(state.aux, loss_config)
            result.losses.append(state.f)
            result.terms.append(terms)
            result.image, result.iterations, result.evaluations = state.x, state.iteration, state.evaluations
            if on_step is not None:
                on_step(state, terms)
            if state.converged:
                result.stopped = f"converged: {state.converged}"
    except KeyboardInterrupt:
        result.stopped = "interrupted"
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------------------------------------------------
# Command line


def snapshot_path(output: str | Path, iteration: int) -> Path:
    """``out.png`` → ``out_0050.png`` for the image after iteration 50."""
    output = Path(output)
    return output.with_name(f"{output.stem}_{iteration:04d}{output.suffix}")


def format_progress(
    iteration: int, iters: int, total: float, terms: dict[str, float], rate: float, evaluations: int
) -> str:
    eta = f"ETA {(iters - iteration) / rate / 60:.1f} min" if rate > 0 else "ETA ?"
    return (
        f"iter {iteration:4d}/{iters}  loss {total:.4e}  content {terms['content']:.3e}  "
        f"style {terms['style']:.3e}  tv {terms['tv']:.3e}  {rate:.2f} it/s  {eta}  ({evaluations} evals)"
    )


def load_inputs(config: OptimizeConfig) -> tuple[mx.array, mx.array]:
    """The content and style images as ``(1, H, W, 3)`` float arrays at the requested sizes."""
    content = load_image(config.content)
    if config.size:
        content = resize_max_side(content, config.size)
    style = resize_max_side(load_image(config.style), config.style_size or max(content.shape[:2]))
    return to_batch(content), to_batch(style)


def run(config: OptimizeConfig) -> OptimizeResult:
    """Load everything, optimise with progress on stdout, write the image (and snapshots)."""
    if config.iters < 0 or config.size < 0 or config.save_every < 0 or config.log_every < 1:
        raise UsageError("--iters, --size and --save-every must be ≥ 0 and --log-every ≥ 1")
    if not config.output:
        raise UsageError("give an output path with -o")
    inputs = [config.content, config.style, config.vgg]
    check_image_output(config.output, inputs)
    if config.save_every:
        check_image_output(snapshot_path(config.output, config.save_every), inputs, "-o (its snapshots)")
    vgg, meta = load_loss_network(config.vgg)
    loss_config = loss_config_for(config, meta)
    content, style = load_inputs(config)
    print(
        f"optimising a {content.shape[2]}×{content.shape[1]} image (style {style.shape[2]}×{style.shape[1]}), "
        f"{config.optimizer}, init {config.init}, λ content {loss_config.content_weight:g} style "
        f"{loss_config.style_weight:g} tv {loss_config.tv_weight:g}; terms below are weighted (λ·ℓ)"
    )
    start = time.perf_counter()

    def on_step(state, terms):
        i = state.iteration
        if i % config.log_every == 0 or i == config.iters or state.converged:
            rate = i / max(time.perf_counter() - start, 1e-9)
            print(format_progress(i, config.iters, state.f, terms, rate, state.evaluations), flush=True)
        if config.save_every and i > 0 and i % config.save_every == 0 and i < config.iters:
            save_image(snapshot_path(config.output, i), np.asarray(state.x))

    result = optimize_image(
        vgg,
        content,
        style,
        loss_config,
        config.iters,
        init=config.init,
        optimizer=config.optimizer,
        lr=config.lr,
        seed=config.seed,
        history_size=config.history_size,
        line_search=config.line_search,
        on_step=on_step,
    )
    save_image(config.output, np.asarray(result.image))
    note = f" ({result.stopped})" if result.stopped else ""
    print(
        f"wrote {config.output}: {result.iterations} iterations, {result.evaluations} loss evaluations in "
        f"{result.seconds:.1f} s{note}"
    )
    return result
