"""The seed ensemble's rows of ``analysis.h5``: C^max_Gamma,Delta, delta* and xi of every
member and of the ensemble, and their spread over the members (issue 18, item 0).

Written by analyze's reduce on rank 0 after :mod:`glasscam_mpi.stages.analyze_summary`,
when gradcam.h5 holds a seed ensemble (``dynamics/corr_members``). Additive: the rest of
the summary is untouched; ``gamma`` there is the ensemble's field.

The member rows and the ensemble row are pooled here by one helper, :func:`table5_rows`
(mean over configurations at each recorded time, then the maximum over the curve per
temperature and over every temperature together), so members and ensemble are compared
like with like whatever the main summary's pooling is.

    summary/members/cmax       (k + 1, m, n_T + 1)  C^max per xi and T (last column: every
                                                    T pooled); rows: members 0..k-1, then
                                                    the ensemble
    summary/members/delta_star (k + 1, m, n_T + 1)
    summary/members/xi_best    (k + 1,)   the xi maximising the pooled C^max
    summary/members/table5     (k + 1, n_T + 1, 3)  [C^max, delta*, xi] at xi_best
    summary/members/spread     (3, 4)     over the k members, of the pooled
                                          [C^max, delta*, xi]: [mean, std, min, max]

The headline (``glasscam info``) gains ``gamma_members``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from glasscam_mpi.analysis.stats import curve_max
from glasscam_mpi.learn.ensemble import SPREAD, spread


def _curve_max(delta: np.ndarray, C: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(delta) & np.isfinite(C)
    if not ok.any():
        return float("nan"), float("nan")
    return curve_max(delta[ok], C[ok])


def table5_rows(corr: np.ndarray, delta: np.ndarray, xis: np.ndarray):
    """C^max and delta* of several Gamma fields against the propensity.

    Args:
        corr: (n_c, n_T, d_t, F, m) Pearson of field f at xi_a with Delta at xi_Delta, at
            every recorded time (NaN where an ensemble was not analysed or had stopped).
        delta: (n_c, n_T, d_t) delta(t) (NaN likewise).
        xis: (m,) the xi scan.

    Returns:
        (cmax, delta_star) each (F, m, n_T + 1), xi_best (F,), table5 (F, n_T + 1, 3).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curves = np.nanmean(corr, axis=0)            # (n_T, d_t, F, m)
        cdelta = np.nanmean(delta, axis=0)           # (n_T, d_t)
    n_T, _, n_F, m = curves.shape
    cmax = np.full((n_F, m, n_T + 1), np.nan)
    dstar = np.full((n_F, m, n_T + 1), np.nan)
    for f in range(n_F):
        for a in range(m):
            for k in range(n_T):
                cmax[f, a, k], dstar[f, a, k] = _curve_max(cdelta[k], curves[k, :, f, a])
            cmax[f, a, n_T], dstar[f, a, n_T] = _curve_max(cdelta.ravel(),
                                                           curves[:, :, f, a].ravel())
    xi_best = np.full(n_F, np.nan)
    table5 = np.full((n_F, n_T + 1, 3), np.nan)
    for f in range(n_F):
        if np.isfinite(cmax[f, :, n_T]).any():
            a = int(np.nanargmax(cmax[f, :, n_T]))
            xi_best[f] = xis[a]
            table5[f, :, 0], table5[f, :, 1], table5[f, :, 2] = cmax[f, a], dstar[f, a], xis[a]
    return cmax, dstar, xi_best, table5


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
        cmax, dstar, xi_best, table5 = table5_rows(corr, delta, xis)
        k = members.shape[3]
        pooled = table5[:k, -1, :]                            # (k, 3) members, all T
        spr = np.array([[spread(pooled[:, q])[s] for s in SPREAD] for q in range(3)])
        G["cmax"], G["delta_star"], G["xi_best"], G["table5"] = cmax, dstar, xi_best, table5
        G["spread"] = spr
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
        fh.attrs["headline"] = json.dumps(headline)
    return head
