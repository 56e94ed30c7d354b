"""Field-field correlation matrices and summaries over samples (METHOD.md s. 7-8).

* :func:`pearson_matrix`, :func:`spearman_matrix`: every column of one set of
  per-particle fields against every column of another, vectorised (e.g. Gamma, Upsilon,
  Theta at several xi against the propensity at 40 times, in one call).
* :func:`curve_max`: C^max and the delta* where it is reached (paper Table 5).
* :func:`subensembles`: disjoint replica sets (paper Table 4: three 30-replica
  sub-ensembles e30^A, e30^B, e30^C of a 100-replica ensemble e100).
* :func:`describe`: mean, spread and quantiles of a coefficient over samples (paper
  Fig. 6 violins, supplementary Table S2).

NaN conventions: a constant column has no correlation coefficient and gives NaN (inputs
must be finite, so NaN in a correlation matrix means exactly that a column was
constant; :func:`constant_columns` says which). :func:`curve_max` and :func:`describe`
ignore NaN and count it.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from glasscam_mpi.analysis.checks import require_finite


def _columns(values, name: str, n: int | None = None) -> np.ndarray:
    """(N, k) finite float64 copy of an (N,) or (N, k) array, N >= 2."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N,) or (N, k) with N >= 2 and k >= 1; "
                         f"got shape {np.shape(values)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the other argument has {n}; "
                         f"both must hold one value per particle of the same sample")
    require_finite(arr, name, "; drop those particles from both fields first")
    return arr


def constant_columns(values) -> np.ndarray:
    """(k,) bool: which columns of an (N,) or (N, k) array are constant (max == min)."""
    arr = _columns(values, "values")
    return np.ptp(arr, axis=0) == 0


def _standardised(arr: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm; constant columns are NaN."""
    dev = arr - arr.mean(axis=0)
    norm = np.sqrt(np.einsum("nk,nk->k", dev, dev))
    flat = np.ptp(arr, axis=0) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = dev / norm
    out[:, flat] = np.nan
    return out


def pearson_matrix(A, B) -> np.ndarray:
    """Pearson correlation coefficients of every column of A with every column of B.

    Args:
        A: (N,) or (N, k) per-particle fields, finite.
        B: (N,) or (N, m) per-particle fields of the same N particles, finite.

    Returns:
        (k, m) float64, C[a, b] = pearson(A[:, a], B[:, b]) in [-1, 1] (as
        ``scipy.stats.pearsonr``, to ~1e-15); NaN where A[:, a] or B[:, b] is constant
        (see :func:`constant_columns`), and only there. 1D inputs still give a 2D
        result, (1, 1) for two fields.

    Raises:
        ValueError: On non-finite values, N < 2, or different N.
    """
    a = _columns(A, "A")
    b = _columns(B, "B", a.shape[0])
    C = _standardised(a).T @ _standardised(b)
    return np.clip(C, -1.0, 1.0)


def spearman_matrix(A, B) -> np.ndarray:
    """Spearman rank correlations of every column of A with every column of B.

    The Pearson coefficient of the ranks, ties getting their average rank (as
    ``scipy.stats.spearmanr``). Shapes, NaN and errors as :func:`pearson_matrix`.
    """
    a = _columns(A, "A")
    b = _columns(B, "B", a.shape[0])
    return pearson_matrix(scipy.stats.rankdata(a, axis=0), scipy.stats.rankdata(b, axis=0))


def curve_max(x, y) -> tuple[float, float]:
    """The largest y of a curve and the x where it is reached, ignoring NaN.

    For C^max and delta* of paper Table 5: ``curve_max(delta, C)``.

    Args:
        x: (n,) abscissae (e.g. delta, the mean cage-relative displacement).
        y: (n,) values, NaN allowed (skipped).

    Returns:
        (y_max, x_at_max) as floats; the first x if the maximum repeats; (NaN, NaN) if
        every y is NaN.

    Raises:
        ValueError: If x and y are not 1D of one length, or x is not finite.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 1:
        raise ValueError(f"x and y must be 1D arrays of one length >= 1; got shapes "
                         f"{x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    if np.any(np.isinf(y)):
        raise ValueError("y must be finite or NaN, not infinite")
    if np.all(np.isnan(y)):
        return float("nan"), float("nan")
    k = int(np.nanargmax(y))
    return float(y[k]), float(x[k])


def subensembles(n_replicas: int, size: int = 30, count: int = 3, seed=None) -> np.ndarray:
    """Disjoint sets of replica indices (paper Table 4: e30^A, e30^B, e30^C of e100).

    Args:
        n_replicas: Replicas available, indexed 0 .. n_replicas - 1.
        size: Replicas per sub-ensemble (>= 1).
        count: Number of sub-ensembles (>= 1).
        seed: None: consecutive blocks [0, size), [size, 2 size), ... (replicas are
            exchangeable: their velocities are independent draws); otherwise an
            ``np.random.default_rng`` seed for a random disjoint choice.

    Returns:
        (count, size) int64 indices, each row sorted, no index twice.

    Raises:
        ValueError: If size * count > n_replicas, or a count/size is not a positive int.
    """
    for name, v in (("n_replicas", n_replicas), ("size", size), ("count", count)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if size * count > n_replicas:
        raise ValueError(f"{count} disjoint sub-ensembles of {size} replicas need "
                         f"{size * count} replicas; only {n_replicas} available")
    if seed is None:
        pool = np.arange(size * count)
    else:
        pool = np.random.default_rng(seed).permutation(n_replicas)[:size * count]
    return np.sort(pool.reshape(count, size).astype(np.int64), axis=1)


def describe(values, ddof: int = 1) -> dict:
    """Summary of a sample of values (e.g. one coefficient over test samples), NaN skipped.

    Args:
        values: Array of any shape (flattened); NaN entries are counted, not used.
        ddof: Delta degrees of freedom of the standard deviation (1: sample std).

    Returns:
        dict with float mean, std, median, q25, q75 (linear-interpolated quartiles),
        min, max, and int n (finite values used) and n_nan. Statistics are NaN when
        n == 0 (std also when n <= ddof).

    Raises:
        ValueError: On infinite values or non-numeric input.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"values must be a real numeric array; got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float).ravel()
    if np.any(np.isinf(arr)):
        raise ValueError("values must be finite or NaN, not infinite")
    ok = arr[~np.isnan(arr)]
    n = int(ok.size)
    out = {"n": n, "n_nan": int(arr.size - n)}
    if n == 0:
        out.update({k: float("nan") for k in ("mean", "std", "median", "q25", "q75",
                                              "min", "max")})
        return out
    q25, med, q75 = np.percentile(ok, [25, 50, 75])
    out.update(mean=float(ok.mean()),
               std=float(ok.std(ddof=ddof)) if n > ddof else float("nan"),
               median=float(med), q25=float(q25), q75=float(q75),
               min=float(ok.min()), max=float(ok.max()))
    return out
