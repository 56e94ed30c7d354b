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

import contextlib
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.tongtanaka import tong_tanaka
from glasscam_mpi.analysis.voronoi import voronoi_volumes
from glasscam_mpi.config import Config
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.engine import FarmStage, require_tasks
from glasscam_mpi.store import RowSpec

STAGE = "indicators"
CLASSES = ("liquid", "glass")
HELP = "Voronoi volume and Tong-Tanaka order parameter of every test sample"
DESCRIPTION = ("Compute the raw structural indicators (paper sections 3.3-3.4) of every ok "
               "test sample, liquid and glass, farmed over MPI ranks, into indicators.h5.")


def indicator_fields(cfg: Config, box: np.ndarray, positions: np.ndarray,
                     types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Upsilon, Theta) of one configuration; NaN for a sample that does not exist (NaN
    positions: the liquid of an imported glass, glasscam_mpi.importer)."""
    if not np.isfinite(positions).all():
        return np.full(len(positions), np.nan), np.full(len(positions), np.nan)
    return (voronoi_volumes(box, positions),
            tong_tanaka(box, positions, types, cfg.sys.radii()))


@dataclass(frozen=True)
class Plan:
    runs: np.ndarray  # (n,) ok test runs in prepare.h5

    @property
    def n_tasks(self) -> int:
        return len(self.runs)


def _plan(rd: RunDir, cfg: Config) -> Plan:
    runs = rd.ok_test_runs()
    require_tasks(len(runs), "prepare.h5 has no ok test runs: nothing to analyse")
    return Plan(runs)


@contextlib.contextmanager
def _open(rd: RunDir, cfg: Config, plan: Plan, comm):
    import h5py

    with h5py.File(rd.stage_file("prepare"), "r") as prep:
        yield cfg, plan, prep


def _task(ctx, i: int) -> dict:
    cfg, plan, prep = ctx
    r = int(plan.runs[i])
    box, types = prep["box"][:], prep["types"][r]
    vol, theta = zip(*(indicator_fields(cfg, box, prep[c][r], types) for c in CLASSES))
    return {"volume": np.stack(vol), "theta": np.stack(theta)}


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    vol, theta = fh["volume"][:], fh["theta"][:]
    return {"headline": {c: {"volume_mean": round(float(vol[:, j].mean()), 5),
                             "theta_mean": round(float(theta[:, j].mean()), 5),
                             "theta_std": round(float(theta[:, j].std()), 5)}
                         for j, c in enumerate(CLASSES)}}


stage = FarmStage(
    name=STAGE, help=HELP, description=DESCRIPTION, unit="runs", plan=_plan, task=_task,
    open=_open, headline=_headline,
    rows=lambda cfg, plan: {"volume": RowSpec((2, cfg.system.n_particles), "f8"),
                            "theta": RowSpec((2, cfg.system.n_particles), "f8")},
    attrs=lambda cfg, plan: {"classes": ",".join(CLASSES), "radii": cfg.sys.radii()},
    globals_=lambda cfg, plan: {"runs": plan.runs.astype(np.int64)},
    banner=lambda cfg, plan, n_todo, size: (f"indicators: {n_todo} of {plan.n_tasks} test runs "
                                            f"to do on {size} rank(s)"))
