"""Limited-memory BFGS (Liu & Nocedal 1989) on MLX arrays, with a strong-Wolfe or Armijo line search.

MLX has no L-BFGS; Gatys et al. (and the report's image-optimisation baseline) use it, so it lives here, written
after Nocedal & Wright, *Numerical Optimization* (2nd ed.): the two-loop recursion (Algorithm 7.4) with the
initial scaling γ = sᵀy / yᵀy (eq. 7.20), the strong-Wolfe line search (Algorithms 3.5 and 3.6) with safeguarded
cubic interpolation (eq. 3.59) as in minFunc and ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``, and
Armijo backtracking with a safeguarded quadratic step as the cheaper alternative.

The variable is any MLX array (an image ``(1, H, W, 3)`` as well as a vector): inner products are sums over all
entries, so nothing is flattened. Scalars that steer the search (f, gᵀd) are read back as Python floats, which
syncs once per function evaluation; everything else stays lazy.

First step: with no history the direction −g has no scale, so the first trial step has length 1 in x (as in
L-BFGS-B); the line search stretches it by up to 10× per evaluation. Later iterations try t = 1, the quasi-Newton
step, which the line search accepts at once in most iterations once the history has the curvature.

Stopping: ``tolerance_grad`` and ``tolerance_change`` are absolute (for f: relative once |f| > 1), like torch's;
scale f to order 1, or set them to 0 to run a fixed number of iterations.

Curvature: a pair (s, y) enters the history only when ``yᵀs > curvature_eps · ‖s‖‖y‖`` (the cosine of the angle
between them is clearly positive), so H stays positive definite even when an Armijo step or round-off gives
``yᵀs ≤ 0``; such an update is skipped and counted. A direction that is not a descent direction (round-off in a
long history) resets the history to steepest descent.

Use ``iterate`` (a generator of states, the first one at the starting point) when you want progress between
iterations, ``minimize`` otherwise::

    state = minimize(mx.value_and_grad(f), x0, max_iters=100)  # state.x, state.f, state.converged
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, NamedTuple

import mlx.core as mx

from mlx_style.errors import UsageError

LINE_SEARCHES = ("strong_wolfe", "armijo")


@dataclass(frozen=True)
class LBFGSConfig:
    """Settings of the optimiser; the defaults were tried on problems from 2 to 1.1·10⁵ variables (192² RGB)."""

    history_size: int = 10  # m: Nocedal & Wright find 3–20 pairs enough; each pair costs two copies of x
    line_search: str = "strong_wolfe"  # its points give yᵀs > 0, so updates are not skipped; "armijo" is cheaper
    lr: float = 1.0  # first trial step along d: 1 is the quasi-Newton step, right once H has the right scale
    c1: float = 1e-4  # sufficient decrease (Armijo) constant, the usual value
    c2: float = 0.9  # curvature constant of the Wolfe conditions: 0.9 is standard for quasi-Newton methods
    max_evals_per_search: int = 25  # a search that needs more has hit round-off; take the best point seen
    tolerance_grad: float = 1e-7  # stop when max|g| falls below this (torch's default; absolute: scale f to ~1)
    tolerance_change: float = 1e-9  # stop when a step or the change in f (relative) falls below this
    curvature_eps: float = 1e-8  # minimum cos∠(s, y) for a pair to enter the history

    def __post_init__(self):
        if self.line_search not in LINE_SEARCHES:
            raise UsageError(f"[LBFGS] line_search must be one of {LINE_SEARCHES}, got {self.line_search!r}")
        if self.history_size < 1:
            raise UsageError("[LBFGS] history_size must be at least 1")
        if not 0 < self.c1 < self.c2 < 1:
            raise UsageError("[LBFGS] line-search constants need 0 < c1 < c2 < 1")
        if self.lr <= 0 or self.max_evals_per_search < 1:
            raise UsageError("[LBFGS] lr and max_evals_per_search must be positive")


class Pair(NamedTuple):
    """One curvature pair: step s = x₊ − x, gradient change y = g₊ − g, and ρ = 1 / yᵀs."""

    s: mx.array
    y: mx.array
    rho: mx.array


@dataclass(frozen=True)
class LBFGSState:
    """Where the optimiser stands after ``iteration`` iterations; ``converged`` names why it stopped, if it has."""

    x: mx.array
    f: float
    g: mx.array
    aux: Any = None  # whatever the objective returned beside (f, g), at x
    history: tuple[Pair, ...] = ()
    iteration: int = 0
    evaluations: int = 1
    skipped_updates: int = 0  # curvature pairs rejected (yᵀs not clearly positive)
    step: float = 0.0  # the last accepted step length t (x₊ = x + t·d)
    converged: str | None = None


class _Point(NamedTuple):
    """A trial point on the search line: step t, f(x + t·d), its gradient, gᵀd and the objective's aux."""

    t: float
    f: float
    g: mx.array
    gtd: float
    aux: Any


