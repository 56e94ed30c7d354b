"""Stage ``analyze``: the paper's answer (sections 3.6, 4.2-4.7), farmed over ranks.

Reads whatever the run directory holds: prepare.h5, indicators.h5 and propensity.h5 are
needed; gradcam.h5 (and train.h5) add the Grad-CAM score Gamma. Without them the Gamma
rows are NaN and the report says the CNN stages were not run.

Two kinds of task, one row each:

* **test samples** (one per ok test run, both classes): the bare fields Gamma, Upsilon,
  Theta coarse-grained at every xi of ``[analyze].xis`` (one periodic pair search per
  configuration), their pairwise Pearson and Spearman correlations per sample (Fig. 6,
  supplement Table S2), C(r) of the bare fields (Fig. 8; Gamma of every CNN layer too),
  g(r) and, in 2D, the hexatic order psi_6 (the crystallisation check of S6/S7);
* **propensity ensembles** (configuration c, temperature k): the propensity Delta(t) at
  every recorded time and the indicators of configuration c, each coarse-grained at every
  xi, and the Pearson correlation of every (indicator, xi_X, xi_Delta) at every time
  (Figs 5, 7; Table 3's xi scan); C_Delta(r) at each delta target (Fig. 3); the normalised
  coarse-grained maps (Figs 1, 2); and, with enough replicas, the ensemble study of
  Table 4 / Fig. 4 from disjoint sub-ensembles.

A ``reduce`` on rank 0 then derives the tables (group ``summary``): xi_Delta per delta
target (the 1/e length of the mean C_Delta), the xi of each indicator that maximises its
correlation with the propensity, C^max and delta* per indicator and temperature
(Table 5), the distributions of the pairwise correlations over correctly classified test
samples (misclassified ones are left out and counted, as in the paper), r where C(r) of
each indicator first crosses 0, Table 4, and the crystallisation flags. Indicators enter
the correlations with the propensity (and the maps) in the form ``[analyze].one_minus``
says (the paper's 1 - X choices by default; attrs ``forms``); the pairwise correlations
between indicators are of the bare indicators, as in the paper's Fig. 6.

Output ``RUN_DIR/analysis.h5`` (``n`` test samples, ``n_c`` x ``n_T`` ensembles, ``X`` = 3
indicators [gamma, volume, theta], ``P`` = 3 pairs [gamma-volume, gamma-theta,
theta-volume], ``m`` = len(xis), ``B`` = bins, ``d_t`` recorded times, ``D`` delta targets):

    attrs    stage, indicators, pairs, forms (JSON: indicator -> "X" or "1 - X"),
             have_gamma, xis, r_corr, headline (JSON, what ``glasscam info`` shows)
    runs                      (n,) int64      test runs (rows of indicators/gradcam.h5)
    samples/pearson           (n, 2, m, P) f8 per-sample correlations at every xi, of the
                              bare indicators (X, as the paper's Fig. 6 / Table S2)
    samples/spearman          (n, 2, m, P) f8
    samples/constant          (n, 2, X) i1    1 where a field is constant (no correlation)
    samples/correct           (n, 2) i1       1 classified right, 0 wrong, -1 no CNN
    samples/corr_r            (n, 2, B+1, X)  C(r) of the bare fields
    samples/corr_r_layers     (n, 2, B+1, L)  C(r) of Gamma of each CNN layer
    samples/rdf               (n, 2, B_g, 3)  g_AA, g_AB, g_BB (bins 0.025 sigma: r_rdf)
    samples/psi6              (n, 2) f8       |<psi_6>| (2D; NaN in 3D)
    samples/psi6_local        (n, 2) f8       mean_i |psi_6,i| (2D; NaN in 3D)
    dynamics/corr             (n_c, n_T, d_t, X, m, m) f8  Pearson(ind at xi_a, Delta at xi_b)
    dynamics/delta            (n_c, n_T, d_t) f8     delta(t) (bare propensity mean)
    dynamics/corr_delta_r     (n_c, n_T, D, B+1) f8  C_Delta(r) at each target
    dynamics/maps_indicators  (n_c, n_T, X, m, N) f4 normalised coarse-grained indicators
    dynamics/maps_delta       (n_c, n_T, D, m, N) f4 normalised coarse-grained Delta(delta)
    dynamics/ensemble         (n_c, n_T, D, m, 6) f8 Table 4 columns at every xi (NaN
                              without the study): C(e30,e30) bare, C(e30~,e30~),
                              C(e30^i, e30~^i) (sub-ensemble i against its own coarse
                              field), C(e100,e100~), C(e30~,e100~), C(e30^i, e30~^j) mean
                              over j != i (against another sub-ensemble's coarse field):
                              the paper's C(e30, e30~) "averaged over i != j" may be either
    summary/...               the tables (see :mod:`glasscam_mpi.stages.analyze_summary`),
                              and Table 5's bootstrap uncertainty and null level (see
                              :mod:`glasscam_mpi.stages.analyze_uncertainty`)

With a seed ensemble (gradcam.h5 holds ``gamma_members``, k members; ``gamma`` is then the
ensemble's field), each member's Gamma is also correlated with the propensity:

    dynamics/corr_members     (n_c, n_T, d_t, k, m, m) f8  as dynamics/corr, Gamma of each
                              member (in Gamma's form, 1 - X by default)
    summary/members/...       C^max, delta*, xi per member and for the ensemble, and their
                              spread over members (:mod:`glasscam_mpi.stages.analyze_members`)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.neighbours import PairList
from glasscam_mpi.analysis.order import hexatic
from glasscam_mpi.analysis.stats import constant_columns, pearson_matrix, spearman_matrix
from glasscam_mpi.analysis.xiscan import resolve_xis
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Input, Output, Runs, Tasks
from glasscam_mpi.stages.engine import FarmStage, TaskFailed
from glasscam_mpi.store import RowSpec, stage_dataset

STAGE = "analyze"
HELP = "coarse-graining, correlation lengths and correlations -> analysis.h5 (the paper's answer)"
DESCRIPTION = ("Coarse-grain Gamma, the Voronoi volume, Theta and the propensity at every xi, "
               "correlate them (paper sections 3.6, 4.2-4.7: Tables 3-5, Figs 3-8), farmed "
               "over MPI ranks, and reduce into analysis.h5. Uses whatever stages exist "
               "(gradcam is optional).")
INDICATORS = ("gamma", "volume", "theta")
PAIRS = ((0, 1), (0, 2), (2, 1))  # gamma-volume, gamma-theta, theta-volume (paper's order)
PAIR_NAMES = ("gamma-volume", "gamma-theta", "theta-volume")
CLASSES = ("liquid", "glass")
PAPER_ONE_MINUS = {"KAM": ("gamma", "theta"), "ABM": ("gamma", "volume"),
                   "ABM-code": ("gamma", "volume"), "KA3D": ("gamma", "theta")}
ENSEMBLE_COLUMNS = ("e30-e30 bare", "e30~-e30~", "e30-e30~ own", "e100-e100~", "e30~-e100~",
                    "e30-e30~ other")


def one_minus(cfg: Config) -> tuple[str, ...]:
    """The indicators that enter correlations as 1 - X."""
    a = cfg.analyze.one_minus
    if a == "paper":
        return PAPER_ONE_MINUS.get(cfg.system.name, ("gamma", "theta"))
    if a == "none":
        return ()
    return tuple(x.strip() for x in a.split(","))


def forms(cfg: Config) -> dict[str, str]:
    flip = one_minus(cfg)
    return {x: ("1 - X" if x in flip else "X") for x in INDICATORS}


@dataclass(frozen=True)
class Plan:
    runs: np.ndarray          # (n,) ok test runs, rows of indicators.h5 (and gradcam.h5)
    have_gamma: bool
    n_layers: int
    box: np.ndarray
    xis: tuple                # sorted, unique, 0 first if present
    r_corr: float
    bins: int
    shape: tuple              # (n_c, n_T) ensembles
    config_rows: np.ndarray   # (n_c,) row of each propensity configuration in ``runs``
    n_times: int
    n_targets: int
    reportable: np.ndarray    # (n_c, n_T) int8
    study: tuple | None       # (size, count) of the ensemble study, or None
    sign: np.ndarray          # (X,) -1 for 1 - X forms, +1 otherwise
    xi_pairs: float = 4.0     # resolved [analyze].xi_pairs
    xi_notes: tuple = ()      # what the box left out of the scan (analysis.xiscan)
    n_members: int = 0        # members of a seed ensemble in gradcam.h5 (0: none)

    @property
    def rdf_bins(self) -> int:
        """g(r) bins: 0.025 sigma wide (C(r)'s bins would blur the first peaks)."""
        return max(self.bins, min(2000, math.ceil(self.r_corr / 0.025)))

    @property
    def n_samples(self) -> int:
        return len(self.runs)

    @property
    def n_tasks(self) -> int:
        return self.n_samples + int(np.prod(self.shape))


def _plan(rd: RunDir, cfg: Config, inputs) -> Plan:
    files, runs = inputs.files, inputs.ok_test_runs
    prep, ind, prop = files["prepare"], files["indicators"], files["propensity"]
    box = prep["box"][:]
    if not np.array_equal(ind["runs"][:], runs):
        raise ConfigError(f"{rd.stage_file('indicators')} was made for other test runs than "
                          "prepare.h5 holds; rerun 'glasscam indicators'")
    have_gamma, n_layers, n_members = False, 0, 0
    if "gradcam" in files:
        gc = files["gradcam"]
        if not np.array_equal(gc["runs"][:], runs):
            raise ConfigError(f"{rd.stage_file('gradcam')} was made for other test runs "
                              "than prepare.h5 holds; rerun 'glasscam gradcam'")
        have_gamma = True
        n_layers = gc["gamma_layers"].shape[2] if "gamma_layers" in gc else 0
        n_members = gc["gamma_members"].shape[2] if "gamma_members" in gc else 0
    configs = prop["configs"][:]
    rows = np.searchsorted(runs, configs)
    if np.any(rows >= len(runs)) or not np.array_equal(runs[np.minimum(rows, len(runs) - 1)],
                                                       configs):
        raise ConfigError("propensity.h5 uses configurations that are not ok test runs of "
                          "prepare.h5; rerun 'glasscam propensity'")
    shape = (len(configs), len(prop["temperatures"]))
    reportable = stage_dataset(prop, "propensity", "reportable")
    n_rep = prop["cage_displacement"].shape[0] // max(1, int(np.prod(shape)))
    return make_plan(cfg, box, runs, shape, have_gamma=have_gamma, n_layers=n_layers,
                     config_rows=rows.astype(np.int64), n_times=int(prop["time"].shape[0]),
                     n_targets=int(prop["delta_targets"].shape[0]),
                     reportable=reportable.astype(np.int8), n_replicas=n_rep,
                     n_members=int(n_members))


def make_plan(cfg: Config, box: np.ndarray, runs: np.ndarray, shape: tuple, *,
              have_gamma: bool, n_layers: int, config_rows: np.ndarray, n_times: int,
              n_targets: int, reportable: np.ndarray, n_replicas: int,
              n_members: int = 0) -> Plan:
    """The stage's plan from what the earlier stages hold: the xi scan the box allows, the
    C(r) range, the indicators' forms and whether the ensemble study fits ``n_replicas``
    (``glasscam plan`` times the tasks with a plan made here from its calibration)."""
    a = cfg.analyze
    try:
        scan = resolve_xis(box, a.xis, a.xi_pairs, a.xi_delta, cfg.sys.xi_pairs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    study = ((a.subensemble_size, a.subensembles)
             if n_replicas >= a.subensemble_size * a.subensembles else None)
    sign = np.array([-1.0 if x in one_minus(cfg) else 1.0 for x in INDICATORS])
    return Plan(runs=runs, have_gamma=have_gamma, n_layers=n_layers, box=box,
                xis=tuple(float(x) for x in scan.xis),
                r_corr=min(a.r_max or 10.0, float(box.min()) / 2), bins=a.bins, shape=shape,
                config_rows=config_rows, n_times=n_times, n_targets=n_targets,
                reportable=reportable, study=study, sign=sign, xi_pairs=scan.xi_pairs,
                xi_notes=scan.notes, n_members=n_members)


def _pair_list(plan: Plan, x: np.ndarray) -> PairList:
    return PairList(plan.box, x, max(2 * max(plan.xis), plan.r_corr, 1e-9))


def _fields(plan: Plan, files: dict, row: int, cls: int) -> np.ndarray:
    """(N, 3) bare Gamma, Upsilon, Theta of test row ``row``, class ``cls`` (NaN Gamma
    without a CNN)."""
    ind = files["indicators"]
    vol, theta = ind["volume"][row, cls], ind["theta"][row, cls]
    gamma = (files["gradcam"]["gamma"][row, cls].astype(np.float64) if plan.have_gamma
             else np.full_like(vol, np.nan))
    return np.stack([gamma, vol, theta], axis=1)


def _normalised(F: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """[0, 1] normalisation of each column of (..., N, k) fields, then 1 - X where
    ``sign`` is -1 (constant columns stay 0)."""
    lo = np.nanmin(F, axis=-2, keepdims=True)
    top = np.nanmax(F, axis=-2, keepdims=True) - lo
    out = (F - lo) / np.where(top > 0, top, 1.0)
    return np.where(sign < 0, 1.0 - out, out) if sign is not None else out


def _sample_task(cfg: Config, plan: Plan, files: dict, i: int) -> dict:
    prep = files["prepare"]
    r = int(plan.runs[i])
    per_class = []
    for cls in range(2):
        layers = predicted = None
        if plan.have_gamma:
            predicted = int(files["gradcam"]["predicted"][i, cls])
            if plan.n_layers:
                layers = files["gradcam"]["gamma_layers"][i, cls].astype(np.float64).T
        per_class.append(analyse_sample(plan, prep[CLASSES[cls]][r], prep["types"][r],
                                        _fields(plan, files, i, cls), layers, predicted, cls))
    return {name: np.stack([d[name] for d in per_class]) for name in per_class[0]}


def analyse_sample(plan: Plan, x: np.ndarray, types: np.ndarray, F: np.ndarray,
                   layers: np.ndarray | None = None, predicted: int | None = None,
                   label: int = 1) -> dict:
    """Everything analyze computes for one test sample.

    Args:
        plan: The stage's plan (xis, r_corr, bins, box, forms as ``sign``).
        x: (N, d) positions; types: (N,) species.
        F: (N, 3) bare Gamma (NaN without a CNN), Upsilon, Theta.
        layers: (N, L) Gamma of every CNN layer, or None.
        predicted, label: The CNN's class and the true one (0 liquid, 1 glass), or None.

    Returns:
        The sample's rows (without the leading class axis) of the ``samples/`` datasets.
    """
    m, X, B = len(plan.xis), len(INDICATORS), plan.bins
    out = {"samples/pearson": np.full((m, len(PAIRS)), np.nan),
           "samples/spearman": np.full((m, len(PAIRS)), np.nan),
           "samples/constant": np.zeros(X, np.int8),
           "samples/correct": np.array(-1 if predicted is None else int(predicted == label),
                                       np.int8),
           "samples/corr_r": np.full((B + 1, X), np.nan),
           "samples/corr_r_layers": np.full((B + 1, max(plan.n_layers, 1)), np.nan),
           "samples/rdf": np.full((plan.rdf_bins, 3), np.nan),
           "samples/psi6": np.array(np.nan), "samples/psi6_local": np.array(np.nan)}
    have = np.isfinite(F).all(axis=0)
    cols = np.flatnonzero(have)
    pl = _pair_list(plan, x)                                     # the one pair search
    # the pairwise correlations are of the bare indicators (X), as in the paper's Fig. 6 and
    # Table S2; the 1 - X forms are only for the comparison with the propensity
    G = _normalised(pl.coarse_grain_scan(F[:, cols], plan.xis), None)  # (m, N, k)
    out["samples/constant"][cols] = constant_columns(F[:, cols])
    for a_xi in range(m):
        P, S = np.full((X, X), np.nan), np.full((X, X), np.nan)
        P[np.ix_(cols, cols)] = pearson_matrix(G[a_xi], G[a_xi])
        # ranks of values rounded to 1e-12 of the [0, 1] range: equal values (e.g. the
        # zeros ReLU leaves in Gamma) stay ties whatever the last bits of the sums
        rounded = np.round(G[a_xi], 12)
        S[np.ix_(cols, cols)] = spearman_matrix(rounded, rounded)
        for p, (u, v) in enumerate(PAIRS):
            out["samples/pearson"][a_xi, p], out["samples/spearman"][a_xi, p] = P[u, v], S[u, v]
    out["samples/corr_r"][:, cols] = pl.correlation(F[:, cols], plan.r_corr, B)[1]
    if layers is not None:
        out["samples/corr_r_layers"][:] = pl.correlation(layers, plan.r_corr, B)[1]
    g = pl.rdf(types, bins=plan.rdf_bins, r_max=plan.r_corr, n_species=2).partial
    out["samples/rdf"][:] = np.stack([g[0, 0], g[0, 1], g[1, 1]], axis=1)
    if plan.box.shape[0] == 2:
        h = hexatic(plan.box, x)
        out["samples/psi6"], out["samples/psi6_local"] = np.array(h.order), np.array(h.local.mean())
    return out


def _dynamics_task(cfg: Config, plan: Plan, files: dict, e: int) -> dict:
    c, k = (int(v) for v in np.unravel_index(e, plan.shape))
    prop = files["propensity"]
    if not plan.reportable[c, k]:
        n_ok = int(stage_dataset(prop, "propensity", "n_ok_replicas")[c, k])
        raise TaskFailed(f"ensemble config {c}, T = {prop['temperatures'][k]:.4g}: only {n_ok} "
                         f"ok replicas (< min_replicas {int(prop.attrs['min_replicas'])}); "
                         "not analysed")
    row = int(plan.config_rows[c])
    x0 = files["prepare"]["glass"][int(plan.runs[row])]
    pl = _pair_list(plan, x0)
    members = (files["gradcam"]["gamma_members"][row, 1].astype(np.float64).T
               if plan.n_members else None)                          # (N, k)
    out = analyse_ensemble(plan, pl, _fields(plan, files, row, 1),
                           prop["propensity"][c, k].astype(np.float64),
                           prop["propensity_at_delta"][c, k].astype(np.float64), members)
    out["dynamics/delta"] = prop["delta"][c, k].astype(np.float64)
    out["dynamics/ensemble"] = _ensemble_study(plan, prop, pl, c, k)
    return out


def analyse_ensemble(plan: Plan, pl: PairList, F: np.ndarray, D: np.ndarray,
                     at: np.ndarray, members: np.ndarray | None = None) -> dict:
    """Indicators of one glass configuration against its propensity.

    Args:
        plan: The stage's plan.
        pl: The configuration's :class:`PairList` (r_max >= 2 max(xis) and r_corr).
        F: (N, 3) bare Gamma (NaN without a CNN), Upsilon, Theta of the configuration.
        D: (n_times, N) propensity Delta_i(t) (NaN rows after the ensemble stopped).
        at: (n_targets, N) propensity at each delta target (NaN rows where not reached).
        members: (N, k) bare Gamma of each member of a seed ensemble, or None.

    Returns:
        ``dynamics/corr``, ``corr_delta_r``, ``maps_indicators`` and ``maps_delta`` rows
        (and ``dynamics/corr_members`` with ``members``).
    """
    m, X, B = len(plan.xis), len(INDICATORS), plan.bins
    cols = np.flatnonzero(np.isfinite(F).all(axis=0))
    ind_cg = np.full((m, F.shape[0], X), np.nan)
    ind_cg[:, :, cols] = _normalised(pl.coarse_grain_scan(F[:, cols], plan.xis), plan.sign[cols])
    finite = np.flatnonzero(np.isfinite(D).all(axis=1))
    corr = np.full((D.shape[0], X, m, m), np.nan)
    if members is not None:
        k = members.shape[1]
        mem_cg = _normalised(pl.coarse_grain_scan(members, plan.xis), plan.sign[:1])
        mem_flat = mem_cg.transpose(1, 2, 0).reshape(F.shape[0], k * m)  # column j * m + a
        corr_m = np.full((D.shape[0], k, m, m), np.nan)
    if finite.size:
        D_cg = _normalised(pl.coarse_grain_scan(D[finite].T, plan.xis), None)  # (m, N, t)
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
        corr_r[reached] = pl.correlation(at[reached].T, plan.r_corr, B)[1].T
        maps_d[reached] = _normalised(pl.coarse_grain_scan(at[reached].T, plan.xis),
                                      None).transpose(2, 0, 1)
    out = {"dynamics/corr": corr, "dynamics/corr_delta_r": corr_r,
           "dynamics/maps_indicators": ind_cg.transpose(2, 0, 1).astype(np.float32),
           "dynamics/maps_delta": maps_d}
    if members is not None:
        out["dynamics/corr_members"] = corr_m
    return out


def subensemble_fields(disp: np.ndarray, target: float, size: int,
                       count: int) -> np.ndarray | None:
    """The propensity of ``count`` disjoint ``size``-replica sub-ensembles and of the full
    ensemble, all at the full ensemble's crossing of ``target`` (the same two records and
    weight, as :func:`~glasscam_mpi.stages.propensity.at_targets` interpolates), so every
    field describes one time.

    Args:
        disp: (n_s, n_times, N) cage-relative displacements of every replica.
        target: The delta target.
        size, count: Sub-ensembles (see :func:`~glasscam_mpi.analysis.stats.subensembles`).

    Returns:
        (N, count + 1) float64: sub-ensembles A, B, ..., then the full ensemble; None where
        the full ensemble's delta does not cross the target between two records.
    """
    from glasscam_mpi.analysis.stats import subensembles

    full = disp.mean(axis=0)
    delta = full.mean(axis=1)
    above = np.flatnonzero(np.isfinite(delta) & (delta >= target))
    if len(above) == 0 or above[0] == 0:
        return None
    b = int(above[0])
    w = (target - delta[b - 1]) / (delta[b] - delta[b - 1])

    def at(field):  # (n_times, N) -> (N,) at the full ensemble's crossing
        return (1 - w) * field[b - 1] + w * field[b]

    sets = subensembles(disp.shape[0], size, count)
    return np.stack([at(disp[s].mean(axis=0)) for s in sets] + [at(full)], axis=1)


def _ensemble_study(plan: Plan, prop, pl: PairList, c: int, k: int) -> np.ndarray:
    """Table 4 columns at every target and xi for ensemble (c, k) (NaN without a study)."""
    m = len(plan.xis)
    out = np.full((plan.n_targets, m, len(ENSEMBLE_COLUMNS)), np.nan)
    if plan.study is None:
        return out
    size, count = plan.study
    n_T = plan.shape[1]
    n_s = prop["cage_displacement"].shape[0] // int(np.prod(plan.shape))
    lo = (c * n_T + k) * n_s
    ok = prop["status"][lo:lo + n_s] == 1
    if not ok.all():
        return out  # the study compares fixed replica sets: only with every replica ok
    disp = prop["cage_displacement"][lo:lo + n_s].astype(np.float64)  # (n_s, d_t, N)
    for j, target in enumerate(prop["delta_targets"][:]):
        fields = subensemble_fields(disp, float(target), size, count)  # (N, count + 1)
        if fields is None:
            continue
        e30, e100 = fields[:, :count], fields[:, count]
        cg = pl.coarse_grain_scan(fields, plan.xis)                          # (m, N, count + 1)
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


def _task(ctx, i: int) -> dict:
    cfg, plan, files = ctx
    if i < plan.n_samples:
        return _sample_task(cfg, plan, files, i)
    return _dynamics_task(cfg, plan, files, i - plan.n_samples)


def rows(cfg: Config, plan: Plan) -> dict:
    """The row datasets of analysis.h5 (leading shapes: test samples, ensembles)."""
    n, m, X, P, B = plan.n_samples, len(plan.xis), len(INDICATORS), len(PAIRS), plan.bins
    N = cfg.system.n_particles
    S = dict(lead=(n,), offset=0)
    E = dict(lead=plan.shape, offset=n)
    return {
        "samples/pearson": RowSpec((2, m, P), "f8", **S),
        "samples/spearman": RowSpec((2, m, P), "f8", **S),
        "samples/constant": RowSpec((2, X), "i1", -1, **S),
        "samples/correct": RowSpec((2,), "i1", -1, **S),
        "samples/corr_r": RowSpec((2, B + 1, X), "f8", **S),
        "samples/corr_r_layers": RowSpec((2, B + 1, max(plan.n_layers, 1)), "f8", **S),
        "samples/rdf": RowSpec((2, plan.rdf_bins, 3), "f8", **S),
        "samples/psi6": RowSpec((2,), "f8", **S),
        "samples/psi6_local": RowSpec((2,), "f8", **S),
        "dynamics/corr": RowSpec((plan.n_times, X, m, m), "f8", **E),
        "dynamics/delta": RowSpec((plan.n_times,), "f8", **E),
        "dynamics/corr_delta_r": RowSpec((plan.n_targets, B + 1), "f8", **E),
        "dynamics/maps_indicators": RowSpec((X, m, N), "f4", **E),
        "dynamics/maps_delta": RowSpec((plan.n_targets, m, N), "f4", **E),
        "dynamics/ensemble": RowSpec((plan.n_targets, m, len(ENSEMBLE_COLUMNS)), "f8", **E),
        **({"dynamics/corr_members": RowSpec((plan.n_times, plan.n_members, m, m), "f8", **E)}
           if plan.n_members else {}),
    }


def _attrs(cfg: Config, plan: Plan) -> dict:
    return {"indicators": ",".join(INDICATORS), "pairs": ",".join(PAIR_NAMES),
            "classes": ",".join(CLASSES), "forms": json.dumps(forms(cfg)),
            "have_gamma": int(plan.have_gamma), "xis": np.array(plan.xis),
            "r_corr": plan.r_corr, "ensemble_columns": ",".join(ENSEMBLE_COLUMNS),
            "study": json.dumps(list(plan.study) if plan.study else None),
            "xi_pairs": plan.xi_pairs, "xi_notes": json.dumps(list(plan.xi_notes))}


def _globals(cfg: Config, plan: Plan) -> dict:
    r = np.concatenate([[0.0], (np.arange(plan.bins) + 0.5) * (plan.r_corr / plan.bins)])
    return {"runs": plan.runs.astype(np.int64), "r": r,
            "r_rdf": (np.arange(plan.rdf_bins) + 0.5) * (plan.r_corr / plan.rdf_bins),
            "xis": np.array(plan.xis), "config_rows": plan.config_rows}


def _reduce(path, cfg: Config, plan: Plan) -> None:
    from glasscam_mpi.stages.analyze_summary import summarize_into
    from glasscam_mpi.stages.analyze_uncertainty import uncertainty_into

    summarize_into(path, cfg, plan)
    uncertainty_into(path, cfg, plan)  # Table 5's uncertainty and null level
    if plan.n_members:
        from glasscam_mpi.stages.analyze_members import summarize_members

        summarize_members(path, cfg, plan)


def _banner(cfg: Config, plan: Plan, n_todo: int, size: int) -> str:
    gamma = "with Gamma" if plan.have_gamma else "without Gamma (no gradcam.h5)"
    return (f"analyze: {plan.n_samples} test samples x 2 classes and {int(np.prod(plan.shape))} "
            f"propensity ensemble(s), {gamma}; xi in {list(plan.xis)}, C(r) to "
            f"{plan.r_corr:.3g}; {n_todo} tasks to do on {size} rank(s)"
            + "".join(f"\nanalyze: WARNING: {note}" for note in plan.xi_notes))


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    """The paper's answer for ``glasscam info``: T*, and per indicator C^max and delta*
    (pooled and per temperature), with the forms and the xi used."""
    return {"headline": json.loads(fh.attrs["headline"])} if "headline" in fh.attrs else {}


def _cost(cfg: Config, cal, profile) -> Cost:
    """The stage's own task functions timed on the calibration's glass (stand-in fields:
    the cost does not depend on their values)."""
    from glasscam_mpi.md.replica import log_times
    from glasscam_mpi.stages.indicators import indicator_fields
    from glasscam_mpi.store import file_bytes

    q, g = cfg.propensity, cal.md.glass
    box, x, types = g["box"], g["positions"], g["types"]
    n_test, n_T = cfg.split_counts()[2], len(q.temperatures)
    n_times = len(log_times(cfg.prepare.timestep, q.t_max, q.n_times))
    n_c, n_layers = q.n_configs, len(cfg.train.channels)
    plan = make_plan(cfg, box, np.arange(max(n_test, 1)), (n_c, n_T), have_gamma=True,
                     n_layers=n_layers, config_rows=np.zeros(n_c, np.int64), n_times=n_times,
                     n_targets=len(q.delta_targets), reportable=np.ones((n_c, n_T), np.int8),
                     n_replicas=0)
    volume, theta = indicator_fields(cfg, box, x, types)
    F = np.stack([volume, volume, theta], axis=1)  # Gamma's stand-in: the volume field
    layers = np.repeat(volume[:, None], n_layers, axis=1)
    D = np.outer(np.geomspace(0.01, 3.0, n_times), volume)
    at = D[np.linspace(0, n_times - 1, len(q.delta_targets)).astype(int)]
    sample_s = cal.timed(lambda: analyse_sample(plan, x, types, F, layers, 1, 1), 0.3, 3)
    ensemble_s = cal.timed(lambda: analyse_ensemble(plan, _pair_list(plan, x), F, D, at),
                           0.3, 3)
    n_ens = n_c * n_T
    n = n_test + n_ens
    return Cost(n, (n_test * 2 * sample_s + n_ens * ensemble_s) / max(n, 1),
                file_bytes(rows(cfg, plan), n), cal.md.memory_bytes,
                f"measured: the stage's task functions on the calibration's glass, "
                f"{sample_s:.3g} s per test sample and class, {ensemble_s:.3g} s per ensemble "
                "(fields stand-ins: the cost does not depend on their values)")


stage = FarmStage(
    STAGE, About(HELP, DESCRIPTION),
    Flow(needs=("prepare", "gradcam", "indicators", "propensity"),
         runs=Runs("cpu", continues=True),
         inputs=(Input("prepare", ok_test_runs=True), Input("indicators"),
                 Input("propensity"), Input("gradcam", optional=True)), cost=_cost),
    Tasks("tasks", _plan, _task, banner=_banner),
    Output(rows, _attrs, _globals, reduce=_reduce, headline=_headline))
