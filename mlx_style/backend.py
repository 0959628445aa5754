"""Backend policy: which MLX backend runs (CPU, CUDA, Metal) and every choice that depends on it, in one place.

Callers ask here instead of testing devices themselves:

- ``backend_name()`` / ``on_gpu()``: where MLX's default device computes.
- ``compile_inference()``: whether an inference forward is ``mx.compile``d by default (a GPU: yes; the CPU backend
  builds fused kernels with a C++ compiler at every new shape and then ran no faster).
- ``elementwise_max_pool()``: the VGG max-pool's formulation (``nn.ops.max_pool_2x2``).
- ``conv_prefers_direct()``: whether ``mx.conv2d`` (cuDNN) is the untuned convolution (``nn.conv.heuristic``).
- ``recompute_above_pixels()``: above how many batch pixels training recomputes the residual blocks.
- ``cam_default_size()``: the cam's processing size on a GPU (a CPU measures it at start-up instead).
- ``processes_for_training()``: how many local processes ``train --processes auto`` starts.
- ``native_depthwise()``: whether a depthwise convolution is ``mx.conv2d(..., groups=C)`` (``nn.ops.depthwise_conv``).
- ``whole_bytes_per_pixel()`` / ``tile_threshold()``: what a whole-image pass of a style network allocates, and
  above which size an image runs in tiles instead (``infer.stylize``).

The numbers behind these choices are in docs/benchmarks.md and docs/notes/performance_details.md. Memory (below)
is the CPU allocator's policy.

Where freed memory goes between steps on the CPU backend: kept for reuse, without growing the process.

MLX's CPU allocator takes memory with ``malloc`` and, below its cache limit, keeps each freed buffer for a later
request of (almost) the same size. Its Linux default keeps 32 MB: every large temporary then goes back to the
OS and is faulted in again on the next call, which makes large elementwise ops much slower. A cache of
half the memory limit fixed the speed but not the size: buffers of one size cannot serve another, so a training
step held far more resident than it had in use (docs/notes/tried_and_not_kept.md).

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

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx

from mlx_style import platform as host

# Batch pixels on one machine above which training recomputes the residual blocks by default (None: never).
# CPU: recomputing costs one more forward pass of the blocks per step, so only where memory would otherwise
# pass PyTorch's (docs/notes/performance_details.md); CUDA: the activations fit, speed wins; Metal: always, since a
# Mac's GPU shares the machine's memory.
RECOMPUTE_ABOVE_PIXELS = {"cpu": 2 * 256 * 256, "metal": 0, "cuda": None}
GPU_CAM_SIZE = 512  # the cam's processing size on a GPU (longer side); a CPU measures its own at start-up
MAX_AUTO_PROCESSES = 8  # local training processes `--processes auto` may start on a CPU


def backend_name() -> str:
    """``"cpu"``, ``"metal"`` or ``"cuda"`` (``"gpu"`` for another GPU backend): where the default device runs."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    return "cuda" if cuda is not None and cuda.is_available() else "gpu"


def on_gpu(device: mx.Device | mx.DeviceType | None = None) -> bool:
    """Whether ``device`` (default: MLX's default device) is a GPU."""
    device = device if device is not None else mx.default_device()
    return getattr(device, "type", device) == mx.DeviceType.gpu


def compile_inference(device: mx.Device | mx.DeviceType | None = None) -> bool:
    """Whether an inference forward is compiled by default: on a GPU only."""
    return on_gpu(device)


def elementwise_max_pool() -> bool:
    """The fused elementwise max-pool on a GPU; ``mx.max`` over a reshape on the CPU, where it is faster."""
    return on_gpu()


def conv_prefers_direct(device: mx.Device | mx.DeviceType | None = None) -> bool:
    """Whether the untuned convolution is ``mx.conv2d`` itself (cuDNN or Metal) rather than a GEMM rearrangement."""
    return on_gpu(device)


def recompute_above_pixels(backend: str | None = None) -> int | None:
    """Batch pixels held on this machine above which training recomputes the residual blocks; None: never.
    An unknown backend always recomputes (0)."""
    return RECOMPUTE_ABOVE_PIXELS.get(backend or backend_name(), 0)


def cam_default_size() -> int | None:
    """The cam's processing size where it is fixed (a GPU); None on a CPU, which measures it."""
    return GPU_CAM_SIZE if on_gpu() else None


