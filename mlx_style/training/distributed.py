"""Collectives between the ranks of a data-parallel run: rank 0's state for all, agreeing to stop, summed memory."""

from __future__ import annotations


import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from mlx_style.backend import resident_bytes
from mlx_style.training.launch import launcher_bytes


def broadcast_from_rank0(net: nn.Module, optimizer: optim.Optimizer, step: int, group) -> int:
    """Give every rank rank 0's network, optimizer state and step (only rank 0 reads checkpoints).

    An ``all_sum`` to which the other ranks contribute zeros; exact, since x + 0 = x.
    """
    if group.size() == 1:
        return step
    keep = group.rank() == 0

    def share(x):
        return mx.distributed.all_sum(x if keep else mx.zeros_like(x), group=group)

    def share_tree(tree):
        # In key order: every rank must issue the same collectives in the same order, and a restored optimizer
        # state lists its entries in the checkpoint file's order, not in the order a fresh one has them.
        return tree_unflatten([(k, share(v)) for k, v in sorted(tree_flatten(tree), key=lambda item: item[0])])

    net.update(share_tree(net.parameters()))
    optimizer.state = share_tree(optimizer.state)
    optimizer.init(net.trainable_parameters())
    step = int(share(mx.array(step)).item())
    mx.eval(net.parameters(), optimizer.state)
    return step


def agree(flag: bool, group) -> bool:
    """True on every rank if it is true on any, so all ranks stop after the same step."""
    if group.size() == 1:
        return flag
    return bool(mx.distributed.all_sum(mx.array(int(flag)), group=group).item())


def machine_memory_gb(group, local: int) -> tuple[float, float]:
    """This process's peak MLX memory and resident size in GB; when all ranks share this machine, summed over them,
    the resident size with the launcher's (``launch.run_local``) too."""
    peak, resident = mx.get_peak_memory() / 1e9, resident_bytes() / 1e9
    if group.size() > 1 and local == group.size():
        if group.rank() == 0:
            resident += launcher_bytes() / 1e9
        total = mx.distributed.all_sum(mx.array([peak, resident], mx.float32), group=group).tolist()
        peak, resident = total
    return peak, resident
