"""The walltime warning under plain mpiexec: SIGUSR1 (what Slurm's ``--signal=USR1@T``
sends; mpiexec/hydra forwards it to the ranks) stops a task farm, the tasks in flight
finish, the stage exits 75 with no stage file, and running it again completes it with the
data of an uninterrupted run. The jobs on a real Slurm are in test_slurm.py."""

import json
import os
import signal
import time

import pytest

from conftest import (TINY_TOML, assert_same_data, glasscam, read_stage, start_glasscam,
                      wait_for_shards)
from glasscam_mpi.jobs import moved_dependency, slurm_state
from glasscam_mpi.slurm import SlurmError
from glasscam_mpi.walltime import EXIT_NOT_FINISHED

# 24 runs of ~0.5 s: the farm is still handing out tasks when the signal comes
SLOWER_TOML = TINY_TOML.replace("n_runs = 6", "n_runs = 24").replace("cooling_rate = 0.2",
                                                                     "cooling_rate = 0.05")


def _catching(pid: int) -> bool:
    """Whether process ``pid`` blocks SIGUSR1 (glasscam's walltime.install() has run)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigBlk:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGUSR1 - 1) & 1)
    return False


def signal_ranks(proc, sig=signal.SIGUSR1, when_catching: bool = False) -> int:
    """Send ``sig`` to the ranks of the mpiexec ``proc`` (its descendants that run
    glasscam), as Slurm signals the tasks of a step; not to mpiexec itself. Returns how many
    (0, sending nothing, when ``when_catching`` and not every rank catches it yet)."""
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    family, grew = {proc.pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in family} - family
        family |= more
        grew = bool(more)
    ranks = []
    for pid in family - {proc.pid}:
        try:
            if b"glasscam_mpi.cli" in open(f"/proc/{pid}/cmdline", "rb").read():
                ranks.append(pid)
        except OSError:
            continue
    if when_catching and not all(_catching(pid) for pid in ranks):
        return 0
    for pid in ranks:
        os.kill(pid, sig)
    return len(ranks)


def warned_once_started(args: list[str], run, shards: str, n_shards: int) -> str:
    """Start ``glasscam ARGS --run-dir RUN`` on 2 ranks, send the walltime warning to both
    ranks once ``n_shards`` task shards are in ``shards``, and check that the job exits
    with "not finished"; returns its stderr."""
    proc = start_glasscam([*args, "--run-dir", str(run)], n=2)
    wait_for_shards(run, shards, n_shards, proc)
    assert signal_ranks(proc) == 2
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_NOT_FINISHED, err
    return err


@pytest.mark.mpi
def test_usr1_stops_the_farm_with_75_and_a_rerun_gives_the_uninterrupted_data(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SLOWER_TOML)
    ref, run = tmp_path / "ref", tmp_path / "run"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(ref)], n=2)

    err = warned_once_started(["prepare", "--config", str(cfg)], run, "prepare", 2)
    assert "walltime warning (SIGUSR1)" in err
    assert "glasscam prepare: not finished: prepare: stopped on the walltime warning" in err
    assert not (run / "prepare.h5").exists() and not (run / "prepare.h5.partial").exists()
    shards = sorted(p.name for p in (run / "shards" / "prepare").iterdir())
    # the tasks in flight finished and were written whole; nothing half-written is left
    assert 2 <= len(shards) < 24 and all(n.endswith(".ok.npz") for n in shards), shards
    assert f"stopped on the walltime warning with {24 - len(shards)} of 24 runs left" in err

    # glasscam status: no Slurm job recorded here, the progress from the shards
    st = json.loads(glasscam(["status", str(run), "--json"]).stdout)
    assert st["jobs"] == [] and st["stages"]["prepare"] == {
        "complete": False, "done": len(shards), "failed": 0, "total": 24}
    assert "(no jobs recorded" in glasscam(["status", str(run)]).stdout

    res = glasscam(["prepare", "--run-dir", str(run)], n=2)
    assert f"{24 - len(shards)} of 24 runs to do" in res.stdout
    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(run / "prepare.h5"))


@pytest.mark.mpi
def test_usr1_at_the_start_still_lets_a_task_finish(tmp_path):
    """A job warned as it starts makes progress (one task at least), so a chain of
    continuations always ends."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(SLOWER_TOML)
    run = tmp_path / "run"
    proc = start_glasscam(["prepare", "--config", str(cfg), "--run-dir", str(run)], n=2)
    # as soon as both ranks catch the signal: before the farm has started
    t0 = time.time()
    while signal_ranks(proc, when_catching=True) < 2:
        assert proc.poll() is None and time.time() - t0 < 60, proc.communicate()
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_NOT_FINISHED, err
    folder = run / "shards" / "prepare"
    shards = list(folder.iterdir()) if folder.is_dir() else []
    assert 1 <= len(shards) < 24, "a job warned before its first task made no progress"


