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
"""

from __future__ import annotations

import time

import numpy as np

from glasscam_mpi.config import Config
from glasscam_mpi.md.cooling import CoolingPlan, run_cooling
from glasscam_mpi.md.engine import MDError
from glasscam_mpi.parallel import (Outcome, Progress, TaskFarm, bcast_from_root, injected,
                                   lammps_seeds, task_rng)
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import RowSpec, write_stage_file

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
                            cooling_rate=p.cooling_rate, energy_samples=p.energy_samples)


def split_of(cfg: Config) -> np.ndarray:
    """(n_runs,) int8 labels 0/1/2 = train/validation/test, a seeded permutation of runs."""
    n_train, n_val, _ = cfg.split_counts()
    order = task_rng(cfg.run.seed, STAGE, cfg.system.name, "split").permutation(cfg.prepare.n_runs)
    split = np.full(cfg.prepare.n_runs, 2, dtype=np.int8)
    split[order[:n_train]] = 0
    split[order[n_train:n_train + n_val]] = 1
    return split


def run_seeds(cfg: Config, index: int) -> tuple[int, int, int]:
    return lammps_seeds(task_rng(cfg.run.seed, STAGE, cfg.system.name, index), 3)




def cooling_task(cfg: Config, plan: CoolingPlan, index: int, inject_fault: bool = False) -> dict:
    """Run cooling run ``index``; return its shard arrays. Raises MDError on failure."""
    p = cfg.prepare
    seeds = run_seeds(cfg, index)
    res = run_cooling(cfg.sys, cfg.system.n_particles, plan, seeds=seeds,
                      min_distance=p.min_distance, timestep=p.timestep, T_high=p.T_high,
                      T_glass=cfg.T_glass, tdamp_steps=p.tdamp_steps, inject_fault=inject_fault)
    return {"types": res.types, "liquid": res.liquid, "glass": res.glass, "T": res.T,
            "pe": res.pe, "seeds": np.array(seeds, dtype=np.int64)}


def run(comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
        progress_every: float = 5.0) -> dict:
    """Run (or finish) the prepare stage in ``run_dir``; every rank calls this."""
    rd = RunDir(run_dir)
    rank = comm.Get_rank()
    t0 = time.time()

    def setup():
        rd.lock("glasscam prepare")
        cfg = rd.resolve_config(requested)
        todo = rd.pending(STAGE, cfg.prepare.n_runs, retry_failed)
        complete = rd.stage_file(STAGE).exists() and not todo
        return cfg, todo, complete

    try:
        cfg, todo, complete = bcast_from_root(comm, setup)
        if complete:
            if rank == 0:
                print(f"prepare: {rd.stage_file(STAGE)} is already complete")
            return {"complete": True, "ran": 0}
        plan = plan_of(cfg)
        shards = rd.shards(STAGE)
        faults, crashes = injected("GLASSCAM_INJECT_FAULT", STAGE), injected("GLASSCAM_INJECT_CRASH", STAGE)

        def task(index: int) -> Outcome:
            if index in crashes:
                raise RuntimeError(f"injected crash in prepare task {index}")
            try:
                arrays = cooling_task(cfg, plan, index, inject_fault=index in faults)
            except MDError as exc:
                shards.write(index, error=str(exc))
                return Outcome(index, False, str(exc))
            shards.write(index, arrays)
            return Outcome(index, True)

        progress = None
        if rank == 0:
            n = cfg.prepare.n_runs
            print(f"prepare: {cfg.system.name} N={cfg.system.n_particles}, {len(todo)} of {n} "
                  f"runs to do on {comm.Get_size()} rank(s); {plan.n_equilibrate} + "
                  f"{plan.n_total} MD steps per run", flush=True)
            progress = Progress(f"prepare {cfg.system.name}", len(todo), "runs", progress_every)
        t_md = time.time()
        outcomes = TaskFarm(comm, todo, progress).run(task)
        t_md = time.time() - t_md
        _reduce(comm, rd, cfg, plan)
        summary = {}
        if rank == 0:
            n_failed = sum(not o.ok for o in outcomes)
            summary = rd.finish(STAGE, f"{len(outcomes) - n_failed} runs ok, {n_failed} failed "
                                "in this job", time.time() - t0, comm.Get_size(), outcomes,
                                unit="run", seconds_md=round(t_md, 3))
        return comm.bcast(summary, root=0)
    finally:
        if rank == 0:
            rd.unlock()


def _reduce(comm, rd: RunDir, cfg: Config, plan: CoolingPlan) -> None:
    """Gather every shard into prepare.h5 (parallel HDF5 when available)."""
    shards = rd.shards(STAGE)
    status = bcast_from_root(comm, shards.scan)
    N, d, S = cfg.system.n_particles, cfg.sys.dim, len(plan.sample_steps)

    def row(i: int):
        ok = status.get(i)
        if ok is None:
            raise RuntimeError(f"prepare: run {i} has no shard after the task farm finished")
        data = shards.read(i, ok)
        return (True, "", data) if ok else (False, str(data["error"]), {})

    write_stage_file(
        rd.stage_file(STAGE), comm, n_tasks=cfg.prepare.n_runs,
        attrs={"stage": STAGE, "system": cfg.system.name, "dim": d, "n_particles": N,
               "T_high": cfg.prepare.T_high, "T_liquid": cfg.T_liquid, "T_glass": cfg.T_glass,
               "config": cfg.to_toml()},
        rows={"types": RowSpec((N,), "i1", -1), "liquid": RowSpec((N, d), "f8"),
              "glass": RowSpec((N, d), "f8"), "T": RowSpec((S,), "f8"),
              "pe": RowSpec((S,), "f8"), "seeds": RowSpec((3,), "i8", 0)},
        row_data=row,
        globals_={"box": np.full(d, cfg.sys.box_length(N)), "split": split_of(cfg),
                  "T_target": plan.target_temperature(cfg.prepare.T_high, cfg.T_glass),
                  "step": np.array(plan.sample_steps, dtype=np.int64)},
    )


def summarize(rd: RunDir, cfg: Config) -> dict:
    """Task counts and headline figures of the prepare stage, for ``glasscam info``."""
    n = cfg.prepare.n_runs
    found = rd.shards(STAGE).scan()
    n_ok = sum(found.values())
    out: dict = {"complete": rd.stage_file(STAGE).exists(),
                 "tasks": {"total": n, "done": n_ok, "failed": len(found) - n_ok,
                           "missing": n - len(found)}}
    if not out["complete"]:
        return out
    import h5py

    with h5py.File(rd.stage_file(STAGE), "r") as fh:
        ok = fh["status"][:] == 1
        split, step, pe, T = fh["split"][:], fh["step"][:], fh["pe"][:][ok], fh["T"][:][ok]
        out["tasks"].update(done=int(ok.sum()), failed=int((fh["status"][:] == 2).sum()),
                            missing=int((fh["status"][:] == 0).sum()))
    plan = plan_of(cfg)
    k_liq = int(np.searchsorted(step, plan.n_liquid))
    out["split_ok_runs"] = {name: int(((split == s) & ok).sum()) for s, name in enumerate(SPLIT_NAMES)}
    out["headline"] = {
        "liquid": {"T_target": cfg.T_liquid, "T_mean": _r(T[:, k_liq].mean()),
                   "pe_per_particle_mean": _r(pe[:, k_liq].mean()), "pe_std": _r(pe[:, k_liq].std())},
        "glass": {"T_target": cfg.T_glass, "T_mean": _r(T[:, -1].mean()),
                  "pe_per_particle_mean": _r(pe[:, -1].mean()), "pe_std": _r(pe[:, -1].std())},
    } if ok.any() else {}
    if ok.any():
        try:
            T_star = estimate_t_star_of(fh_path=rd.stage_file(STAGE), cfg=cfg)
            out["T_star"] = {"estimate": _r(T_star.T_star), "paper": cfg.sys.T_star_paper,
                             "method": "kink of U(T) along the ramp (hinge fit, measured T)"}
        except ValueError as exc:
            out["T_star"] = {"estimate": None, "paper": cfg.sys.T_star_paper, "why": str(exc)}
    return out


def estimate_t_star_of(fh_path, cfg: Config):
    """T* (METHOD.md section 6) from the run-averaged cooling curves U(T) in prepare.h5.

    The measured temperature is used, not the thermostat target: at fast cooling the
    system lags the target. Points above T_L are left out (curved hot liquid).
    """
    import h5py

    from glasscam_mpi.analysis.tstar import estimate_t_star

    with h5py.File(fh_path, "r") as fh:
        ok = fh["status"][:] == 1
        if not ok.any():
            raise ValueError("no ok runs in prepare.h5")
        U = fh["pe"][:][ok].mean(axis=0)
        T = fh["T"][:][ok].mean(axis=0)
    return estimate_t_star(T, U, T_max=cfg.T_liquid)


def _r(x: float) -> float:
    return float(np.round(x, 5))
