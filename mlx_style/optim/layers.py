"""Layer studies of the style loss: the report's Figure 3, Figure 9 and the appendix's style-layer weights.

``mlx-style layers --style wave.jpg -o grid.png``
    Figure 3 (after Gatys et al. 2016 and Johnson et al. 2016, Fig. 3): starting from noise, reconstruct the
    style image's texture from one layer's Gram matrix at a time (by default relu1_1, relu1_2, relu2_1, relu2_2,
    relu3_1, relu3_3, relu4_3, relu5_3) with L-BFGS, and write the reconstructions as a labelled grid. Shallow
    layers reproduce colours and small blobs, relu2–3 the brush strokes and curls, deeper layers larger
    structures, under pixel noise that they do not see and so never remove (``docs/layers_wave_fig3.jpg``).

``mlx-style layers --style wave.jpg -o grid.png --auto-weights``
    The appendix: the same per-layer reconstruction for the training style layers (relu1_2, relu2_2, relu3_3,
    relu4_3 unless ``--layers`` says otherwise), 60 iterations each, then per-layer weights from the style loss
    each layer has left, printed as a ``mlx-style train`` command line, and Figure 9's per-layer loss
    curves as a PNG (``--plot``, default ``<output>_losses.png``).

The weighting rule (``auto_weights``): after N iterations of matching one layer's Gram matrix alone, starting from
noise, r_j = R_j(N) / R_j(0) is the fraction of that layer's style loss (``losses.style_layer_loss``) still left:
how well the optimiser can match the layer's Gram statistics within the budget (smaller is better). Dividing by
the loss at the start removes each layer's own scale, which is arbitrary: with the Caffe VGG16, relu4_3's raw
Gram loss is about 1000× smaller than relu2_2's for the same image. The weights are
w_j = (1/r_j) / Σ_k (1/r_k): inversely proportional to the remaining fraction, summing to 1, so the layers whose
texture statistics can actually be reproduced (shallow ones: colour and brush-stroke grain) get most of the weight
and the layers that barely move in the budget (deep ones) little. The weights multiply raw losses of very different
scales in the training loss, so a weight alone does not say how much a layer contributes there. They are printed
to three significant figures (so the printed ones sum to 1 within about 0.001). R_j(0) depends on the starting
noise (``optimize.noise_image``), so the weights do a little too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import mlx.core as mx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlx_style.optim import lbfgs
from mlx_style.io.paths import check_image_output
from mlx_style.io.image import load_image, resize_max_side, save_image, to_batch
from mlx_style.nn.losses import STYLE_LAYERS, gram_matrix, style_layer_loss
from mlx_style.optim.gatys import check_layers, load_loss_network, noise_image
from mlx_style.nn.vgg import VGG
from mlx_style.io.vgg_weights import default_vgg
from mlx_style.errors import UsageError

FIGURE3_LAYERS = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_3", "relu4_3", "relu5_3")
# Every layer gets exactly the same number of iterations (the comparison's premise), so the convergence tests are
# off: their absolute tolerances would stop layers whose losses are small (relu5_3's is ~1e-3 with the Caffe VGG16,
# relu2_2's ~1e5) early. Only a line search that finds no decrease at all ends a run sooner.
FIXED_BUDGET = lbfgs.LBFGSConfig(tolerance_grad=0.0, tolerance_change=0.0)
LABEL_HEIGHT = 16  # px under each tile: room for one line of PIL's default font
CURVE_COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


@dataclass
class LayersConfig:
    """One layer study; the CLI's defaults come from here."""

    style: str = ""
    output: str = ""
    vgg: str = field(default_factory=default_vgg)  # the loss network: yours in weights/, else the shipped one
    size: int = 128  # longer side of the style image and of every reconstruction: the grid stays small
    iters: int | None = None  # None: 100 for the grid, 60 with --auto-weights (the appendix's budget)
    layers: tuple[str, ...] | None = None  # None: FIGURE3_LAYERS, or the training layers with --auto-weights
    auto_weights: bool = False
    plot: str | None = None  # Figure 9's loss curves; None: <output>_losses.png with --auto-weights, else none
    columns: int = 4  # tiles per row of the grid
    seed: int = 0  # the same noise starts every layer, so the tiles differ only by the layer

    def resolved_layers(self) -> tuple[str, ...]:
        return self.layers or (STYLE_LAYERS if self.auto_weights else FIGURE3_LAYERS)

    def resolved_iters(self) -> int:
        return self.iters if self.iters is not None else (60 if self.auto_weights else 100)


