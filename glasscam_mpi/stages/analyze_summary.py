"""The tables of ``analysis.h5`` (group ``summary``), derived on rank 0 from its rows.

Everything here is a deterministic function of the rows of analysis.h5 and of the earlier
stage files, so the summary does not depend on the rank count.

    summary/xi_delta_targets   (D,)  xi_Delta(delta): where the mean C_Delta(r) first falls
                                     to 1/e (Table 3, Fig. 3; the r = 0 self point left
                                     out); NaN if never / not reached
    summary/xi_delta_below_first_shell (D,) i1  1 where C_Delta is below 1/e at the first
                                     pair distance already (xi_Delta is then an upper bound)
    summary/xi_delta_used      (D,)  the same rounded to the nearest xi > 0 of the scan
    summary/corr_delta_r_mean  (D, B+1)  C_Delta(r), mean over reportable ensembles
    summary/curve_delta        (n_T, G)          the common delta grid of each temperature:
                                     log-spaced, 20 per decade, over the delta range *every*
                                     analysed configuration reached (NaN padding to G)
    summary/curves             (X, m, n_T, G)    C_{X,Delta}(delta) at xi_Delta (attr), each
                                     indicator at each of its xi: the mean over
                                     configurations at common delta (each configuration's
                                     curve interpolated linearly in log delta onto the grid;
                                     analysis/pooling.py), never configurations at different
                                     delta
    summary/curves_std         (X, m, n_T, G)    their spread over configurations (sample std;
                                     NaN with one configuration)
    summary/curve_n_configs    (n_T,)            configurations pooled per temperature
    summary/cmax, delta_star   (X, m, n_T + 1)   C^max and delta* of the pooled curve per xi
                                     and T; the last column: the T with the largest C^max
                                     (Table 5, Figs 5, 7)
    summary/delta_star_edge    (X, m, n_T + 1) i1  where delta* sits: 1 = the last delta of
                                     the grid (C^max is then a lower bound), -1 = the first,
                                     0 = inside
    summary/xi_best            (X,)  the xi maximising the pooled C^max (Table 3)
    summary/xi_best_edge       (X,) i1  1 = xi_best is the largest xi scanned, -1 the
                                     smallest, 0 inside
    summary/table5             (X, n_T + 1, 3)   [C^max, delta*, xi] at xi_best
    summary/table5_edge        (X, n_T + 1) i1  delta_star_edge at xi_best
    summary/table4             (D, 6)  Table 4 columns at each target's xi_Delta (the
                                     columns of dynamics/ensemble: both readings of
                                     C(e30, e30~), own coarse field and another's)
    summary/pairs_pearson, pairs_spearman (2, P, 8)  over correctly classified test samples
                                     at xi_pairs: [n, mean, std, median, q25, q75, min, max]
    summary/n_misclassified    (2,)  test samples left out per class
    summary/n_constant         (2, P) correlations undefined (a constant field)
    summary/corr_r_mean        (2, B+1, X)  C(r) of the bare fields (Fig. 8): Gamma over the
                                     correctly classified samples, Upsilon and Theta over all
    summary/r_zero             (2, X)  first zero of C(r) after r = 0 (r_Gamma for Gamma)
    summary/r_zero_first_shell (2, X) i1  1 where C(r) <= 0 already at the first pair
                                     distance: r_zero is then an upper bound (the first bin)
    summary/corr_r_layers_mean (2, B+1, L); summary/r_zero_layers (2, L)  per CNN layer
    summary/r_zero_layers_first_shell (2, L) i1  the same flag per layer
    summary/rdf_mean           (2, B_g, P_s) g_ab (a <= b) over test samples (S7), at r_rdf
    summary/energy_jump        (n_runs,) i1  1 where U(T) of the run jumps (S6)
    summary/energy_jump_T      (n_runs,) f8  where it jumps (NaN otherwise)
    summary/psi6_flag          (n, 2) i1    1 where |<psi_6>| > PSI6_FLAG (2D)
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path

import numpy as np

from glasscam_mpi.analysis.compare import INDICATORS, PAIR_NAMES, forms
from glasscam_mpi.analysis.correlation import first_crossing
from glasscam_mpi.analysis.order import energy_jump_flags
from glasscam_mpi.analysis.pooling import (EDGE_FIRST, EDGE_LAST, EDGE_NONE, maxima,
                                           pool_temperatures, scan_edge, table5_rows)
from glasscam_mpi.analysis.stats import describe
from glasscam_mpi.analysis.tstar import estimate_t_star
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.store import cooling_curves

EDGE_WORDS = {0: "inside", -1: "first (edge of the data)", 1: "last (edge of the data)"}
PSI6_FLAG = 0.3       # |<psi_6>| of a glass; random points give ~ N^-1/2, a crystal ~ 1
STATS = ("n", "mean", "std", "median", "q25", "q75", "min", "max")


def _f(x) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def crossing(r: np.ndarray, C: np.ndarray, level: float) -> tuple[float, bool]:
    """(r where C(r) first falls to ``level``, whether that happens at the first pair
    distance already). The r = 0 point (the self term, C = 1 by definition) is left out:
    interpolating from it into the first shell would report a length set by the noise of
    the field, not by its correlations. NaN if C never reaches the level."""
    ok = np.flatnonzero(np.isfinite(C[1:])) + 1
    if ok.size == 0:
        return float("nan"), False
    value = first_crossing(r[ok], C[ok], level)
    return value, bool(C[ok[0]] <= level)


def nearest_xi(xis: np.ndarray, value: float) -> float:
    """The positive xi of the scan closest to ``value`` (NaN stays NaN)."""
    pos = xis[xis > 0]
    if not math.isfinite(value) or pos.size == 0:
        return float("nan")
    return float(pos[np.argmin(np.abs(pos - value))])


def summarize_into(path, cfg, plan) -> dict:
    """Write the ``summary`` group and the ``headline`` attribute; returns the headline."""
    import h5py

    with h5py.File(path, "a") as fh:
        if "summary" in fh:
            del fh["summary"]
        S = fh.create_group("summary")
        xis = fh["xis"][:]
        r = fh["r"][:]
        dyn_ok = fh["status"][plan.n_samples:].reshape(plan.shape) == 1
        notes: list[str] = list(json.loads(fh.attrs.get("xi_notes", "[]")))
        form = forms(cfg.analyze.one_minus, cfg.system.name)
        head: dict = {"T_star": _t_star(fh, cfg), "forms": form,
                      "have_gamma": bool(plan.have_gamma)}
        if not plan.have_gamma:
            notes.append("no gradcam.h5: the CNN stages were not run, so every Gamma row is "
                         "absent (NaN)")
        if not dyn_ok.all():
            notes.append(f"{int((~dyn_ok).sum())} of {dyn_ok.size} propensity ensembles not "
                         "analysed (too few ok replicas): see the status/error datasets")

        # -- Table 3, Fig. 3: xi_Delta from C_Delta(r) -----------------------------------------
        targets = _targets(fh, plan)
        cdr = fh["dynamics/corr_delta_r"][:]                    # (n_c, n_T, D, B+1)
        cdr[~dyn_ok] = np.nan
        with np.errstate(invalid="ignore"), _quiet():
            cd_mean = np.nanmean(cdr, axis=(0, 1))              # (D, B+1)
        xi_t, shallow = zip(*(crossing(r, cd_mean[j], 1 / math.e) for j in range(len(targets))))
        xi_t, shallow = np.array(xi_t), np.array(shallow, dtype=np.int8)
        xi_used = np.array([nearest_xi(xis, v) for v in xi_t])
        S["xi_delta_targets"], S["xi_delta_used"], S["corr_delta_r_mean"] = xi_t, xi_used, cd_mean
        S["xi_delta_below_first_shell"] = shallow
        for j in np.flatnonzero(shallow):
            notes.append(f"C_Delta(r) at delta = {targets[j]:g} is below 1/e already at the first "
                         f"pair distance (r = {xi_t[j]:.3g}): the propensity field is dominated "
                         "by replica noise (too few replicas?); xi_Delta there is an upper bound")
        xi_d, source = _xi_delta(cfg, targets, xi_used, xis, notes)
        b = int(np.flatnonzero(xis == xi_d)[0])
        S.attrs.update(xi_delta=xi_d, xi_delta_source=source)

        # -- Table 5, Figs 5 and 7: C_{X,Delta}(delta), pooled at common delta ---------------
        corr = fh["dynamics/corr"][..., b]                      # (n_c, n_T, d_t, X, m)
        corr[~dyn_ok] = np.nan
        delta = fh["dynamics/delta"][:]
        delta[~dyn_ok] = np.nan
        n_X, n_T = len(INDICATORS), plan.shape[1]
        curves, spread, cdelta, n_pooled = pool_temperatures(delta, corr)
        cmax, dstar, edge = maxima(cdelta, curves)
        xi_best, table5, t5_edge = table5_rows(cmax, dstar, edge, xis)
        xi_edge = np.array([scan_edge(xis[np.isfinite(cmax[x, :, n_T])], xi_best[x])
                            for x in range(n_X)], dtype=np.int8)
        S["curves"], S["curve_delta"], S["curves_std"] = curves, cdelta, spread
        S["curve_n_configs"] = n_pooled
        S["cmax"], S["delta_star"], S["xi_best"], S["table5"] = cmax, dstar, xi_best, table5
        S["delta_star_edge"], S["xi_best_edge"], S["table5_edge"] = edge, xi_edge, t5_edge
        S["table5"].attrs["axes"] = "indicator (gamma, volume, theta); temperature (last: all); " \
                                    "[C_max, delta_star, xi]"
        temps = _temperatures(fh, plan)
        shown = [(x, name) for x, name in enumerate(INDICATORS)
                 if plan.have_gamma or name != "gamma"]
        head["table5"] = {
            name: {"C_max": _f(table5[x, n_T, 0]), "delta_star": _f(table5[x, n_T, 1]),
                   "xi": _f(table5[x, n_T, 2]), "form": form[name],
                   "delta_star_at": EDGE_WORDS[int(t5_edge[x, n_T])],
                   "xi_at": EDGE_WORDS[int(xi_edge[x])],
                   "per_T": [{"T": _f(temps[k]), "C_max": _f(table5[x, k, 0]),
                              "delta_star": _f(table5[x, k, 1]),
                              "delta_star_at": EDGE_WORDS[int(t5_edge[x, k])]}
                             for k in range(n_T)]}
            for x, name in shown}
        for x, name in shown:
            if t5_edge[x, n_T] == EDGE_LAST:
                notes.append(f"C^max of {name} is at the last delta all configurations reached "
                             f"(delta* = {table5[x, n_T, 1]:.3g}): a lower bound, the curve may "
                             "still rise (raise [propensity].t_max or stop_factor)")
            elif t5_edge[x, n_T] == EDGE_FIRST:
                notes.append(f"C^max of {name} is at the first recorded delta "
                             f"({table5[x, n_T, 1]:.3g}): the maximum may lie earlier")
            if xi_edge[x] != EDGE_NONE and np.isfinite(xi_best[x]):
                side = "largest" if xi_edge[x] == EDGE_LAST else "smallest"
                notes.append(f"xi_best of {name} = {xi_best[x]:g} is the {side} xi scanned: "
                             "the maximum over xi may lie beyond the scan")
        head["xi_delta"] = {"used": _f(xi_d), "source": source,
                            "per_target": {f"{t:g}": _f(v) for t, v in zip(targets, xi_t)}}

        # -- Table 4, Fig. 4: the ensemble study ---------------------------------------------
        ens = fh["dynamics/ensemble"][:]                        # (n_c, n_T, D, m, 6)
        ens[~dyn_ok] = np.nan
        table4 = np.full((len(targets), ens.shape[-1]), np.nan)
        for j in range(len(targets)):
            if np.isfinite(xi_used[j]):
                a = int(np.flatnonzero(xis == xi_used[j])[0])
                with _quiet():
                    table4[j] = np.nanmean(ens[:, :, j, a], axis=(0, 1))
        S["table4"] = table4
        if plan.study is None:
            notes.append("no ensemble study (Table 4): it needs n_replicas >= "
                         f"{cfg.analyze.subensemble_size * cfg.analyze.subensembles}")
        else:
            head["table4"] = {f"{t:g}": [_f(v) for v in table4[j]] for j, t in enumerate(targets)}
            head["table4_columns"] = str(fh.attrs.get("ensemble_columns", "")).split(",")

        # -- Fig. 6, supplement Table S2: pairwise correlations over test samples -----------
        xi_pairs = float(fh.attrs.get("xi_pairs", cfg.analyze.xi_pairs))
        a_pairs = int(np.flatnonzero(xis == xi_pairs)[0])
        correct = fh["samples/correct"][:]
        keep = correct != 0                                      # -1 (no CNN) counts as kept
        S["n_misclassified"] = (correct == 0).sum(axis=0)
        for method in ("pearson", "spearman"):
            vals = fh[f"samples/{method}"][:, :, a_pairs]        # (n, 2, P)
            stats = np.full((2, len(PAIR_NAMES), len(STATS)), np.nan)
            for cls in range(2):
                for p in range(len(PAIR_NAMES)):
                    d = describe(vals[keep[:, cls], cls, p])
                    stats[cls, p] = [d[k] for k in STATS]
            S[f"pairs_{method}"] = stats
            S[f"pairs_{method}"].attrs["columns"] = ",".join(STATS)
        pear = fh["samples/pearson"][:, :, a_pairs]
        S["n_constant"] = (np.isnan(pear) & keep[:, :, None]).sum(axis=0)
        S.attrs["xi_pairs"] = xi_pairs
        head["pairs_glass_mean"] = {name: _f(S["pairs_pearson"][1, p, 1])
                                    for p, name in enumerate(PAIR_NAMES)}
        head["n_misclassified"] = {"liquid": int(S["n_misclassified"][0]),
                                   "glass": int(S["n_misclassified"][1])}

        # -- Fig. 8: C(r) of the bare indicators and where it first crosses 0 ---------------
        # Gamma's C(r) over the correctly classified samples; Upsilon's and Theta's over all
        for name, key, gamma_cols in (("corr_r", "r_zero", [0]),
                                      ("corr_r_layers", "r_zero_layers", "all")):
            C = fh[f"samples/{name}"][:]                         # (n, 2, B+1, k)
            mean = np.full(C.shape[1:], np.nan)
            cols = range(C.shape[-1]) if gamma_cols == "all" else gamma_cols
            for cls in range(2):
                with _quiet():
                    mean[cls] = np.nanmean(C[:, cls], axis=0)
                    for q in cols:
                        mean[cls, :, q] = (np.nanmean(C[keep[:, cls], cls, :, q], axis=0)
                                           if keep[:, cls].any() else np.nan)
            found = [[crossing(r, mean[cls, :, q], 0.0) for q in range(mean.shape[-1])]
                     for cls in range(2)]
            zero = np.array([[v for v, _ in row] for row in found])
            shell = np.array([[int(f and np.isfinite(v)) for v, f in row] for row in found],
                             dtype=np.int8)
            S[f"{name}_mean"], S[key], S[f"{key}_first_shell"] = mean, zero, shell
        head["r_zero_glass"] = {n: _f(S["r_zero"][1, x]) for x, n in enumerate(INDICATORS)}
        shallow_r = [n for x, n in enumerate(INDICATORS) if S["r_zero_first_shell"][1, x]
                     and (plan.have_gamma or n != "gamma")]
        head["r_zero_glass_first_shell"] = shallow_r
        for n in shallow_r:
            notes.append(f"C(r) of {n} (glass) is <= 0 already at the first pair distance: its "
                         f"r where C = 0 ({S['r_zero'][1, INDICATORS.index(n)]:.3g}) is an "
                         "upper bound, not a correlation length")
        if plan.have_gamma and plan.n_layers:
            head["r_gamma_by_layer"] = [_f(v) for v in S["r_zero_layers"][1]]

        # -- S6/S7: crystallisation ------------------------------------------------------
        with _quiet():
            S["rdf_mean"] = np.nanmean(fh["samples/rdf"][:], axis=0)
        jumps, jump_T = _energy_jumps(fh)
        S["energy_jump"], S["energy_jump_T"] = jumps, jump_T
        psi = fh["samples/psi6"][:]
        S["psi6_flag"] = (np.nan_to_num(psi, nan=0.0) > PSI6_FLAG).astype(np.int8)
        head["crystallisation"] = {
            "runs_with_energy_jump": int((jumps == 1).sum()), "runs": int((jumps >= 0).sum()),
            "glass_samples_psi6_above": int(S["psi6_flag"][:, 1].sum()),
            "psi6_threshold": PSI6_FLAG,
            "glass_psi6_mean": _f(np.nanmean(psi[:, 1])) if np.isfinite(psi[:, 1]).any()
            else None}
        if (jumps == 1).any() or S["psi6_flag"][:, 1].any():
            notes.append("possible crystallisation: see summary/energy_jump and psi6_flag")
        head["notes"] = notes
        fh.attrs["headline"] = dumps(head)
    return head


def _sibling(fh, stage: str):
    """Another stage file of the run directory that holds ``fh`` (open, read-only)."""
    import h5py

    return h5py.File(Path(fh.filename).with_name(f"{stage}.h5"), "r")


def _t_star(fh, cfg) -> dict:
    """T* used for the replica temperatures, its source, the estimate and the paper's."""
    with _sibling(fh, "propensity") as prop:
        a = prop.attrs
        out = {"used": _f(a["T_star"]), "source": str(a["T_star_source"]),
               "estimate": _f(a.get("T_star_estimate", np.nan)),
               "paper": cfg.sys.T_star_paper}
    if out["estimate"] is None:  # older propensity files of absolute temperatures: none kept
        try:
            out["estimate"] = _f(estimate_t_star(
                *cooling_curves(Path(fh.filename).with_name("prepare.h5"))).T_star)
        except (ValueError, OSError, KeyError) as exc:
            out["estimate_why"] = str(exc)
    return out


