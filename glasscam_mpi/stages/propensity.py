"""Stage ``propensity``: isoconfigurational ensembles in LAMMPS, farmed over MPI ranks.

Tasks are (configuration c, temperature k, replica s), flattened as
``task = (c * n_T + k) * n_replicas + s``. Each replica starts from glass configuration c
(the first ``n_configs`` ok test runs of prepare.h5) with fresh Maxwell-Boltzmann
velocities at T_k and stores its cage-relative displacement field Delta_i^s(t) (cage = i
and its Voronoi neighbours at t = 0, METHOD.md section 6). Replicas are seeded by
(c, k, s), so the first 30 replicas of a 100-replica ensemble are a 30-replica ensemble.

Output ``RUN_DIR/propensity.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs  stage, T_star, T_star_source ("config", "cooling curves" or "none"), ensemble
    configs             (n_c,) int64       run index in prepare.h5 of each configuration
    temperatures        (n_T,) f8          absolute replica temperatures
    steps, time         (n_times,)         recording timesteps and times
    delta_targets       (n_d,) f8
    task_config, task_temperature, task_replica   (n_tasks,) int32
    cage_displacement   (n_tasks, n_times, N) f4   Delta_i^s(t); NaN after a replica stopped
    T0                  (n_tasks,) f8      temperature of the drawn velocities
    momentum0           (n_tasks, d) f8    total momentum of the drawn velocities
    propensity          (n_c, n_T, n_times, N) f4   Delta_i(t), mean over replicas
    delta               (n_c, n_T, n_times) f8       delta(t) = mean_i Delta_i(t)
    propensity_at_delta (n_c, n_T, n_d, N) f4   Delta_i where delta(t) passes each target
    t_at_delta          (n_c, n_T, n_d) f8      that time (NaN if not reached)
"""

from __future__ import annotations

import time

import numpy as np

from glasscam_mpi.analysis.cage import cage_relative_displacement
from glasscam_mpi.analysis.voronoi import voronoi_neighbors
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.md.engine import MDError
from glasscam_mpi.md.replica import log_times, run_replica
from glasscam_mpi.parallel import (Outcome, Progress, TaskFarm, bcast_from_root, injected,
                                   lammps_seeds, task_rng)
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.prepare import estimate_t_star_of
from glasscam_mpi.store import RowSpec, write_stage_file

STAGE = "propensity"
HELP = "isoconfigurational replica ensembles in LAMMPS -> dynamic propensity"
DESCRIPTION = ("For the first n_configs glass test samples and each temperature, run n_replicas "
               "LAMMPS replicas with fresh Maxwell-Boltzmann velocities (paper section 3.5), "
               "farmed over MPI ranks; store every replica's cage-relative displacement field, "
               "the propensity and delta(t). Resumable; identical for any rank count.")


def t_star_of(cfg: Config, rd: RunDir) -> tuple[float, str]:
    """T* from the config, else from the prepare stage's cooling curves."""
    if cfg.propensity.T_star > 0:
        return cfg.propensity.T_star, "config"
    try:
        return estimate_t_star_of(rd.stage_file("prepare"), cfg).T_star, "cooling curves"
    except ValueError as exc:
        raise ConfigError(f"cannot estimate T* from the cooling curves ({exc}); set "
                          "[propensity].T_star or temperature_unit = \"absolute\"") from exc


def _inputs(cfg: Config, rd: RunDir) -> dict:
    """Everything the tasks need, read once on rank 0 (then broadcast)."""
    import h5py

    q = cfg.propensity
    ok_test = rd.ok_test_runs()
    with h5py.File(rd.stage_file("prepare"), "r") as fh:
        if len(ok_test) < q.n_configs:
            raise ConfigError(f"[propensity].n_configs = {q.n_configs}: only {len(ok_test)} ok "
                              "test runs in prepare.h5")
        configs = ok_test[:q.n_configs]
        glass = fh["glass"][np.sort(configs)]
        types = fh["types"][np.sort(configs)]
        box = fh["box"][:]
    T_star, source = (float("nan"), "none")
    temps = np.array(q.temperatures, dtype=float)
    if q.temperature_unit == "T_star":
        T_star, source = t_star_of(cfg, rd)
        temps = temps * T_star
    elif q.T_star > 0:
        T_star, source = q.T_star, "config"
    return {"configs": configs, "glass": glass, "types": types, "box": box, "temps": temps,
            "T_star": T_star, "T_star_source": source,
            "steps": log_times(cfg.prepare.timestep, q.t_max, q.n_times)}


