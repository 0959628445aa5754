"""One optimisation step of Johnson et al. 2016, compiled: loss, gradients, averaging, clipping, Adam update.

The step follows mlx-examples' idiom: ``nn.value_and_grad`` over the transformer only (VGG is frozen), the whole
step under ``mx.compile`` with ``[model.state, optimizer.state]`` captured as inputs and outputs, so each call
updates the network and the optimizer in place and the caller runs one ``mx.eval`` per step. The content
features of the batch are computed inside the step (under ``stop_gradient``); the style Gram matrices are
computed once, before training, and enter as constants.

With ``stable`` on (``train --stable``), the step also takes the batch's synthetic motion (``training.motion``:
affine matrices and noise keys, drawn on the host from the seed and the step) and adds the temporal term.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from mlx_style.nn.losses import LossConfig, perceptual_loss
from mlx_style.nn.conv import tune_convs
from mlx_style.training.motion import Motion, StableConfig, temporal_loss
from mlx_style.errors import UsageError

CLIP_MODES = ("tensor", "global", "none")


def clip_per_tensor(grads, max_norm: float = 1.0):
    """``g ← min(1, max_norm/‖g‖)·g`` for each parameter tensor separately (the report's clipping).

    A zero gradient stays zero: ``max_norm/0 = inf`` and ``min(1, inf) = 1``.
    """
    return tree_map(lambda g: g * mx.minimum(1.0, max_norm / mx.sqrt(mx.sum(g * g))), grads)


def clip_gradients(grads, mode: str):
    """Apply the named clipping: ``tensor`` (per tensor, norm 1), ``global`` (global norm 1) or ``none``."""
    if mode == "tensor":
        return clip_per_tensor(grads, 1.0)
    if mode == "global":
        return optim.clip_grad_norm(grads, 1.0)[0]
    if mode == "none":
        return grads
    raise UsageError(f"[clip_gradients] mode must be one of {CLIP_MODES}, got {mode!r}")


def all_finite(tree) -> bool:
    """Whether every array in ``tree`` is free of NaN and Inf (one reduction, one host read)."""
    leaves = [v for _, v in tree_flatten(tree)]
    return bool(mx.all(mx.array([mx.all(mx.isfinite(v)) for v in leaves])).item()) if leaves else True


def make_loss_fn(
    model: nn.Module,
    vgg: nn.Module,
    target_grams: dict[str, mx.array],
    loss_config: LossConfig,
    recompute: bool = False,
    stable: StableConfig | None = None,
    style_rows: mx.array | None = None,
):
    """``loss_fn(content) -> (total, terms)``: stylise the batch, then the perceptual loss against its content.

    ``stable`` (on): ``loss_fn(content, matrices, keys)`` also adds ``stable.weight × terms["temporal"]``
    (``motion.temporal_loss``: the network runs a second time, on the moved batch).

    ``style_rows`` (a multi-style network, ``train --style A B C``): the ``(T, S)`` one-hot rows of the ``T``
    styles the run trains among the network's ``S``. ``target_grams`` then hold those styles' Gram matrices
    stacked ``(T, …)``, and the loss takes ``pick``, the ``(T,)`` one-hot of the batch's style, after ``content``
    (``loss_fn(content, pick[, matrices, keys])``): an input, so one compiled graph serves every style.
    ``loss_config.style_scales`` (one per trained style) then multiply the style weight of each style's steps.

    ``recompute``: gradient checkpointing of the transformer's residual blocks (``nn.utils.checkpoint``; it sets
    ``model.recompute_residual``): each block keeps only its input, and runs again in the backward pass. Same
    losses and gradients, less memory. The blocks work at a quarter of the resolution, so running them twice costs
    little; checkpointing the whole network saved little more memory and took much more time (docs/benchmarks.md).
    """
    layer = loss_config.content_layer
    if recompute and any(isinstance(m, nn.BatchNorm) for _, m in model.named_modules()):
        raise UsageError(
            "[make_loss_fn] recompute needs instance norm: recomputing a batch-norm network's "
            "forward updates its running statistics a second time"
        )
    if recompute and not hasattr(model, "recompute_residual"):
        raise UsageError("[make_loss_fn] recompute needs a TransformerNet (its residual blocks are recomputed)")
    if hasattr(model, "recompute_residual"):
        model.recompute_residual = recompute  # either way: an earlier step's setting must not linger
    stable = stable if stable is not None and stable.on else None

    def for_style(pick):
        """The network as a function of the images, and the Gram targets, for the batch's style."""
        if style_rows is None:
            return model, target_grams
        style = pick @ style_rows
        return (lambda x: model(x, style)), {k: mx.tensordot(pick, v, axes=1) for k, v in target_grams.items()}

    scales = None
    if style_rows is not None and loss_config.style_scales:
        if len(loss_config.style_scales) != style_rows.shape[0]:
            raise UsageError(
                f"[make_loss_fn] {len(loss_config.style_scales)} style scales for {style_rows.shape[0]} styles"
            )
        scales = mx.array(loss_config.style_scales, dtype=mx.float32)

    def loss(content, pick, *motion):
        net, grams = for_style(pick)
        output = net(content)
        content_features = mx.stop_gradient(vgg(content, (layer,))[layer])
        total, terms = perceptual_loss(vgg, output, content, grams, loss_config, content_features)
        if scales is not None:  # this style's weight is style_weight × its scale
            total = total + (pick @ scales - 1.0) * loss_config.style_weight * terms["style"]
        if stable is not None:
            matrices, keys = motion
            terms["temporal"] = temporal_loss(net, content, output, matrices, keys, stable.noise, stable.fixed_target)
            total = total + stable.weight * terms["temporal"]
        return total, terms

    if style_rows is not None:
        return loss
    if stable is not None:
        return lambda content, matrices, keys: loss(content, None, matrices, keys)
    return lambda content: loss(content, None)


