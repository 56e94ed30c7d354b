"""Whole stage commands under real mpiexec on the tiny run directory: ``gradcam`` under 1
and 3 ranks and after a SIGKILL, ``indicators`` after a SIGKILL, ``train --restart``, and
the serial-HDF5 fallback (``GLASSCAM_SERIAL_HDF5=1``) against the parallel path.

A kill lands mid-stage on purpose: tests/mpi_scripts/paced_glasscam.py runs the real CLI
with every task but task 0 starting a few seconds late, and the job is killed once task
0's shard is on disk.
"""

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import copy_prepared as _copy_prepared
from conftest import (ROOT, TINY_TOML, assert_same_data, glasscam, kill_job, mpiexec, read_stage,
                      wait_for_shards)

pytestmark = pytest.mark.mpi

TRAIN_TOML = """
[train]
backend = "horovod"
epochs = {epochs}
batch_size = 4
n_grid = 32
channels = [4, 8, 8]
hidden = 16
check_sync = true
"""
SERIAL_WARNING = "GLASSCAM_SERIAL_HDF5 is set: HDF5 output is gathered and written by rank 0"
PACE = 30.0  # s by which every task but task 0 of a killed job is held back (it is killed first)


def _config(path, epochs=3):
    path.write_text(TINY_TOML + TRAIN_TOML.format(epochs=epochs))
    return ["--config", str(path)]


def _copy_tree(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _killed_mid_stage(stage: str, run_dir, n: int = 2) -> int:
    """Start ``stage`` paced, SIGKILL it once task 0's shard exists; return the shards left."""
    cmd = [*mpiexec(n), sys.executable, str(ROOT / "tests/mpi_scripts/paced_glasscam.py"),
           stage, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "GLASSCAM_TEST_PACE": str(PACE)})
    try:
        wait_for_shards(run_dir, stage, 1, proc)
    finally:
        kill_job(proc, run_dir)
    assert not (run_dir / f"{stage}.h5").exists()
    return len([p for p in (run_dir / "shards" / stage).iterdir() if ".ok." in p.name])


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """The tiny run directory with a trained CNN (Horovod, 2 ranks, 3 epochs)."""
    base = tmp_path_factory.mktemp("stagecmd")
    rd = _copy_prepared(tiny_prepared, base / "trained")
    glasscam(["train", "--run-dir", str(rd), *_config(base / "c.toml")], n=2)
    return rd


@pytest.fixture(scope="module")
def gradcam_ref(trained, tmp_path_factory):
    rd = _copy_tree(trained, tmp_path_factory.mktemp("gradcam") / "n1")
    glasscam(["gradcam", "--run-dir", str(rd)], n=1)
    return rd


def test_gradcam_identical_for_1_and_3_ranks(gradcam_ref, trained, tmp_path):
    rd = _copy_tree(trained, tmp_path / "n3")
    res = glasscam(["gradcam", "--run-dir", str(rd)], n=3)
    assert "on 3 rank(s)" in res.stdout
    ref = read_stage(gradcam_ref / "gradcam.h5")
    assert (ref["status"] == 1).all() and ref["gamma"].max() > 0
    assert_same_data(ref, read_stage(rd / "gradcam.h5"))


def test_gradcam_killed_mid_stage_resumes_to_the_same_result(gradcam_ref, trained, tmp_path):
    rd = _copy_tree(trained, tmp_path / "killed")
    done = _killed_mid_stage("gradcam", rd)
    n_runs = len(read_stage(gradcam_ref / "gradcam.h5")["runs"])
    assert 1 <= done < n_runs
    res = glasscam(["gradcam", "--run-dir", str(rd)], n=2)
    assert f"{n_runs - done} of {n_runs} test runs" in res.stdout
    assert_same_data(read_stage(gradcam_ref / "gradcam.h5"), read_stage(rd / "gradcam.h5"))


