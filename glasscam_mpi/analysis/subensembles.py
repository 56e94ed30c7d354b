"""The ensemble study of Table 4 / Fig. 4: disjoint sub-ensembles against the full one.

From one isoconfigurational ensemble of n_s replicas: ``count`` disjoint sub-ensembles of
``size`` replicas (e30^A, e30^B, ...; :func:`~glasscam_mpi.analysis.stats.subensembles`)
and the full ensemble (e100), each one's propensity taken at the full ensemble's crossing
of a delta target (:func:`~glasscam_mpi.analysis.crossing.delta_crossing`, the same two
records and weight for every field, so all describe one time), bare and coarse-grained.
"""

from __future__ import annotations

import numpy as np

from glasscam_mpi.analysis.crossing import delta_crossing
from glasscam_mpi.analysis.neighbours import PairList
from glasscam_mpi.analysis.stats import pearson_matrix, subensembles

# The columns of :func:`ensemble_study` (analysis.h5 ``dynamics/ensemble``).
ENSEMBLE_COLUMNS = ("e30-e30 bare", "e30~-e30~", "e30-e30~ own", "e100-e100~", "e30~-e100~",
                    "e30-e30~ other")


def subensemble_fields(disp: np.ndarray, target: float, size: int,
                       count: int) -> np.ndarray | None:
    """The propensity of ``count`` disjoint ``size``-replica sub-ensembles and of the full
    ensemble, all at the full ensemble's crossing of ``target`` (the same two records and
    weight, as :func:`~glasscam_mpi.analysis.crossing.at_targets` interpolates), so every
    field describes one time.

    Args:
        disp: (n_s, n_times, N) cage-relative displacements of every replica.
        target: The delta target.
        size, count: Sub-ensembles (see :func:`~glasscam_mpi.analysis.stats.subensembles`).

    Returns:
        (N, count + 1) float64: sub-ensembles A, B, ..., then the full ensemble; None where
        the full ensemble's delta does not cross the target between two records (a target
        equal to delta at the first record is not taken there, unlike ``at_targets``).
    """
    full = disp.mean(axis=0)
    crossing = delta_crossing(full.mean(axis=1), target, at_first=False)
    if crossing is None:
        return None
    sets = subensembles(disp.shape[0], size, count)
    return np.stack([crossing.field(disp[s].mean(axis=0)) for s in sets]
                    + [crossing.field(full)], axis=1)


def ensemble_study(pl: PairList, disp: np.ndarray, targets: np.ndarray, xis, size: int,
                   count: int) -> np.ndarray:
    """Table 4's columns (:data:`ENSEMBLE_COLUMNS`) at every delta target and xi.

    Args:
        pl: The configuration's :class:`PairList` (r_max >= 2 max(xis)).
        disp: (n_s, n_times, N) float64 cage-relative displacements of every replica (all
            of them ok: the study compares fixed replica sets).
        targets: (D,) delta targets.
        xis: (m,) coarse-graining lengths (0: the bare field).
        size, count: ``count`` disjoint sub-ensembles of ``size`` replicas.

    Returns:
        (D, m, 6) float64, per target and xi: C(e30, e30) of the bare fields (mean over
        pairs of sub-ensembles), C(e30~, e30~), C(e30^i, e30~^i) (each sub-ensemble
        against its own coarse field), C(e100, e100~), C(e30~, e100~), and C(e30^i,
        e30~^j) averaged over j != i (against another sub-ensemble's coarse field); NaN
        rows where the full ensemble does not cross the target.
    """
    m = len(xis)
    out = np.full((len(targets), m, len(ENSEMBLE_COLUMNS)), np.nan)
    for j, target in enumerate(targets):
        fields = subensemble_fields(disp, float(target), size, count)  # (N, count + 1)
        if fields is None:
            continue
        e30, e100 = fields[:, :count], fields[:, count]
        cg = pl.coarse_grain_scan(fields, xis)                          # (m, N, count + 1)
        pairs = [(u, v) for u in range(count) for v in range(u + 1, count)]
        bare = np.mean([pearson_matrix(e30[:, [u]], e30[:, [v]])[0, 0] for u, v in pairs])
        for a_xi in range(m):
            g = cg[a_xi]
            out[j, a_xi, 0] = bare
            out[j, a_xi, 1] = np.mean([pearson_matrix(g[:, [u]], g[:, [v]])[0, 0]
                                       for u, v in pairs])
            out[j, a_xi, 2] = np.mean([pearson_matrix(e30[:, [u]], g[:, [u]])[0, 0]
                                       for u in range(count)])
            out[j, a_xi, 3] = pearson_matrix(e100[:, None], g[:, [count]])[0, 0]
            out[j, a_xi, 4] = np.mean([pearson_matrix(g[:, [u]], g[:, [count]])[0, 0]
                                       for u in range(count)])
            # the other reading of the paper's C(e30, e30~), "averaged over i != j":
            # sub-ensemble i against the coarse field of sub-ensemble j
            out[j, a_xi, 5] = np.mean([pearson_matrix(e30[:, [u]], g[:, [v]])[0, 0]
                                       for u in range(count) for v in range(count) if u != v])
    return out