def _targets(fh, plan) -> np.ndarray:
    with _sibling(fh, "propensity") as prop:
        return prop["delta_targets"][:]


def _temperatures(fh, plan) -> np.ndarray:
    with _sibling(fh, "propensity") as prop:
        return prop["temperatures"][:]


def _xi_delta(cfg, targets, xi_used, xis, notes) -> tuple[float, str]:
    """xi_Delta of the indicator-propensity correlations: the config's, or the rounded
    1/e length at the target closest to delta_ref (in log delta) that was reached."""
    a = cfg.analyze
    if a.xi_delta != "auto":
        return float(a.xi_delta), "config"
    order = np.argsort(np.abs(np.log(targets / a.delta_ref)))
    for j in order:
        if np.isfinite(xi_used[j]):
            if not math.isclose(targets[j], a.delta_ref):
                notes.append(f"xi_Delta taken at delta = {targets[j]:g}, the reached target "
                             f"closest to delta_ref = {a.delta_ref:g}")
            return float(xi_used[j]), f"C_Delta 1/e length at delta = {targets[j]:g}"
    positive = xis[xis > 0]
    fallback = float(a.xi_pairs) if a.xi_pairs != "auto" else float(positive.max())
    notes.append(f"no delta target reached: xi_Delta = {fallback:g} (xi_pairs, or the largest "
                 "xi of the scan) for the indicator-propensity correlations")
    return fallback, "fallback (no delta target reached)"


def _energy_jumps(fh) -> tuple[np.ndarray, np.ndarray]:
    """The jump flags of every run's U(T) (from prepare.h5; computed for older files)."""
    with _sibling(fh, "prepare") as prep:
        if "energy_jump" in prep:
            return prep["energy_jump"][:], prep["energy_jump_T"][:]
        return energy_jump_flags(prep["status"][:] == 1, prep["T"][:], prep["pe"][:])


@contextlib.contextmanager
def _quiet():
    """Silence numpy's warnings for means over all-NaN slices (they are NaN on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