def tune_step_convs(
    model: nn.Module,
    vgg: nn.Module,
    target_grams: dict[str, mx.array],
    loss_config: LossConfig,
    batch_shape: tuple[int, ...],
    style_rows: mx.array | None = None,
) -> dict[tuple, str]:
    """Autotune (``conv.tune_convs``) every convolution of a training step on batches of ``batch_shape``.

    One eager forward records the layer shapes; each is then timed forward and backward (both networks are in
    training mode, so ``conv2d`` uses these choices inside the step). Nothing of the model or optimizer changes.
    Choices are cached on disk per device, so only a new size or batch pays for the timing again.
    """
    loss_fn = make_loss_fn(model, vgg, target_grams, loss_config, style_rows=style_rows)
    extra = () if style_rows is None else (mx.eye(style_rows.shape[0])[0],)
    return tune_convs(lambda b: loss_fn(b, *extra)[0], mx.zeros(batch_shape, mx.float32))


def make_train_step(
    model: nn.Module,
    vgg: nn.Module,
    optimizer: optim.Optimizer,
    target_grams: dict[str, mx.array],
    loss_config: LossConfig,
    clip: str = "tensor",
    group: mx.distributed.Group | None = None,
    compile: bool = True,
    recompute: bool = False,
    stable: StableConfig | None = None,
    style_rows: mx.array | None = None,
):
    """Build ``step(batch, motion=None, style=None) -> (total, {"content", "style", "tv"})`` that trains ``model``
    in place.

    Args:
        model: the transformer network (its optimizer state must already be initialised or restored).
        vgg: the frozen loss network.
        optimizer: e.g. ``optim.Adam``.
        target_grams: the style image's Gram matrices, per style layer.
        loss_config: layers and weights of the perceptual loss.
        clip: gradient clipping mode (``CLIP_MODES``).
        group: the distributed group; with more than one process the gradients (and the reported losses) are
            averaged over it, so every rank applies the same update.
        compile: fuse the step with ``mx.compile`` (on the CPU backend each new graph first waits for a C++
            compiler to build every fused kernel of the step; they are cached on disk afterwards).
        recompute: recompute the transformer's residual blocks in the backward pass instead of keeping their
            activations (``make_loss_fn``): saves memory at the cost of one more forward pass of the blocks
            (docs/benchmarks.md).
        stable: the temporal term (``training.motion``); when on, every call needs ``motion``, this rank's
            images' ``Motion`` (``motion.random_motion``), and the terms include ``"temporal"``.
        style_rows: a multi-style network's trained rows (``make_loss_fn``; ``target_grams`` stacked per style);
            every call then needs ``style``, the index (into those rows) of the batch's style. Only the parameters
            left trainable are updated: a run that adds styles to a trained network freezes the rest.

    ``batch`` is this rank's ``(B, H, W, 3)`` images, uint8 or float, 0–255. The losses returned are the
    unweighted terms and the weighted total, averaged over the global batch.
    """
    if clip not in CLIP_MODES:
        raise UsageError(f"[make_train_step] clip must be one of {CLIP_MODES}, got {clip!r}")
    world = group.size() if group is not None else 1
    stable = stable if stable is not None and stable.on else None
    loss_and_grad = nn.value_and_grad(
        model, make_loss_fn(model, vgg, target_grams, loss_config, recompute, stable, style_rows)
    )
    picks = None if style_rows is None else mx.eye(style_rows.shape[0])

    def average(x):
        return mx.distributed.all_sum(x, group=group) / world

    state = [model.state, optimizer.state]

    def step(batch, *extra):  # extra: the style pick of a multi-style network, then (matrices, keys) when stable
        (total, terms), grads = loss_and_grad(batch.astype(mx.float32), *extra)
        if world > 1:
            grads = nn.average_gradients(grads, group)
            total, terms = average(total), {k: average(v) for k, v in terms.items()}
        optimizer.update(model, clip_gradients(grads, clip))
        return total, terms

    run = mx.compile(step, inputs=state, outputs=state) if compile else step

    def train_step(batch, motion: Motion | None = None, style: int | None = None):
        if (style is None) != (picks is None):
            raise UsageError(
                "[make_train_step] "
                + (
                    "pass the batch's style index: the step trains several styles"
                    if style is None
                    else "a style index was given but the step was built for one style"
                )
            )
        extra = () if picks is None else (picks[style],)
        if stable is None:
            if motion is not None:
                raise UsageError("[make_train_step] a motion was given but the step was built without stable")
            return run(batch, *extra)
        if motion is None:
            raise UsageError("[make_train_step] the step was built with stable: pass this batch's motion")
        return run(batch, *extra, mx.array(motion.matrices), mx.array(motion.keys))

    return train_step