def dot(a: mx.array, b: mx.array) -> mx.array:
    """Σ aᵢ·bᵢ over every entry, whatever the shape."""
    return mx.sum(a * b)


def two_loop_direction(g: mx.array, history: tuple[Pair, ...]) -> mx.array:
    """The L-BFGS search direction ``−H·g`` (Nocedal & Wright, Algorithm 7.4).

    H₀ = γI with γ = sᵀy / yᵀy of the newest pair, which gives the first trial step the right length; with an
    empty history the direction is ``−g``.
    """
    q = g
    alphas = []
    for pair in reversed(history):
        alpha = pair.rho * dot(pair.s, q)
        q = q - alpha * pair.y
        alphas.append(alpha)
    if history:
        newest = history[-1]
        q = q * (dot(newest.s, newest.y) / dot(newest.y, newest.y))
    for pair, alpha in zip(history, reversed(alphas)):
        beta = pair.rho * dot(pair.y, q)
        q = q + (alpha - beta) * pair.s
    return -q


def update_history(
    history: tuple[Pair, ...], s: mx.array, y: mx.array, history_size: int, curvature_eps: float
) -> tuple[tuple[Pair, ...], bool]:
    """Append (s, y) when it keeps H positive definite; returns ``(history, accepted)``, oldest pair dropped."""
    ys = dot(y, s).item()
    scale = math.sqrt(dot(s, s).item() * dot(y, y).item())
    if not math.isfinite(ys) or ys <= curvature_eps * scale or scale == 0.0:
        return history, False
    pair = Pair(s, y, mx.array(1.0 / ys, dtype=s.dtype))
    return (*history, pair)[-history_size:], True


def cubic_minimizer(a: _Point, b: _Point, lower: float | None = None, upper: float | None = None) -> float:
    """Minimiser of the cubic through (t, f, gᵀd) at ``a`` and ``b``, clamped to [lower, upper].

    Nocedal & Wright eq. 3.59. Defaults to the interval between the points; falls back to its midpoint when the
    cubic has no minimiser there (negative discriminant or a degenerate denominator).
    """
    lo = min(a.t, b.t) if lower is None else lower
    hi = max(a.t, b.t) if upper is None else upper
    if a.t == b.t:
        return (lo + hi) / 2
    d1 = a.gtd + b.gtd - 3 * (a.f - b.f) / (a.t - b.t)
    disc = d1 * d1 - a.gtd * b.gtd
    if not math.isfinite(disc) or disc < 0:
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(disc), b.t - a.t)
    denom = b.gtd - a.gtd + 2 * d2
    if denom == 0 or not math.isfinite(denom):
        return (lo + hi) / 2
    t = b.t - (b.t - a.t) * (b.gtd + d2 - d1) / denom
    return min(max(t, lo), hi) if math.isfinite(t) else (lo + hi) / 2


