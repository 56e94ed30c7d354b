"""Stage ``prepare``: n_runs independent LAMMPS cooling runs, farmed over MPI ranks.

Output ``RUN_DIR/prepare.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs     stage = "prepare", system, dim, n_particles, T_high, T_liquid, T_glass, config
    box       (d,) float64              periodic box edges L (box is [0, L)^d)
    split     (n_runs,) int8            0 = train, 1 = validation, 2 = test
    T_target  (n_samples,) float64     thermostat target along the ramp
    step      (n_samples,) int64        ramp timestep of each sample
    types     (n_runs, N) int8          species index (0 = A, 1 = B), by atom id
    liquid    (n_runs, N, d) float64    positions at T_L, wrapped into [0, L)
    glass     (n_runs, N, d) float64    positions at T_G, wrapped into [0, L)
    T         (n_runs, n_samples) float64   instantaneous temperature along the ramp
    pe        (n_runs, n_samples) float64   potential energy per particle along the ramp
    seeds     (n_runs, 3) int64         LAMMPS seeds (place A, place B, velocities)
    energy_jump    (n_runs,) int8       1 where U(T) jumps (crystallisation), 0 not, -1 unchecked
    energy_jump_T  (n_runs,) float64    the temperature where the jump starts (else NaN)

With ``[prepare].extra_snapshots`` (S temperatures; none by default, and then nothing
below is written):

    snapshots      (n_runs, S, N, d) float64  positions where the ramp's target passes
                                              each of them, wrapped into [0, L)
    snapshot_T     (S,) float64               those temperatures, in the config's order
    snapshot_step  (S,) int64                 the ramp step of each (also in ``step``)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.order import energy_jump_flags
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.md.cooling import CoolingPlan, run_cooling
from glasscam_mpi.md.engine import MDError
from glasscam_mpi.parallel import injected, lammps_seeds, task_rng
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Output, Runs, Tasks
from glasscam_mpi.stages.engine import FarmStage
from glasscam_mpi.store import RowSpec, estimate_t_star_of  # noqa: F401 (prepare.estimate_t_star_of)

STAGE = "prepare"
HELP = "cooling runs in LAMMPS -> liquid and glass samples"
DESCRIPTION = ("Run the paper's sample preparation (section 2.2): n_runs independent LAMMPS "
               "cooling runs farmed over MPI ranks. Rerunning the same command finishes only "
               "what is missing.")
SPLIT_NAMES = ("train", "validation", "test")


def plan_of(cfg: Config) -> CoolingPlan:
    p = cfg.prepare
    return CoolingPlan.make(timestep=p.timestep, t_equilibrate=p.t_equilibrate, T_high=p.T_high,
                            T_liquid=cfg.T_liquid, T_glass=cfg.T_glass,
                            cooling_rate=p.cooling_rate, energy_samples=p.energy_samples,
                            extra_snapshots=p.extra_snapshots)


def split_of(cfg: Config) -> np.ndarray:
    """(n_runs,) int8 labels 0/1/2 = train/validation/test, a seeded permutation of runs."""
    n_train, n_val, _ = cfg.split_counts()
    order = task_rng(cfg.run.seed, STAGE, cfg.sys.name, "split").permutation(cfg.prepare.n_runs)
    split = np.full(cfg.prepare.n_runs, 2, dtype=np.int8)
    split[order[:n_train]] = 0
    split[order[n_train:n_train + n_val]] = 1
    return split


def run_seeds(cfg: Config, index: int) -> tuple[int, int, int]:
    # keyed by the system's name: a built-in name, or a custom mixture's [system].label
    return lammps_seeds(task_rng(cfg.run.seed, STAGE, cfg.sys.name, index), 3)



def cooling_task(cfg: Config, plan: CoolingPlan, index: int, inject_fault: bool = False,
                 comm=None) -> dict:
    """Run cooling run ``index`` (on the ranks of ``comm`` together, default this one);
    return its shard arrays. Raises MDError on failure."""
    p = cfg.prepare
    seeds = run_seeds(cfg, index)
    res = run_cooling(cfg.sys, cfg.system.n_particles, plan, seeds=seeds,
                      min_distance=p.min_distance, timestep=p.timestep, T_high=p.T_high,
                      T_glass=cfg.T_glass, tdamp_steps=p.tdamp_steps, inject_fault=inject_fault,
                      comm=comm, style=p.lammps_style)
    out = {"types": res.types, "liquid": res.liquid, "glass": res.glass, "T": res.T,
           "pe": res.pe, "seeds": np.array(seeds, dtype=np.int64)}
    if res.snapshots is not None:
        out["snapshots"] = res.snapshots
    return out


@dataclass(frozen=True)
class Plan:
    n_tasks: int
    cooling: CoolingPlan


def _plan(rd: RunDir, cfg: Config, inputs=None) -> Plan:
    if rd is not None and imported(rd):  # glasscam import wrote prepare.h5: nothing to run
        if not rd.intact(STAGE):
            raise ConfigError(f"{rd.stage_file(STAGE)} (imported) is missing or damaged; "
                              "rerun 'glasscam import' into a new --run-dir")
        return Plan(0, plan_of(cfg))
    return Plan(cfg.prepare.n_runs, plan_of(cfg))


def imported(rd: RunDir) -> bool:
    """Whether the run directory's test glasses came from 'glasscam import'."""
    from glasscam_mpi.importer import is_imported

    return rd.log_path("import").exists() or is_imported(rd.stage_file(STAGE))