def run(comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
        progress_every: float = 5.0) -> dict:
    """Run (or finish) the propensity stage; every rank calls this."""
    rd = RunDir(run_dir)
    rank = comm.Get_rank()
    t0 = time.time()

    def setup():
        rd.lock("glasscam propensity")
        cfg = rd.resolve_config(requested)
        inputs = _inputs(cfg, rd)
        q = cfg.propensity
        n_tasks = len(inputs["configs"]) * len(inputs["temps"]) * q.n_replicas
        todo = rd.pending(STAGE, n_tasks, retry_failed)
        return cfg, inputs, todo, rd.stage_file(STAGE).exists() and not todo

    try:
        cfg, inputs, todo, complete = bcast_from_root(comm, setup)
        if complete:
            if rank == 0:
                print(f"propensity: {rd.stage_file(STAGE)} is already complete")
            return {"complete": True}
        q, p = cfg.propensity, cfg.prepare
        shape = (len(inputs["configs"]), len(inputs["temps"]), q.n_replicas)
        steps = inputs["steps"]
        cages: dict[int, tuple] = {}
        threshold = q.stop_factor * max(q.delta_targets)

        crashes = injected("GLASSCAM_INJECT_CRASH", STAGE)

        def task(index: int) -> Outcome:
            if index in crashes:
                raise RuntimeError(f"injected crash in propensity task {index}")
            c, k, s = (int(v) for v in np.unravel_index(index, shape))
            x0, types, box = inputs["glass"][c], inputs["types"][c], inputs["box"]
            if c not in cages:
                cages[c] = voronoi_neighbors(box, x0)
            cage = cages[c]
            stop = None
            if threshold > 0:
                stop = lambda X: cage_relative_displacement(X[-1] - x0, *cage).mean() > threshold  # noqa: E731
            seed = lammps_seeds(task_rng(cfg.run.seed, STAGE, cfg.system.name,
                                         int(inputs["configs"][c]), k, s), 1)[0]
            try:
                res = run_replica(cfg.sys, x0, types, box, T=float(inputs["temps"][k]), seed=seed,
                                  timestep=p.timestep, steps=steps, ensemble=q.ensemble,
                                  tdamp_steps=p.tdamp_steps, stop=stop)
            except MDError as exc:
                rd.shards(STAGE).write(index, error=str(exc))
                return Outcome(index, False, str(exc))
            disp = np.full((len(steps), len(x0)), np.nan, dtype=np.float32)
            disp[:len(res.steps)] = cage_relative_displacement(res.positions - x0, *cage)
            rd.shards(STAGE).write(index, {"cage_displacement": disp, "T0": np.array(res.T0),
                                           "momentum0": res.momentum0})
            return Outcome(index, True)

        progress = None
        if rank == 0:
            print(f"propensity: {shape[0]} config(s) x T = {np.round(inputs['temps'], 4).tolist()} "
                  f"(T* = {inputs['T_star']:.4g} from {inputs['T_star_source']}) x "
                  f"{q.n_replicas} replicas: {len(todo)} tasks to do on {comm.Get_size()} rank(s)",
                  flush=True)
            progress = Progress(f"propensity {cfg.system.name}", len(todo), "replicas",
                                progress_every)
        outcomes = TaskFarm(comm, todo, progress).run(task)
        _reduce(comm, rd, cfg, inputs, shape)
        if rank == 0:
            rd.finish(STAGE, f"{sum(not o.ok for o in outcomes)} failed in this job",
                      time.time() - t0, comm.Get_size(), outcomes)
        return {"complete": True}
    finally:
        if rank == 0:
            rd.unlock()


def _reduce(comm, rd: RunDir, cfg: Config, inputs: dict, shape: tuple[int, int, int]) -> None:
    shards = rd.shards(STAGE)
    status = bcast_from_root(comm, shards.scan)
    n_tasks = int(np.prod(shape))
    N, d = cfg.system.n_particles, cfg.sys.dim
    steps = inputs["steps"]

    def row(i: int):
        ok = status[i]
        data = shards.read(i, ok)
        return (True, "", data) if ok else (False, str(data["error"]), {})

    c_idx, k_idx, s_idx = np.unravel_index(np.arange(n_tasks), shape)
    path = write_stage_file(
        rd.stage_file(STAGE), comm, n_tasks=n_tasks,
        attrs={"stage": STAGE, "system": cfg.system.name, "dim": d, "n_particles": N,
               "T_star": inputs["T_star"], "T_star_source": inputs["T_star_source"],
               "ensemble": cfg.propensity.ensemble, "config": cfg.to_toml()},
        rows={"cage_displacement": RowSpec((len(steps), N), "f4"), "T0": RowSpec((), "f8"),
              "momentum0": RowSpec((d,), "f8")},
        row_data=row,
        globals_={"configs": inputs["configs"].astype(np.int64), "temperatures": inputs["temps"],
                  "steps": steps, "time": steps * cfg.prepare.timestep,
                  "delta_targets": np.array(cfg.propensity.delta_targets),
                  "task_config": c_idx.astype(np.int32), "task_temperature": k_idx.astype(np.int32),
                  "task_replica": s_idx.astype(np.int32)})
    if comm.Get_rank() == 0:
        add_propensity(path, shape)
    comm.Barrier()


