"""Pooling C_{X,Delta}(delta) curves of several configurations at a common delta, and
where the largest value sits (paper Table 5: C^max and delta*).

Each propensity ensemble (one glass configuration at one temperature) gives a curve
C(t) at its recorded times and its own delta(t). Two configurations reach the same
delta at different times, and with ``[propensity].stop_factor`` a configuration's late
records are NaN once it has gone far enough. A mean over configurations *at a fixed
record* therefore mixes configurations at different delta, and at late times only the
slow ones remain. Here every configuration's curve is interpolated (linear in log delta)
onto one log-delta grid that spans only the delta range *every* configuration covers,
so each pooled point is a mean over all configurations at the same delta.

* :func:`common_log_grid`: the grid, ``per_decade`` points per decade from the largest
  first delta to the smallest last delta of the configurations (both ends included).
* :func:`interpolate_log`: one curve onto a grid (NaN outside its recorded range).
* :func:`pool_at_common_delta`: the grid, the mean over configurations, their spread
  (sample std, ddof 1) and count.
* :func:`curve_max_edge`: C^max, delta* and whether the maximum is at the first or last
  point of the data (then it is a bound, not a maximum).
* :func:`pool_temperatures`, :func:`maxima`, :func:`table5_rows`: Table 5 from the
  per-record correlations of every field, as the summary and the ensemble members use it.
"""

from __future__ import annotations

import math

import numpy as np

PER_DECADE = 20  # grid points per decade of delta: steps of 12 %, finer than the records
EDGE_NONE, EDGE_FIRST, EDGE_LAST = 0, -1, 1


def common_log_grid(deltas, per_decade: int = PER_DECADE) -> np.ndarray:
    """A log-spaced grid over the delta range all curves cover.

    Args:
        deltas: (n_c, d_t) delta of each configuration at its records; NaN where not
            recorded (e.g. after the ensemble stopped); values <= 0 are not used.
        per_decade: Grid points per decade (>= 1).

    Returns:
        (g,) increasing delta from max_c(min delta_c) to min_c(max delta_c), both ends
        included, g = max(2, ceil(per_decade * decades) + 1); a single point when the
        range is one value; empty when the configurations share no delta (or any has
        none).
    """
    D = np.asarray(deltas, dtype=float)
    if D.ndim != 2:
        raise ValueError(f"deltas must have shape (n_configs, n_times); got {D.shape}")
    if isinstance(per_decade, bool) or not isinstance(per_decade, (int, np.integer)) \
            or per_decade < 1:
        raise ValueError(f"per_decade must be a positive integer; got {per_decade!r}")
    if D.shape[0] == 0:
        return np.zeros(0)
    D = np.where(np.isfinite(D) & (D > 0), D, np.nan)
    if not np.isfinite(D).any(axis=1).all():
        return np.zeros(0)
    lo, hi = float(np.nanmax(np.nanmin(D, axis=1))), float(np.nanmin(np.nanmax(D, axis=1)))
    if lo > hi:
        return np.zeros(0)
    if lo == hi:
        return np.array([lo])
    n = max(2, math.ceil(per_decade * math.log10(hi / lo)) + 1)
    grid = np.geomspace(lo, hi, n)
    grid[0], grid[-1] = lo, hi  # exactly the ends of the data
    return grid


