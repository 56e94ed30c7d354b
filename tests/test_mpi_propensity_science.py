"""The propensity stage's science under real mpiexec: replica temperatures in units of T*,
several configurations, one set of times per ensemble with the stop rule acting on the
ensemble, a replica rerun from its derived seed, and failed replicas left out and counted.
"""

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import TINY_TOML, glasscam
from glasscam_mpi.analysis import cage_relative_displacement, voronoi_neighbors
from glasscam_mpi.md.replica import log_times, run_replica
from glasscam_mpi.parallel import lammps_seeds, task_rng
from glasscam_mpi.systems import get_system

pytestmark = pytest.mark.mpi

T_STAR = 0.5
PROP = """
[propensity]
n_configs = 2
temperatures = [1.0, 1.6]
temperature_unit = "T_star"
T_star = {T_star}
n_replicas = 3
t_max = 30.0
n_times = 12
rounds = 4
delta_targets = [0.05, 0.1]
stop_factor = {stop}
{extra}
"""


def _run(tiny_prepared, base, name, n=2, env=None, check=True, T_star=T_STAR, stop=1.0,
         extra=""):
    rd = base / name
    rd.mkdir()
    for f in ("prepare.h5", "config.toml"):
        shutil.copy(tiny_prepared / f, rd / f)
    cfg = base / f"{name}.toml"
    cfg.write_text(TINY_TOML + PROP.format(T_star=T_star, stop=stop, extra=extra))
    res = glasscam(["propensity", "--run-dir", str(rd), "--config", str(cfg)], n=n, env=env,
                   check=check)
    return rd, res


@pytest.fixture(scope="module")
def stopped_run(tiny_prepared, tmp_path_factory):
    return _run(tiny_prepared, tmp_path_factory.mktemp("propsci"), "stop")[0]


def test_temperatures_are_multiples_of_t_star(stopped_run):
    with h5py.File(stopped_run / "propensity.h5", "r") as fh:
        np.testing.assert_allclose(fh["temperatures"][:], [T_STAR, 1.6 * T_STAR])
        assert fh.attrs["T_star"] == T_STAR and fh.attrs["T_star_source"] == "config"
        # the drawn velocities are at those temperatures, replica by replica
        T = fh["temperatures"][:][fh["task_temperature"][:]]
        np.testing.assert_allclose(fh["T0"][:], T, rtol=1e-9)


def test_every_ensemble_covers_one_set_of_times_and_stops_as_a_whole(stopped_run):
    with h5py.File(stopped_run / "propensity.h5", "r") as fh:
        disp = fh["cage_displacement"][:]               # (12 tasks, n_times, N)
        prop, delta, t = fh["propensity"][:], fh["delta"][:], fh["time"][:]
        n_c, n_T = delta.shape[:2]
        assert (n_c, n_T) == (2, 2) and np.array_equal(fh["configs"][:2], fh["configs"][:])
        threshold = 1.0 * 0.1
        segments = np.array_split(np.arange(len(t)), 4)
        ends = [seg[-1] for seg in segments]
        stopped_at = np.zeros((n_c, n_T), int)
        for c in range(n_c):
            for k in range(n_T):
                rows = disp[(c * n_T + k) * 3:(c * n_T + k + 1) * 3]
                recorded = np.isfinite(rows).all(axis=2)  # (replicas, times)
                assert (recorded == recorded[0]).all(), "replicas of one ensemble differ in times"
                last = int(np.flatnonzero(recorded[0])[-1])
                assert last in ends and recorded[0, :last + 1].all()
                r = ends.index(last)
                stopped_at[c, k] = r
                # the rule: stop after the first round whose end reaches the threshold
                for rr in range(r):
                    assert delta[c, k, ends[rr]] < threshold
                if r < 3:
                    assert delta[c, k, last] >= threshold
                assert fh["stopped_after"][c, k] == pytest.approx(t[last])
                np.testing.assert_allclose(prop[c, k, :last + 1],
                                           rows[:, :last + 1].mean(axis=0), rtol=1e-6)
                # a target is reached exactly where delta passes it
                for j, target in enumerate(fh["delta_targets"][:]):
                    passes = np.nanmax(delta[c, k]) >= target and delta[c, k, 0] < target
                    assert np.isfinite(fh["t_at_delta"][c, k, j]) == passes
                if r < 3:
                    assert np.isfinite(fh["t_at_delta"][c, k]).all()
        # the hotter ensembles get there no later
        assert (stopped_at[:, 1] <= stopped_at[:, 0]).all()
        assert stopped_at.min() < 3, "no ensemble stopped early: the test would not see the rule"


