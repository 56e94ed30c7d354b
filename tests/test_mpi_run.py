"""``glasscam run``: every stage in order, end to end, under real mpiexec, in 2D (KAM) and in
3D (KA3D: LAMMPS and freud's 3D Voronoi in one process, the crash of issue 12), on tiny
systems. Then a second ``run`` finds everything complete and changes nothing."""

import json
import os

import h5py
import numpy as np
import pytest

from conftest import glasscam

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

STAGES = ["prepare", "train", "gradcam", "indicators", "propensity", "analyze", "report"]

CONFIG = """
[run]
seed = 11

[system]
name = "{system}"
n_particles = {n}

[prepare]
n_runs = 8
train_fraction = 0.5
validation_fraction = 0.25
t_equilibrate = 2.0
cooling_rate = 0.2
energy_samples = 12

[train]
epochs = 2
batch_size = 2
n_grid = {n_grid}
channels = [4, 4, 4]
kernels = [3, 3, 3]
strides = [1, 2, 2]
hidden = 8

[propensity]
n_configs = 1
temperatures = [1.0, 1.5]
T_star = 0.5
n_replicas = 3
t_max = 5.0
n_times = 6
rounds = 2
delta_targets = [0.05, 0.08]

[analyze]
xis = [0.0, 1.0]
xi_pairs = 1.0
bins = 8
"""


@pytest.mark.parametrize("system, n, n_grid", [("KAM", 64, 16), ("KA3D", 200, 8)])
def test_run_does_every_stage_then_nothing(tmp_path, system, n, n_grid):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(system=system, n=n, n_grid=n_grid))
    rd = tmp_path / "run"
    res = glasscam(["run", "--config", str(cfg), "--run-dir", str(rd)], n=2, timeout=900)
    for stage in STAGES:
        assert f"{stage}: wrote" in res.stdout or (stage == "train" and "test accuracy" in
                                                   res.stdout), stage
    info = json.loads(glasscam(["info", str(rd)]).stdout)
    assert info["complete"] == STAGES
    dim = 3 if system == "KA3D" else 2
    with h5py.File(rd / "prepare.h5", "r") as fh:
        assert fh["glass"].shape == (8, n, dim)
    with h5py.File(rd / "indicators.h5", "r") as ind, h5py.File(rd / "prepare.h5", "r") as fh:
        # Voronoi cells tile the box in 2D and in 3D (freud after LAMMPS in one process)
        np.testing.assert_allclose(ind["volume"][:].sum(axis=-1), np.prod(fh["box"][:]),
                                   rtol=1e-6)
    with h5py.File(rd / "analysis.h5", "r") as an:
        assert (an["status"][:] == 1).all()
        assert np.isfinite(an["samples/pearson"][:, :, 1, 2]).all()   # theta-volume at xi = 1
    assert (rd / "report" / "report.html").stat().st_size > 10_000
    head = info["stages"]["analyze"]["headline"]
    assert {"gamma", "volume", "theta"} <= set(head["table5"])

    mtimes = {p: os.path.getmtime(p) for p in rd.glob("*.h5")}
    res = glasscam(["run", "--run-dir", str(rd)], n=2, timeout=300)
    for stage in ("prepare", "gradcam", "indicators", "propensity", "analyze"):
        assert f"{stage}: " in res.stdout and "already complete" in res.stdout
    assert {p: os.path.getmtime(p) for p in rd.glob("*.h5")} == mtimes
