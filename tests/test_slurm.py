"""Slurm job scripts: golden rendering, sbatch command building, profile errors, and the
real thing: a job submitted to a single-node Slurm (slurmctld + slurmd + munge)."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, assert_same_data, glasscam, read_stage
from glasscam_mpi.config import ConfigError
from glasscam_mpi.slurm import Slurm, SlurmError, load_profile, render, submission_env


def test_rendered_script_matches_golden_file():
    text = render("prepare", load_profile("generic"), "/scratch/kam",
                  glasscam="/opt/glasscam/.venv/bin/glasscam")
    assert text == (ROOT / "tests/golden/prepare.generic.sbatch").read_text()


def test_gpu_lines_only_for_gpu_stages(tmp_path):
    prof = load_profile("generic")
    assert "--gpus-per-node" not in render("propensity", prof, tmp_path)
    train = render("train", prof, tmp_path)
    assert "#SBATCH --gpus-per-node=4" in train and "train --resume --run-dir" in train
    assert "#SBATCH --gpus-per-node=4" in render("gradcam", prof, tmp_path)


def test_chain_uses_afterok_and_parses_ids():
    calls = []

    def runner(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=f"{100 + len(calls)};cluster\n", stderr="")

    jobs = Slurm(runner).submit_chain(["a.sbatch", "b.sbatch", "c.sbatch"])
    assert jobs == ["101", "102", "103"]
    assert calls[0] == ["sbatch", "--parsable", "a.sbatch"]
    assert calls[1] == ["sbatch", "--parsable", "--dependency=afterok:101", "b.sbatch"]
    assert calls[2] == ["sbatch", "--parsable", "--dependency=afterok:102", "c.sbatch"]


def test_submission_env_drops_job_bound_variables():
    env = submission_env({"PATH": "/bin", "SLURM_CONF": "/x/slurm.conf", "PMI_PORT": "h:1",
                          "PMI_FD": "5", "HYDRA_CONTROL_FD": "6", "SLURM_JOB_ID": "7",
                          "SLURM_NTASKS": "2", "OMP_NUM_THREADS": "1"})
    assert env == {"PATH": "/bin", "SLURM_CONF": "/x/slurm.conf", "OMP_NUM_THREADS": "1"}


def test_sbatch_failures_are_never_silent():
    fail = lambda cmd, **kw: subprocess.CompletedProcess(  # noqa: E731
        cmd, 1, stdout="", stderr="sbatch: error: invalid partition specified: gpu")
    with pytest.raises(SlurmError, match="invalid partition specified: gpu"):
        Slurm(fail).submit("x.sbatch")
    odd = lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, stdout="Submitted\n", stderr="")  # noqa: E731
    with pytest.raises(SlurmError, match="not a job id"):
        Slurm(odd).submit("x.sbatch")


def test_bad_profiles_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="known: generic, local"):
        load_profile("nosuch")
    bad = tmp_path / "p.toml"
    bad.write_text('nodes = 0\n')
    with pytest.raises(ConfigError, match="nodes = 0: must be an integer >= 1"):
        load_profile(str(bad))
    bad.write_text('time = "1 day"\n')
    with pytest.raises(ConfigError, match=r"time = '1 day': use \[D-\]HH:MM:SS"):
        load_profile(str(bad))
    bad.write_text('queue = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'queue'"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="no job script for stage 'analyze'"):
        render("analyze", load_profile("local"), tmp_path)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory):
    """A real single-node Slurm for this test session (hpc/slurm/localcluster.sh)."""
    if os.geteuid() != 0 or shutil.which("sbatch") is None:
        pytest.skip("needs root and slurm-wlm (bash hpc/bootstrap.sh --dev)")
    state = tmp_path_factory.mktemp("slurm")
    script = ROOT / "hpc/slurm/localcluster.sh"
    subprocess.run(["bash", str(script), "start", str(state)], check=True, timeout=60,
                   capture_output=True)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run(["bash", str(script), "stop", str(state)], timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def _wait_for(job: str, timeout: float = 240) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        state = next((w.split("=")[1] for w in out.split() if w.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not finish in {timeout} s:\n{out}")


@pytest.mark.slurm
def test_prepare_job_on_real_slurm_equals_mpiexec(local_slurm, tiny_config, tiny_prepared, tmp_path):
    run_dir = tmp_path / "slurm-run"
    res = glasscam(["submit", "prepare", "--profile", "local", "--config", str(tiny_config),
                    "--run-dir", str(run_dir)])
    job = res.stdout.split("job ")[1].split()[0]
    assert _wait_for(job) == "COMPLETED"
    log = (run_dir / "logs" / f"slurm-prepare-{job}.out").read_text()
    assert "2 rank(s)" in log and "wrote" in log
    # srun with 2 ranks under Slurm gives the very data mpiexec gave
    assert_same_data(read_stage(tiny_prepared / "prepare.h5"), read_stage(run_dir / "prepare.h5"))


@pytest.mark.slurm
def test_bad_config_is_refused_at_submission(local_slurm, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[system]\nn_particles = 10\n")
    res = glasscam(["submit", "prepare", "--config", str(bad), "--run-dir", str(tmp_path / "r")],
                   check=False)
    assert res.returncode == 2 and "n_particles" in res.stderr
    assert not Path(tmp_path / "r" / "jobs").exists()


@pytest.mark.slurm
def test_stage_chain_runs_in_order_on_real_slurm(local_slurm, tmp_path):
    from test_mpi_indicators_propensity import PROPENSITY_TOML

    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML + PROPENSITY_TOML)
    run_dir = tmp_path / "chain"
    res = glasscam(["submit", "prepare", "indicators", "propensity", "--profile", "local",
                    "--config", str(cfg), "--run-dir", str(run_dir)])
    jobs = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    assert len(jobs) == 3
    # without afterok, indicators and propensity would start at once and fail on the missing
    # prepare.h5 (a FAILED job): all three COMPLETED means they ran in order
    assert [_wait_for(j) for j in jobs] == ["COMPLETED"] * 3
    for stage in ("prepare", "indicators", "propensity"):
        assert (run_dir / f"{stage}.h5").exists()
    info = json.loads(glasscam(["info", str(run_dir)]).stdout)
    assert info["complete"] == ["prepare", "indicators", "propensity"]


@pytest.mark.slurm
def test_train_job_resubmitted_after_a_crash_resumes_then_gradcam_runs(local_slurm, tiny_prepared,
                                                                       tmp_path):
    """The train job script (srun, Horovod) crashes in epoch 3; the same stage submitted
    again continues from the checkpoint and gives the loss curve of an uninterrupted
    mpiexec run, bit for bit; the gradcam job then runs after it (afterok)."""
    import shutil

    import h5py
    import numpy as np
    from test_mpi_train_gradcam import TRAIN_TOML

    from conftest import TINY_TOML

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML + TRAIN_TOML.format(backend="horovod", epochs=4))
    runs = {}
    for name in ("ref", "slurm"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        for f in ("prepare.h5", "config.toml"):
            shutil.copy(tiny_prepared / f, runs[name] / f)
    glasscam(["train", "--config", str(cfg), "--run-dir", str(runs["ref"])], n=2)

    rd = runs["slurm"]
    res = glasscam(["submit", "train", "--profile", "local", "--config", str(cfg),
                    "--run-dir", str(rd)], env={"GLASSCAM_INJECT_CRASH": "train:2"})
    job = res.stdout.split("job ")[1].split()[0]
    assert _wait_for(job) == "FAILED"
    assert "injected crash in train epoch 2" in (rd / "logs" / f"slurm-train-{job}.out").read_text()
    assert not (rd / "train.h5").exists() and (rd / "train" / "checkpoint.pt").exists()

    res = glasscam(["submit", "train", "gradcam", "--profile", "local", "--run-dir", str(rd)])
    jobs = [line.split("job ")[1] for line in res.stdout.splitlines() if ": job " in line]
    assert [_wait_for(j) for j in jobs] == ["COMPLETED"] * 2
    out = (rd / "logs" / f"slurm-train-{jobs[0]}.out").read_text()
    assert "backend horovod on 2 rank(s)" in out and "epochs 3..4" in out
    with h5py.File(runs["ref"] / "train.h5", "r") as a, h5py.File(rd / "train.h5", "r") as b:
        for key in ("train_loss", "val_loss", "val_accuracy"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
    with h5py.File(rd / "gradcam.h5", "r") as fh:
        assert fh["gamma"].shape == (len(fh["runs"]), 2, 64) and (fh["gamma"][:] >= 0).all()
