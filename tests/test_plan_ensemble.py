"""``glasscam plan`` prices a seed ensemble: training and Grad-CAM k times, the extra
gradcam.h5 rows, and ``[train].train_runs``; with given (not measured) rates, so the
arithmetic is exact."""

import dataclasses

import numpy as np
import pytest

from glasscam_mpi import plan as plan_mod
from glasscam_mpi.config import load_config
from glasscam_mpi.slurm import load_profile


def _plan(**train):
    cfg = load_config(preset="demo")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))
    L = cfg.sys.box_length(200)
    rng = np.random.default_rng(1)
    glass = {"box": np.full(2, L), "positions": rng.uniform(0, L, (200, 2)),
             "types": np.repeat(np.arange(2, dtype=np.int8), cfg.sys.counts(200))}
    md = plan_mod.MDRates([0.05, 4.0], [1e-4, 2e-4], [100, 100], 1.0, 0.1, 10**8, glass)
    learn = plan_mod.LearnRates("cpu", 100.0, 300.0, 1000.0, 50.0, "given")
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