def _context(cfg: Config, plan: Plan, files, comm):
    return cfg, plan.cooling, injected("GLASSCAM_INJECT_FAULT", STAGE)


def _task(ctx, index: int, comm=None) -> dict:
    cfg, cooling, faults = ctx
    return cooling_task(cfg, cooling, index, inject_fault=index in faults, comm=comm)


def _banner(cfg: Config, plan: Plan, n_todo: int, size: int) -> str:
    return (f"prepare: {cfg.system.name} N={cfg.system.n_particles}, {n_todo} of "
            f"{cfg.prepare.n_runs} runs to do on {size} rank(s)"
            f"{_groups(cfg.prepare.ranks_per_task)}; {plan.cooling.n_equilibrate} + "
            f"{plan.cooling.n_total} MD steps per run")


def _groups(k: int) -> str:
    return f" in groups of {k} per run" if k > 1 else ""


def rows(cfg: Config, plan: Plan | None = None) -> dict:
    """The row datasets of prepare.h5 (``plan`` default: the config's)."""
    plan = plan or _plan(None, cfg)
    N, d, S = cfg.system.n_particles, cfg.sys.dim, len(plan.cooling.sample_steps)
    rows = {"types": RowSpec((N,), "i1", -1), "liquid": RowSpec((N, d), "f8"),
            "glass": RowSpec((N, d), "f8"), "T": RowSpec((S,), "f8"),
            "pe": RowSpec((S,), "f8"), "seeds": RowSpec((3,), "i8", 0)}
    if plan.cooling.snapshot_steps:
        rows["snapshots"] = RowSpec((len(plan.cooling.snapshot_steps), N, d), "f8")
    return rows


def _attrs(cfg: Config, plan: Plan) -> dict:
    return {"T_high": cfg.prepare.T_high, "T_liquid": cfg.T_liquid, "T_glass": cfg.T_glass}


def _globals(cfg: Config, plan: Plan) -> dict:
    d, N = cfg.sys.dim, cfg.system.n_particles
    out = {"box": np.full(d, cfg.sys.box_length(N)), "split": split_of(cfg),
           "T_target": plan.cooling.target_temperature(cfg.prepare.T_high, cfg.T_glass),
           "step": np.array(plan.cooling.sample_steps, dtype=np.int64)}
    if plan.cooling.snapshot_steps:
        out["snapshot_T"] = np.array(cfg.prepare.extra_snapshots, dtype=np.float64)
        out["snapshot_step"] = np.array(plan.cooling.snapshot_steps, dtype=np.int64)
    return out


def _reduce(path, cfg: Config, plan: Plan) -> None:
    """Flag the runs whose U(T) jumps (crystallisation, paper section 2.2 / S6)."""
    add_energy_jumps(path)


