"""memory: freed memory is kept for reuse at any size (glibc's heap) without the process growing."""

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import pytest

from mlx_style import backend as memory  # the allocator policy lives with the backend's

needs_glibc = pytest.mark.skipif(
    not memory.uses_glibc_heap(), reason="glibc's heap is used only on Linux with glibc and MLX's CPU backend"
)


def cache_limit() -> int:
    limit = mx.set_cache_limit(0)
    mx.set_cache_limit(limit)
    return limit


@pytest.fixture
def restore_cache_limit():
    original = cache_limit()
    yield
    mx.set_cache_limit(original)


@needs_glibc
def test_glibc_heap_reuses_freed_memory_for_other_sizes(restore_cache_limit):
    assert memory.keep_freed_memory() == "glibc"
    assert cache_limit() == 0
    memory.release_freed_memory()
    before = memory.resident_bytes()
    # 24 temporaries of ~32 MB, each a different size: MLX's size-matched cache would keep every one (~770 MB);
    # the heap merges each freed block and hands it out again.
    for i in range(24):
        y = mx.full(((8 << 20) - i * 4096,), 2.0)
        mx.eval(y)
        del y
    grown = memory.resident_bytes() - before
    assert mx.get_cache_memory() == 0
    assert grown < 200e6, f"resident size grew by {grown / 1e6:.0f} MB"


@needs_glibc
def test_release_freed_memory_returns_the_heap_to_the_os(restore_cache_limit):
    memory.keep_freed_memory()
    memory.release_freed_memory()
    before = memory.resident_bytes()
    big = mx.ones((64 << 20,))  # 256 MB
    mx.eval(big)
    held = memory.resident_bytes() - before
    del big
    kept = memory.resident_bytes() - before
    memory.release_freed_memory()
    released = memory.resident_bytes() - before
    assert held > 200e6 and kept > 200e6, (held, kept)  # freed, but kept resident for reuse
    assert released < 50e6, f"{released / 1e6:.0f} MB still resident after release_freed_memory"


def test_mlx_cache_is_raised_and_never_lowered_where_the_heap_is_not_used(monkeypatch, restore_cache_limit):
    monkeypatch.setenv(memory.MALLOC_ENV, "mlx")
    mx.set_cache_limit(32 << 20)  # the Linux CPU default
    assert memory.keep_freed_memory() == "mlx-cache"
    assert cache_limit() == int(memory.CACHE_FRACTION * mx.get_memory_limit())
    mx.set_cache_limit(mx.get_memory_limit())  # as on a Mac's GPU: already larger
    memory.keep_freed_memory(1 << 30)
    assert cache_limit() == mx.get_memory_limit()


def test_resident_bytes_reads_this_process():
    assert memory.resident_bytes() > 10e6  # Python and MLX alone are more than this
