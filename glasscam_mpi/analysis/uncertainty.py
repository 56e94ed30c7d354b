"""Uncertainty of C^max and delta*, and the null level of C^max (issue 18, item 5).

**Bootstrap.** The propensity is a mean over replicas, and the pooled curve a mean over
configurations; both are samples. A resample perturbs the replica mean of every ensemble
by a wild (random-sign) bootstrap of its replicas (:func:`replica_weights` says why not
multinomial draws), and, where there are several configurations, draws the
configurations with replacement (two-level bootstrap); each resample gives a pooled
curve C(delta) at common delta (:mod:`glasscam_mpi.analysis.pooling`) and its C^max and
delta*. Their spread over resamples is the uncertainty. Coarse-graining is linear, so the
coarse-grained propensity of a resample is the weighted mean of the replicas' coarse
fields, computed once (:func:`replica_bootstrap`): a resample costs one weighted sum and
one correlation, no pair search. xi_Delta and xi_best are held at the values the data
chose (the uncertainty is conditional on them).

**Null level.** A random periodic shift of the indicator field against Delta keeps both
fields' own spatial structure and breaks their relation: the indicator of particle i is
read at the particle nearest to r_i + s (:func:`shifted_indices`). C^max of the shifted
field, pooled and maximised over delta exactly as the real one, gives the level C^max
reaches by chance for fields this smooth (:func:`null_curves`); its 95th percentile is the
null level a result must exceed.

Everything takes arrays and a ``numpy.random.Generator`` and returns arrays; the stage
seeds the generators from the run seed per ensemble, so the results do not depend on the
rank count.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from glasscam_mpi.analysis.checks import as_box, as_positions, wrap
from glasscam_mpi.analysis.pooling import curve_max_edge, pool_at_common_delta

_CHUNK = 16  # resamples per weighted sum: (16, d_t, N) float64 temporaries


def replica_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) wild-bootstrap weights of a mean over n replicas: a resample is
    the mean plus sum_s g_s (r_s - mean) / n with random signs g_s = +-1, i.e. weights
    (1 + g_s - mean(g)) / n (each row sums to 1).

    Why not multinomial counts: the fluctuation of a resample's mean then has the
    covariance of the mean, as it should, but its noise *level* varies from resample to
    resample (sum of squared weights, relative spread ~ sqrt(11 / n) / 2: 30 % at n = 30),
    and a correlation over N particles is sensitive to the noise level: on replicas
    r_s = f + noise the multinomial bootstrap overstated the spread of C by 1.1-1.5x,
    the sign flips gave 0.85-1.0x (tests/test_analysis_uncertainty.py).
    """
    if n < 1 or n_resamples < 0:
        raise ValueError(f"need n >= 1 and n_resamples >= 0; got {n}, {n_resamples}")
    g = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
    return (1.0 + g - g.mean(axis=1, keepdims=True)) / n


def _standardise(a: np.ndarray, axis: int) -> np.ndarray:
    dev = a - a.mean(axis=axis, keepdims=True)
    norm = np.sqrt((dev * dev).sum(axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, dev / np.where(norm > 0, norm, 1.0), np.nan)


def replica_bootstrap(cg_rep: np.ndarray, delta_rep: np.ndarray, ind: np.ndarray,
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C(t) and delta(t) of replica resamples of one ensemble.

    Args:
        cg_rep: (n_s, d_t, N) each replica's displacement field, coarse-grained at xi_Delta.
        delta_rep: (n_s, d_t) each replica's bare displacement, mean over particles.
        ind: (N, k) indicator fields (coarse-grained, in the form correlated).
        weights: (B, n_s) resample weights (:func:`replica_weights`); uniform weights
            give the ensemble's own curve.

    Returns:
        (C (B, d_t, k) Pearson of each resample's coarse propensity with each indicator,
        delta (B, d_t)).
    """
    n_s, d_t, n = cg_rep.shape
    Z = _standardise(np.asarray(ind, dtype=float), axis=0)            # (N, k)
    out = np.empty((len(weights), d_t, Z.shape[1]))
    flat = cg_rep.reshape(n_s, d_t * n)
    for lo in range(0, len(weights), _CHUNK):
        W = weights[lo:lo + _CHUNK]
        F = (W @ flat).reshape(len(W), d_t, n)                          # weighted means
        out[lo:lo + len(W)] = _standardise(F, axis=2) @ Z
    return np.clip(out, -1.0, 1.0), weights @ delta_rep


def shifted_indices(box, positions, n_shifts: int, rng: np.random.Generator) -> np.ndarray:
    """(n_shifts, N): for each random periodic shift s (uniform in the box), the particle
    nearest to r_i + s, for every particle i. ``field[idx[s]]`` is the field moved by -s."""
    box = as_box(box)
    x = wrap(as_positions(positions, box), box)
    shifts = rng.uniform(0.0, 1.0, (n_shifts, box.shape[0])) * box
    tree = cKDTree(x, boxsize=box)
    moved = wrap((x[None, :, :] + shifts[:, None, :]).reshape(-1, box.shape[0]), box)
    return tree.query(moved)[1].reshape(n_shifts, len(x)).astype(np.int64)


def null_curves(cg_mean: np.ndarray, ind: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """C(t) of the coarse propensity with shifted indicator fields.

    Args:
        cg_mean: (d_t, N) the ensemble's coarse-grained propensity at each record.
        ind: (N, k) indicator fields.
        idx: (S, N) shifted particle indices (:func:`shifted_indices`).

    Returns:
        (S, d_t, k) Pearson coefficients.
    """
    D = _standardise(np.asarray(cg_mean, dtype=float), axis=1)         # (d_t, N)
    shifted = _standardise(np.asarray(ind, dtype=float)[idx], axis=1)  # (S, N, k)
    return np.clip(np.einsum("tn,snk->stk", D, shifted), -1.0, 1.0)


def pooled_maxima(deltas: np.ndarray, curves: np.ndarray,
                  draws: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """C^max and delta* of pooled curves, one per resample.

    Args:
        deltas: (n_c, R, d_t) delta of configuration c in resample r.
        curves: (n_c, R, d_t, k) its curves.
        draws: (R, n_c) configurations drawn (with replacement) for each resample, or None
            (every configuration once).

    Returns:
        (C^max (R, k), delta* (R, k)) of the mean over the drawn configurations at
        common delta (NaN where they share no delta).
    """
    n_c, R = deltas.shape[:2]
    k = curves.shape[-1]
    cmax, dstar = np.full((R, k), np.nan), np.full((R, k), np.nan)
    for r in range(R):
        pick = np.arange(n_c) if draws is None else draws[r]
        grid, mean, _, _ = pool_at_common_delta(deltas[pick, r], curves[pick, r])
        for j in range(k):
            if grid.size:
                cmax[r, j], dstar[r, j], _ = curve_max_edge(grid, mean[:, j])
    return cmax, dstar
