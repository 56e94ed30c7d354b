"""Uncertainty and null level of Table 5, added to ``analysis.h5`` after the summary.

Runs on rank 0 in analyze's reduce, after :func:`~glasscam_mpi.stages.analyze_summary.
summarize_into` (it needs xi_Delta and xi_best). Numerics in
:mod:`glasscam_mpi.analysis.uncertainty`; the generators are seeded from ``[run].seed``
and the ensemble (c, k), so the result does not depend on the rank count.

For each temperature and each analysed ensemble (configuration c): the ok replicas'
cage-relative displacement fields (propensity.h5) coarse-grained once at xi_Delta, the
indicators at their xi_best (analysis.h5 ``dynamics/maps_indicators``, the form used),
``[analyze].bootstrap`` wild-bootstrap resamples of the replicas, and
``[analyze].null_shifts`` random periodic shifts of the indicators. Then, per resample, configurations drawn with replacement (when
there are several), pooled at common delta, and C^max, delta* taken as for Table 5.

    summary/bootstrap_cmax        (X, n_T + 1, B) f8  C^max of each resample at xi_best (last
                                  column: the temperature with the largest C^max)
    summary/bootstrap_delta_star  (X, n_T + 1, B) f8  its delta*
    summary/table5_uncertainty    (X, n_T + 1, 5) f8  [C^max std, C^max q16, C^max q84,
                                  delta* q16, delta* q84] over the resamples
    summary/null_cmax             (X, n_T + 1, S) f8  C^max of each shifted indicator field
    summary/table5_null           (X, n_T + 1, 3) f8  [mean, std, q95] of null_cmax: q95 is
                                  the null level C^max must exceed
    attrs of summary: n_bootstrap, n_null_shifts, uncertainty_seconds (the CPU time it took
                      on rank 0: a timing, the one attribute that differs between runs)

Cost (measured, one core): the pair search and coarse-graining of n_s * d_t replica
fields once per ensemble, then per resample one (n_s) x (d_t N) weighted sum and a
(d_t N) x X correlation; per shift one nearest-neighbour query. At N = 2000, 30 replicas,
48 records and 200 + 200 resamples this is about 1 s per ensemble (see the README).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from glasscam_mpi.analysis.compare import INDICATORS
from glasscam_mpi.analysis.neighbours import PairList
from glasscam_mpi.analysis.uncertainty import (null_curves, pooled_maxima, replica_bootstrap,
                                               replica_weights, shifted_indices)
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.parallel import task_rng

QUANTILES = (16.0, 84.0)   # a 68 % interval, the +-1 sigma of a normal distribution
NULL_QUANTILE = 95.0


def _ensemble(prop, prep, plan, c: int, k: int, xi_delta: float, box) -> tuple | None:
    """(coarse replica fields (n_s, d_t, N), replica deltas (n_s, d_t), positions) of the
    ok replicas of ensemble (c, k) at its finite records, or None."""
    n_T = plan.shape[1]
    n_s = prop["cage_displacement"].shape[0] // int(np.prod(plan.shape))
    lo = (c * n_T + k) * n_s
    ok = np.flatnonzero(prop["status"][lo:lo + n_s] == 1)
    if ok.size == 0:
        return None
    disp = prop["cage_displacement"][lo:lo + n_s][ok].astype(np.float64)   # (n_ok, d_t, N)
    x0 = prep["glass"][int(prop["configs"][c])]
    n_ok, d_t, n = disp.shape
    if xi_delta > 0:
        pl = PairList(box, x0, 2.0 * xi_delta)
        flat = disp.transpose(2, 0, 1).reshape(n, n_ok * d_t)
        cg = pl.coarse_grain_scan(np.nan_to_num(flat), [xi_delta])[0]
        cg = cg.reshape(n, n_ok, d_t).transpose(1, 2, 0)
    else:
        cg = disp
    cg = np.where(np.isfinite(disp), cg, np.nan)
    return cg, disp.mean(axis=2), x0


def uncertainty_into(path, cfg, plan) -> dict:
    """Write the uncertainty datasets into ``path``'s summary group and the headline."""
    import h5py

    a = cfg.analyze
    n_boot, n_null = a.bootstrap, a.null_shifts
    t0 = time.process_time()
    with h5py.File(path, "a") as fh:
        S = fh["summary"]
        head = json.loads(fh.attrs["headline"])
        for name in ("bootstrap_cmax", "bootstrap_delta_star", "table5_uncertainty",
                     "null_cmax", "table5_null"):
            if name in S:
                del S[name]
        X, (n_c, n_T) = len(INDICATORS), plan.shape
        xis = fh["xis"][:]
        xi_best = S["xi_best"][:]
        xi_delta = float(S.attrs["xi_delta"])
        cols = [x for x in range(X) if math.isfinite(xi_best[x])]
        boot_c = np.full((X, n_T + 1, n_boot), np.nan)
        boot_d = np.full((X, n_T + 1, n_boot), np.nan)
        null_c = np.full((X, n_T + 1, n_null), np.nan)
        dyn_ok = fh["status"][plan.n_samples:].reshape(plan.shape) == 1
        run_dir = Path(path).parent
        if cols and (n_boot or n_null):
            a_best = [int(np.flatnonzero(xis == xi_best[x])[0]) for x in cols]
            maps = fh["dynamics/maps_indicators"]
            with h5py.File(run_dir / "propensity.h5", "r") as prop, \
                    h5py.File(run_dir / "prepare.h5", "r") as prep:
                box = prep["box"][:]
                for k in range(n_T):
                    B_d, B_c, N_d, N_c = [], [], [], []
                    for c in range(n_c):
                        got = _ensemble(prop, prep, plan, c, k, xi_delta, box) \
                            if dyn_ok[c, k] else None
                        if got is None:
                            continue
                        cg, delta_rep, x0 = got
                        keep = np.isfinite(cg).all(axis=(0, 2))          # finite records
                        cg, delta_rep = cg[:, keep], delta_rep[:, keep]
                        ind = np.stack([maps[c, k, x, a_best[j]].astype(np.float64)
                                        for j, x in enumerate(cols)], axis=1)   # (N, k)
                        d_t = len(keep)
                        rng = task_rng(cfg.run.seed, "analyze-bootstrap", c, k)
                        W = replica_weights(cg.shape[0], n_boot, rng)
                        C, D = replica_bootstrap(cg, delta_rep, ind, W)
                        B_c.append(_pad(C, keep, d_t, axis=1))
                        B_d.append(_pad(D, keep, d_t, axis=1))
                        if n_null:
                            idx = shifted_indices(box, x0, n_null,
                                                  task_rng(cfg.run.seed, "analyze-null", c, k))
                            N_c.append(_pad(null_curves(cg.mean(axis=0), ind, idx), keep, d_t,
                                            axis=1))
                            N_d.append(np.broadcast_to(_pad(delta_rep.mean(axis=0), keep, d_t,
                                                            axis=0), (n_null, d_t)))
                    if not B_c:
                        continue
                    n_used = len(B_c)
                    if n_boot:
                        draws = (task_rng(cfg.run.seed, "analyze-bootstrap-configs", k)
                                 .integers(0, n_used, (n_boot, n_used)) if n_used > 1 else None)
                        cm, ds = pooled_maxima(np.stack(B_d), np.stack(B_c), draws)
                        boot_c[cols, k], boot_d[cols, k] = cm.T, ds.T
                    if n_null:
                        cm, _ = pooled_maxima(np.stack(N_d), np.stack(N_c))
                        null_c[cols, k] = cm.T
        # all temperatures: per resample, the temperature with the largest C^max
        for arr_c, arr_d in ((boot_c, boot_d), (null_c, None)):
            for x in range(X):
                block = arr_c[x, :n_T]
                has = np.isfinite(block).any(axis=0)
                best = np.where(has, np.nanargmax(np.where(np.isfinite(block), block, -np.inf),
                                                  axis=0), 0)
                cols_r = np.arange(block.shape[1])
                arr_c[x, n_T] = np.where(has, block[best, cols_r], np.nan)
                if arr_d is not None:
                    arr_d[x, n_T] = np.where(has, arr_d[x, :n_T][best, cols_r], np.nan)
        unc = np.full((X, n_T + 1, 5), np.nan)
        nul = np.full((X, n_T + 1, 3), np.nan)
        with np.errstate(invalid="ignore"), _quiet():
            if n_boot > 1:
                unc[..., 0] = np.nanstd(boot_c, axis=-1, ddof=1)
                unc[..., 1:3] = np.moveaxis(np.nanpercentile(boot_c, QUANTILES, axis=-1), 0, -1)
                unc[..., 3:5] = np.moveaxis(np.nanpercentile(boot_d, QUANTILES, axis=-1), 0, -1)
            if n_null > 1:
                nul[..., 0] = np.nanmean(null_c, axis=-1)
                nul[..., 1] = np.nanstd(null_c, axis=-1, ddof=1)
                nul[..., 2] = np.nanpercentile(null_c, NULL_QUANTILE, axis=-1)
        S["bootstrap_cmax"], S["bootstrap_delta_star"] = boot_c, boot_d
        S["table5_uncertainty"], S["null_cmax"], S["table5_null"] = unc, null_c, nul
        S["table5_uncertainty"].attrs["columns"] = "C_max std,C_max q16,C_max q84," \
                                                   "delta_star q16,delta_star q84"
        S["table5_null"].attrs["columns"] = "mean,std,q95"
        seconds = time.process_time() - t0
        S.attrs.update(n_bootstrap=n_boot, n_null_shifts=n_null, uncertainty_seconds=seconds)
        table5 = S["table5"][:]
        for x, name in enumerate(INDICATORS):
            entry = head.get("table5", {}).get(name)
            if entry is None:
                continue
            entry.update(_words(unc[x, n_T], nul[x, n_T], table5[x, n_T, 0]))
            for k, per in enumerate(entry.get("per_T", [])):
                per.update(_words(unc[x, k], nul[x, k], table5[x, k, 0]))
        head["uncertainty"] = {
            "bootstrap": n_boot, "null_shifts": n_null,
            "method": "bootstrap over replicas and configurations (C_max_err: std; "
                      "intervals: 16-84 %); null: C^max of the indicator field randomly "
                      "shifted (periodic) against Delta, C_max_null_q95 its 95th percentile"}
        fh.attrs["headline"] = dumps(head)
    return head


def _words(unc: np.ndarray, nul: np.ndarray, cmax: float) -> dict:
    def f(v):
        return round(float(v), 4) if math.isfinite(v) else None

    above = (bool(cmax > nul[2]) if math.isfinite(cmax) and math.isfinite(nul[2]) else None)
    return {"C_max_err": f(unc[0]), "C_max_interval": [f(unc[1]), f(unc[2])],
            "delta_star_interval": [f(unc[3]), f(unc[4])], "C_max_null_mean": f(nul[0]),
            "C_max_null_q95": f(nul[2]), "above_null": above}


def _pad(arr: np.ndarray, keep: np.ndarray, d_t: int, axis: int) -> np.ndarray:
    """``arr`` (finite records only, along ``axis``) back on all d_t records, NaN elsewhere."""
    shape = list(arr.shape)
    shape[axis] = d_t
    out = np.full(shape, np.nan)
    index = [slice(None)] * len(shape)
    index[axis] = np.flatnonzero(keep)
    out[tuple(index)] = arr
    return out


def _quiet():
    from glasscam_mpi.stages.analyze_summary import _quiet as quiet

    return quiet()
