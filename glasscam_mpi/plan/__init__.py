"""``glasscam plan``: what a configuration will cost on a cluster profile, before submitting.

The plan calibrates on the machine it runs on, then lets every stage price itself:

* **MD** (:mod:`glasscam_mpi.md.calibrate`): the configured system set up and run in
  LAMMPS at the temperatures the protocol visits (the ramp, T_L, the replica
  temperatures), through the package's own engine;
* **learning** (:mod:`glasscam_mpi.learn.calibrate`): a few real optimisation steps,
  forward passes, gridding and Grad-CAM of the configured CNN; or the rates of an earlier
  run (``--rates-from RUN_DIR``: ``logs/train.json``'s ``samples_per_s``);
* **each stage's cost model** (its declaration's ``flow.cost``), scheduled on the profile
  by :mod:`glasscam_mpi.plan.costing` and shown by :mod:`glasscam_mpi.plan.render`.

What is measured and what is assumed is said in the output (``basis`` per stage).
"""

from __future__ import annotations

import numpy as np

from glasscam_mpi.config import Config
from glasscam_mpi.learn.calibrate import LearnRates, measure_learning, rates_from_log
from glasscam_mpi.md.calibrate import (MDRates, calibration_temperatures, measure_md,
                                       replica_temperatures)
from glasscam_mpi.plan.costing import (Calibration, StageCost, farm_schedule, make_plan,
                                       read_train_log, schedule, window_seconds)
from glasscam_mpi.plan.render import render_table

__all__ = ["Calibration", "LearnRates", "MDRates", "StageCost", "farm_schedule", "make_plan",
           "plan", "read_train_log", "render_table", "schedule", "window_seconds"]


def plan(cfg: Config, profile, rates_from=None, seconds_per_point: float = 0.4) -> dict:
    """Calibrate here and cost every stage of ``cfg`` on ``profile`` (a slurm.Profile)."""
    temps, _ = replica_temperatures(cfg)
    log = read_train_log(rates_from) if rates_from is not None else None
    md = measure_md(cfg, calibration_temperatures(cfg, temps), seconds_per_point)
    md_propensity = None
    if cfg.propensity.lammps_style != cfg.prepare.lammps_style:
        md_propensity = measure_md(cfg, sorted(set(np.round(temps, 6).tolist())),
                                   seconds_per_point, style=cfg.propensity.lammps_style)
    learn = measure_learning(cfg, md.glass)
    if log is not None:
        learn = rates_from_log(log, learn)
    return make_plan(cfg, profile, md, learn, md_propensity)
