"""PyTorch beside MLX in ``mlx-style bench --torch``: the twin on the device that matches MLX's, its timing, and
how far its output is from MLX's. Imported only when ``--torch`` is given (PyTorch is optional)."""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np

from mlx_style.bench.inference import summarise
from mlx_style.bench.torch_twin import twin_of
from mlx_style.nn.transformer import TransformerNet


def torch_device_name(torch) -> str | None:
    """The PyTorch device matching MLX's default device, or None when PyTorch lacks it."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "mps" if torch.backends.mps.is_available() else None
    return "cuda" if torch.cuda.is_available() else None


def make_torch_net(net: TransformerNet):
    """``(torch module, its device name, torch)`` with ``net``'s weights, or raise ImportError."""
    import torch

    device = torch_device_name(torch)
    if device is None:
        raise ImportError(f"PyTorch has no device matching MLX's {mx.default_device()}")
    return twin_of(torch, net, device), device, torch


def torch_max_difference(net: TransformerNet, module, torch, device: str, size=(64, 48)) -> float:
    """max |MLX − PyTorch| on one random float32 image (0–255 scale): the two really are the same network."""
    H, W = size
    x = np.random.default_rng(0).uniform(0, 255, (1, H, W, 3)).astype(np.float32)
    mlx_out = np.asarray(net(mx.array(x)))
    with torch.inference_mode():
        torch_out = module(torch.from_numpy(x.transpose(0, 3, 1, 2)).to(device)).float().cpu().numpy()
    return float(np.max(np.abs(mlx_out - torch_out.transpose(0, 2, 3, 1))))


def bench_torch(module, torch, device: str, H: int, W: int, dtype: str, warmup: int, repeats: int) -> dict:
    """``ms_p50, ms_p95, fps`` for the PyTorch module (synchronising the device around each call)."""
    tdtype = getattr(torch, dtype)
    module = module.to(tdtype)
    sync = {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}.get(device, lambda: None)
    x = (torch.rand(1, 3, H, W, device=device) * 255).to(tdtype)
    with torch.inference_mode():
        for _ in range(max(1, warmup)):
            module(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            sync()
            times.append(time.perf_counter() - start)
    module.to(torch.float32)
    return summarise(times)
