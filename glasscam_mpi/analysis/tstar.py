"""T*, the glass-transition temperature of the cooling protocol (METHOD.md section 6).

The potential energy per particle U(T) along the cooling ramp has a kink where the liquid
falls out of equilibrium: below it the glass is a nearly harmonic solid (U linear in T,
slope ~ d/2), above it the supercooled liquid has a larger and T-dependent slope
(Rosenfeld-Tarazona: U ~ a + b T^(3/5)). T* is where the glass line meets the liquid
branch.

Estimator. For a trial kink T_c the curve is fitted, by linear least squares, as

    U = a + b T + c1 h + c2 h^2,      h = max(0, T - T_c),

a line below T_c continued by a quadratic above it, continuous at T_c (the two branches
meet there by construction; fitting two lines independently is ill-conditioned when
their slopes are close). T_c minimises the squared residual: a grid of 400 trial values
between the ``min_points``-th lowest and highest temperatures, then a bounded scalar
minimisation between the grid neighbours of the best one (an exact hinge is recovered
to ~1e-9). Only convex kinks count (c1 > 0: the liquid branch steeper than the glass at
T_c, since the configurational heat capacity vanishes on freezing); a hot liquid is
concave (its heat capacity falls with T), so this also keeps the kink out of the hot
liquid's curvature.

The liquid branch is fitted only over a window T_c <= T <= (1 + ``window``) T_c: the
first fit uses every point up to T_max; then the window's top moves down to (1 + window)
times the current T_c, by at most a factor 0.8 per step (a wide window biases T_c low,
and a full jump could throw the kink out of the next window), and the fit is redone,
until the set of points no longer changes. Far above T_g the liquid curve is not a
parabola in T (T^(3/5) is steep at low T and flat at high T), and one line or parabola
through all of it drags the kink (the "before" row below); within a window of one T_c a
parabola follows it closely.

Bias (T_star - T_k) on noise-free curves with a kink at T_k = 0.37: glass branch
U = -3.2 + (T - T_k), liquid branch U = -3.2 + b (T^0.6 - T_k^0.6) with slope 2.5 at T_k
(b = 2.80), 100 temperatures evenly spaced in [0.05, 4.0] (the ramp's sampling). "before"
is the previous estimator (one line per branch over every point up to T_max, a 400-point
grid), "after" the defaults (window = 1, curvature = True):

    T_max    0.6     0.8     1.0     1.5     2.0     3.0     4.0
    before  -0.004  -0.018  -0.039  -0.113  +0.862  +1.059  +1.297
    after   -0.001  -0.001  -0.001  -0.001  -0.001  -0.001  -0.001

With liquid slopes 2.0 or 3.5 at T_k, or an exponentially saturating liquid branch
U = -3.2 + A (1 - exp(-(T - T_k)/0.8)) + 0.6 (T - T_k) (not a power law; slope 2.0 to 3.5
at T_k), "after" stays within 0.002 of T_k at every T_max above, "before" spans -0.11 to
+1.37. With Gaussian noise on U (200 draws, RT curve, T_max 0.8 / 1.5 / 4.0): sd 0.003
(a run average) gives bias <= 0.002 and spread sd 0.002; sd 0.01 gives sd 0.008; sd 0.02
(a single N = 2000 run) gives sd 0.016 to 0.03 with rare outliers of 0.2 at T_max = 4:
average runs first. A wider window (1.5, 2) is slightly more robust to such noise and
more biased (-0.003, -0.006). These curves are in tests/test_analysis_tstar.py. A call
costs ~10-20 ms for 100 points; more than 2000 points are first averaged in 2000
equal-count groups of consecutive temperatures (so a call stays under ~1 s).

Validity: temperatures must be positive; a fit counts only if it is a glass kink: the
liquid branch steeper than the glass line at T_c (c1 > 0) and still at the top of the
window (c1 + 2 c2 (T_top - T_c) > 0; otherwise a small convex kink plus a strongly
concave parabola can mimic a concave bend); and the final c1 must exceed 3 standard
errors (a straight line or pure noise has no T*). U passed
as T (arguments swapped) fails one or the other for a cooling curve with U < 0, and
otherwise gives a "T*" in energy units, far from the true one (tested).

Input is the run-averaged (measured T, U) of the prepare stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

_GRID = 400
_MAX_POINTS = 2000  # more points are averaged in this many groups first
_MAX_WINDOWS = 200
_CHUNK = 1 << 18  # trial kinks x points per batched fit (memory ~ 8 p x this bytes)
_EXCLUDED = 1e100  # objective value of excluded trial kinks (finite: no inf - inf)
_SIGNIFICANCE = 3.0  # the slope change c1 must exceed this many standard errors
_SHRINK = 0.8  # the liquid window's top moves down by at most this factor per step


@dataclass(frozen=True)
class TStar:
    """The result of :func:`estimate_t_star`.

    Attributes:
        T_star: The kink temperature T*.
        split: T_c separating the two branches (= T_star).
        glass_fit: (slope, intercept) of the glass line U = slope T + intercept, T < T*.
        liquid_fit: (slope, intercept) of the liquid branch's tangent at T* (the liquid
            line of a two-line fit); both lines meet at T*.
        rms_residual: Root-mean-square residual of the final fit (energy units).
        liquid_curvature: c2, the liquid branch is tangent + c2 (T - T*)^2 (0 if the fit
            had ``curvature=False``).
        T_fit_max: Highest temperature of the points in the final fit.
        n_points: Number of points in the final fit.
    """

    T_star: float
    split: float
    glass_fit: tuple[float, float]
    liquid_fit: tuple[float, float]
    rms_residual: float
    liquid_curvature: float = 0.0
    T_fit_max: float = float("nan")
    n_points: int = 0


def _design(T: np.ndarray, t_c, curvature: bool) -> np.ndarray:
    """(..., n, p) design matrix [1, T, h, (h^2)], h = max(0, T - t_c); t_c scalar or (m,)."""
    t_c = np.asarray(t_c, dtype=float)[..., None]
    h = np.maximum(0.0, T - t_c)
    cols = [np.ones_like(h), np.broadcast_to(T, h.shape), h] + ([h * h] if curvature else [])
    return np.stack(cols, axis=-1)


def _sse(T, U, t_c, curvature) -> tuple[float, np.ndarray]:
    A = _design(T, t_c, curvature)
    coef, *_ = np.linalg.lstsq(A, U, rcond=None)
    res = A @ coef - U
    return float(res @ res), coef


def _grid_sse(T: np.ndarray, U: np.ndarray, grid: np.ndarray, curvature: bool) -> np.ndarray:
    """(G,) squared residual of the fit at each trial T_c; inf where it is no glass kink."""
    A = _design(T, grid, curvature)                       # (G, n, p)
    scale = np.sqrt(np.einsum("gnp,gnp->gp", A, A)) + 1e-300
    As = A / scale[:, None, :]                            # unit columns: well conditioned
    ata = np.einsum("gnp,gnq->gpq", As, As)
    atu = np.einsum("gnp,n->gp", As, U)
    coef = np.linalg.solve(ata + 1e-12 * np.eye(ata.shape[-1]), atu[..., None])[..., 0]
    res = np.einsum("gnp,gp->gn", As, coef) - U
    c = coef / scale  # back to the unscaled columns
    return np.where(_convex(c, T[-1] - grid, curvature), np.einsum("gn,gn->g", res, res), np.inf)


def _convex(coef: np.ndarray, h_top, curvature: bool):
    """A glass-transition kink: the liquid is steeper than the glass at T_c (c1 > 0) and
    still at the top of the fit, h_top = T_top - T_c, above it (c1 + 2 c2 h_top > 0)."""
    c1 = coef[..., 2]
    if not curvature:
        return c1 > 0
    return (c1 > 0) & (c1 + 2.0 * coef[..., 3] * h_top > 0)


def _best_kink(T: np.ndarray, U: np.ndarray, min_points: int, curvature: bool) -> float:
    """T_c minimising the fit's squared residual among glass kinks (:func:`_convex`); T sorted.

    Returns NaN if no trial T_c gives a convex kink.
    """
    grid = np.linspace(T[min_points - 1], T[-min_points], _GRID)
    sse = np.concatenate([_grid_sse(T, U, part, curvature)
                          for part in np.array_split(grid, -(-_GRID * len(T) // _CHUNK))])
    k = int(np.argmin(sse))
    if not np.isfinite(sse[k]):
        return float("nan")
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, _GRID - 1)]

    def convex_sse(t_c: float) -> float:
        value, c = _sse(T, U, t_c, curvature)
        return value if _convex(c, T[-1] - t_c, curvature) else _EXCLUDED

    opt = minimize_scalar(convex_sse, bounds=(a, b), method="bounded",
                          options={"xatol": 1e-12 * max(1.0, abs(b))})
    return float(opt.x) if convex_sse(opt.x) <= convex_sse(grid[k]) else float(grid[k])


def _no_kink(T: np.ndarray, U: np.ndarray, curvature: bool) -> str:
    slope = np.polyfit(T, U, 1)[0]
    return (f"no glass-transition kink in U(T) for {T.min():.4g} <= T <= {T.max():.4g}: no "
            f"{'line-and-parabola' if curvature else 'two-line'} fit has a liquid branch "
            f"steeper than its glass branch (overall slope dU/dT = {slope:.4g}); U(T) must "
            f"bend upwards on heating through T* (are T and U swapped?)")


def _descend(T: np.ndarray, U: np.ndarray, min_points: int, curvature: bool,
             window: float) -> tuple[int, float]:
    """(n, T_c): the fit on the first n sorted points whose liquid window is self-consistent.

    The window's top starts at the highest T and moves down to (1 + window) T_c of the
    current fit, but by at most a factor ``_SHRINK`` per step, so that a kink estimate
    biased low by a wide window cannot throw the kink out of the next one. It stops when
    the set of points no longer changes. (NaN T_c if no window has a convex kink.)
    """
    n, top = len(T), float(T[-1])
    last = (n, float("nan"))
    for _ in range(_MAX_WINDOWS):
        if n < 2 * min_points:
            break
        t_c = _best_kink(T[:n], U[:n], min_points, curvature)
        if not np.isfinite(t_c):
            if np.isfinite(last[1]):
                break  # the window lost the kink: keep the last fit
            top *= _SHRINK  # no convex kink yet (e.g. a concave hot liquid): shrink
            n = int(np.searchsorted(T, top, side="right"))
            continue
        last = (n, t_c)
        target = max((1.0 + window) * t_c, top * _SHRINK)
        if target >= top:
            break
        m = int(np.searchsorted(T, target, side="right"))
        m = max(m, min(n, int(np.searchsorted(T, t_c, side="right")) + min_points))
        if m == n:
            break
        n, top = m, target
    return last


def estimate_t_star(T: np.ndarray, U: np.ndarray, T_max: float | None = None,
                    min_points: int = 4, *, window: float | None = 1.0,
                    curvature: bool = True) -> TStar:
    """Kink of U(T): where the glass line and the liquid branch of a continuous fit meet.

    Args:
        T: (n,) temperatures along the ramp (energy units, k_B = 1), all > 0; any order.
            Non-finite (T, U) points are dropped.
        U: (n,) potential energy per particle at those temperatures, averaged over runs.
        T_max: Only points with T <= T_max enter (default: all).
        min_points: Fewest points on either branch (>= 2).
        window: The liquid branch is fitted over T_c <= T <= (1 + window) T_c only (see
            the module docstring); None fits it over every point up to T_max.
        curvature: Fit the liquid branch as a parabola (True) or a line (False).

    Returns:
        The :class:`TStar`.

    Raises:
        ValueError: If T and U differ in shape or are not 1D, fewer than
            2 * min_points finite points lie below T_max, a temperature is <= 0, or the
            fitted liquid branch is not steeper than the glass branch (no glass-transition
            kink; also what arguments in the wrong order give).
    """
    T, U = np.asarray(T, float), np.asarray(U, float)
    if T.shape != U.shape or T.ndim != 1:
        raise ValueError(f"T and U must be 1D of one length, got {T.shape} and {U.shape}")
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) \
            or min_points < 2:
        raise ValueError(f"min_points must be an integer >= 2; got {min_points!r}")
    if window is not None and not (np.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number or None; got {window!r}")
    keep = np.isfinite(T) & np.isfinite(U) & (T <= (T_max if T_max is not None else np.inf))
    T, U = T[keep], U[keep]
    if np.any(T <= 0):
        raise ValueError(f"T must be absolute temperatures > 0; got min(T) = {T.min():g} "
                         f"(are T and U swapped?)")
    order = np.argsort(T, kind="stable")
    T, U = T[order], U[order]
    if len(T) < 2 * min_points:
        raise ValueError(f"need at least {2 * min_points} finite points below T_max, got {len(T)}")
    if len(T) > _MAX_POINTS:  # equal-count averages of consecutive points: same curve
        groups = np.array_split(np.arange(len(T)), _MAX_POINTS)
        T = np.array([T[g].mean() for g in groups])
        U = np.array([U[g].mean() for g in groups])
    n = len(T)
    if window is None:
        t_c = _best_kink(T, U, min_points, curvature)
    else:
        n, t_c = _descend(T, U, min_points, curvature, window)
    if not np.isfinite(t_c):
        raise ValueError(_no_kink(T, U, curvature))
    T, U = T[:n], U[:n]
    sse, coef = _sse(T, U, t_c, curvature)
    a, b, c1 = (float(v) for v in coef[:3])
    c2 = float(coef[3]) if curvature else 0.0
    A = _design(T, t_c, curvature)
    se = np.sqrt(sse / max(n - A.shape[1], 1) * np.linalg.pinv(A.T @ A)[2, 2])
    if not c1 > _SIGNIFICANCE * se:
        raise ValueError(f"no significant glass-transition kink: the liquid branch is "
                         f"steeper than the glass by {c1:.3g} +- {se:.2g} at T = {t_c:.4g} "
                         f"(less than {_SIGNIFICANCE:g} standard errors); U(T) must bend "
                         f"upwards on heating through T*")
    return TStar(T_star=float(t_c), split=float(t_c), glass_fit=(b, a),
                 liquid_fit=(b + c1, a - c1 * t_c), rms_residual=float(np.sqrt(sse / n)),
                 liquid_curvature=c2, T_fit_max=float(T[-1]), n_points=int(n))
