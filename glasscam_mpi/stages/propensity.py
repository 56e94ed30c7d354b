"""Stage ``propensity``: isoconfigurational ensembles in LAMMPS, farmed over MPI ranks.

Tasks are (configuration c, temperature k, replica s), flattened as
``task = (c * n_T + k) * n_replicas + s``. Each replica starts from glass configuration c
(the first ``n_configs`` ok test runs of prepare.h5) with fresh Maxwell-Boltzmann
velocities at T_k and stores its cage-relative displacement field Delta_i^s(t) (cage = i
and its Voronoi neighbours at t = 0, METHOD.md section 6). Replicas are seeded by
(c, k, s), so the first 30 replicas of a 100-replica ensemble are a 30-replica ensemble.

**One set of times per ensemble.** The recording times are split into ``[propensity].rounds``
consecutive segments of equal log-time span. All replicas run a segment, then the stop rule
is applied to each *ensemble* (c, k): once its delta (mean over ok replicas and particles)
at the segment's end reaches ``stop_factor * max(delta_targets)``, none of its replicas
runs further, so every replica of an ensemble covers the same times (NaN after the stop
for all of them alike). A replica continues from a LAMMPS restart file of its previous
segment; segments are fixed by the config, so results do not depend on the rank count, on
the order tasks finish in, or on a kill and resume.

**Failed replicas** are left out: the ensemble means run over the ok replicas, their count
``n_ok_replicas`` is stored per (c, k), and an ensemble with fewer than
``min_replicas`` ok replicas is flagged ``reportable = 0`` (analyze and report skip it and
say so; ``glasscam info`` lists it).

Output ``RUN_DIR/propensity.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs  stage, T_star, T_star_source ("config", "estimate" or "none"), T_star_estimate,
           T_star_paper, ensemble, rounds, min_replicas
    configs             (n_c,) int64       run index in prepare.h5 of each configuration
    temperatures        (n_T,) f8          absolute replica temperatures
    steps, time         (n_times,)         recording timesteps and times
    delta_targets       (n_d,) f8
    task_config, task_temperature, task_replica   (n_tasks,) int32
    cage_displacement   (n_tasks, n_times, N) f4   Delta_i^s(t); NaN after the ensemble stopped
    T0                  (n_tasks,) f8      temperature of the drawn velocities
    momentum0           (n_tasks, d) f8    total momentum of the drawn velocities
    n_ok_replicas       (n_c, n_T) int32   replicas that finished, per ensemble
    reportable          (n_c, n_T) int8    1 where n_ok_replicas >= min_replicas
    stopped_after       (n_c, n_T) f8      last recorded time of the ensemble
    propensity          (n_c, n_T, n_times, N) f4   Delta_i(t), mean over ok replicas
    delta               (n_c, n_T, n_times) f8       delta(t) = mean_i Delta_i(t)
    propensity_at_delta (n_c, n_T, n_d, N) f4   Delta_i where delta(t) passes each target
    t_at_delta          (n_c, n_T, n_d) f8      that time (NaN if not reached)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.cage import cage_relative_displacement
from glasscam_mpi.analysis.crossing import at_targets
from glasscam_mpi.analysis.voronoi import voronoi_neighbors
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.md.engine import MDError
from glasscam_mpi.md.replica import log_times, run_replica
from glasscam_mpi.parallel import injected, lammps_seeds, task_rng
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Input, Output, Rounds, Runs, Tasks
from glasscam_mpi.stages.engine import FarmStage
from glasscam_mpi.store import RowSpec, estimate_t_star_of

STAGE = "propensity"
HELP = "isoconfigurational replica ensembles in LAMMPS -> dynamic propensity"
DESCRIPTION = ("For the first n_configs glass test samples and each temperature, run n_replicas "
               "LAMMPS replicas with fresh Maxwell-Boltzmann velocities (paper section 3.5), "
               "farmed over MPI ranks; store every replica's cage-relative displacement field, "
               "the propensity and delta(t). Resumable; identical for any rank count.")


def configured_t_star(cfg: Config) -> float | None:
    """[propensity].T_star as a number, or None for "estimate" (0 in older run
    directories means "estimate" too)."""
    value = cfg.propensity.T_star
    return None if value in ("estimate", 0.0) else float(value)


def t_star_estimate(cfg: Config, rd: RunDir) -> tuple[float, str]:
    """(T* estimated from the cooling curves of prepare.h5, or NaN; why there is none)."""
    try:
        return float(estimate_t_star_of(rd.stage_file("prepare"), cfg).T_star), ""
    except ValueError as exc:
        return float("nan"), str(exc)


def t_star_of(cfg: Config, rd: RunDir) -> tuple[float, str, float]:
    """(T* used, its source, the cooling-curve estimate or NaN). The estimate is made
    whatever the temperature unit, so it is always reported beside the T* used."""
    estimate, why = t_star_estimate(cfg, rd)
    if cfg.propensity.temperature_unit != "T_star":
        used = configured_t_star(cfg)
        return (float("nan"), "none", estimate) if used is None else (used, "config", estimate)
    if configured_t_star(cfg) is not None:
        return configured_t_star(cfg), "config", estimate
    if not math.isfinite(estimate):
        raise ConfigError(f"cannot estimate T* from the cooling curves ({why}); set "
                          "[propensity].T_star to a number or temperature_unit = \"absolute\"")
    return estimate, "estimate", estimate


def t_star_words(plan) -> str:
    """T* for the log: the one used and its source, and the cooling-curve estimate."""
    est = (f"estimated {plan.T_star_estimate:.4g} from the cooling curves"
           if math.isfinite(plan.T_star_estimate) else "no estimate from the cooling curves")
    if plan.T_star_source == "none":
        return f"absolute temperatures; T* {est}"
    return f"T* = {plan.T_star:.4g} from {plan.T_star_source}; {est}"


def min_replicas(cfg: Config) -> int:
    """Fewest ok replicas for a reportable ensemble (0 in the config: 90 % of n_replicas)."""
    q = cfg.propensity
    return q.min_replicas or max(1, math.ceil(0.9 * q.n_replicas))


@dataclass(frozen=True)
class Plan:
    configs: np.ndarray     # (n_c,) run indices in prepare.h5
    glass: np.ndarray       # (n_c, N, d)
    types: np.ndarray       # (n_c, N)
    box: np.ndarray         # (d,)
    temps: np.ndarray       # (n_T,) absolute temperatures
    T_star: float
    T_star_source: str
    T_star_estimate: float
    steps: np.ndarray       # (n_times,) recording timesteps
    segments: tuple         # record indices of each round
    shape: tuple            # (n_c, n_T, n_replicas)

    @property
    def n_tasks(self) -> int:
        return int(np.prod(self.shape))


def _plan(rd: RunDir, cfg: Config, inputs) -> Plan:
    q = cfg.propensity
    ok_test = inputs.ok_test_runs
    if len(ok_test) < q.n_configs:
        raise ConfigError(f"[propensity].n_configs = {q.n_configs}: only {len(ok_test)} ok "
                          "test runs in prepare.h5")
    configs = ok_test[:q.n_configs]
    fh = inputs.files["prepare"]
    glass, types, box = fh["glass"][np.sort(configs)], fh["types"][np.sort(configs)], fh["box"][:]
    temps = np.array(q.temperatures, dtype=float)
    T_star, source, estimate = t_star_of(cfg, rd)
    if q.temperature_unit == "T_star":
        temps = temps * T_star
    steps = log_times(cfg.prepare.timestep, q.t_max, q.n_times)
    if q.rounds > len(steps):
        raise ConfigError(f"[propensity].rounds = {q.rounds}: more than the {len(steps)} distinct "
                          "recording times; lower it or raise n_times")
    if q.ensemble == "nve":
        print("propensity: WARNING: ensemble = 'nve' starts from the T_G glass without a "
              "thermostat, so the replicas settle near T/2: T then only sets the initial "
              "velocities (use 'nvt' for the paper's protocol)", flush=True)
    segments = tuple(tuple(int(i) for i in seg)
                     for seg in np.array_split(np.arange(len(steps)), q.rounds))
    return Plan(configs, glass, types, box, temps, T_star, source, estimate, steps, segments,
                (len(configs), len(temps), q.n_replicas))


def _seed(cfg: Config, plan: Plan, c: int, k: int, s: int) -> int:
    return lammps_seeds(task_rng(cfg.run.seed, STAGE, cfg.sys.name,
                                 int(plan.configs[c]), k, s), 1)[0]


def run_segment(cfg: Config, plan: Plan, index: int, r: int, cage, carry,
                inject_fault: bool = False, comm=None) -> dict:
    """Segment ``r`` of replica ``index``: its cage-relative displacements at the segment's
    records (and, for r = 0, the drawn velocities' temperature and momentum). ``carry``
    (:class:`~glasscam_mpi.stages.declare.Carry`): the LAMMPS restart file of the previous
    segment, and where to write this one's."""
    c, k, s = (int(v) for v in np.unravel_index(index, plan.shape))
    x0 = plan.glass[c]
    res = run_replica(cfg.sys, x0, plan.types[c], plan.box, T=float(plan.temps[k]),
                      seed=_seed(cfg, plan, c, k, s), timestep=cfg.prepare.timestep,
                      steps=plan.steps[list(plan.segments[r])], ensemble=cfg.propensity.ensemble,
                      tdamp_steps=cfg.prepare.tdamp_steps,
                      restart_from=carry.load, restart_to=carry.save, inject_fault=inject_fault, comm=comm,
                      style=cfg.propensity.lammps_style)
    out = {"cage_displacement": cage_relative_displacement(res.positions - x0, *cage)
           .astype(np.float32)}
    if r == 0:
        out.update(T0=np.array(res.T0), momentum0=res.momentum0)
    return out


def _context(cfg: Config, plan: Plan, files, comm):
    # the cage of each configuration (its Voronoi neighbours at t = 0), found once per rank;
    # GLASSCAM_INJECT_FAULT: test hook, real LAMMPS failures (in the first round)
    return cfg, plan, {}, injected("GLASSCAM_INJECT_FAULT", STAGE)


def _segment(ctx, index: int, r: int, carry, comm=None) -> dict:
    cfg, plan, cages, faults = ctx
    c = index // (plan.shape[1] * plan.shape[2])
    if c not in cages:
        cages[c] = voronoi_neighbors(plan.box, plan.glass[c])
    return run_segment(cfg, plan, index, r, cages[c], carry,
                       inject_fault=index in faults and r == 0, comm=comm)


def _stop_rule(cfg: Config, plan: Plan):
    """An ensemble stops once its delta (mean over its ok replicas and particles) at the
    round's end reaches stop_factor * max(delta_targets); no ok replica left stops it too."""
    q = cfg.propensity
    threshold = q.stop_factor * max(q.delta_targets)
    if not threshold > 0:
        return None

    def stops(replicas: list[dict]) -> bool:
        last = [a["cage_displacement"][-1].mean() for a in replicas]
        d = float(np.mean(last)) if last else float("nan")
        return not (d < threshold)  # NaN (no ok replica left) stops too
    return stops


def _merge(plan: Plan, segments: list[dict]) -> dict:
    """A replica's row from its segments (NaN after its ensemble stopped)."""
    disp = np.full((len(plan.steps), plan.glass.shape[1]), np.nan, dtype=np.float32)
    for seg, data in zip(plan.segments, segments):
        disp[list(seg)] = data["cage_displacement"]
    return {"cage_displacement": disp, "T0": segments[0]["T0"],
            "momentum0": segments[0]["momentum0"]}


def _banner(cfg: Config, plan: Plan, n_todo: int, size: int) -> str:
    q = cfg.propensity
    return (f"propensity: {plan.shape[0]} config(s) x T = {np.round(plan.temps, 4).tolist()} "
            f"({t_star_words(plan)}) x {q.n_replicas} replicas: "
            f"{n_todo} tasks to do on {size} rank(s)"
            f"{f' in groups of {q.ranks_per_task} per replica' if q.ranks_per_task > 1 else ''}"
            f", in {len(plan.segments)} round(s) "
            f"up to t = {plan.steps[-1] * cfg.prepare.timestep:g}")


def rows(cfg: Config, plan: Plan | None = None) -> dict:
    """The row datasets of propensity.h5 (``plan`` default: the config's recording times)."""
    N, d = cfg.system.n_particles, cfg.sys.dim
    steps = plan.steps if plan is not None else log_times(cfg.prepare.timestep,
                                                          cfg.propensity.t_max,
                                                          cfg.propensity.n_times)
    return {"cage_displacement": RowSpec((len(steps), N), "f4"), "T0": RowSpec((), "f8"),
            "momentum0": RowSpec((d,), "f8")}


def _cost(cfg: Config, cal, profile) -> Cost:
    """Every replica to t_max at the steps/s measured at its temperature (the stop rule
    ends ensembles early: an upper bound), plus a fresh LAMMPS instance per segment."""
    from glasscam_mpi.md.calibrate import replica_temperatures
    from glasscam_mpi.store import file_bytes

    p, q, md = cfg.prepare, cfg.propensity, cal.md_propensity
    N, d = cfg.system.n_particles, cfg.sys.dim
    temps, note = replica_temperatures(cfg)
    steps = log_times(p.timestep, q.t_max, q.n_times)
    per_T = [md.instance_seconds * q.rounds + float(md.per_step(T)) * int(steps[-1])
             for T in temps]
    n = q.n_configs * q.n_replicas * len(temps)
    merged = q.n_configs * len(temps) * (len(steps) * (N * 4 + 8)
                                         + len(q.delta_targets) * (N * 4 + 8))
    return Cost(n, float(np.mean(per_T)), file_bytes(rows(cfg), n) + merged,
                cal.md.memory_bytes + len(steps) * N * d * 8 * 2,
                f"measured steps/s ({q.lammps_style} styles) at the replica temperatures "
                f"{', '.join(f'{T:.3g}' for T in temps)}{note}; {int(steps[-1])} steps per "
                f"replica (t_max, no early stop: an upper bound while stop_factor = "
                f"{q.stop_factor:g})", ranks_per_task=q.ranks_per_task)


def _attrs(cfg: Config, plan: Plan) -> dict:
    return {"T_star": plan.T_star, "T_star_source": plan.T_star_source,
            "T_star_estimate": plan.T_star_estimate,
            "T_star_paper": cfg.sys.T_star_paper or float("nan"),
            "ensemble": cfg.propensity.ensemble, "rounds": len(plan.segments),
            "min_replicas": min_replicas(cfg)}


def _globals(cfg: Config, plan: Plan) -> dict:
    c_idx, k_idx, s_idx = np.unravel_index(np.arange(plan.n_tasks), plan.shape)
    return {"configs": plan.configs.astype(np.int64), "temperatures": plan.temps,
            "steps": plan.steps, "time": plan.steps * cfg.prepare.timestep,
            "delta_targets": np.array(cfg.propensity.delta_targets),
            "task_config": c_idx.astype(np.int32), "task_temperature": k_idx.astype(np.int32),
            "task_replica": s_idx.astype(np.int32)}


def _reduce(path, cfg: Config, plan: Plan) -> None:
    add_propensity(path, plan.shape, min_replicas(cfg))


def add_propensity(path, shape: tuple[int, int, int], min_ok: int = 1) -> None:
    """Derive the ensemble datasets (propensity, delta, values at the delta targets) from
    the ok replicas of every ensemble."""
    import h5py

    with h5py.File(path, "a") as fh:
        disp, status = fh["cage_displacement"], fh["status"][:]
        n_c, n_T, n_s = shape
        t = fh["time"][:]
        targets = fh["delta_targets"][:]
        N = disp.shape[2]
        prop = np.full((n_c, n_T, len(t), N), np.nan, dtype=np.float32)
        at = np.full((n_c, n_T, len(targets), N), np.nan, dtype=np.float32)
        t_at = np.full((n_c, n_T, len(targets)), np.nan)
        n_ok = np.zeros((n_c, n_T), dtype=np.int32)
        last = np.full((n_c, n_T), np.nan)
        for c in range(n_c):
            for k in range(n_T):
                lo = (c * n_T + k) * n_s
                ok = np.flatnonzero(status[lo:lo + n_s] == 1)
                n_ok[c, k] = len(ok)
                if len(ok) == 0:
                    continue
                prop[c, k] = propensity_mean(disp[lo:lo + n_s][ok])
                at[c, k], t_at[c, k] = at_targets(t, prop[c, k], targets)
                recorded = np.flatnonzero(np.isfinite(prop[c, k, :, 0]))
                last[c, k] = t[recorded[-1]] if len(recorded) else np.nan
        # delta(t): NaN at the times after an ensemble stopped (all its replicas alike)
        delta = np.full(prop.shape[:-1], np.nan)
        recorded = np.isfinite(prop).all(axis=-1)
        delta[recorded] = prop[recorded].astype(np.float64).mean(axis=-1)
        for name, value in (("propensity", prop), ("delta", delta),
                            ("propensity_at_delta", at), ("t_at_delta", t_at),
                            ("n_ok_replicas", n_ok),
                            ("reportable", (n_ok >= min_ok).astype(np.int8)),
                            ("stopped_after", last)):
            if name in fh:
                del fh[name]
            fh.create_dataset(name, data=value)


def propensity_mean(cage_disp: np.ndarray) -> np.ndarray:
    """(n_s, n_times, N) -> (n_times, N): mean over replicas; NaN where any replica is missing."""
    return np.asarray(cage_disp, dtype=np.float64).mean(axis=0).astype(np.float32)


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    """T*, temperatures, how far delta got, and any ensemble too thin to report."""
    out = {"T_star": float(fh.attrs["T_star"]), "T_star_source": str(fh.attrs["T_star_source"]),
           "T_star_paper": cfg.sys.T_star_paper,
           "temperatures": np.round(fh["temperatures"][:], 5).tolist(),
           "max_delta": np.round(np.nanmax(np.nan_to_num(fh["delta"][:], nan=-1), axis=-1),
                                 4).tolist(),
           "t_at_delta": {f"{x:g}": np.round(fh["t_at_delta"][:, :, j], 3).tolist()
                          for j, x in enumerate(fh["delta_targets"][:])}}
    # the cooling-curve estimate, whatever the temperature unit (older files of absolute
    # temperatures hold NaN: estimated here from prepare.h5)
    estimate = float(fh.attrs.get("T_star_estimate", np.nan))
    why = ""
    if not math.isfinite(estimate):
        estimate, why = t_star_estimate(cfg, rd)
    out["T_star_estimate"] = estimate if math.isfinite(estimate) else None
    if why:
        out["T_star_estimate_why"] = why
    if "n_ok_replicas" in fh:
        n_ok, rep = fh["n_ok_replicas"][:], fh["reportable"][:]
        out["n_ok_replicas"] = n_ok.tolist()
        thin = [f"config {c}, T = {fh['temperatures'][k]:.4g}: {n_ok[c, k]} ok replicas < "
                f"{int(fh.attrs['min_replicas'])}" for c, k in zip(*np.nonzero(rep == 0))]
        if thin:
            out["not_reportable"] = thin
    return out


stage = FarmStage(
    STAGE, About(HELP, DESCRIPTION),
    Flow(needs=("prepare",), runs=Runs("cpu", continues=True),
         inputs=(Input("prepare", ok_test_runs=True),), cost=_cost),
    Tasks("replicas", _plan, context=_context, banner=_banner, failures=(MDError,),
          ranks_per_task=lambda cfg: cfg.propensity.ranks_per_task,
          rounds=Rounds(count=lambda plan: len(plan.segments), segment=_segment,
                        group=lambda plan, i: i // plan.shape[2],
                        n_groups=lambda plan: plan.shape[0] * plan.shape[1],
                        stop=_stop_rule, merge=_merge)),
    Output(rows, _attrs, _globals, reduce=_reduce, headline=_headline))
