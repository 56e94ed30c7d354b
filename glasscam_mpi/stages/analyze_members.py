"""The seed ensemble's rows of ``analysis.h5``: C^max_Gamma,Delta, delta* and xi of every
member and of the ensemble, and their spread over the members (issue 18, item 0).

Written by analyze's reduce on rank 0 after :mod:`glasscam_mpi.stages.analyze_summary`,
when gradcam.h5 holds a seed ensemble (``dynamics/corr_members``). Additive: the rest of
the summary is untouched; ``gamma`` there is the ensemble's field.

The member rows and the ensemble row are pooled by :func:`pooled_table5` exactly as the main
summary pools Table 5 (its own pooling function), so the ensemble's row equals
``summary/table5``'s Gamma row and members and ensemble are compared like with like.

    summary/members/cmax       (k + 1, m, n_T + 1)  C^max per xi and T (last column: every
                                                    T pooled); rows: members 0..k-1, then
                                                    the ensemble
    summary/members/delta_star (k + 1, m, n_T + 1)
    summary/members/xi_best    (k + 1,)   the xi maximising the pooled C^max
    summary/members/table5     (k + 1, n_T + 1, 3)  [C^max, delta*, xi] at xi_best
    summary/members/table5_edge (k + 1, n_T + 1) i1  1 where delta* is the last delta
                                          reached (C^max a lower bound), -1 the first
    summary/members/spread     (3, 4)     over the k members, of the pooled
                                          [C^max, delta*, xi]: [mean, std, min, max]

The headline (``glasscam info``) gains ``gamma_members``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from glasscam_mpi.jsonio import dumps
from glasscam_mpi.learn.ensemble import SPREAD, spread


def pooled_table5(corr: np.ndarray, delta: np.ndarray, xis: np.ndarray):
    """C^max and delta* of several Gamma fields against the propensity, pooled exactly as
    the main summary pools Table 5 (:mod:`glasscam_mpi.stages.analyze_summary`: the
    configurations at common delta, the maximum of each temperature's curve, and for all
    temperatures together the temperature with the largest C^max).

    Args:
        corr: (n_c, n_T, d_t, F, m) Pearson of field f at xi_a with Delta at xi_Delta, at
            every recorded time (NaN where an ensemble was not analysed or had stopped).
        delta: (n_c, n_T, d_t) delta(t) (NaN likewise).
        xis: (m,) the xi scan.

    Returns:
        (cmax, delta_star) each (F, m, n_T + 1), xi_best (F,), table5 (F, n_T + 1, 3),
        table5_edge (F, n_T + 1) int8 (1: delta* at the last delta reached, a lower bound;
        -1 at the first; 0 inside).
    """
    from glasscam_mpi.analysis.pooling import maxima, pool_temperatures
    from glasscam_mpi.analysis.pooling import table5_rows as rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curves, _, grid, _ = pool_temperatures(delta, corr)    # (F, m, n_T, G), (n_T, G)
    cmax, dstar, edge = maxima(grid, curves)
    xi_best, table5, t5_edge = rows(cmax, dstar, edge, xis)
    return cmax, dstar, xi_best, table5, t5_edge


def _r(x) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def summarize_members(path, cfg, plan) -> dict:
    """Write ``summary/members`` and the headline's ``gamma_members``; returns the latter."""
    import h5py

    with h5py.File(path, "a") as fh:
        S = fh["summary"]
        if "members" in S:
            del S["members"]
        G = S.create_group("members")
        xis = fh["xis"][:]
        b = int(np.flatnonzero(xis == float(S.attrs["xi_delta"]))[0])
        dyn_ok = fh["status"][plan.n_samples:].reshape(plan.shape) == 1
        members = fh["dynamics/corr_members"][..., b]          # (n_c, n_T, d_t, k, m)
        ens = fh["dynamics/corr"][..., 0:1, :, b]             # (n_c, n_T, d_t, 1, m) gamma
        corr = np.concatenate([members, ens], axis=3)
        corr[~dyn_ok] = np.nan
        delta = fh["dynamics/delta"][:]
        delta[~dyn_ok] = np.nan
        cmax, dstar, xi_best, table5, t5_edge = pooled_table5(corr, delta, xis)
        k = members.shape[3]
        pooled = table5[:k, -1, :]                            # (k, 3) members, all T
        spr = np.array([[spread(pooled[:, q])[s] for s in SPREAD] for q in range(3)])
        G["cmax"], G["delta_star"], G["xi_best"], G["table5"] = cmax, dstar, xi_best, table5
        G["spread"], G["table5_edge"] = spr, t5_edge
        G.attrs.update(rows=f"members 0..{k - 1}, then the ensemble", xi_delta=xis[b],
                       spread_rows="C_max,delta_star,xi", spread_columns=",".join(SPREAD))
        head = {"members": k,
                "C_max": [_r(v) for v in pooled[:, 0]],
                "delta_star": [_r(v) for v in pooled[:, 1]],
                "xi": [_r(v) for v in pooled[:, 2]],
                "ensemble": {"C_max": _r(table5[k, -1, 0]), "delta_star": _r(table5[k, -1, 1]),
                             "xi": _r(table5[k, -1, 2])},
                "spread": {name: {s: _r(spr[q, j]) for j, s in enumerate(SPREAD)}
                           for q, name in enumerate(("C_max", "delta_star", "xi"))}}
        headline = json.loads(fh.attrs["headline"]) if "headline" in fh.attrs else {}
        headline["gamma_members"] = head
        fh.attrs["headline"] = dumps(headline)
    return head
