"""Crystallisation checks of the prepared samples (paper s. 2.2, supplementary S6/S7).

* :func:`hexatic`: 2D bond-orientational order psi_6 over Voronoi neighbours. A
  crystallised (triangular) region has |psi_6| -> 1 and a large global |<psi_6>|; a glass
  has local |psi_6| of a few tenths and a global order ~ N^(-1/2).
* :func:`energy_jumps`: discontinuous drops of the potential energy along a run's cooling
  ramp, the signature of crystallisation the paper checks for ("we did not observe any
  discontinuous jumps in the energy").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from glasscam_mpi.analysis.checks import as_box, as_positions, wrap
from glasscam_mpi.analysis.voronoi import voronoi_tessellation


class Hexatic(NamedTuple):
    """Result of :func:`hexatic`.

    Attributes:
        local: (N,) |psi_6,i| in [0, 1].
        order: |mean_i psi_6,i|, the global hexatic order in [0, 1].
        psi6: (N,) complex psi_6,i (its phase is the local lattice orientation x 6).
    """

    local: np.ndarray
    order: float
    psi6: np.ndarray


def hexatic(box, positions) -> Hexatic:
    """Bond-orientational order psi_6,i = (1/n_i) sum_j exp(6 i theta_ij), j Voronoi neighbours.

    theta_ij is the angle of the minimum-image bond from i to its Voronoi neighbour j,
    neighbours from the periodic Delaunay triangulation (analysis.voronoi, backend
    "delaunay"; faces shorter than 1e-9 spacings are not bonds). Unweighted by face
    length.

    Args:
        box: (2,) box edges (Lx, Ly), length units.
        positions: (N, 2) positions, any periodic image.

    Returns:
        The :class:`Hexatic`: per-particle |psi_6| and the global |<psi_6>|.

    Raises:
        ValueError: On malformed inputs or a 3D box (psi_6 is a 2D order parameter).
    """
    box = as_box(box)
    if box.shape[0] != 2:
        raise ValueError(f"hexatic order psi_6 is 2D only; got a {box.shape[0]}D box")
    x = wrap(as_positions(positions, box), box)
    n = x.shape[0]
    tess = voronoi_tessellation(box, x, backend="delaunay")
    i, j, vec = tess.bond_i, tess.bond_j, tess.bond_vectors
    real = i != j
    i, j, vec = i[real], j[real], vec[real]
    _, first = np.unique(i * n + j, return_index=True)  # one bond per neighbour pair
    i, vec = i[first], vec[first]
    phase = np.exp(6j * np.arctan2(vec[:, 1], vec[:, 0]))
    count = np.bincount(i, minlength=n)
    total = np.bincount(i, weights=phase.real, minlength=n) + \
        1j * np.bincount(i, weights=phase.imag, minlength=n)
    psi = total / np.maximum(count, 1)
    return Hexatic(local=np.abs(psi), order=float(np.abs(psi.mean())), psi6=psi)


class EnergyJumps(NamedTuple):
    """Result of :func:`energy_jumps`.

    Attributes:
        flagged: True if any jump was found.
        start: (J,) int64 index k of each jump's first point (the drop is from U[k]),
            sorted.
        stop: (J,) int64 index of each jump's last point (U[stop] after the drop).
        drop: (J,) float64 excess drop -E > 0 beyond the smooth trend's allowance
            (energy units; a lower bound on the drop when the side windows catch part
            of it).
        T: (J,) float64 T[start], the temperature where the jump begins.
        noise: s, the robust noise scale: sigma_U(T) = s T (units of U / T).
    """

    flagged: bool
    start: np.ndarray
    stop: np.ndarray
    drop: np.ndarray
    T: np.ndarray
    noise: float


def energy_jumps(T, U, n_sigma: float = 8.0, ratio: float = 1.0, max_width: int = 3,
                 half_window: int = 5) -> EnergyJumps:
    """Flag discontinuous drops of U along one run's cooling ramp (crystallisation).

    Criterion. With the points in ramp (time) order, the change over a run of w
    consecutive steps (w = 1 .. ``max_width``: a drop may take a few samples),
    D = U[k + w] - U[k], is compared with the smooth trend's change over w steps. The
    trend's step is the mean step over the ``half_window`` = h steps just before the run,
    (U[k] - U[k - h]) / h, and over those just after it; the allowance is w times the
    more negative of the two, so a kink (the glass transition: steps change from the
    liquid's to the glass's) is not a drop, and a drop next to the run only raises the
    allowance. The excess E = D - allowance is a jump when E < 0 and both

    * |E| > n_sigma * sigma_E, sigma_E = s sqrt((T[k]^2 + T[k + w]^2) (1 + (w / h)^2)):
      the noise of a difference of two points and of the trend, thermal fluctuations of
      U being sigma_U(T) = s T with s a robust scale for the whole ramp (1.4826 x the
      median absolute deviation of the second differences
      (U[k+1] - 2 U[k] + U[k-1]) / T[k], over sqrt(6); a few jumps do not inflate it),
    * |E| > ratio * w * (the larger |mean step| of the two sides): larger than the
      smooth trend's own change over those steps, a drop at nearly constant T.

    Runs are taken narrowest first (w = 1, then 2, ...) and, within one width, largest
    first; a step belongs to at most one run; adjacent runs merge into one jump (a drop
    spread over a few samples). Runs with neither side complete are not tested.

    Defaults: 8 sigma, ratio 1, width 3, 5 steps a side. Measured on smooth synthetic
    ramps (liquid U ~ T^(3/5) with a sharp glass kink at T = 0.37, 101 samples from
    T = 4 to 0.05, noise sd T sqrt(c / N) with c the curve's slope, measured T with
    relative noise N^(-1/2)): one flag in 10000 ramps (5000 at N = 200, 5000 at
    N = 2000; 7 sigma gave ~5e-4 per ramp, 6 sigma ~2e-3); a drop of 0.3 per particle at
    T = 0.52 for N = 2000 is flagged at its step in 3000/3000 ramps (its size within
    0.12), 0.2 in 199/200, 0.15 in 143/200. The
    detection limit is thus ~ 8 sqrt(2) sigma_U(T) (~0.2 per particle at T = 0.5 for
    N = 2000, sigma_U ~ 0.018) and at least one liquid step of the ramp (~0.1 for 100
    samples): a crystallisation of much of the sample (latent heat of order 0.5 per
    particle) shows, a small crystallite does not. These ramps are in
    tests/test_analysis_order.py.

    Args:
        T: (n,) temperatures in ramp (time) order, > 0 (measured or target).
        U: (n,) potential energy per particle in the same order.
        n_sigma: Significance threshold in noise units (> 0).
        ratio: Threshold in units of the trend's step (>= 0).
        max_width: Longest run of steps one drop may take (>= 1).
        half_window: Steps on each side that set the trend (>= 3).

    Returns:
        The :class:`EnergyJumps`.

    Raises:
        ValueError: On arrays that are not 1D of one length, fewer than
            2 * half_window + 2 points, non-finite values, T <= 0, or invalid thresholds.
    """
    T, U = np.asarray(T, dtype=float), np.asarray(U, dtype=float)
    if T.ndim != 1 or T.shape != U.shape:
        raise ValueError(f"T and U must be 1D of one length; got {T.shape} and {U.shape}")
    ints = (int, np.integer)
    for name, v, ok in (("n_sigma", n_sigma, n_sigma > 0), ("ratio", ratio, ratio >= 0),
                        ("max_width", max_width, isinstance(max_width, ints) and max_width >= 1),
                        ("half_window", half_window, isinstance(half_window, ints)
                         and half_window >= 3)):
        if not ok:
            raise ValueError(f"{name} has an invalid value {v!r}")
    if T.size < 2 * half_window + 2:
        raise ValueError(f"need at least {2 * half_window + 2} points (half_window = "
                         f"{half_window} steps a side); got {T.size}")
    if not (np.all(np.isfinite(T)) and np.all(np.isfinite(U))):
        raise ValueError("T and U must be finite")
    if np.any(T <= 0):
        raise ValueError(f"T must be absolute temperatures > 0; got min {T.min():g}")
    z2 = (U[2:] - 2.0 * U[1:-1] + U[:-2]) / T[1:-1]
    s = 1.4826 * float(np.median(np.abs(z2 - np.median(z2)))) / np.sqrt(6.0)
    h, n_steps = half_window, T.size - 1
    taken = np.zeros(n_steps, dtype=bool)
    found = []
    for w in range(1, min(max_width, n_steps - h) + 1):  # narrowest first
        k = np.arange(n_steps - w + 1)
        kl, kr = np.clip(k - h, 0, None), np.clip(k + w + h, None, T.size - 1)
        left = np.where(k >= h, (U[k] - U[kl]) / h, np.nan)           # mean step before
        right = np.where(k + w + h <= n_steps, (U[kr] - U[k + w]) / h, np.nan)  # and after
        have = ~(np.isnan(left) & np.isnan(right))
        E = U[k + w] - U[k] - w * np.fmin(left, right)
        sigma = s * np.sqrt((T[k] ** 2 + T[k + w] ** 2) * (1.0 + (w / h) ** 2))
        with np.errstate(invalid="ignore"):
            hit = np.flatnonzero(have & (E < 0) & (-E > n_sigma * sigma)
                                 & (-E > ratio * w * np.fmax(np.abs(left), np.abs(right))))
        for kk in hit[np.argsort(E[hit])]:  # largest first
            if not taken[kk:kk + w].any():
                taken[kk:kk + w] = True
                found.append((int(kk), int(kk + w), float(-E[kk])))
    merged: list[list] = []
    for a, b, drop in sorted(found):  # a drop spread over adjacent runs is one jump
        if merged and merged[-1][1] == a:
            merged[-1][1], merged[-1][2] = b, merged[-1][2] + drop
        else:
            merged.append([a, b, drop])
    start = np.array([j[0] for j in merged], dtype=np.int64)
    return EnergyJumps(flagged=bool(merged), start=start,
                       stop=np.array([j[1] for j in merged], dtype=np.int64),
                       drop=np.array([j[2] for j in merged], dtype=float), T=T[start],
                       noise=s)


def energy_jump_flags(ok: np.ndarray, T: np.ndarray, U: np.ndarray):
    """(flags, T at the jump) of runs with (measured T, U) rows: 1 jump, 0 none, -1 not
    checked (a failed run, or too few energy samples to judge).

    Args:
        ok: (n_runs,) bool, the runs to check.
        T, U: (n_runs, n_samples) measured temperature and potential energy per particle
            along each run's ramp.

    Returns:
        (n_runs,) int8 flags of :func:`energy_jumps` with its default thresholds, and
        (n_runs,) float64 the temperature where the first jump starts (NaN otherwise).
    """
    flags = np.full(len(ok), -1, dtype=np.int8)
    where = np.full(len(ok), np.nan)
    for i in np.flatnonzero(ok):
        try:
            res = energy_jumps(T[i], U[i])
        except ValueError:  # too few samples along the ramp to judge ([prepare].energy_samples)
            continue
        flags[i] = int(res.flagged)
        where[i] = res.T[0] if res.flagged else np.nan
    return flags, where
