"""Spatial correlation functions, their length scales, and field-field correlations.

METHOD.md section 7: C_X(r) = <dX_i dX_j>_{r_ij in bin} / <dX^2>, dX = X - mean(X);
xi_Delta = where C_Delta first falls to 1/e, r_Gamma = where C_Gamma first crosses 0.

Pairs come from the periodic ``cKDTree`` of :mod:`glasscam_mpi.analysis.coarse` (the same
minimum-image pair search), so r_max must not exceed half the shortest box edge, beyond
which minimum-image shells are incomplete.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from glasscam_mpi.analysis.checks import as_box, as_field, as_positions, as_positive, wrap
from glasscam_mpi.analysis.coarse import iter_pairs


def spatial_correlation(box, positions, values, r_max: float,
                        bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Normalised spatial correlation function of per-particle field(s).

    The first returned point is r = 0, the self term, where C = <dX^2> / <dX^2> = 1 by
    definition. The following ``bins`` points are the centres of the equal bins
    [b w, (b + 1) w), w = r_max / bins (the last one closed at r_max), of *distinct* pairs
    (i != j): C = mean of dX_i dX_j over the pairs in the
    bin divided by the variance <dX^2> (mean over particles). A bin without pairs (e.g.
    below the closest approach) is NaN; :func:`first_crossing` skips NaN points.

    Args:
        box: (d,) box edges of the periodic box, length units.
        positions: (N, d) positions, any periodic image.
        values: (N,) field or (N, k) fields (one curve per column).
        r_max: Largest distance, 0 < r_max <= min(L) / 2.
        bins: Number of distance bins (>= 1).

    Returns:
        (r, C): r (bins + 1,) = [0, bin centres]; C (bins + 1,) or (bins + 1, k). A
        constant field has no variance and gives an all-NaN curve.

    Raises:
        ValueError: On malformed inputs, r_max beyond half the box, or bins < 1.
    """
    box = as_box(box)
    x = wrap(as_positions(positions, box), box)
    n = x.shape[0]
    X = as_field(values, n)
    r_max = as_positive(r_max, "r_max")
    if r_max > box.min() / 2:
        raise ValueError(f"r_max = {r_max:g} exceeds half the shortest box edge "
                         f"({box.min() / 2:g}); minimum-image shells are incomplete there")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    dX = X.reshape(n, -1) - X.reshape(n, -1).mean(axis=0)
    var = np.mean(dX * dX, axis=0)
    width = r_max / bins
    counts = np.zeros(bins)
    sums = np.zeros((bins, dX.shape[1]))
    for i, j, r2 in iter_pairs(box, x, r_max):
        b = np.minimum((np.sqrt(r2) / width).astype(np.int64), bins - 1)
        counts += np.bincount(b, minlength=bins)
        for col in range(dX.shape[1]):
            f = dX[:, col]
            sums[:, col] += np.bincount(b, weights=f[i] * f[j], minlength=bins)
    C = np.ones((bins + 1, dX.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        C[1:] = sums / counts[:, None] / var
    C[:, var == 0] = np.nan
    r = np.concatenate([[0.0], (np.arange(bins) + 0.5) * width])
    return r, (C[:, 0] if X.ndim == 1 else C)


def first_crossing(r, C, level: float) -> float:
    """The r where C first falls to ``level``, by linear interpolation.

    Args:
        r: (n,) increasing distances.
        C: (n,) correlation values; NaN points (empty bins) are skipped.
        level: The level, e.g. 1/e for xi_Delta or 0 for r_Gamma.

    Returns:
        The first r with C(r) = level between a point above the level and the next
        point at or below it; r[0] if C starts at or below the level; NaN if C never
        reaches it.
    """
    r, C, level = np.asarray(r, dtype=float), np.asarray(C, dtype=float), float(level)
    if r.ndim != 1 or C.shape != r.shape:
        raise ValueError(f"r and C must be 1D arrays of equal length; got shapes "
                         f"{r.shape} and {C.shape}")
    if not np.isfinite(level):
        raise ValueError(f"level must be finite; got {level!r}")
    ok = np.isfinite(C) & np.isfinite(r)
    r, C = r[ok], C[ok]
    if np.any(np.diff(r) <= 0):
        raise ValueError("r must be strictly increasing")
    below = np.flatnonzero(C <= level)
    if below.size == 0:
        return float("nan")
    k = int(below[0])
    if k == 0:
        return float(r[0])
    r0, r1, c0, c1 = r[k - 1], r[k], C[k - 1], C[k]
    return float(r0 + (level - c0) * (r1 - r0) / (c1 - c0))


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(f"x and y must be 1D arrays of equal length >= 2; got shapes "
                         f"{x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    return x, y


def pearson(x, y) -> float:
    """Pearson correlation coefficient of two (N,) fields; NaN if either is constant."""
    x, y = _pair(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.pearsonr(x, y).statistic)


def spearman(x, y) -> float:
    """Spearman rank correlation of two (N,) fields; NaN if either is constant."""
    x, y = _pair(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x, y).statistic)
