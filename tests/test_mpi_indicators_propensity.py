"""``glasscam indicators`` and ``glasscam propensity`` under real mpiexec on a tiny prepared
run directory: rank-count independence, kill and resume, the stage files' contents checked
against an independent recomputation, and ``glasscam info``."""

import json

import h5py
import numpy as np
import pytest

from conftest import copy_prepared as _copy_prepared
from conftest import (TINY_TOML, assert_same_data, glasscam, kill_job, read_stage, start_glasscam,
                      wait_for_shards)
from glasscam_mpi.analysis import tong_tanaka, voronoi_volumes
from glasscam_mpi.systems import get_system

pytestmark = pytest.mark.mpi

# 1 glass sample x 2 absolute temperatures x 3 replicas, 2000 steps each.
PROPENSITY_TOML = """
[propensity]
n_configs = 1
temperatures = [0.45, 0.8]
temperature_unit = "absolute"
n_replicas = 3
t_max = 10.0
n_times = 8
delta_targets = [0.05, 0.08]
stop_factor = 0.0
"""


def _propensity_config(path, n_replicas=3):
    """The tiny config plus a [propensity] section: only that section may differ from the
    run directory's saved config before the stage starts."""
    path.write_text(TINY_TOML + PROPENSITY_TOML.replace("n_replicas = 3",
                                                        f"n_replicas = {n_replicas}"))
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def indicators_dirs(tiny_prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("ind")
    dirs = {}
    for n in (1, 3):
        rd = _copy_prepared(tiny_prepared, base / f"n{n}")
        glasscam(["indicators", "--run-dir", str(rd)], n=n)
        dirs[n] = rd
    return dirs


def test_indicators_identical_for_1_and_3_ranks(indicators_dirs):
    assert_same_data(read_stage(indicators_dirs[1] / "indicators.h5"),
                     read_stage(indicators_dirs[3] / "indicators.h5"))


def test_indicators_equal_direct_computation_and_fill_the_box(indicators_dirs):
    rd = indicators_dirs[3]
    kam = get_system("KAM")
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "indicators.h5", "r") as ind:
        runs = ind["runs"][:]
        test_ok = np.flatnonzero((prep["split"][:] == 2) & (prep["status"][:] == 1))
        np.testing.assert_array_equal(runs, test_ok)
        box = prep["box"][:]
        for row, r in enumerate(runs):
            for c, cls in enumerate(("liquid", "glass")):
                x, types = prep[cls][r], prep["types"][r]
                vol = ind["volume"][row, c]
                # Voronoi cells tile the periodic box
                assert vol.sum() == pytest.approx(np.prod(box), rel=1e-10)
                np.testing.assert_allclose(vol, voronoi_volumes(box, x), rtol=1e-12)
                np.testing.assert_allclose(ind["theta"][row, c],
                                           tong_tanaka(box, x, types, kam.radii()), rtol=1e-12)
                assert np.all(ind["theta"][row, c] >= 0)
        np.testing.assert_array_equal(ind.attrs["radii"], kam.radii())