def test_a_replica_rerun_from_its_derived_seed_equals_the_stored_one(stopped_run):
    """Replica (c = 1, k = 1, s = 2) again, segment by segment through LAMMPS restart files,
    from the seed the task scheme gives it: the same cage-relative displacement at every
    recorded time, bit for bit."""
    c, k, s = 1, 1, 2
    with h5py.File(stopped_run / "propensity.h5", "r") as fh, \
            h5py.File(stopped_run / "prepare.h5", "r") as prep:
        run = int(fh["configs"][c])
        x0, types, box = prep["glass"][run], prep["types"][run], prep["box"][:]
        stored = fh["cage_displacement"][(c * 2 + k) * 3 + s]
        T = fh["temperatures"][k]
        steps = fh["steps"][:]
    np.testing.assert_array_equal(steps, log_times(0.005, 30.0, 12))
    seed = lammps_seeds(task_rng(7, "propensity", "KAM", run, k, s), 1)[0]
    cage = voronoi_neighbors(box, x0)
    segments = np.array_split(np.arange(len(steps)), 4)
    rerun = np.full_like(stored, np.nan)
    restart = None
    for r, seg in enumerate(segments):
        if not np.isfinite(stored[seg]).all():
            break
        out = stopped_run / f"rerun.{r}.restart"
        res = run_replica(get_system("KAM"), x0, types, box, T=float(T), seed=seed,
                          timestep=0.005, steps=steps[seg], restart_from=restart,
                          restart_to=out)
        rerun[seg] = cage_relative_displacement(res.positions - x0, *cage)
        restart = out
    np.testing.assert_array_equal(rerun, stored)
    assert np.isfinite(rerun[0]).all() and rerun[np.isfinite(rerun)].max() > 0


def test_failed_replicas_are_left_out_and_counted(tiny_prepared, tmp_path):
    # replica 1 of ensemble (0, 0) fails in LAMMPS; 2 ok replicas remain there
    env = {"GLASSCAM_INJECT_FAULT": "propensity:1"}
    rd, res = _run(tiny_prepared, tmp_path, "failed", env=env, extra="min_replicas = 2")
    assert "1 failed" in res.stdout or "FAILED" in res.stdout
    with h5py.File(rd / "propensity.h5", "r") as fh:
        status = fh["status"][:]
        assert status[1] == 2 and (np.delete(status, 1) == 1).all()
        assert b"round 1" in fh["error"][1]
        np.testing.assert_array_equal(fh["n_ok_replicas"][:], [[2, 3], [3, 3]])
        assert fh["reportable"][:].all()
        disp = fh["cage_displacement"][:]
        assert np.isnan(disp[1]).all()
        last = np.flatnonzero(np.isfinite(disp[0]).all(axis=1))
        np.testing.assert_allclose(fh["propensity"][0, 0][last],
                                   disp[[0, 2]][:, last].mean(axis=0), rtol=1e-6)
        assert np.isfinite(fh["delta"][0, 0, last]).all()
    # with the default minimum (90 % of 3 = 3) that ensemble is not reportable, and info says so
    rd, _ = _run(tiny_prepared, tmp_path, "strict", env=env)
    with h5py.File(rd / "propensity.h5", "r") as fh:
        np.testing.assert_array_equal(fh["reportable"][:], [[0, 1], [1, 1]])
    info = json.loads(glasscam(["info", str(rd)]).stdout)["stages"]["propensity"]
    assert info["n_ok_replicas"] == [[2, 3], [3, 3]]
    assert len(info["not_reportable"]) == 1 and "2 ok replicas < 3" in info["not_reportable"][0]


def test_t_star_estimate_without_enough_cooling_data_is_a_clear_error(tiny_prepared, tmp_path):
    rd, res = _run(tiny_prepared, tmp_path, "est", T_star='"estimate"', check=False)
    assert res.returncode == 2
    assert "cannot estimate T* from the cooling curves" in res.stderr
    assert "set [propensity].T_star to a number" in res.stderr
