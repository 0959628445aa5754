"""Where freed memory goes between steps on the CPU backend: kept for reuse, without growing the process.

MLX's CPU allocator takes memory with ``malloc`` and, below its cache limit, keeps each freed buffer for a later
request of (almost) the same size. Its Linux default keeps 32 MB: every large temporary then goes back to the
OS and is faulted in again on the next call (a 64 MB elementwise op took 70 ms instead of 10). A cache of half
the memory limit fixed the speed but not the size: buffers of one size cannot serve another, so a training step
at batch 8 × 256² held 11.5–13.4 GB resident for 4.3 GB in use.

On Linux with glibc, ``keep_freed_memory`` instead asks ``malloc`` itself to keep freed memory: no ``mmap`` for
large blocks (they come from the heap, where freed neighbours merge and are split again for any size), no
trimming of the heap's top, and one arena for every thread. The pages stay resident, so there are no repeated
page faults, and the process holds about its peak in use. MLX's own cache is then set to zero, so each free
reaches ``malloc``. ``release_freed_memory`` hands what is free back to the OS (after the convolution tuning,
whose candidates briefly need far more than the step).

Elsewhere (macOS, or a GPU backend, whose allocators are not ``malloc``'s) ``keep_freed_memory`` raises MLX's
cache limit instead, as before. Set ``MLX_STYLE_MALLOC=mlx`` to use MLX's cache on Linux too.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

import mlx.core as mx

ENV_VAR = "MLX_STYLE_MALLOC"
CACHE_FRACTION = 0.5  # of MLX's memory limit that MLX's cache may hold where glibc's heap is not used
# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_TRIM_NEVER = 2**31 - 1  # the largest value mallopt takes: the heap's top is not returned while training

_glibc_configured = False


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc's handle, or None on another C library or platform."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _cpu_only() -> bool:
    """Whether MLX has no GPU backend in this process (its allocator is then the malloc-based CPU one)."""
    cuda = getattr(mx, "cuda", None)
    return not (mx.metal.is_available() or (cuda is not None and cuda.is_available()))


def uses_glibc_heap() -> bool:
    """Whether ``keep_freed_memory`` lets glibc keep freed memory here (Linux, glibc, CPU backend, not opted out)."""
    return os.environ.get(ENV_VAR, "").strip().lower() != "mlx" and _cpu_only() and _libc() is not None


def keep_freed_memory(cache_bytes: int | None = None) -> str:
    """Keep freed memory in the process for reuse; returns ``"glibc"`` or ``"mlx-cache"`` (which was used).

    With glibc (see the module docstring) MLX's cache limit becomes 0. Otherwise MLX's cache limit is raised to
    ``cache_bytes`` (default: ``CACHE_FRACTION`` of MLX's memory limit) and never lowered: on a Mac's GPU MLX
    already caches up to its memory limit.
    """
    global _glibc_configured
    if uses_glibc_heap():
        if not _glibc_configured:
            libc = _libc()
            libc.mallopt(_M_ARENA_MAX, 1)
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER)
            _glibc_configured = True
        mx.set_cache_limit(0)
        return "glibc"
    if cache_bytes is None:
        cache_bytes = int(CACHE_FRACTION * mx.get_memory_limit())
    previous = mx.set_cache_limit(cache_bytes)
    if previous > cache_bytes:
        mx.set_cache_limit(previous)
    return "mlx-cache"


def release_freed_memory() -> None:
    """Give every freed buffer back: MLX's cache, then (with glibc) the free pages of ``malloc``'s heap."""
    mx.clear_cache()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def resident_bytes() -> int:
    """The process's resident set size now (Linux ``/proc/self/statm``), or 0 where that is not available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
