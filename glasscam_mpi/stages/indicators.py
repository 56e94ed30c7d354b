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

from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.tongtanaka import tong_tanaka
from glasscam_mpi.analysis.voronoi import voronoi_volumes
from glasscam_mpi.config import Config
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Input, Output, Runs, Tasks
from glasscam_mpi.stages.engine import FarmStage
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


def _plan(rd: RunDir, cfg: Config, inputs) -> Plan:
    return Plan(inputs.ok_test_runs)


def _task(ctx, i: int) -> dict:
    cfg, plan, files = ctx
    prep = files["prepare"]
    r = int(plan.runs[i])
    box, types = prep["box"][:], prep["types"][r]
    vol, theta = zip(*(indicator_fields(cfg, box, prep[c][r], types) for c in CLASSES))
    return {"volume": np.stack(vol), "theta": np.stack(theta)}


def rows(cfg: Config, plan=None) -> dict:
    """The row datasets of indicators.h5."""
    return {"volume": RowSpec((2, cfg.system.n_particles), "f8"),
            "theta": RowSpec((2, cfg.system.n_particles), "f8")}


def _cost(cfg: Config, cal, profile) -> Cost:
    """Voronoi volume and Theta of the calibration's own quenched glass, timed."""
    from glasscam_mpi.store import file_bytes

    g = cal.md.glass
    per_config = cal.timed(lambda: indicator_fields(cfg, g["box"], g["positions"],
                                                    g["types"]), 0.3, max_reps=5)
    n_test = cfg.split_counts()[2]
    return Cost(n_test, 2 * per_config, file_bytes(rows(cfg), n_test), cal.md.memory_bytes,
                f"measured: {per_config:.3g} s per configuration (Voronoi, Theta)")


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    vol, theta = fh["volume"][:], fh["theta"][:]
    return {"headline": {c: {"volume_mean": round(float(vol[:, j].mean()), 5),
                             "theta_mean": round(float(theta[:, j].mean()), 5),
                             "theta_std": round(float(theta[:, j].std()), 5)}
                         for j, c in enumerate(CLASSES)}}


stage = FarmStage(
    STAGE, About(HELP, DESCRIPTION),
    Flow(needs=("prepare",), runs=Runs("cpu", continues=True),
         inputs=(Input("prepare", ok_test_runs=True),), cost=_cost),
    Tasks("runs", _plan, _task,
          banner=lambda cfg, plan, n_todo, size: (f"indicators: {n_todo} of {plan.n_tasks} "
                                                  f"test runs to do on {size} rank(s)")),
    Output(rows, attrs=lambda cfg, plan: {"classes": ",".join(CLASSES),
                                          "radii": cfg.sys.radii()},
           globals_=lambda cfg, plan: {"runs": plan.runs.astype(np.int64)},
           headline=_headline))