def native_depthwise(device: mx.Device | mx.DeviceType | None = None) -> bool:
    """Whether a depthwise convolution is MLX's grouped ``mx.conv2d`` (a GPU's native kernel) rather than a sum of
    ``k²`` strided slices, which is several times faster on the CPU, whose grouped convolution is slow."""
    return on_gpu(device)


# Whole images or tiles (``infer.stylize``). The CPU's convolutions unfold their input (im2col and its kin): a whole
# pass peaked near 12 KB per network pixel there (docs/notes/performance_details.md), so images above 512² run in
# tiles. A GPU's convolutions (Metal's implicit GEMM and Winograd, cuDNN) unfold nothing: a pass holds a few of the
# network's largest activations at once, so whole frames run up to what the device's memory holds. The GPU numbers
# are an estimate from the activations, not yet measured on a Mac (docs/mac.md).
CPU_TILE_SIZE = 512
CPU_WHOLE_BYTES_PER_PIXEL = 12_000
GPU_ACTIVATION_FACTOR = 6  # the largest stage's input and output, its padding and norm temporaries, the allocator
GPU_MEMORY_SHARE = 0.5  # of the device's memory one whole image may take: the rest for the model, the cam, the OS
MIN_TILE_SIZE = 64  # the smallest tile `stylize --tile-size` accepts


def gpu_memory_bytes() -> int | None:
    """The GPU's memory as MLX reports it (Metal: its recommended working set; CUDA: the device's total), or None."""
    info_of = getattr(mx, "device_info", None) or getattr(mx.metal, "device_info", None)
    try:
        info = info_of() if info_of is not None else {}
    except Exception:  # noqa: BLE001  (no GPU, or an MLX without the call: unknown)
        return None
    for key in ("max_recommended_working_set_size", "memory_size", "total_memory"):
        if isinstance(info.get(key), int) and info[key] > 0:
            return info[key]
    return None


def whole_bytes_per_pixel(activation_bytes_per_pixel: float, backend: str | None = None) -> float:
    """Peak bytes per network pixel of a whole-image pass, given the network's largest activations per pixel
    (a stage's input and output): the CPU's measured constant, or ``GPU_ACTIVATION_FACTOR`` × them on a GPU."""
    if (backend or backend_name()) == "cpu":
        return CPU_WHOLE_BYTES_PER_PIXEL
    return GPU_ACTIVATION_FACTOR * activation_bytes_per_pixel


def tile_threshold(bytes_per_pixel: float, backend: str | None = None) -> int:
    """The side of the largest square image (network pixels) run as one whole pass; larger ones run in tiles.
    ``bytes_per_pixel``: ``whole_bytes_per_pixel``'s. CPU: ``CPU_TILE_SIZE``; a GPU: what ``GPU_MEMORY_SHARE`` of
    its memory holds (``CPU_TILE_SIZE`` when the memory is unknown)."""
    if (backend or backend_name()) == "cpu":
        return CPU_TILE_SIZE
    memory = gpu_memory_bytes()
    if not memory or bytes_per_pixel <= 0:
        return CPU_TILE_SIZE
    return max(MIN_TILE_SIZE, int((GPU_MEMORY_SHARE * memory / bytes_per_pixel) ** 0.5))


def processes_for_training(backend: str, batch_size: int, cores: int) -> int:
    """How many local processes ``--processes auto`` starts: on the CPU backend, whose elementwise ops run on one
    core each, the largest divisor of the batch up to the cores (at most ``MAX_AUTO_PROCESSES``); else 1."""
    if backend != "cpu" or cores < 2:
        return 1
    limit = min(cores, MAX_AUTO_PROCESSES, batch_size)
    return max(n for n in range(1, limit + 1) if batch_size % n == 0)


# ---------------------------------------------------------------------------------------------------------------
# Memory

MALLOC_ENV = "MLX_STYLE_MALLOC"
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
    return os.environ.get(MALLOC_ENV, "").strip().lower() != "mlx" and _cpu_only() and _libc() is not None


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
    """The process's resident set size now (Linux ``/proc``, macOS ``ps``: ``platform.resident_bytes``), or 0."""
    return host.resident_bytes()


def available_memory_bytes() -> int | None:
    """Memory the process could still take without swapping (Linux ``MemAvailable``, macOS ``vm_stat``:
    ``platform.available_memory_bytes``), or None where it cannot be read."""
    return host.available_memory_bytes()