def test_moved_dependency_replaces_the_stopped_job_and_drops_fulfilled_ones():
    assert moved_dependency("afterok:12(unfulfilled)", "12", "15") == "afterok:15"
    assert moved_dependency("afterok:9(fulfilled),afterok:12(unfulfilled),afterany:13(unfulfilled)",
                            "12", "15") == "afterok:15,afterany:13"
    assert moved_dependency("afterok:12+5(unfulfilled)", "12", "15") == "afterok:15"
    with pytest.raises(SlurmError, match="cannot read the dependency 'singleton'"):
        moved_dependency("singleton", "12", "15")


def test_slurm_state_falls_back_to_sacct_then_unknown():
    """slurmctld forgets a job MinJobAge after it ends: sacct is asked next (where the
    cluster keeps accounting), and without it the state is UNKNOWN, never a guess."""
    import subprocess

    def runner(answers):
        def run(cmd, **kw):
            rc, out = answers[cmd[0]]
            return subprocess.CompletedProcess(cmd, rc, stdout=out, stderr="")
        return run

    gone = (1, "")
    assert slurm_state("42", runner({"scontrol": gone, "sacct": (0, "FAILED|75:0\n")})) == \
        {"state": "FAILED", "exit_code": 75, "reason": "", "source": "sacct"}
    assert slurm_state("42", runner({"scontrol": gone, "sacct": (0, "CANCELLED by 0|0:15\n")})) \
        == {"state": "CANCELLED", "exit_code": 0, "reason": "", "source": "sacct"}
    assert slurm_state("42", runner({"scontrol": gone, "sacct": (1, "")}))["state"] == "UNKNOWN"
    line = ("JobId=42 JobName=glasscam-prepare JobState=PENDING Reason=Dependency "
            "Dependency=afterok:41(unfulfilled) ExitCode=0:0 Command=/x/a JobState=y")
    assert slurm_state("42", runner({"scontrol": (0, line)})) == \
        {"state": "PENDING", "exit_code": 0, "reason": "Dependency", "source": "scontrol"}


@pytest.mark.mpi
def test_usr1_in_a_propensity_round_merges_nothing_and_a_rerun_gives_the_same_data(
        tiny_prepared, tmp_path):
    """Propensity runs its replicas in rounds and merges them at the end: stopped in the
    first round it must neither merge half-run replicas into data nor decide on a partial
    round; the continuation gives the uninterrupted result."""
    from test_mpi_indicators_propensity import PROPENSITY_TOML

    from conftest import copy_prepared

    cfg = tmp_path / "p.toml"
    cfg.write_text(TINY_TOML + PROPENSITY_TOML.replace("n_replicas = 3", "n_replicas = 12"))
    ref = copy_prepared(tiny_prepared, tmp_path / "ref")
    run = copy_prepared(tiny_prepared, tmp_path / "run")
    glasscam(["propensity", "--config", str(cfg), "--run-dir", str(ref)], n=2)
    err = warned_once_started(["propensity", "--config", str(cfg)], run,
                              "propensity/rounds/r0", 3)
    assert "stopped on the walltime warning with 24 of 24 replicas left" in err
    assert not (run / "propensity.h5").exists()
    assert not list((run / "shards" / "propensity").glob("*.npz"))   # no replica merged
    assert not (run / "shards" / "propensity" / "rounds" / "r1").exists()
    glasscam(["propensity", "--run-dir", str(run)], n=2)
    assert_same_data(read_stage(ref / "propensity.h5"), read_stage(run / "propensity.h5"))
