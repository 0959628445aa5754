"""The shapes and the one data-movement primitive the convolution strategies (``nn.conv_strategies``) share:
window sums with a custom VJP (MLX's own VJP of a slice allocates per window), and the stride phases of a kernel."""

from __future__ import annotations


import mlx.core as mx

from mlx_style.errors import UsageError

# ----------------------------------------------------------------------------------------------- shapes


def out_size(n: int, k: int, s: int) -> int:
    return (n - k) // s + 1


def padded_shape(x_shape, padding: int) -> tuple:
    """The NHWC shape after zero-padding both spatial axes by ``padding`` on each side."""
    n, h, w, c = x_shape
    return (n, h + 2 * padding, w + 2 * padding, c)


def check(x: mx.array, weight: mx.array, stride: int, padding: int = 0) -> None:
    """Raises ValueError for arguments ``mx.conv2d`` would reject or silently misread."""
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise UsageError(f"[conv2d] stride must be a positive int, got {stride!r}")
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise UsageError(f"[conv2d] padding must be a non-negative int, got {padding!r}")
    if x.ndim != 4 or weight.ndim != 4:
        raise UsageError(f"[conv2d] expected NHWC input and OHWI weight (4-D), got {x.shape} and {weight.shape}")
    if x.shape[3] != weight.shape[3]:
        raise UsageError(
            f"[conv2d] input has {x.shape[3]} channels but weight expects {weight.shape[3]} "
            f"(input {x.shape}, weight {weight.shape})"
        )
    h, w = x.shape[1] + 2 * padding, x.shape[2] + 2 * padding
    if weight.shape[1] > h or weight.shape[2] > w:
        raise UsageError(
            f"[conv2d] kernel {weight.shape[1:3]} is larger than the padded input {(h, w)} "
            "(pad more, or use a smaller kernel)"
        )


# ------------------------------------------------------------------- the one data-movement primitive


def window_sums(y: mx.array, groups: tuple, ho: int, wo: int) -> mx.array:
    """Stack, over groups, of sums of (ho, wo) windows: both im2col's gather and taps' shifted sum.

    ``groups[g]`` is a tuple of terms ``(p, di, dj)`` or ``(p, di, dj, coef)``; output group g is the sum
    over its terms of ``coef * y[:, p, :, di:di + ho, dj:dj + wo]`` (coef 1 when absent). im2col uses one
    term per group, taps one group of all taps, winograd's transforms 4 or 9 signed terms per group. The
    adjoint is the same operation on the zero-padded cotangent with the roles of g and p swapped, and a
    custom VJP says so: MLX's own VJP of a slice allocates a zero array the size of ``y`` per window.

    Shape:
        - y: (N, P, C, H, W)
        - output: (N, len(groups), C, ho, wo)
    """

    @mx.custom_function
    def forward(y):
        sums = []
        for terms in groups:
            total = None
            for p, di, dj, *coef in terms:
                part = y[:, p, :, di : di + ho, dj : dj + wo]
                part = part * coef[0] if coef and coef[0] != 1 else part
                total = part if total is None else total + part
            sums.append(total)
        return mx.stack(sums, axis=1) if len(sums) > 1 else mx.expand_dims(sums[0], 1)  # no copy for one

    @forward.vjp
    def backward(primals, cot, _out):
        y = primals[0] if isinstance(primals, (list, tuple)) else primals
        h, w = y.shape[-2:]
        ph = max(term[1] for terms in groups for term in terms)
        pw = max(term[2] for terms in groups for term in terms)
        # Pixel (r, c) of plane p collects cot[g] at (r - di, c - dj) for every term (p, di, dj) of group g:
        # a window at (ph - di, pw - dj) of the cotangent padded by (ph, pw) in front and to size (h+ph, w+pw).
        back = [[] for _ in range(y.shape[1])]
        for g, terms in enumerate(groups):
            for p, di, dj, *coef in terms:
                back[p].append((g, ph - di, pw - dj, *coef))
        padded = mx.pad(cot, [(0, 0)] * 3 + [(ph, h - ho), (pw, w - wo)])
        if all(back):
            return window_sums(padded, tuple(map(tuple, back)), h, w)
        # A plane no window reads (stride > kernel) gets a zero gradient.
        used = [p for p in range(y.shape[1]) if back[p]]
        got = window_sums(padded, tuple(tuple(back[p]) for p in used), h, w)
        zero = mx.zeros(y.shape[:1] + y.shape[2:], y.dtype)
        return mx.stack([got[:, used.index(p)] if back[p] else zero for p in range(y.shape[1])], axis=1)

    return forward(y)


def planes(x: mx.array, s: int) -> mx.array:
    """NHWC -> (N, s², C, ceil(H/s), ceil(W/s)) contiguous: channel-major stride phases (space to depth).

    Channel-major so every window copy moves whole rows (NHWC windows move C_in floats at a time); phases so
    that a stride-s convolution is s² stride-1 ones with no product computed and thrown away. One copy, and
    its VJP is a reshape and a transpose. The zero padding to a multiple of s is never read by a window.
    """
    n, h, w, c = x.shape
    hp, wp = -(-h // s), -(-w // s)
    if (hp * s, wp * s) != (h, w):
        x = mx.pad(x, [(0, 0), (0, hp * s - h), (0, wp * s - w), (0, 0)])
    x = x.reshape(n, hp, s, wp, s, c).transpose(0, 2, 4, 5, 1, 3)
    return mx.contiguous(x.reshape(n, s * s, c, hp, wp))


def phase_taps(kh: int, kw: int, s: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """Per input phase p = a·s + b: the kernel taps (i, j) with i ≡ a, j ≡ b (mod s), in row-major order.
    Tap (i, j) reads phase p at offset (i // s, j // s)."""
    phases = []
    for a in range(min(s, kh)):
        for b in range(min(s, kw)):
            phases.append((a * s + b, [(i, j) for i in range(a, kh, s) for j in range(b, kw, s)]))
    return phases
