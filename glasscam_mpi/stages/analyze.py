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
    samples/rdf               (n, 2, B_g, P_s) g_ab for the species pairs a <= b (binary:
                              g_AA, g_AB, g_BB; bins 0.025 sigma: r_rdf)
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

from glasscam_mpi.analysis import compare
from glasscam_mpi.analysis.compare import CLASSES, INDICATORS, PAIR_NAMES, PAIRS
from glasscam_mpi.analysis.neighbours import PairList
from glasscam_mpi.analysis.subensembles import ENSEMBLE_COLUMNS, ensemble_study
from glasscam_mpi.analysis.xiscan import resolve_xis
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.jsonio import dumps
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


def one_minus(cfg: Config) -> tuple[str, ...]:
    """The indicators that enter correlations as 1 - X."""
    return compare.one_minus(cfg.analyze.one_minus, cfg.system.name)


def forms(cfg: Config) -> dict[str, str]:
    return compare.forms(cfg.analyze.one_minus, cfg.system.name)


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
    n_species: int = 2        # of the system (a custom mixture may have 1 to 8)

    @property
    def species_pairs(self) -> tuple[tuple[int, int], ...]:
        """(a, b), a <= b, the columns of samples/rdf (binary: AA, AB, BB)."""
        return compare.species_pairs(self.n_species)

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
                xi_notes=scan.notes, n_members=n_members,
                n_species=cfg.sys.n_species)


def _pair_list(plan: Plan, x: np.ndarray) -> PairList:
    return compare.pair_list(plan.box, x, plan.xis, plan.r_corr)


def _fields(plan: Plan, files: dict, row: int, cls: int) -> np.ndarray:
    """(N, 3) bare Gamma, Upsilon, Theta of test row ``row``, class ``cls`` (NaN Gamma
    without a CNN)."""
    ind = files["indicators"]
    vol, theta = ind["volume"][row, cls], ind["theta"][row, cls]
    gamma = (files["gradcam"]["gamma"][row, cls].astype(np.float64) if plan.have_gamma
             else np.full_like(vol, np.nan))
    return np.stack([gamma, vol, theta], axis=1)


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
        x = prep[CLASSES[cls]][r]
        if not np.isfinite(x).all():  # no such sample (the liquid of an imported glass)
            per_class.append(_sample_rows(plan, None, cls))
            continue
        per_class.append(analyse_sample(plan, x, prep["types"][r],
                                        _fields(plan, files, i, cls), layers, predicted, cls))
    return {name: np.stack([d[name] for d in per_class]) for name in per_class[0]}


def _sample_rows(plan: Plan, predicted: int | None, label: int) -> dict:
    """A test sample's rows before anything is computed: NaN, "no CNN" where ``predicted``
    is None (also what a sample that does not exist keeps)."""
    rows = compare.empty_sample(len(plan.xis), plan.bins, plan.rdf_bins, plan.n_layers,
                                plan.n_species, predicted, label)
    return {f"samples/{name}": value for name, value in rows.items()}


def analyse_sample(plan: Plan, x: np.ndarray, types: np.ndarray, F: np.ndarray,
                   layers: np.ndarray | None = None, predicted: int | None = None,
                   label: int = 1) -> dict:
    """The ``samples/`` rows (without the leading class axis) of one test sample:
    :func:`~glasscam_mpi.analysis.compare.compare_sample` with the plan's xis, r_corr,
    bins, box and layers."""
    rows = compare.compare_sample(_pair_list(plan, x), x, types, F, box=plan.box,
                                  xis=plan.xis, r_corr=plan.r_corr, bins=plan.bins,
                                  rdf_bins=plan.rdf_bins, n_layers=plan.n_layers,
                                  layers=layers, predicted=predicted, label=label,
                                  n_species=plan.n_species)
    return {f"samples/{name}": value for name, value in rows.items()}


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
    """The ``dynamics/`` rows of one ensemble's configuration against its propensity:
    :func:`~glasscam_mpi.analysis.compare.compare_ensemble` with the plan's xis, forms,
    r_corr and bins (``pl``: the configuration's pair list, :func:`_pair_list`)."""
    rows = compare.compare_ensemble(pl, F, D, at, xis=plan.xis, sign=plan.sign,
                                    r_corr=plan.r_corr, bins=plan.bins, members=members)
    return {f"dynamics/{name}": value for name, value in rows.items()}


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
    return ensemble_study(pl, disp, prop["delta_targets"][:], plan.xis, size, count)


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
        "samples/rdf": RowSpec((2, plan.rdf_bins, len(plan.species_pairs)), "f8", **S),
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
            "classes": ",".join(CLASSES), "forms": dumps(forms(cfg)),
            "have_gamma": int(plan.have_gamma), "xis": np.array(plan.xis),
            "r_corr": plan.r_corr, "ensemble_columns": ",".join(ENSEMBLE_COLUMNS),
            "study": dumps(list(plan.study) if plan.study else None),
            "xi_pairs": plan.xi_pairs, "xi_notes": dumps(list(plan.xi_notes))}


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
    from glasscam_mpi.analysis import tong_tanaka, voronoi_volumes
    from glasscam_mpi.md.replica import log_times
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
    volume, theta = voronoi_volumes(box, x), tong_tanaka(box, x, types, cfg.sys.radii())
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
