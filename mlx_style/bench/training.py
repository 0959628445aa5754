"""Timing the trainer's own compiled step in this one process (``mlx-style bench --train``)."""

from __future__ import annotations

import time
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from mlx_style.nn.losses import style_targets
from mlx_style.nn.transformer import TransformerConfig, TransformerNet
from mlx_style.io.vgg_weights import load_vgg
from mlx_style.training.config import TrainConfig, loss_config
from mlx_style.training.step import make_train_step


def bench_train(config, log=print) -> dict:
    """Training images/s with the trainer's own compiled step, or ``{"skipped": reason}``."""
    if not Path(config.vgg).exists():
        return {"skipped": f"no VGG weights at {config.vgg}: run `python scripts/convert_vgg.py`"}
    B, S, steps = config.train_batch, config.train_size, config.train_steps
    vgg, meta = load_vgg(config.vgg)
    losses = loss_config(TrainConfig(), meta)
    rng = np.random.default_rng(0)
    grams = style_targets(vgg, mx.array(rng.uniform(0, 255, (1, S, S, 3)).astype(np.float32)), losses.style_layers)
    mx.random.seed(0)
    net = TransformerNet(TransformerConfig())
    net.train()
    optimizer = optim.Adam(learning_rate=1e-3)
    optimizer.init(net.trainable_parameters())
    # the trainer's own step, compiled (unless --compile no) and recomputing (or not) as the trainer decides here
    step = make_train_step(
        net,
        vgg,
        optimizer,
        grams,
        losses,
        compile=config.compile != "no",
        recompute=TrainConfig(batch_size=B, image_size=S).recomputes(),
    )
    batch = mx.array(rng.integers(0, 256, (B, S, S, 3), dtype=np.uint8))
    state = [net.state, optimizer.state]
    log(
        f"training: batch {B} × {S}², 1 warm-up step + {steps} timed, in this one process (on a CPU "
        "`mlx-style train` runs one process per core: `python -m scripts.bench.bench_train` times that) ..."
    )
    start = time.perf_counter()
    mx.eval(step(batch), state)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        mx.eval(step(batch), state)
        times.append(time.perf_counter() - start)
    s_p50 = float(np.median(times))
    return {
        "batch": B,
        "size": S,
        "steps": steps,
        "compiled": config.compile != "no",
        "s_per_step_p50": s_p50,
        "s_first_step": first,
        "images_per_s": B / s_p50,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
    }