def _sufficient_decrease(p: _Point, start: _Point, c1: float) -> bool:
    return math.isfinite(p.f) and p.f <= start.f + c1 * p.t * start.gtd


def strong_wolfe_search(
    evaluate: Callable[[float], _Point], start: _Point, t: float, d_max: float, config: LBFGSConfig
) -> tuple[_Point, int]:
    """A step satisfying the strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5 and 3.6).

    ``evaluate(t)`` gives the point x + t·d; ``start`` is t = 0. Returns ``(point, evaluations)``; when the
    budget runs out the lowest point found that decreases f enough is returned (``start`` if none did).
    ``d_max`` = max|d| turns the interval width into a change in x for the stopping test.
    """
    prev, evals = start, 0
    lo = hi = None
    while evals < config.max_evals_per_search:
        p = evaluate(t)
        evals += 1
        if not _sufficient_decrease(p, start, config.c1) or (evals > 1 and p.f >= prev.f):
            lo, hi = prev, p
            break
        if abs(p.gtd) <= -config.c2 * start.gtd:
            return p, evals
        if p.gtd >= 0:
            lo, hi = p, prev
            break
        # Extrapolate: a cubic step, at least a little past t and at most ten times it.
        t_next = cubic_minimizer(prev, p, lower=p.t + 0.01 * (p.t - prev.t), upper=10 * p.t)
        prev, t = p, t_next
    else:
        return prev, evals
    # Zoom: shrink [lo, hi] (lo is the lowest sufficient-decrease point) until a point meets both conditions.
    while evals < config.max_evals_per_search:
        width = abs(hi.t - lo.t)
        if width * d_max < config.tolerance_change:
            break
        t = cubic_minimizer(lo, hi)
        # Keep trial points 10% of the interval inside it, so a cubic hugging an end cannot stall the zoom.
        left, right = min(lo.t, hi.t), max(lo.t, hi.t)
        t = min(max(t, left + 0.1 * width), right - 0.1 * width)
        p = evaluate(t)
        evals += 1
        if not _sufficient_decrease(p, start, config.c1) or p.f >= lo.f:
            hi = p
            continue
        if abs(p.gtd) <= -config.c2 * start.gtd:
            return p, evals
        if p.gtd * (hi.t - lo.t) >= 0:
            hi = lo
        lo = p
    return lo, evals


def armijo_search(
    evaluate: Callable[[float], _Point], start: _Point, t: float, config: LBFGSConfig
) -> tuple[_Point, int]:
    """Backtrack from ``t`` until f decreases enough; returns ``(point, evaluations)``, ``start`` on failure.

    Each shorter step is the minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1t, 0.5t].
    """
    for evals in range(1, config.max_evals_per_search + 1):
        p = evaluate(t)
        if _sufficient_decrease(p, start, config.c1):
            return p, evals
        curvature = p.f - start.f - start.gtd * t
        t_quad = -start.gtd * t * t / (2 * curvature) if math.isfinite(p.f) and curvature > 0 else 0.5 * t
        t = min(max(t_quad, 0.1 * t), 0.5 * t)
    return start, config.max_evals_per_search


def _evaluate(fun: Callable, x: mx.array, has_aux: bool) -> tuple[float, mx.array, Any]:
    out = fun(x)
    f, g, aux = (out[0], out[1], out[2]) if has_aux else (out[0], out[1], None)
    mx.eval(f, g, aux) if aux is not None else mx.eval(f, g)
    return f.item(), g, aux


def initial_state(fun: Callable, x0: mx.array, has_aux: bool = False) -> LBFGSState:
    """Evaluate the objective at ``x0``."""
    f, g, aux = _evaluate(fun, x0, has_aux)
    return LBFGSState(x=x0, f=f, g=g, aux=aux)


