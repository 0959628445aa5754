"""Train the same recipe as ``mlx-style train`` in PyTorch, as a yardstick for quality and time.

    python -m scripts.bench.train_torch_reference --style ../shared/data/styles/wave.jpg \
        --data ../shared/data/content/train --image-size 128 --batch-size 4 --iters 400 \
        --output weights/cmp_torch_wave128.safetensors --log runs/cmp_torch/log.jsonl

Same recipe, step for step: the same content files, held-out samples and batch order (``mlx_style.training.data``'s
iterator with the same ``--seed``), the same initial network weights (MLX's initialisation, copied), the same
style Grams' input, loss layers and weights (the VGG file's recommended ones unless given), per-tensor
clipping, bias-corrected Adam at the same learning rate. The result is saved as an MLX weight file, so
``mlx-style stylize`` and ``scripts.bench.compare_training`` treat both networks alike. A dev check: it needs
``pip install torch safetensors``; the package never imports torch. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_style.io.image import load_image, resize_max_side
from mlx_style.io.models import save_transformer
from mlx_style.training.config import TrainConfig, loss_config
from mlx_style.training.data import BatchIterator, plan_data
from mlx_style.nn.transformer import TransformerNet
from mlx_style.io.weights import file_sha256
from mlx_style.bench import torch_twin


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--vgg", default=d.vgg)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--clip", choices=("tensor", "global", "none"), default=d.clip)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--content-weight", type=float)
    p.add_argument("--style-weight", type=float)
    p.add_argument("--tv-weight", type=float)
    p.add_argument("--style-layers", type=lambda t: tuple(t.split(",")), default=d.style_layers)
    p.add_argument("--style-layer-weights", type=lambda t: tuple(float(v) for v in t.split(",")))
    p.add_argument("--content-layer", default=d.content_layer)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--residual-blocks", type=int, default=d.residual_blocks)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--output", required=True, help="MLX-format weight file to write")
    p.add_argument("--log", required=True, help="JSON-lines log, one record per --log-every steps")
    p.add_argument("--log-every", type=int, default=10)
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        style=args.style,
        data=args.data,
        vgg=args.vgg,
        image_size=args.image_size,
        batch_size=args.batch_size,
        iters=args.iters,
        lr=args.lr,
        clip=args.clip,
        seed=args.seed,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        output=args.output,
        style_layers=args.style_layers,
        style_layer_weights=args.style_layer_weights,
        content_layer=args.content_layer,
        width=args.width,
        residual_blocks=args.residual_blocks,
    )
    plan = plan_data(config, print)
    vgg, meta = torch_twin.load_torch_vgg(torch, config.vgg)
    losses = loss_config(config, meta)
    style = resize_max_side(load_image(config.style), config.style_size or config.image_size)
    grams = torch_twin.style_grams(torch, vgg, style[None].astype(np.float32), losses.style_layers)

    mx.random.seed(config.seed)  # the MLX run's initial weights, exactly
    mlx_net = TransformerNet(config.network_config())
    init = {k: np.asarray(v) for k, v in tree_flatten(mlx_net.parameters())}
    net = torch_twin.net_from_mlx(torch, init, config.network_config())
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    loss_fn = torch_twin.make_loss(torch, vgg, grams, losses)

    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads: {plan.total_steps} steps, batch "
        f"{config.batch_size} × {config.image_size}², weights content {losses.content_weight:g} style "
        f"{losses.style_weight:g} tv {losses.tv_weight:g}",
        flush=True,
    )
    train_seconds, window, window_start = 0.0, 0, time.perf_counter()
    with (
        open(log_path, "w") as log,
        BatchIterator(
            plan.source, config.seed, 0, plan.total_steps, config.batch_size, 0, 1, config.prefetch
        ) as batches,
    ):
        for step_index, batch in batches:
            began = time.perf_counter()
            content = torch.from_numpy(np.asarray(batch, np.float32)).permute(0, 3, 1, 2).contiguous()
            optimizer.zero_grad(set_to_none=True)
            total, terms = loss_fn(net(content), content)
            total.backward()
            torch_twin.clip_per_tensor_(torch, net, config.clip)
            optimizer.step()
            train_seconds += time.perf_counter() - began
            window += 1
            step = step_index + 1
            if step % args.log_every == 0 or step == plan.total_steps:
                now = time.perf_counter()
                record = {
                    "step": step,
                    "loss": total.item(),
                    **{k: v.item() for k, v in terms.items()},
                    "images_per_s": window * config.batch_size / (now - window_start),
                    "train_seconds": train_seconds,
                }
                window, window_start = 0, now
                log.write(json.dumps(record) + "\n")
                log.flush()
                print(
                    f"step {step}/{plan.total_steps} loss {record['loss']:.5g} content {record['content']:.4g} "
                    f"style {record['style']:.4g} tv {record['tv']:.4g} {record['images_per_s']:.2f} img/s",
                    flush=True,
                )
    trained = torch_twin.net_to_mlx_arrays(net, config.network_config())
    mlx_net.load_weights([(k, mx.array(v)) for k, v in trained.items()], strict=True)
    meta_out = {
        "train_config": json.dumps({**asdict(config), "framework": f"torch {torch.__version__}"}),
        "loss_config": json.dumps(asdict(losses)),
        "style": Path(config.style).name,
        "style_sha256": file_sha256(config.style),
        "trained_with": "scripts.bench.train_torch_reference",
    }
    save_transformer(args.output, mlx_net, meta_out)
    print(f"wrote {args.output} after {train_seconds:.0f} s of training steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