def test_gradcam_in_blocks_of_runs_equals_one_run_per_task(gradcam_ref, trained, tmp_path):
    """On a GPU the farm hands out blocks of [gradcam].batch_size / 2 consecutive test runs,
    explained as one batch (GLASSCAM_GRADCAM_BLOCKS=1 does it here, on the CPU): 1 and 3
    ranks write the same bits; against one run per task only the batch's float rounding
    differs; every task keeps its shard. (The tiny set has 2 test runs: one block.)"""
    env = {"GLASSCAM_GRADCAM_BLOCKS": "1"}
    files = []
    for n in (1, 3):
        rd = _copy_tree(trained, tmp_path / f"blocks{n}")
        res = glasscam(["gradcam", "--run-dir", str(rd), "--set", "gradcam.batch_size=4"],
                       n=n, env=env)
        assert "in blocks of 2 runs" in res.stdout
        files.append(read_stage(rd / "gradcam.h5"))
        n_runs = len(files[-1]["runs"])
        assert len([p for p in (rd / "shards" / "gradcam").iterdir() if ".ok." in p.name]) \
            == n_runs == 2
    assert_same_data(files[0], files[1])
    ref = read_stage(gradcam_ref / "gradcam.h5")
    for key in ("runs", "status", "predicted", "zero"):
        np.testing.assert_array_equal(files[0][key], ref[key], err_msg=key)
    for key in ("gamma", "gamma_layers", "p_glass"):
        np.testing.assert_allclose(files[0][key], ref[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.fixture(scope="module")
def indicators_ref(tiny_prepared, tmp_path_factory):
    """indicators under 2 ranks on the parallel-HDF5 path (no fallback warning)."""
    rd = _copy_prepared(tiny_prepared, tmp_path_factory.mktemp("ind") / "ref")
    res = glasscam(["indicators", "--run-dir", str(rd)], n=2)
    assert SERIAL_WARNING not in res.stderr and "h5py has no MPI support" not in res.stderr
    return rd


def test_indicators_killed_mid_stage_resumes_to_the_same_result(indicators_ref, tiny_prepared,
                                                                tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "killed")
    done = _killed_mid_stage("indicators", rd)
    n_runs = len(read_stage(indicators_ref / "indicators.h5")["runs"])
    assert 1 <= done < n_runs
    res = glasscam(["indicators", "--run-dir", str(rd)], n=2)
    assert f"{n_runs - done} of {n_runs} test runs to do" in res.stdout
    assert_same_data(read_stage(indicators_ref / "indicators.h5"),
                     read_stage(rd / "indicators.h5"))


def test_indicators_use_the_table1_radii(indicators_ref):
    """Theta is computed with the additive radii of METHOD.md section 5 (KAM: R_A = 0.5,
    R_B = 0.44), literals here, not the package's table."""
    from glasscam_mpi.analysis import tong_tanaka

    with h5py.File(indicators_ref / "prepare.h5", "r") as prep, \
            h5py.File(indicators_ref / "indicators.h5", "r") as ind:
        np.testing.assert_allclose(ind.attrs["radii"], [0.5, 0.44], rtol=1e-14)
        box = prep["box"][:]
        for row, r in enumerate(ind["runs"][:]):
            for c, cls in enumerate(("liquid", "glass")):
                np.testing.assert_allclose(
                    ind["theta"][row, c],
                    tong_tanaka(box, prep[cls][r], prep["types"][r], np.array([0.5, 0.44])),
                    rtol=1e-12)


def test_serial_hdf5_fallback_writes_the_same_files(indicators_ref, tiny_prepared, tiny_config,
                                                    tmp_path):
    """GLASSCAM_SERIAL_HDF5=1 sends every stage file through rank 0 (the path of a stack
    without parallel HDF5): under 2 ranks it says so, and the data are those of the
    parallel path (prepare: the session's tiny run directory, made in parallel)."""
    serial = {"GLASSCAM_SERIAL_HDF5": "1"}
    rd = tmp_path / "serial"
    res = glasscam(["prepare", "--config", str(tiny_config), "--run-dir", str(rd)], n=2,
                   env=serial)
    assert SERIAL_WARNING in res.stderr
    assert_same_data(read_stage(tiny_prepared / "prepare.h5"), read_stage(rd / "prepare.h5"))
    res = glasscam(["indicators", "--run-dir", str(rd)], n=2, env=serial)
    assert SERIAL_WARNING in res.stderr
    assert_same_data(read_stage(indicators_ref / "indicators.h5"),
                     read_stage(rd / "indicators.h5"))
    env = glasscam(["env"], env=serial).stdout
    assert "serial: writes go through rank 0" in env and "GLASSCAM_SERIAL_HDF5 set" in env


def test_train_restart_starts_over(gradcam_ref, tiny_prepared, tmp_path):
    """``train --restart`` on a trained and explained run directory removes the checkpoints,
    the model and the Grad-CAM outputs, accepts a changed [train], and trains to exactly
    what a fresh training with that config gives."""
    rd = _copy_tree(gradcam_ref, tmp_path / "restart")
    assert (rd / "gradcam.h5").exists() and (rd / "shards" / "gradcam").is_dir()
    (rd / "train" / "stale.txt").write_text("left by the first training\n")
    res = glasscam(["train", "--run-dir", str(rd), "--restart",
                    *_config(tmp_path / "c2.toml", epochs=2)], n=2)
    assert "train --restart: removed" in res.stdout
    assert "epochs 1..2" in res.stdout
    assert not (rd / "gradcam.h5").exists() and not (rd / "shards" / "gradcam").exists()
    assert not (rd / "train" / "stale.txt").exists()
    fresh = _copy_prepared(tiny_prepared, tmp_path / "fresh")
    glasscam(["train", "--run-dir", str(fresh), *_config(tmp_path / "c2.toml", epochs=2)], n=2)
    a, b = read_stage(fresh / "train.h5"), read_stage(rd / "train.h5")
    assert len(b["train_loss"]) == 2
    for key in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "test_accuracy", "test_confusion"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    import torch

    for name in ("best.pt", "checkpoint.pt"):
        ma = torch.load(fresh / "train" / name, weights_only=True)["model"]
        mb = torch.load(rd / "train" / name, weights_only=True)["model"]
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), (name, k)