def lbfgs_step(
    fun: Callable, state: LBFGSState, config: LBFGSConfig = LBFGSConfig(), has_aux: bool = False
) -> LBFGSState:
    """One L-BFGS iteration: a direction from the history, a line search along it, a history update.

    ``fun(x)`` returns ``(f, g)`` (``(f, g, aux)`` with ``has_aux``): the value as a scalar array and its gradient
    with the shape of x. Returns a new state; ``state`` is not modified.
    """
    if state.converged:
        return state
    history = state.history
    d = two_loop_direction(state.g, history)
    mx.eval(d)
    gtd = dot(state.g, d).item()
    if not (math.isfinite(gtd) and gtd < 0):  # round-off made H indefinite: restart from steepest descent
        history, d = (), -state.g
        gtd = -dot(state.g, state.g).item()
    # Without history the direction −g has no scale: try a step of length 1 in x (as L-BFGS-B does), which the
    # line search then stretches or shrinks. torch's min(1, 1/‖g‖₁) starts √n times shorter (more evaluations)
    # and, when ‖g‖ ≪ 1, so short that f does not change in float32 and the search fails.
    t0 = config.lr * (1.0 / math.sqrt(dot(state.g, state.g).item()) if not history else 1.0)

    def evaluate(t: float) -> _Point:
        f, g, aux = _evaluate(fun, state.x + t * d, has_aux)
        return _Point(t, f, g, dot(g, d).item(), aux)

    start = _Point(0.0, state.f, state.g, gtd, state.aux)
    if config.line_search == "strong_wolfe":
        d_max = mx.max(mx.abs(d)).item()
        point, evals = strong_wolfe_search(evaluate, start, t0, d_max, config)
    else:
        point, evals = armijo_search(evaluate, start, t0, config)
    evaluations = state.evaluations + evals
    if point.t == 0.0:  # no step decreased f along d
        if history:  # the history may be stale: drop it and try steepest descent before giving up
            return lbfgs_step(fun, replace(state, history=(), evaluations=evaluations), config, has_aux)
        return replace(state, evaluations=evaluations, converged="line search found no decrease")
    s = point.t * d
    y = point.g - state.g
    history, accepted = update_history(history, s, y, config.history_size, config.curvature_eps)
    new = LBFGSState(
        x=state.x + s,
        f=point.f,
        g=point.g,
        aux=point.aux,
        history=history,
        iteration=state.iteration + 1,
        evaluations=evaluations,
        skipped_updates=state.skipped_updates + (not accepted),
        step=point.t,
    )
    mx.eval(new.x)
    return replace(new, converged=_converged(state, new, s, config))


def _converged(old: LBFGSState, new: LBFGSState, s: mx.array, config: LBFGSConfig) -> str | None:
    if mx.max(mx.abs(new.g)).item() <= config.tolerance_grad:
        return "gradient below tolerance_grad"
    if mx.max(mx.abs(s)).item() <= config.tolerance_change:
        return "step below tolerance_change"
    if abs(new.f - old.f) <= config.tolerance_change * max(1.0, abs(old.f)):
        return "change in f below tolerance_change"
    return None


def iterate(
    fun: Callable, x0: mx.array, config: LBFGSConfig = LBFGSConfig(), has_aux: bool = False
) -> Iterator[LBFGSState]:
    """Yield the state at ``x0`` (iteration 0), then after every iteration, until it converges.

    The generator ends after yielding the converged state; stop it early (``itertools.islice``) for a fixed
    number of iterations.
    """
    state = initial_state(fun, x0, has_aux)
    yield state
    while not state.converged:
        state = lbfgs_step(fun, state, config, has_aux)
        yield state


def minimize(
    fun: Callable, x0: mx.array, config: LBFGSConfig = LBFGSConfig(), max_iters: int = 100, has_aux: bool = False
) -> LBFGSState:
    """Run up to ``max_iters`` iterations from ``x0``; returns the last state (``converged`` says if it did)."""
    state = None
    for state in iterate(fun, x0, config, has_aux):
        if state.iteration >= max_iters:
            break
    return state
