"""L-BFGS on functions with known minima, and its parts against their defining properties."""

import math

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import mlx.core as mx
import numpy as np
import pytest

from mlx_style.optim.lbfgs import (
    LBFGSConfig,
    _Point,
    armijo_search,
    cubic_minimizer,
    iterate,
    lbfgs_step,
    initial_state,
    minimize,
    strong_wolfe_search,
    two_loop_direction,
    update_history,
)

SEARCHES = ("strong_wolfe", "armijo")
# float64 problems run to round-off: the default tolerance on the change in f stops about where float32 would.
TIGHT = {"tolerance_change": 1e-15, "tolerance_grad": 1e-12}


@pytest.fixture(autouse=True)
def on_cpu():
    """Every problem here runs on MLX's CPU: its GPUs (Metal, CUDA) refuse float64."""
    with mx.stream(mx.cpu):
        yield


def rosenbrock(x):
    return mx.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@pytest.mark.parametrize("line_search", SEARCHES)
def test_quadratic_reaches_the_linear_solve(line_search):
    rng = np.random.default_rng(1)
    M = rng.standard_normal((10, 10))
    A, b = M @ M.T + np.eye(10), rng.standard_normal(10)
    A_mx, b_mx = mx.array(A, dtype=mx.float64), mx.array(b, dtype=mx.float64)
    f = lambda x: 0.5 * x @ A_mx @ x - b_mx @ x  # noqa: E731
    state = minimize(
        mx.value_and_grad(f),
        mx.zeros(10, dtype=mx.float64),
        LBFGSConfig(line_search=line_search, **TIGHT),
        max_iters=200,
    )
    np.testing.assert_allclose(np.array(state.x), np.linalg.solve(A, b), atol=1e-8)
    assert state.converged


@pytest.mark.parametrize("dtype", (mx.float32, mx.float64))
@pytest.mark.parametrize("line_search", SEARCHES)
def test_rosenbrock_reaches_one_one(line_search, dtype):
    state = minimize(
        mx.value_and_grad(rosenbrock),
        mx.array([-1.2, 1.0], dtype=dtype),
        LBFGSConfig(line_search=line_search),
        max_iters=300,
    )
    np.testing.assert_allclose(np.array(state.x), [1.0, 1.0], atol=1e-4)
    assert state.iteration < 100  # steepest descent needs thousands here: the curvature pairs are being used


@pytest.mark.parametrize("line_search", SEARCHES)
def test_badly_scaled_quadratic(line_search):
    d = mx.array([1.0, 1e2, 1e4, 1e6, 3.0], dtype=mx.float64)
    b = mx.array([1.0, -2.0, 3.0, 0.5, 1.0], dtype=mx.float64)
    f = lambda x: 0.5 * mx.sum(d * x * x) - mx.sum(b * x)  # noqa: E731
    state = minimize(
        mx.value_and_grad(f), mx.ones(5, dtype=mx.float64), LBFGSConfig(line_search=line_search, **TIGHT), max_iters=300
    )
    np.testing.assert_allclose(np.array(state.x), np.array(b / d), rtol=1e-6)


def test_works_on_image_shaped_arrays():
    target = mx.array(np.random.default_rng(0).uniform(0, 255, (1, 4, 5, 3)), dtype=mx.float32)
    f = lambda x: mx.sum((x - target) ** 2 * mx.array([1.0, 10.0, 100.0]))  # noqa: E731
    state = minimize(mx.value_and_grad(f), mx.zeros_like(target), max_iters=50)
    assert state.x.shape == target.shape
    np.testing.assert_allclose(np.array(state.x), np.array(target), atol=1e-3)


def test_two_loop_satisfies_the_secant_equation():
    rng = np.random.default_rng(2)
    history = ()
    for _ in range(4):
        s = mx.array(rng.standard_normal(6))
        y = s * 2.0 + mx.array(0.3 * rng.standard_normal(6))
        history, _ = update_history(history, s, y, 10, 1e-8)
    newest = history[-1]
    # H·y_k = s_k holds for every BFGS update, whatever the earlier pairs and H₀.
    np.testing.assert_allclose(np.array(two_loop_direction(newest.y, history)), -np.array(newest.s), rtol=1e-4)
    g = mx.array(rng.standard_normal(6))
    np.testing.assert_array_equal(np.array(two_loop_direction(g, ())), -np.array(g))


def test_initial_scaling_gives_the_newton_step_on_an_isotropic_quadratic():
    # Hessian λI: one pair has y = λs, so H₀ = (sᵀy / yᵀy)·I = I/λ and the direction is the Newton step −g/λ.
    rng = np.random.default_rng(3)
    s = mx.array(rng.standard_normal(5))
    history, _ = update_history((), s, 40.0 * s, 10, 1e-8)
    g = mx.array(rng.standard_normal(5))
    np.testing.assert_allclose(np.array(two_loop_direction(g, history)), -np.array(g) / 40.0, rtol=1e-5)


