"""``glasscam plan``'s costing (:mod:`glasscam_mpi.plan.costing`) with given (not
measured) rates, so the arithmetic is exact: the schedule of a farm in walltime windows,
a seed ensemble (training and Grad-CAM k times, the extra gradcam.h5 rows),
``[train].train_runs``, and the rows in the stages' workflow order."""

import dataclasses
import math

import pytest

from conftest import given_rates
from glasscam_mpi import plan as plan_mod
from glasscam_mpi.config import load_config
from glasscam_mpi.plan import farm_schedule, window_seconds
from glasscam_mpi.slurm import load_profile
from glasscam_mpi.stages import STAGES


def _plan(**train):
    cfg = load_config(preset="demo")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))
    md, learn = given_rates(cfg)
    stages = plan_mod.make_plan(cfg, load_profile("generic"), md, learn)["stages"]
    for st in stages.values():  # the generic profile trains on GPUs: core- or GPU-hours
        st["cost"] = st["core_hours"] + st["gpu_hours"]
    return cfg, stages


def test_an_ensemble_of_k_costs_k_trainings_and_k_grad_cams():
    cfg, one = _plan()
    _, three = _plan(ensemble=3)
    for stage in ("train", "gradcam"):
        assert three[stage]["cost"] == pytest.approx(3 * one[stage]["cost"])
        assert three[stage]["wall_hours"] == pytest.approx(3 * one[stage]["wall_hours"])
    assert "for each of 3 ensemble members" in three["train"]["basis"]
    # gradcam.h5 gains gamma_members (n, 2, k, N) float32
    n_test = cfg.split_counts()[2]
    extra = n_test * 2 * 3 * cfg.system.n_particles * 4
    assert three["gradcam"]["disk_bytes"] - one["gradcam"]["disk_bytes"] == pytest.approx(
        extra, rel=0.01)
    for stage in ("prepare", "propensity"):   # (indicators and analyze are timed here)
        assert three[stage]["cost"] == pytest.approx(one[stage]["cost"])


def test_fewer_training_runs_cost_less_training():
    cfg, full = _plan()
    n_train = cfg.split_counts()[0]
    _, half = _plan(train_runs=n_train // 2)
    assert half["train"]["cost"] < full["train"]["cost"]
    _, more = _plan(train_runs=10 * n_train)   # more than there are: all of them
    assert more["train"]["cost"] == pytest.approx(full["train"]["cost"])


def test_rows_follow_the_stages_workflow_order_and_gpu_stages_cost_gpu_hours():
    _, stages = _plan()
    assert list(stages) == list(STAGES)
    for name, st in stages.items():
        gpu = STAGES[name].flow.runs.kind == "gpu"   # generic has 4 GPUs per node
        assert (st["gpu_hours"] > 0) == gpu and (st["core_hours"] > 0) == (
            not gpu and name != "report"), name
    assert stages["report"]["jobs"] == 1 and stages["report"]["wall_hours"] == 0


def test_farm_schedule_counts_windows_ranks_per_task_and_refuses_long_tasks():
    assert window_seconds("24:00:00") == 86400 and window_seconds("1-00:30:00") == 88200
    # 10 tasks of 100 s on 2 ranks in 250 s windows: 4 per window -> 3 windows, 5 waves
    wall, windows, warn = farm_schedule(10, 100.0, 2, 1, 250.0, "prepare")
    assert (wall, windows, warn) == (500.0, 3, [])
    # 2 ranks per task: 4 ranks run 2 tasks at a time
    wall, windows, _ = farm_schedule(10, 100.0, 4, 2, 250.0, "prepare")
    assert (wall, windows) == (500.0, 3)
    wall, windows, warn = farm_schedule(10, 100.0, 5, 2, 250.0, "prepare")
    assert windows == 3 and "1 rank(s) idle" in warn[0]
    wall, windows, warn = farm_schedule(10, 300.0, 2, 1, 250.0, "prepare")
    assert math.isinf(wall) and windows == 0 and "can never finish" in warn[0]
    # Slurm's time = 0 is no limit: one window
    assert farm_schedule(10, 300.0, 2, 1, math.inf, "prepare") == (1500.0, 1, [])
    # a stage not priced (report): one job, no time
    assert farm_schedule(1, 0.0, 2, 1, 250.0, "report") == (0.0, 1, [])