@dataclass
class Reconstruction:
    layer: str
    image: np.ndarray  # (H, W, 3) float, 0–255, not clipped
    losses: list[float]  # the layer's style loss at iteration 0, 1, 2, …
    evaluations: int
    seconds: float

    @property
    def remaining(self) -> float:
        """The fraction of the starting loss still left after the last iteration."""
        return self.losses[-1] / self.losses[0]


# ---------------------------------------------------------------------------------------------------------------
# Library


def style_objective(vgg: VGG, style: mx.array, layer: str):
    """``x → (loss, ∂loss/∂x)``: the style loss at one layer alone (the network stops at that layer)."""
    target = gram_matrix(vgg(style, (layer,))[layer])
    mx.eval(target)

    def loss(x: mx.array) -> mx.array:
        return style_layer_loss(gram_matrix(vgg(x, (layer,))[layer]), target)

    return mx.value_and_grad(loss)


def reconstruct_style(
    vgg: VGG, style: mx.array, layer: str, iters: int, seed: int = 0, config: lbfgs.LBFGSConfig = FIXED_BUDGET
) -> Reconstruction:
    """Minimise one layer's style loss over an image of the style's size, from noise, with L-BFGS."""
    check_layers(vgg, (layer,), style.shape[1], style.shape[2])
    start, state, losses = time.perf_counter(), None, []
    for state in islice(
        lbfgs.iterate(style_objective(vgg, style, layer), noise_image(style.shape, seed), config), iters + 1
    ):
        losses.append(state.f)
    return Reconstruction(layer, np.asarray(state.x[0]), losses, state.evaluations, time.perf_counter() - start)


def auto_weights(remaining: dict[str, float]) -> dict[str, float]:
    """Per-layer style weights ∝ 1 / remaining fraction of the loss, summing to 1 (see the module docstring)."""
    bad = [name for name, r in remaining.items() if not (math.isfinite(r) and r > 0)]
    if bad:
        raise UsageError(f"remaining style loss of {', '.join(bad)} is not a positive number: cannot weight it")
    inverse = {name: 1.0 / r for name, r in remaining.items()}
    total = sum(inverse.values())
    return {name: v / total for name, v in inverse.items()}


def format_weight(w: float) -> str:
    """Three significant figures, plain decimal notation (``0.7``, ``0.0312``)."""
    return np.format_float_positional(w, precision=3, unique=True, fractional=False, trim="-")


def train_command(weights: dict[str, float]) -> str:
    """The ``mlx-style train`` flags that use these style-layer weights."""
    return (
        f"mlx-style train --style-layers {','.join(weights)} "
        f"--style-layer-weights {','.join(format_weight(w) for w in weights.values())}"
    )


