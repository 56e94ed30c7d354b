"""The structural indicators compared with each other and with the propensity.

The numerics of the analyze stage (paper sections 3.6, 4.2-4.7), one configuration at a
time, arrays in and arrays out:

* :func:`compare_sample`: one test sample's bare Gamma, Upsilon, Theta coarse-grained at
  every xi, their pairwise Pearson and Spearman correlations (Fig. 6, Table S2), C(r) of
  the bare fields (Fig. 8; of every CNN layer's Gamma too), g(r) and in 2D psi_6;
* :func:`compare_ensemble`: one glass configuration's indicators against its propensity
  Delta(t): the Pearson correlation of every (indicator at xi_a, Delta at xi_b) at every
  recorded time (Figs 5, 7; Table 3's xi scan), C_Delta(r) at each delta target (Fig. 3),
  and the [0, 1] coarse-grained maps (Figs 1, 2).

Indicators enter the comparison with the propensity in the form ``sign`` says (-1: 1 - X
after the [0, 1] normalisation, the paper's choices by default: :func:`one_minus`); the
pairwise correlations between indicators are of the bare indicators, as in the paper.
"""

from __future__ import annotations

import numpy as np

from glasscam_mpi.analysis.coarse import normalize01
from glasscam_mpi.analysis.neighbours import PairList
from glasscam_mpi.analysis.order import hexatic
from glasscam_mpi.analysis.stats import constant_columns, pearson_matrix, spearman_matrix
from glasscam_mpi.reference import PAPER_ONE_MINUS

INDICATORS = ("gamma", "volume", "theta")
PAIRS = ((0, 1), (0, 2), (2, 1))  # gamma-volume, gamma-theta, theta-volume (paper's order)
PAIR_NAMES = ("gamma-volume", "gamma-theta", "theta-volume")
CLASSES = ("liquid", "glass")


def one_minus(setting: str, system: str) -> tuple[str, ...]:
    """The indicators that enter correlations with the propensity as 1 - X.

    Args:
        setting: ``[analyze].one_minus``: "paper" (the paper's choice for ``system``;
            gamma and theta for a system the paper has no choice for), "none", or a
            comma-separated list of indicators.
        system: The system's name (KAM, ABM, ABM-code, KA3D).
    """
    if setting == "paper":
        return PAPER_ONE_MINUS.get(system, ("gamma", "theta"))
    if setting == "none":
        return ()
    return tuple(x.strip() for x in setting.split(","))


def forms(setting: str, system: str) -> dict[str, str]:
    """Indicator -> "1 - X" or "X": the form it enters the comparison with the propensity."""
    flip = one_minus(setting, system)
    return {x: ("1 - X" if x in flip else "X") for x in INDICATORS}


def pair_list(box: np.ndarray, x: np.ndarray, xis, r_corr: float) -> PairList:
    """The one pair search of a configuration: every pair within 2 max(xi) and r_corr."""
    return PairList(box, x, max(2 * max(xis), r_corr, 1e-9))


def normalised(F: np.ndarray, sign: np.ndarray | None) -> np.ndarray:
    """[0, 1] normalisation of each column of (..., N, k) fields, then 1 - X where ``sign``
    (k,) is -1 (constant columns stay 0, or 1 as 1 - X); NaN entries are left out."""
    out = normalize01(F, axis=-2, ignore_nan=True)
    return np.where(sign < 0, 1.0 - out, out) if sign is not None else out


def species_pairs(n_species: int) -> tuple[tuple[int, int], ...]:
    """(a, b), a <= b: the columns of a sample's g(r) (binary: AA, AB, BB)."""
    return tuple((a, b) for a in range(n_species) for b in range(a, n_species))