def interpolate_log(delta, C, grid) -> np.ndarray:
    """Curve(s) C(delta) at ``grid``, linear in log delta between records.

    Args:
        delta: (d_t,) delta at the records (NaN records and delta <= 0 are skipped). A
            record whose delta does not exceed every earlier one (noise on the cage
            plateau) is skipped too: each delta is taken where it is first reached, as
            the propensity at a delta target is.
        C: (d_t,) or (d_t, k) values at the records (NaN allowed: skipped per column).
        grid: (g,) deltas wanted.

    Returns:
        (g,) or (g, k); NaN outside the range of the finite records of that column.
    """
    delta = np.asarray(delta, dtype=float)
    C = np.asarray(C, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if delta.ndim != 1 or C.shape[0] != delta.shape[0]:
        raise ValueError(f"delta must be (d_t,) and C (d_t,) or (d_t, k); got {delta.shape} "
                         f"and {C.shape}")
    flat = C.reshape(len(delta), -1)
    out = np.full((len(grid), flat.shape[1]), np.nan)
    base = np.isfinite(delta) & (delta > 0)
    lg = np.log(grid) if grid.size else grid
    for col in range(flat.shape[1]):
        ok = base & np.isfinite(flat[:, col])
        if not ok.any():
            continue
        d = delta[ok]
        first = d > np.maximum.accumulate(np.concatenate([[-np.inf], d[:-1]]))
        x, y = np.log(d[first]), flat[ok, col][first]
        inside = (lg >= x[0]) & (lg <= x[-1])
        out[inside, col] = np.interp(lg[inside], x, y)
    return out[:, 0] if C.ndim == 1 else out.reshape((len(grid),) + C.shape[1:])


def pool_at_common_delta(deltas, curves, per_decade: int = PER_DECADE):
    """Mean over configurations at common delta, and their spread.

    Args:
        deltas: (n_c, d_t) delta of each configuration at its records (NaN: none).
        curves: (n_c, d_t, ...) C of each configuration at its records.
        per_decade: Grid density (:func:`common_log_grid`).

    Returns:
        (grid (g,), mean (g, ...), std (g, ...), n (g, ...)): the mean and sample std
        (ddof 1; NaN with one configuration) over the configurations with a value at
        that delta, and how many they are. Only configurations with a finite delta
        record enter (an ensemble not analysed is all NaN and left out).
    """
    D = np.asarray(deltas, dtype=float)
    Cs = np.asarray(curves, dtype=float)
    if Cs.shape[:2] != D.shape:
        raise ValueError(f"curves must have shape (n_configs, n_times, ...) = {D.shape} + ...; "
                         f"got {Cs.shape}")
    used = np.isfinite(D).any(axis=1)
    grid = common_log_grid(D[used], per_decade) if used.any() else np.zeros(0)
    tail = Cs.shape[2:]
    if grid.size == 0:
        empty = np.zeros((0,) + tail)
        return grid, empty, empty.copy(), np.zeros((0,) + tail, np.int64)
    each = np.stack([interpolate_log(D[c], Cs[c], grid) for c in np.flatnonzero(used)])
    n = np.isfinite(each).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(each, axis=0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(each), each - mean, 0.0)
        std = np.where(n > 1, np.sqrt((dev * dev).sum(axis=0) / np.maximum(n - 1, 1)), np.nan)
    return grid, mean, std, n


def curve_max_edge(x, y) -> tuple[float, float, int]:
    """C^max, the x where it is reached, and where that x sits in the data.

    Args:
        x: (n,) abscissae, increasing where y is finite (e.g. delta).
        y: (n,) values, NaN allowed (skipped).

    Returns:
        (y_max, x_at_max, edge): edge is ``EDGE_LAST`` (1) when the maximum is at the
        last finite point (the curve may still rise: y_max is a lower bound of the
        maximum), ``EDGE_FIRST`` (-1) at the first finite point, ``EDGE_NONE`` (0)
        inside; a curve of one point counts as ``EDGE_LAST``. (NaN, NaN, 0) without
        finite values. Ties take the first.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1D of one length; got {x.shape} and {y.shape}")
    ok = np.flatnonzero(np.isfinite(y) & np.isfinite(x))
    if ok.size == 0:
        return float("nan"), float("nan"), EDGE_NONE
    k = int(ok[np.argmax(y[ok])])
    edge = EDGE_LAST if k == ok[-1] else EDGE_FIRST if k == ok[0] else EDGE_NONE
    return float(y[k]), float(x[k]), edge


def scan_edge(values, best: float) -> int:
    """Whether ``best`` is the largest (1) or smallest (-1) of the scanned ``values``
    that gave a result, else 0 (NaN ``best``: 0)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not math.isfinite(best) or v.size < 2:
        return EDGE_NONE if v.size != 1 or not math.isfinite(best) else EDGE_LAST
    if best >= v.max():
        return EDGE_LAST
    if best <= v.min():
        return EDGE_FIRST
    return EDGE_NONE


def pool_temperatures(delta, corr):
    """Every temperature's curves pooled over configurations at common delta.

    Args:
        delta: (n_c, n_T, d_t) delta(t) per ensemble (NaN: not recorded / not analysed).
        corr: (n_c, n_T, d_t, X, m) C_{X,Delta} of field X at xi_a at each record.

    Returns:
        curves (X, m, n_T, G), their spread over configurations (X, m, n_T, G), the grid
        (n_T, G) and the configurations pooled per temperature (n_T,); each temperature's
        grid (:func:`common_log_grid`) padded with NaN to the longest, G.
    """
    delta = np.asarray(delta, dtype=float)
    corr = np.asarray(corr, dtype=float)
    n_T, (n_X, m) = delta.shape[1], corr.shape[3:]
    pooled = [pool_at_common_delta(delta[:, k], corr[:, k]) for k in range(n_T)]
    G = max([1] + [len(p[0]) for p in pooled])
    curves = np.full((n_X, m, n_T, G), np.nan)
    spread = np.full((n_X, m, n_T, G), np.nan)
    grid = np.full((n_T, G), np.nan)
    for k, (g, mean, std, _) in enumerate(pooled):
        grid[k, :len(g)] = g
        curves[:, :, k, :len(g)] = mean.transpose(1, 2, 0)
        spread[:, :, k, :len(g)] = std.transpose(1, 2, 0)
    n_pooled = np.isfinite(delta).any(axis=-1).sum(axis=0).astype(np.int64)
    return curves, spread, grid, n_pooled


def maxima(grid, curves):
    """C^max, delta* and the edge flag of every pooled curve, per temperature and for all
    temperatures together (the temperature with the largest C^max: the paper plots every
    temperature's points together and takes the largest).

    Args:
        grid: (n_T, G) the pooled delta of each temperature (NaN padded).
        curves: (X, m, n_T, G) the pooled curves.

    Returns:
        cmax, delta_star (X, m, n_T + 1) float and edge (X, m, n_T + 1) int8
        (:func:`curve_max_edge`); the last column is all temperatures.
    """
    n_X, m, n_T = curves.shape[:3]
    cmax = np.full((n_X, m, n_T + 1), np.nan)
    dstar = np.full((n_X, m, n_T + 1), np.nan)
    edge = np.zeros((n_X, m, n_T + 1), np.int8)
    for x in range(n_X):
        for a in range(m):
            for k in range(n_T):
                cmax[x, a, k], dstar[x, a, k], edge[x, a, k] = curve_max_edge(
                    grid[k], curves[x, a, k])
            if np.isfinite(cmax[x, a, :n_T]).any():
                k = int(np.nanargmax(cmax[x, a, :n_T]))
                cmax[x, a, n_T], dstar[x, a, n_T] = cmax[x, a, k], dstar[x, a, k]
                edge[x, a, n_T] = edge[x, a, k]
    return cmax, dstar, edge


def table5_rows(cmax, dstar, edge, xis):
    """Each field's row of Table 5 at the xi that maximises its all-temperature C^max.

    Args:
        cmax, dstar, edge: (X, m, n_T + 1) from :func:`maxima`.
        xis: (m,) the xi scan.

    Returns:
        xi_best (X,) (NaN for a field with no finite C^max), table5 (X, n_T + 1, 3)
        [C^max, delta*, xi] and its edge flags (X, n_T + 1) int8.
    """
    xis = np.asarray(xis, dtype=float)
    n_X, _, n_T1 = cmax.shape
    xi_best = np.full(n_X, np.nan)
    table5 = np.full((n_X, n_T1, 3), np.nan)
    t5_edge = np.zeros((n_X, n_T1), np.int8)
    for x in range(n_X):
        if np.isfinite(cmax[x, :, -1]).any():
            a = int(np.nanargmax(cmax[x, :, -1]))
            xi_best[x] = xis[a]
            table5[x, :, 0], table5[x, :, 1], table5[x, :, 2] = cmax[x, a], dstar[x, a], xis[a]
            t5_edge[x] = edge[x, a]
    return xi_best, table5, t5_edge
