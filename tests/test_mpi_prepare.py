"""``glasscam prepare`` under real mpiexec: rank-count independence, kill and resume,
failed tasks, a busy run directory, and an abort that ends every rank."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import (ROOT, TINY_TOML, assert_same_data, glasscam, kill_job, mpiexec, read_stage,
                      start_glasscam, wait_for_shards)

pytestmark = pytest.mark.mpi


def _prepare(cfg, run_dir, n, **kw):
    return glasscam(["prepare", "--config", str(cfg), "--run-dir", str(run_dir)], n=n, **kw)


def test_dataset_is_identical_for_1_2_and_3_ranks(tiny_prepared, tiny_config, tmp_path):
    ref = read_stage(tiny_prepared / "prepare.h5")  # made under mpiexec -n 2
    for n in (1, 3):
        _prepare(tiny_config, tmp_path / f"n{n}", n)
        assert_same_data(ref, read_stage(tmp_path / f"n{n}" / "prepare.h5"))
    # and it is real data: every run ok, liquid and glass differ, glass is colder (lower U)
    assert np.all(ref["status"] == 1)
    assert not np.allclose(ref["liquid"], ref["glass"])
    assert np.all(ref["pe"][:, -1] < ref["pe"][:, 0])
    assert sorted(np.bincount(ref["split"])) == [1, 2, 3]


def test_stage_file_schema(tiny_prepared):
    with h5py.File(tiny_prepared / "prepare.h5", "r") as fh:
        assert fh.attrs["stage"] == "prepare" and fh.attrs["system"] == "KAM"
        assert fh.attrs["dim"] == 2 and fh.attrs["n_particles"] == 64
        assert "[prepare]" in fh.attrs["config"]
        assert fh["liquid"].shape == fh["glass"].shape == (6, 64, 2)
        assert fh["types"].shape == (6, 64) and fh["box"].shape == (2,)
        assert fh["T"].shape == fh["pe"].shape == (6, fh["T_target"].shape[0])
        box = fh["box"][:]
        assert np.all(fh["glass"][:] < box) and np.all(fh["glass"][:] >= 0)


def test_info_describes_the_run_dir(tiny_prepared):
    import json

    info = json.loads(glasscam(["info", str(tiny_prepared)]).stdout)
    prep = info["stages"]["prepare"]
    assert info["complete"] == ["prepare"] and info["system"] == "KAM"
    assert prep["tasks"] == {"total": 6, "done": 6, "failed": 0, "missing": 0}
    assert prep["split_ok_runs"] == {"train": 3, "validation": 1, "test": 2}
    assert prep["headline"]["glass"]["pe_per_particle_mean"] < \
        prep["headline"]["liquid"]["pe_per_particle_mean"]
    assert info["config"]["prepare"]["n_runs"] == 6


def test_rerun_of_a_complete_stage_does_nothing(tiny_prepared):
    before = os.path.getmtime(tiny_prepared / "prepare.h5")
    res = glasscam(["prepare", "--run-dir", str(tiny_prepared)], n=2)
    assert "already complete" in res.stdout
    assert os.path.getmtime(tiny_prepared / "prepare.h5") == before


def _slow_config(tmp_path, n_runs: int = 10):
    cfg = tmp_path / "slow.toml"
    cfg.write_text(TINY_TOML.replace("n_runs = 6", f"n_runs = {n_runs}")
                   .replace("t_equilibrate = 2.0", "t_equilibrate = 20.0"))
    return cfg


def _start(cfg, run_dir, n):
    return start_glasscam(["prepare", "--config", str(cfg), "--run-dir", str(run_dir)], n)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_job_resumes_to_the_same_result(tmp_path, sig):
    cfg = _slow_config(tmp_path)
    ref_dir = tmp_path / "ref"
    _prepare(cfg, ref_dir, 3)
    run_dir = tmp_path / "killed"
    proc = _start(cfg, run_dir, 2)
    wait_for_shards(run_dir, "prepare", 3, proc)
    kill_job(proc, run_dir, sig)
    done_before = {p.name for p in (run_dir / "shards" / "prepare").iterdir() if ".ok." in p.name}
    assert 3 <= len(done_before) < 10 and not (run_dir / "prepare.h5").exists()
    res = _prepare(cfg, run_dir, 2)
    assert f"{10 - len(done_before)} of 10 runs to do" in res.stdout
    assert_same_data(read_stage(ref_dir / "prepare.h5"), read_stage(run_dir / "prepare.h5"))


def test_failed_lammps_run_is_recorded_not_stored(tmp_path, tiny_config, tiny_prepared):
    run_dir = tmp_path / "faulty"
    res = _prepare(tiny_config, run_dir, 2, env={"GLASSCAM_INJECT_FAULT": "prepare:2"})
    assert "run 2 FAILED: " in res.stdout and "1 failed" in res.stdout
    data = read_stage(run_dir / "prepare.h5")
    ref = read_stage(tiny_prepared / "prepare.h5")
    assert list(data["status"]) == [1, 1, 2, 1, 1, 1]
    assert data["error"][2].decode().startswith(("LAMMPS:", "non-finite"))
    assert np.all(np.isnan(data["glass"][2])) and np.all(np.isnan(data["pe"][2]))
    ok = data["status"] == 1
    np.testing.assert_array_equal(data["glass"][ok], ref["glass"][ok])
    info = __import__("json").loads(glasscam(["info", str(run_dir)]).stdout)
    assert info["stages"]["prepare"]["tasks"]["failed"] == 1
    # a rerun keeps the failure (same seeds, same fate) unless asked to retry
    assert "already complete" in _prepare(tiny_config, run_dir, 2).stdout
    res = glasscam(["prepare", "--run-dir", str(run_dir), "--retry-failed"], n=2)
    assert "1 of 6 runs to do" in res.stdout
    assert_same_data(ref, read_stage(run_dir / "prepare.h5"))


def test_second_job_on_the_same_run_dir_is_refused(tmp_path):
    # long enough (it is killed below) that the first job cannot finish before the second
    # one starts, even on a loaded machine
    cfg = _slow_config(tmp_path, n_runs=200)
    run_dir = tmp_path / "busy"
    first = _start(cfg, run_dir, 1)
    try:
        wait_for_shards(run_dir, "prepare", 1, first)
        second = _prepare(cfg, run_dir, 2, check=False)
        assert second.returncode == 2
        assert "is in use by pid" in second.stderr and "use another --run-dir" in second.stderr
    finally:
        kill_job(first, run_dir)


def test_exception_on_one_rank_ends_the_whole_job(tmp_path, tiny_config):
    t0 = time.time()
    res = _prepare(tiny_config, tmp_path / "crash", 3, check=False, timeout=120,
                   env={"GLASSCAM_INJECT_CRASH": "prepare:4"})
    assert res.returncode != 0
    assert "injected crash in prepare task 4" in res.stderr
    assert "aborting all ranks" in res.stderr
    assert time.time() - t0 < 60


def test_bad_config_under_mpi_is_one_clear_message(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[prepare]\nn_runs = 1\n")
    res = _prepare(bad, tmp_path / "x", 2, check=False)
    assert res.returncode == 2
    assert res.stderr.count("[prepare].n_runs = 1: allowed: an integer >= 3") == 1