def empty_sample(m: int, bins: int, rdf_bins: int, n_layers: int = 0, n_species: int = 2,
                 predicted: int | None = None, label: int = 1) -> dict:
    """A test sample's rows before anything is computed (what :func:`compare_sample`
    fills, and what a sample that does not exist keeps): NaN, and "no CNN" (-1) in
    ``correct`` where ``predicted`` is None."""
    X = len(INDICATORS)
    return {"pearson": np.full((m, len(PAIRS)), np.nan),
            "spearman": np.full((m, len(PAIRS)), np.nan),
            "constant": np.zeros(X, np.int8),
            "correct": np.array(-1 if predicted is None else int(predicted == label), np.int8),
            "corr_r": np.full((bins + 1, X), np.nan),
            "corr_r_layers": np.full((bins + 1, max(n_layers, 1)), np.nan),
            "rdf": np.full((rdf_bins, len(species_pairs(n_species))), np.nan),
            "psi6": np.array(np.nan), "psi6_local": np.array(np.nan)}


def compare_sample(pl: PairList, x: np.ndarray, types: np.ndarray, F: np.ndarray, *,
                   box: np.ndarray, xis, r_corr: float, bins: int, rdf_bins: int,
                   n_layers: int = 0, layers: np.ndarray | None = None,
                   predicted: int | None = None, label: int = 1, n_species: int = 2) -> dict:
    """Everything analyze computes for one test sample (one class).

    Args:
        pl: The configuration's :class:`PairList` (:func:`pair_list`).
        x: (N, d) positions; types: (N,) species (0, 1).
        F: (N, 3) bare Gamma (NaN without a CNN), Upsilon, Theta.
        box: (d,) box edges.
        xis: (m,) coarse-graining lengths (0: the bare field).
        r_corr, bins: Range and bins of C(r); rdf_bins: bins of g(r) over the same range.
        n_layers: CNN layers (the width of ``corr_r_layers``; at least 1 column).
        layers: (N, L) Gamma of every CNN layer, or None.
        predicted, label: The CNN's class and the true one (0 liquid, 1 glass), or None.
        n_species: Species of the system (the columns of ``rdf``: :func:`species_pairs`).

    Returns:
        ``pearson``, ``spearman`` (m, P) of the bare indicators at every xi (pairs
        :data:`PAIR_NAMES`); ``constant`` (X,) int8, 1 for a constant field; ``correct``
        int8, 1 classified right, 0 wrong, -1 no CNN; ``corr_r`` (B + 1, X) and
        ``corr_r_layers`` (B + 1, max(L, 1)) C(r); ``rdf`` (rdf_bins, P_s) g_ab for a <= b (binary: g_AA, g_AB, g_BB);
        ``psi6`` and ``psi6_local`` (2D; NaN in 3D). NaN where a field is absent.
    """
    m, X, B = len(xis), len(INDICATORS), bins
    out = empty_sample(m, bins, rdf_bins, n_layers, n_species, predicted, label)
    have = np.isfinite(F).all(axis=0)
    cols = np.flatnonzero(have)
    # the pairwise correlations are of the bare indicators (X), as in the paper's Fig. 6 and
    # Table S2; the 1 - X forms are only for the comparison with the propensity
    G = normalised(pl.coarse_grain_scan(F[:, cols], xis), None)  # (m, N, k)
    out["constant"][cols] = constant_columns(F[:, cols])
    for a_xi in range(m):
        P, S = np.full((X, X), np.nan), np.full((X, X), np.nan)
        P[np.ix_(cols, cols)] = pearson_matrix(G[a_xi], G[a_xi])
        # ranks of values rounded to 1e-12 of the [0, 1] range: equal values (e.g. the
        # zeros ReLU leaves in Gamma) stay ties whatever the last bits of the sums
        rounded = np.round(G[a_xi], 12)
        S[np.ix_(cols, cols)] = spearman_matrix(rounded, rounded)
        for p, (u, v) in enumerate(PAIRS):
            out["pearson"][a_xi, p], out["spearman"][a_xi, p] = P[u, v], S[u, v]
    out["corr_r"][:, cols] = pl.correlation(F[:, cols], r_corr, B)[1]
    if layers is not None:
        out["corr_r_layers"][:] = pl.correlation(layers, r_corr, B)[1]
    g = pl.rdf(types, bins=rdf_bins, r_max=r_corr, n_species=n_species).partial
    out["rdf"][:] = np.stack([g[a, b] for a, b in species_pairs(n_species)], axis=1)
    if box.shape[0] == 2:
        h = hexatic(box, x)
        out["psi6"], out["psi6_local"] = np.array(h.order), np.array(h.local.mean())
    return out