def add_energy_jumps(path) -> None:
    """``energy_jump`` (n_runs,) int8: 1 where the run's U(T) drops discontinuously, 0 where
    it does not, -1 where not checked (failed run, too few energy samples);
    ``energy_jump_T`` (n_runs,): the T where it starts."""
    import h5py

    with h5py.File(path, "a") as fh:
        flags, where = energy_jump_flags(fh["status"][:] == 1, fh["T"][:], fh["pe"][:])
        for name, value in (("energy_jump", flags), ("energy_jump_T", where)):
            if name in fh:
                del fh[name]
            fh.create_dataset(name, data=value)
        fh["energy_jump"].attrs["criterion"] = ("glasscam_mpi.analysis.order.energy_jumps with "
                                                "its default thresholds")


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    """Split counts, liquid/glass energies and T* for ``glasscam info``."""
    ok = fh["status"][:] == 1
    split, step, pe, T = fh["split"][:], fh["step"][:], fh["pe"][:][ok], fh["T"][:][ok]
    out: dict = {"split_ok_runs": {name: int(((split == s) & ok).sum())
                                   for s, name in enumerate(SPLIT_NAMES)}}
    if str(fh.attrs.get("origin", "")) == "import":
        out["imported"] = {"frames": int(len(split)),
                           "files": sorted({p.decode() for p in fh["source_path"][:]}),
                           "formats": sorted({f.decode() for f in fh["source_format"][:]})}
        out["T_star"] = {"estimate": None, "paper": cfg.sys.T_star_paper,
                         "why": "imported configurations: no cooling curve"}
        return out
    if not ok.any():
        out["headline"] = {}
        return out
    k_liq = int(np.searchsorted(step, plan_of(cfg).n_liquid))
    out["headline"] = {
        "liquid": {"T_target": cfg.T_liquid, "T_mean": _r(T[:, k_liq].mean()),
                   "pe_per_particle_mean": _r(pe[:, k_liq].mean()), "pe_std": _r(pe[:, k_liq].std())},
        "glass": {"T_target": cfg.T_glass, "T_mean": _r(T[:, -1].mean()),
                  "pe_per_particle_mean": _r(pe[:, -1].mean()), "pe_std": _r(pe[:, -1].std())},
    }
    if "energy_jump" in fh:
        jumps = fh["energy_jump"][:]
        out["crystallisation"] = {
            "runs_with_energy_jump": int((jumps == 1).sum()),
            "runs_checked": int((jumps >= 0).sum()),
            "criterion": "a discontinuous drop of U(T) along the ramp (analysis/order.py)"}
    try:
        T_star = estimate_t_star_of(fh_path=rd.stage_file(STAGE), cfg=cfg)
        out["T_star"] = {"estimate": _r(T_star.T_star), "paper": cfg.sys.T_star_paper,
                         "method": "kink of U(T) along the ramp: glass line + liquid parabola "
                                   "in a window of about 2 T* (analysis/tstar.py)"}
    except ValueError as exc:
        out["T_star"] = {"estimate": None, "paper": cfg.sys.T_star_paper, "why": str(exc)}
    return out


def _cost(cfg: Config, cal, profile) -> Cost:
    """Per run: the measured LAMMPS set-up, equilibration at T_high and the ramp to T_G
    integrated over the seconds per step measured at temperatures along it."""
    from glasscam_mpi.store import file_bytes

    p, md, N, d = cfg.prepare, cal.md, cfg.system.n_particles, cfg.sys.dim
    cooling = plan_of(cfg)
    task_s = (md.setup_seconds + md.per_step(p.T_high) * cooling.n_equilibrate
              + md.ramp_seconds(p.T_high, cfg.T_glass, cooling.n_total))
    return Cost(p.n_runs, task_s, file_bytes(rows(cfg), p.n_runs),
                md.memory_bytes + 2 * N * d * 8,
                f"measured: LAMMPS set-up {md.setup_seconds:.3g} s and steps/s "
                f"({p.lammps_style} styles) at {len(md.temperatures)} temperatures; "
                f"{cooling.n_equilibrate} + {cooling.n_total} steps per run integrated over "
                "the ramp", ranks_per_task=p.ranks_per_task)


stage = FarmStage(
    STAGE, About(HELP, DESCRIPTION), Flow(runs=Runs("cpu", continues=True), cost=_cost),
    Tasks("runs", _plan, _task, context=_context, banner=_banner, failures=(MDError,),
          ranks_per_task=lambda cfg: cfg.prepare.ranks_per_task),
    Output(rows, _attrs, _globals, reduce=_reduce, headline=_headline))


def _r(x: float) -> float:
    return float(np.round(x, 5))
