"""Stage ``indicators``: raw Voronoi volume and Tong-Tanaka order parameter per particle.

For every ok test run of prepare.h5, both classes (liquid and glass). One task per run,
farmed over ranks. Coarse-graining and correlations come later (analyze), from these
raw fields.

Output ``RUN_DIR/indicators.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs    stage, classes = "liquid,glass", radii (the additive radii used for Theta)
    runs     (n,) int64          run index in prepare.h5 of each row
    volume   (n, 2, N) f8        Voronoi volume Upsilon_i (area in 2D); [:, 0] liquid, [:, 1] glass
    theta    (n, 2, N) f8        Tong-Tanaka Theta_i (radians)
"""

from __future__ import annotations

import time

import numpy as np

from glasscam_mpi.analysis.tongtanaka import tong_tanaka
from glasscam_mpi.analysis.voronoi import voronoi_volumes
from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.parallel import Outcome, Progress, TaskFarm, bcast_from_root, injected
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import RowSpec, write_stage_file

STAGE = "indicators"
CLASSES = ("liquid", "glass")
HELP = "Voronoi volume and Tong-Tanaka order parameter of every test sample"
DESCRIPTION = ("Compute the raw structural indicators (paper sections 3.3-3.4) of every ok "
               "test sample, liquid and glass, farmed over MPI ranks, into indicators.h5.")


def indicator_fields(cfg: Config, box: np.ndarray, positions: np.ndarray,
                     types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Upsilon, Theta) of one configuration."""
    return (voronoi_volumes(box, positions),
            tong_tanaka(box, positions, types, cfg.sys.radii()))


def run(comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
        progress_every: float = 5.0) -> dict:
    """Run (or finish) the indicators stage; every rank calls this. (Its tasks cannot fail
    short of a bug, so ``retry_failed`` is accepted for a uniform command line only.)"""
    rd = RunDir(run_dir)
    rank = comm.Get_rank()
    t0 = time.time()

    def setup():
        rd.lock("glasscam indicators")
        cfg = rd.resolve_config(requested)
        runs = rd.ok_test_runs()
        todo = rd.pending(STAGE, len(runs), retry_failed)
        return cfg, runs, todo, rd.stage_file(STAGE).exists() and not todo

    try:
        cfg, runs, todo, complete = bcast_from_root(comm, setup)
        if complete:
            if rank == 0:
                print(f"indicators: {rd.stage_file(STAGE)} is already complete")
            return {"complete": True}
        if len(runs) == 0:
            raise ConfigError("prepare.h5 has no ok test runs: nothing to analyse")
        import h5py

        prep = h5py.File(rd.stage_file("prepare"), "r")
        box = prep["box"][:]

        crashes = injected("GLASSCAM_INJECT_CRASH", STAGE)

        def task(i: int) -> Outcome:
            if i in crashes:
                raise RuntimeError(f"injected crash in indicators task {i}")
            r = int(runs[i])
            types = prep["types"][r]
            vol, theta = zip(*(indicator_fields(cfg, box, prep[c][r], types) for c in CLASSES))
            rd.shards(STAGE).write(i, {"volume": np.stack(vol), "theta": np.stack(theta)})
            return Outcome(i, True)

        progress = None
        if rank == 0:
            print(f"indicators: {len(todo)} of {len(runs)} test runs to do on {comm.Get_size()} "
                  "rank(s)", flush=True)
            progress = Progress(f"indicators {cfg.system.name}", len(todo), "runs", progress_every)
        try:
            TaskFarm(comm, todo, progress).run(task)
        finally:
            prep.close()
        status = bcast_from_root(comm, rd.shards(STAGE).scan)
        N = cfg.system.n_particles
        write_stage_file(
            rd.stage_file(STAGE), comm, n_tasks=len(runs),
            attrs={"stage": STAGE, "system": cfg.system.name, "dim": cfg.sys.dim,
                   "n_particles": N, "classes": ",".join(CLASSES), "radii": cfg.sys.radii(),
                   "config": cfg.to_toml()},
            rows={"volume": RowSpec((2, N), "f8"), "theta": RowSpec((2, N), "f8")},
            row_data=lambda i: (True, "", rd.shards(STAGE).read(i, status[i])),
            globals_={"runs": runs.astype(np.int64)})
        if rank == 0:
            rd.finish(STAGE, f"{len(runs)} runs x 2 classes", time.time() - t0,
                      comm.Get_size(), tasks_run=len(todo))
        return {"complete": True}
    finally:
        if rank == 0:
            rd.unlock()


def summarize(rd: RunDir, cfg: Config) -> dict:
    out = rd.task_summary(STAGE)
    if not out["complete"]:
        return out
    import h5py

    with h5py.File(rd.stage_file(STAGE), "r") as fh:
        vol, theta = fh["volume"][:], fh["theta"][:]
        n = len(fh["runs"])
    out["tasks"] = {"total": n, "done": n, "failed": 0, "missing": 0}
    out["headline"] = {c: {"volume_mean": round(float(vol[:, j].mean()), 5),
                           "theta_mean": round(float(theta[:, j].mean()), 5),
                           "theta_std": round(float(theta[:, j].std()), 5)}
                       for j, c in enumerate(CLASSES)}
    return out