def compare_ensemble(pl: PairList, F: np.ndarray, D: np.ndarray, at: np.ndarray, *, xis,
                     sign: np.ndarray, r_corr: float, bins: int,
                     members: np.ndarray | None = None) -> dict:
    """Indicators of one glass configuration against its propensity.

    Args:
        pl: The configuration's :class:`PairList` (r_max >= 2 max(xis) and r_corr).
        F: (N, 3) bare Gamma (NaN without a CNN), Upsilon, Theta of the configuration.
        D: (n_times, N) propensity Delta_i(t) (NaN rows after the ensemble stopped).
        at: (n_targets, N) propensity at each delta target (NaN rows where not reached).
        xis: (m,) coarse-graining lengths (0: the bare field).
        sign: (3,) -1 where an indicator enters as 1 - X, +1 otherwise.
        r_corr, bins: Range and bins of C_Delta(r).
        members: (N, k) bare Gamma of each member of a seed ensemble (in Gamma's form),
            or None.

    Returns:
        ``corr`` (n_times, X, m, m) Pearson(indicator at xi_a, Delta at xi_b);
        ``corr_delta_r`` (n_targets, B + 1) C_Delta(r); ``maps_indicators`` (X, m, N) and
        ``maps_delta`` (n_targets, m, N) float32 normalised coarse-grained fields; with
        ``members``, ``corr_members`` (n_times, k, m, m). NaN where absent or not reached.
    """
    m, X, B = len(xis), len(INDICATORS), bins
    cols = np.flatnonzero(np.isfinite(F).all(axis=0))
    ind_cg = np.full((m, F.shape[0], X), np.nan)
    ind_cg[:, :, cols] = normalised(pl.coarse_grain_scan(F[:, cols], xis), sign[cols])
    finite = np.flatnonzero(np.isfinite(D).all(axis=1))
    corr = np.full((D.shape[0], X, m, m), np.nan)
    if members is not None:
        k = members.shape[1]
        mem_cg = normalised(pl.coarse_grain_scan(members, xis), sign[:1])
        mem_flat = mem_cg.transpose(1, 2, 0).reshape(F.shape[0], k * m)  # column j * m + a
        corr_m = np.full((D.shape[0], k, m, m), np.nan)
    if finite.size:
        D_cg = normalised(pl.coarse_grain_scan(D[finite].T, xis), None)  # (m, N, t)
        # (N, k * m), column x * m + a = indicator x at xi_a
        flat = ind_cg[:, :, cols].transpose(1, 2, 0).reshape(F.shape[0], len(cols) * m)
        for b in range(m):
            # every recorded time against every (indicator, xi_a), Delta at xi_b
            C = pearson_matrix(D_cg[b], flat).reshape(len(finite), len(cols), m)
            corr[np.ix_(finite, cols, np.arange(m), [b])] = C[..., None]
            if members is not None:
                C = pearson_matrix(D_cg[b], mem_flat).reshape(len(finite), k, m)
                corr_m[np.ix_(finite, np.arange(k), np.arange(m), [b])] = C[..., None]
    reached = np.isfinite(at).all(axis=1)
    corr_r = np.full((at.shape[0], B + 1), np.nan)
    maps_d = np.full((at.shape[0], m, at.shape[1]), np.nan, dtype=np.float32)
    if reached.any():
        corr_r[reached] = pl.correlation(at[reached].T, r_corr, B)[1].T
        maps_d[reached] = normalised(pl.coarse_grain_scan(at[reached].T, xis),
                                     None).transpose(2, 0, 1)
    out = {"corr": corr, "corr_delta_r": corr_r,
           "maps_indicators": ind_cg.transpose(2, 0, 1).astype(np.float32),
           "maps_delta": maps_d}
    if members is not None:
        out["corr_members"] = corr_m
    return out