@pytest.fixture(scope="module")
def propensity_ref(tiny_prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("prop")
    rd = _copy_prepared(tiny_prepared, base / "n1")
    res = glasscam(["propensity", "--run-dir", str(rd), *_propensity_config(base / "p.toml")], n=1)
    assert "6 tasks to do on 1 rank(s)" in res.stdout
    return rd


def test_propensity_identical_for_1_and_3_ranks(propensity_ref, tiny_prepared, tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "n3")
    glasscam(["propensity", "--run-dir", str(rd), *_propensity_config(tmp_path / "p.toml")], n=3)
    assert_same_data(read_stage(propensity_ref / "propensity.h5"), read_stage(rd / "propensity.h5"))


def test_propensity_killed_job_resumes_to_the_same_result(propensity_ref, tiny_prepared, tmp_path):
    conf = _propensity_config(tmp_path / "p.toml", n_replicas=12)
    rd = _copy_prepared(tiny_prepared, tmp_path / "killed")
    ref = _copy_prepared(tiny_prepared, tmp_path / "ref")
    glasscam(["propensity", "--run-dir", str(ref), *conf], n=2)
    proc = start_glasscam(["propensity", "--run-dir", str(rd), *conf], 2)
    # replicas run in rounds (segments of log time): kill during the first one
    first_round = "propensity/rounds/r0"
    wait_for_shards(rd, first_round, 3, proc)
    kill_job(proc, rd)
    done = len([p for p in (rd / "shards" / first_round).iterdir() if ".ok." in p.name])
    assert 3 <= done < 24 and not (rd / "propensity.h5").exists()
    res = glasscam(["propensity", "--run-dir", str(rd)], n=2)
    assert "24 tasks to do" in res.stdout
    assert f"round 1/4] {24 - done}/{24 - done} replicas" in res.stderr  # only what was left
    assert_same_data(read_stage(ref / "propensity.h5"), read_stage(rd / "propensity.h5"))
    assert not (rd / "shards" / "propensity" / "rounds").exists()  # restart files removed


def test_propensity_crash_then_resume(propensity_ref, tiny_prepared, tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "crash")
    res = glasscam(["propensity", "--run-dir", str(rd), *_propensity_config(tmp_path / "p.toml")],
                   n=2, check=False,
                   env={"GLASSCAM_INJECT_CRASH": "propensity:4"})
    assert res.returncode != 0 and "injected crash in propensity task 4" in res.stderr
    assert not (rd / "propensity.h5").exists()
    glasscam(["propensity", "--run-dir", str(rd)], n=2)
    assert_same_data(read_stage(propensity_ref / "propensity.h5"), read_stage(rd / "propensity.h5"))


def test_propensity_file_contents(propensity_ref):
    with h5py.File(propensity_ref / "propensity.h5", "r") as fh:
        assert (fh["status"][:] == 1).all()
        np.testing.assert_allclose(fh["temperatures"][:], [0.45, 0.8])
        assert fh.attrs["T_star_source"] == "none"
        disp = fh["cage_displacement"][:]          # (6, n_times, N)
        assert disp.shape[0] == 6 and disp.shape[2] == 64 and np.isfinite(disp).all()
        assert (disp >= 0).all()
        # propensity = replica mean of the stored displacement fields, per (config, T)
        prop = fh["propensity"][:]                 # (1, 2, n_times, 64)
        for k in range(2):
            sel = (fh["task_temperature"][:] == k)
            np.testing.assert_allclose(prop[0, k], disp[sel].mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(fh["delta"][:], prop.mean(axis=-1), rtol=1e-6)
        # hotter replicas move further
        assert fh["delta"][0, 1, -1] > fh["delta"][0, 0, -1]
        # replica velocities: drawn at T with zero total momentum
        T = fh["temperatures"][:][fh["task_temperature"][:]]
        np.testing.assert_allclose(fh["T0"][:], T, rtol=1e-9)
        np.testing.assert_allclose(fh["momentum0"][:], 0, atol=1e-10)
        # distinct replicas really are distinct
        assert not np.allclose(disp[0], disp[1])
        # delta(t) grows through the targets: the field there lies between the recorded ones
        t_at = fh["t_at_delta"][0]
        assert np.isfinite(t_at).all() and (np.diff(t_at, axis=-1) > 0).all()


def test_info_summarises_indicators_and_propensity(indicators_dirs, propensity_ref):
    info = json.loads(glasscam(["info", str(indicators_dirs[1])]).stdout)
    assert "indicators" in info["complete"]
    assert info["stages"]["indicators"]["headline"]["glass"]["theta_mean"] > 0
    assert info["stages"]["prepare"]["T_star"]["paper"] == 0.37
    info = json.loads(glasscam(["info", str(propensity_ref)]).stdout)
    prop = info["stages"]["propensity"]
    assert prop["complete"] and prop["tasks"] == {"done": 6, "failed": 0, "total": 6, "missing": 0}
    assert prop["temperatures"] == [0.45, 0.8]


def test_a_started_stage_keeps_its_config(propensity_ref, tmp_path):
    conf = _propensity_config(tmp_path / "p.toml", n_replicas=4)
    res = glasscam(["propensity", "--run-dir", str(propensity_ref), *conf], n=1, check=False)
    assert res.returncode == 2
    assert "[propensity].n_replicas: 3 -> 4" in res.stderr and "use a new --run-dir" in res.stderr
    bad = tmp_path / "b.toml"
    bad.write_text(TINY_TOML.replace("seed = 7", "seed = 8"))
    res = glasscam(["indicators", "--run-dir", str(propensity_ref), "--config", str(bad)],
                   check=False)
    assert res.returncode == 2 and "[run].seed: 7 -> 8" in res.stderr


def test_propensity_without_prepare_is_a_clear_error(tmp_path, tiny_config):
    res = glasscam(["propensity", "--config", str(tiny_config), "--run-dir", str(tmp_path / "x")],
                   n=2, check=False)
    assert res.returncode == 2 and "run 'glasscam prepare' first" in res.stderr