def label_tile(image: np.ndarray, text: str, label_height: int = LABEL_HEIGHT) -> Image.Image:
    """The image (clipped to uint8) with a white strip below it holding ``text`` in PIL's default font."""
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    H, W = pixels.shape[:2]
    tile = Image.new("RGB", (W, H + label_height), "white")
    tile.paste(Image.fromarray(pixels, "RGB"), (0, 0))
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(
        ((W - (right - left)) // 2 - left, H + (label_height - (bottom - top)) // 2 - top),
        text,
        fill="black",
        font=font,
    )
    return tile


def make_grid(tiles: list[Image.Image], columns: int) -> Image.Image:
    """Tiles of equal size, row by row, ``columns`` per row, on white."""
    if not tiles:
        raise UsageError("[make_grid] no tiles")
    W, H = tiles[0].size
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * W, rows * H), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * W, (i // columns) * H))
    return grid


def loss_plot(
    curves: dict[str, list[float]], weights: dict[str, float] | None = None, width: int = 640, height: int = 400
) -> Image.Image:
    """Figure 9: each layer's style loss against the iteration, log scale, one colour per layer.

    ``curves`` are normalised by their first value (the fraction of the loss left); the legend gives each
    layer's last value and, when given, its derived weight.
    """
    margin_left, margin_right, margin_top, margin_bottom = 60, 20, 30, 40
    plot = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(plot)
    font = ImageFont.load_default()
    x0, x1, y0, y1 = margin_left, width - margin_right, margin_top, height - margin_bottom
    values = np.array([v for c in curves.values() for v in c if v > 0 and math.isfinite(v)])
    lo, hi = math.floor(math.log10(values.min())), math.ceil(math.log10(values.max()))
    hi = max(hi, lo + 1)
    n_iters = max(len(c) for c in curves.values()) - 1 or 1
    to_x = lambda i: x0 + (x1 - x0) * i / n_iters  # noqa: E731
    to_y = lambda v: y1 - (y1 - y0) * (math.log10(v) - lo) / (hi - lo)  # noqa: E731
    draw.rectangle((x0, y0, x1, y1), outline="black")
    step = max(1, -(-(hi - lo) // 8))
    for p in range(lo, hi + 1, step):
        y = to_y(10.0**p)
        draw.line((x0 - 4, y, x0, y), fill="black")
        draw.line((x0 + 1, y, x1 - 1, y), fill=(225, 225, 225))
        draw.text((x0 - 6, y), f"1e{p}", fill="black", font=font, anchor="rm")
    for k in range(6):
        i = round(n_iters * k / 5)
        draw.line((to_x(i), y1, to_x(i), y1 + 4), fill="black")
        draw.text((to_x(i), y1 + 6), str(i), fill="black", font=font, anchor="mt")
    draw.text(((x0 + x1) / 2, height - 4), "L-BFGS iteration", fill="black", font=font, anchor="md")
    draw.text(
        ((x0 + x1) / 2, 6),
        "fraction of each layer's style loss left, optimised alone from noise",
        fill="black",
        font=font,
        anchor="mt",
    )
    for k, (name, curve) in enumerate(curves.items()):
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        points = [(to_x(i), to_y(v)) for i, v in enumerate(curve) if v > 0 and math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    # The legend goes on top of the curves, on white, so it stays readable wherever they run.
    draw.rectangle((x1 - 196, y0 + 1, x1 - 1, y0 + 2 + 14 * len(curves)), fill="white", outline=(160, 160, 160))
    for k, (name, curve) in enumerate(curves.items()):
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        legend = f"{name}  left {curve[-1]:.3g}" + (f"  w {format_weight(weights[name])}" if weights else "")
        ly = y0 + 8 + 14 * k
        draw.line((x1 - 190, ly, x1 - 170, ly), fill=colour, width=3)
        draw.text((x1 - 165, ly), legend, fill="black", font=font, anchor="lm")
    return plot


# ---------------------------------------------------------------------------------------------------------------
# Command line


def plot_path(config: LayersConfig) -> Path | None:
    if config.plot:
        return Path(config.plot)
    if config.auto_weights:
        output = Path(config.output)
        return output.with_name(f"{output.stem}_losses.png")
    return None


def run(config: LayersConfig) -> dict[str, Reconstruction]:
    """Reconstruct per layer with progress on stdout; write the grid, the plot, and print the weights."""
    layers, iters = config.resolved_layers(), config.resolved_iters()
    if iters < 1 or config.size < 1 or config.columns < 1:
        raise UsageError("--iters, --size and --columns must be at least 1")
    if not config.output:
        raise UsageError("give an output path with -o")
    check_image_output(config.output, [config.style, config.vgg])
    if plot_path(config) is not None:
        check_image_output(plot_path(config), [config.style, config.vgg], "--plot")
    vgg, _ = load_loss_network(config.vgg)
    style = to_batch(resize_max_side(load_image(config.style), config.size))
    check_layers(vgg, layers, style.shape[1], style.shape[2])
    print(
        f"reconstructing a {style.shape[2]}×{style.shape[1]} texture from noise, one layer at a time, "
        f"{iters} L-BFGS iterations each"
    )
    results = {}
    for layer in layers:
        r = reconstruct_style(vgg, style, layer, iters, config.seed)
        results[layer] = r
        print(
            f"{layer}: style loss {r.losses[0]:.4g} → {r.losses[-1]:.4g} ({r.remaining:.3g} left) "
            f"in {r.seconds:.1f} s, {r.evaluations} evaluations",
            flush=True,
        )
    grid = make_grid([label_tile(r.image, layer) for layer, r in results.items()], config.columns)
    save_image(config.output, np.asarray(grid))
    print(f"wrote {config.output} ({grid.size[0]}×{grid.size[1]})")
    weights = auto_weights({layer: r.remaining for layer, r in results.items()}) if config.auto_weights else None
    path = plot_path(config)
    if path is not None:
        curves = {layer: [v / r.losses[0] for v in r.losses] for layer, r in results.items()}
        save_image(path, np.asarray(loss_plot(curves, weights)))
        print(f"wrote {path}")
    if weights:
        print("style-layer weights ∝ 1 / fraction of the loss left, summing to 1:")
        print(train_command(weights))
    return results