def add_propensity(path, shape: tuple[int, int, int]) -> None:
    """Derive the ensemble datasets (propensity, delta, values at the delta targets)."""
    import h5py

    with h5py.File(path, "a") as fh:
        disp = fh["cage_displacement"]
        n_c, n_T, n_s = shape
        t = fh["time"][:]
        targets = fh["delta_targets"][:]
        N = disp.shape[2]
        prop = np.full((n_c, n_T, len(t), N), np.nan, dtype=np.float32)
        at = np.full((n_c, n_T, len(targets), N), np.nan, dtype=np.float32)
        t_at = np.full((n_c, n_T, len(targets)), np.nan)
        for c in range(n_c):
            for k in range(n_T):
                lo = (c * n_T + k) * n_s
                prop[c, k] = propensity_mean(disp[lo:lo + n_s])
                at[c, k], t_at[c, k] = at_targets(t, prop[c, k], targets)
        for name, value in (("propensity", prop), ("delta", np.nanmean(prop, axis=-1)),
                            ("propensity_at_delta", at), ("t_at_delta", t_at)):
            if name in fh:
                del fh[name]
            fh.create_dataset(name, data=value)


def propensity_mean(cage_disp: np.ndarray) -> np.ndarray:
    """(n_s, n_times, N) -> (n_times, N): mean over replicas; NaN where any replica is missing."""
    return np.asarray(cage_disp, dtype=np.float64).mean(axis=0).astype(np.float32)


def at_targets(t: np.ndarray, prop: np.ndarray, targets: np.ndarray):
    """Propensity field where delta(t) = mean_i prop first reaches each target.

    ``t`` (n_times,) recorded times > 0 (log-spaced), ``prop`` (n_times, N), ``targets``
    (k,). With b the first record where delta >= target and a = b - 1, the weight
    w = (target - delta[a]) / (delta[b] - delta[a]) interpolates the field linearly in delta
    and the time linearly in log t (t_a^(1-w) t_b^w: exact where delta grows like log t,
    as it does between the cage plateau and diffusion). A target equal to delta at the
    first record is reached there; NaN (field and time) where delta never reaches the
    target, or is already past it at the first record. A frame with any NaN (replicas
    stopped early; such frames only end a record) never counts as reaching a target.
    """
    delta = prop.mean(axis=1)
    fields = np.full((len(targets), prop.shape[1]), np.nan, dtype=np.float32)
    times = np.full(len(targets), np.nan)
    for j, target in enumerate(targets):
        above = np.flatnonzero(np.isfinite(delta) & (delta >= target))
        if len(above) == 0:
            continue
        b = above[0]
        if b == 0:
            if delta[0] == target:
                fields[j], times[j] = prop[0], t[0]
            continue
        a = b - 1
        w = (target - delta[a]) / (delta[b] - delta[a])
        fields[j] = (1 - w) * prop[a] + w * prop[b]
        times[j] = np.exp((1 - w) * np.log(t[a]) + w * np.log(t[b]))
    return fields, times


def summarize(rd: RunDir, cfg: Config) -> dict:
    """Task counts and headline figures of the propensity stage, for ``glasscam info``."""
    found = rd.shards(STAGE).scan()
    out: dict = {"complete": rd.stage_file(STAGE).exists()}
    if not out["complete"] and not found:
        return out
    n_ok = sum(found.values())
    out["tasks"] = {"done": n_ok, "failed": len(found) - n_ok}
    if not out["complete"]:
        return out
    import h5py

    with h5py.File(rd.stage_file(STAGE), "r") as fh:
        n = len(fh["status"])
        out["tasks"]["total"] = n
        out["tasks"]["missing"] = n - len(found)
        out["T_star"] = float(fh.attrs["T_star"])
        out["T_star_source"] = str(fh.attrs["T_star_source"])
        out["T_star_paper"] = cfg.sys.T_star_paper
        out["temperatures"] = np.round(fh["temperatures"][:], 5).tolist()
        out["max_delta"] = np.round(np.nanmax(fh["delta"][:], axis=-1), 4).tolist()
        out["t_at_delta"] = {f"{x:g}": np.round(fh["t_at_delta"][:, :, j], 3).tolist()
                             for j, x in enumerate(fh["delta_targets"][:])}
    return out