def test_update_history_skips_bad_curvature_and_keeps_m_pairs():
    s = mx.array([1.0, 0.0])
    history, accepted = update_history((), s, mx.array([-1.0, 0.5]), 3, 1e-8)
    assert (history, accepted) == ((), False)
    history, accepted = update_history((), s, mx.array([0.0, 1.0]), 3, 1e-8)  # yᵀs = 0
    assert not accepted
    for k in range(5):
        history, accepted = update_history(history, s * (k + 1), mx.array([1.0, 0.0]), 3, 1e-8)
        assert accepted
    assert len(history) == 3 and float(history[-1].s[0]) == 5.0 and float(history[0].s[0]) == 3.0


def test_curvature_failure_is_skipped_not_fatal():
    # x⁴/4 − x² is concave on |x| < 0.82; from x = 0.1 the unit Armijo step lands at x = 1.1, where the slope is
    # steeper than at the start: yᵀs < 0, so the pair must be skipped (a polynomial: MLX's float64 sin is float32).
    f = lambda x: mx.sum(x**4 / 4 - x**2)  # noqa: E731
    fun = mx.value_and_grad(f)
    state = initial_state(fun, mx.array([0.1], dtype=mx.float64))
    step = lbfgs_step(fun, state, LBFGSConfig(line_search="armijo"))
    assert step.skipped_updates == 1 and step.history == () and step.f < state.f
    final = minimize(fun, step.x, LBFGSConfig(line_search="armijo", **TIGHT), max_iters=100)
    assert float(final.x[0]) == pytest.approx(math.sqrt(2), abs=1e-8)


def _line(f):
    """φ(t) = f(t) on a 1-D problem with x = 0, d = 1, as the line searches see it."""

    def evaluate(t):
        value, grad = mx.value_and_grad(f)(mx.array([t], dtype=mx.float64))
        return _Point(t, value.item(), grad, grad[0].item(), None)

    return evaluate


@pytest.mark.parametrize("t0", (1e-3, 0.5, 30.0))
def test_strong_wolfe_point_satisfies_both_conditions(t0):
    f = lambda x: mx.sum((x - 2.0) ** 4 - 3.0 * x)  # noqa: E731
    evaluate = _line(f)
    start = evaluate(0.0)
    config = LBFGSConfig()
    point, evals = strong_wolfe_search(evaluate, start, t0, 1.0, config)
    assert point.f <= start.f + config.c1 * point.t * start.gtd
    assert abs(point.gtd) <= -config.c2 * start.gtd
    assert 1 <= evals <= config.max_evals_per_search


def test_strong_wolfe_takes_a_good_first_step_at_once():
    evaluate = _line(lambda x: mx.sum((x - 1.0) ** 2))
    point, evals = strong_wolfe_search(evaluate, evaluate(0.0), 0.9, 1.0, LBFGSConfig())
    assert (point.t, evals) == (0.9, 1)


def test_armijo_backtracks_to_sufficient_decrease():
    f = lambda x: mx.sum((x - 1.0) ** 2)  # noqa: E731
    evaluate = _line(f)
    start = evaluate(0.0)
    point, evals = armijo_search(evaluate, start, 50.0, LBFGSConfig(line_search="armijo"))
    assert evals > 1 and 0 < point.t < 50.0
    assert point.f <= start.f + 1e-4 * point.t * start.gtd


def test_cubic_minimizer_is_exact_on_a_cubic():
    p = lambda t: t**3 - 3 * t**2 + 1  # minimum at t = 2  # noqa: E731
    dp = lambda t: 3 * t**2 - 6 * t  # noqa: E731
    a, b = _Point(0.5, p(0.5), None, dp(0.5), None), _Point(3.0, p(3.0), None, dp(3.0), None)
    assert cubic_minimizer(a, b) == pytest.approx(2.0, abs=1e-12)
    assert cubic_minimizer(a, b, lower=0.0, upper=1.5) == 1.5


def test_iterate_starts_at_iteration_zero_and_ends_when_converged():
    states = list(iterate(mx.value_and_grad(lambda x: mx.sum((x - 3.0) ** 2)), mx.zeros(3, dtype=mx.float64)))
    assert states[0].iteration == 0 and states[0].evaluations == 1
    assert [s.iteration for s in states] == list(range(len(states)))
    assert states[-1].converged and not any(s.converged for s in states[:-1])
    assert all(b.f <= a.f for a, b in zip(states, states[1:]))


def test_has_aux_carries_the_aux_of_the_accepted_point():
    fun = lambda x: (mx.sum(x * x), 2 * x, {"x0": x[0]})  # noqa: E731
    state = minimize(fun, mx.array([4.0, -2.0]), max_iters=3, has_aux=True)
    assert float(state.aux["x0"]) == float(state.x[0])


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="line_search"):
        LBFGSConfig(line_search="wolfe")
    with pytest.raises(ValueError, match="c1 < c2"):
        LBFGSConfig(c1=0.5, c2=0.1)
