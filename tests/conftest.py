"""Shared test helpers: real ``mpiexec`` launches of the real CLI, tiny configs.

MPI tests start ``mpiexec -n K python -m glasscam_mpi.cli ...`` as a subprocess, exactly
as a user would; nothing stands in for MPI, LAMMPS or HDF5. ``MPIEXEC`` overrides the
launcher (e.g. ``MPIEXEC="srun --mpi=pmi2"`` on a cluster node).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tests name the packaged profiles (golden job scripts among them): a site's folders of
# profiles, searched first, must not shadow them (test_profiles sets its own)
os.environ.pop("GLASSCAM_PROFILES", None)


# -- test order --------------------------------------------------------------------------------
# The suite must pass in any order of its files. By default the files (modules) run in a
# seeded random order, a new seed each run, printed in the header and at the end; the tests
# of one file stay together and in their written order, so module fixtures are built once.
#   --file-order=random|reverse|alphabetical   --order-seed N (repeat a random order)
_ORDER_SEED = pytest.StashKey[int]()


def pytest_addoption(parser):
    group = parser.getgroup("glasscam", "glasscam-mpi test order")
    group.addoption("--file-order", choices=("random", "reverse", "alphabetical"),
                    default="random",
                    help="order of the test files: random (default; seeded, see "
                         "--order-seed), reverse (reverse alphabetical) or alphabetical")
    group.addoption("--order-seed", type=int, default=None, metavar="N",
                    help="seed of --file-order=random (default: a new one every run)")


def pytest_configure(config):
    seed = config.getoption("--order-seed")
    config.stash[_ORDER_SEED] = random.SystemRandom().randrange(10**6) if seed is None else seed


def _order_line(config) -> str:
    mode = config.getoption("--file-order")
    if mode != "random":
        return f"test file order: {mode}"
    seed = config.stash[_ORDER_SEED]
    return f"test file order: random, seed {seed} (repeat with --order-seed {seed})"


def pytest_report_header(config):
    return _order_line(config)


def pytest_collection_modifyitems(session, config, items):
    by_file: dict[Path, list] = {}
    for item in items:  # collection order within a file is kept
        by_file.setdefault(Path(item.path), []).append(item)
    files = sorted(by_file)
    mode = config.getoption("--file-order")
    if mode == "random":
        random.Random(config.stash[_ORDER_SEED]).shuffle(files)
    elif mode == "reverse":
        files.reverse()
    items[:] = [item for f in files for item in by_file[f]]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(_order_line(config))

# A tiny but complete 2D KAM protocol: N = 64, six runs, fast ramp (~0.2 s per run).
TINY_TOML = """\
[run]
seed = 7

[system]
name = "KAM"
n_particles = 64

[prepare]
n_runs = 6
train_fraction = 0.5
validation_fraction = 0.17
t_equilibrate = 2.0
cooling_rate = 0.2
energy_samples = 12
"""


# A CNN small enough to train in seconds on the tiny runs (the stages after train need one).
TINY_TRAIN_TOML = """
[train]
epochs = 3
batch_size = 2
n_grid = 16
channels = [4, 4, 4]
kernels = [3, 3, 3]
strides = [1, 2, 2]
hidden = 8
"""


# a tiny propensity study (2 configurations x 2 temperatures x 4 replicas, seconds): the
# dynamics the analyze, ensemble and sweep tests correlate with
TINY_PROPENSITY_TOML = """
[propensity]
n_configs = 2
temperatures = [0.45, 0.8]
temperature_unit = "absolute"
n_replicas = 4
t_max = 10.0
n_times = 8
rounds = 2
delta_targets = [0.05, 0.08]
stop_factor = 0.0
"""


# a 1-node Slurm profile of 2 ranks under a 1-minute limit, warned 50 s before it: the
# walltime-continuation tests of test_slurm and test_multinode
WALLTIME_PROFILE = """\
partition = "local"
nodes = 1
ntasks_per_node = 2
time = "00:01:00"
signal_lead = 50
launcher = "srun --mpi=pmi2"
"""


def mpiexec(n: int) -> list[str]:
    launcher = os.environ.get("MPIEXEC")
    if launcher:
        return [*shlex.split(launcher), "-n", str(n)]
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found: run hpc/bootstrap.sh (it installs MPICH)")
    return [exe, "-n", str(n)]


def glasscam(args: list[str], n: int | None = None, env: dict | None = None,
             timeout: float = 300, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """Run ``glasscam ARGS`` (under ``mpiexec -n n`` if n is given) and return the result."""
    cmd = [sys.executable, "-m", "glasscam_mpi.cli", *args]
    if n is not None:
        cmd = [*mpiexec(n), *cmd]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                         cwd=ROOT, **popen)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\n--- stdout\n"
                             f"{res.stdout}\n--- stderr\n{res.stderr}")
    return res


def start_glasscam(args: list[str], n: int) -> subprocess.Popen:
    """Start ``mpiexec -n n glasscam ARGS`` in its own session (so a test can kill it)."""
    cmd = [*mpiexec(n), sys.executable, "-m", "glasscam_mpi.cli", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def given_rates(cfg):
    """(MDRates, LearnRates) given, not measured, for ``glasscam plan``'s arithmetic: a
    random 200-particle stand-in glass of ``cfg``'s system and round rates."""
    from glasscam_mpi import plan as plan_mod

    L = cfg.sys.box_length(200)
    rng = np.random.default_rng(1)
    glass = {"box": np.full(2, L), "positions": rng.uniform(0, L, (200, 2)),
             "types": np.repeat(np.arange(2, dtype=np.int8), cfg.sys.counts(200))}
    md = plan_mod.MDRates([0.05, 4.0], [1e-4, 2e-4], [100, 100], 1.0, 0.1, 10**8, glass)
    learn = plan_mod.LearnRates("cpu", 100.0, 300.0, 1000.0, 50.0, "given")
    return md, learn


def _processes_naming(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (Linux /proc), this process excluded."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_job(proc: subprocess.Popen, run_dir: Path, sig: int = signal.SIGKILL,
             timeout: float = 60) -> None:
    """Kill a job started by :func:`start_glasscam` as a scheduler or a user would, and
    return only once none of its ranks is left. ``sig`` goes to mpiexec's process group;
    hydra starts its proxy and the ranks in sessions of their own, so a rank outlives
    mpiexec for a moment and can still finish a task. Counting shards before every rank
    is gone made the kill-and-resume tests flaky on a loaded machine; the ranks (found by
    the run directory on their command line) are therefore killed too and waited for."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # it had ended by itself
        pass
    proc.communicate(timeout=timeout)
    deadline = time.time() + timeout
    while pids := _processes_naming(str(run_dir)):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert time.time() < deadline, f"ranks {pids} of the killed job are still alive"
        time.sleep(0.05)


def wait_for_shards(run_dir: Path, stage: str, k: int, proc: subprocess.Popen,
                    stall: float = 120) -> None:
    """Wait until ``stage`` has at least k finished task shards in ``run_dir``. Bounded by
    progress: fails when the process ended first, or when no new shard came for ``stall``
    seconds (since the start or the last new shard), not after a fixed total time."""
    shard_dir = run_dir / "shards" / stage
    seen, t_last = -1, time.time()
    while True:
        n = len([p for p in shard_dir.iterdir() if ".ok." in p.name]) if shard_dir.is_dir() else 0
        if n >= k:
            return
        if n != seen:
            seen, t_last = n, time.time()
        elif time.time() - t_last > stall:
            raise AssertionError(f"{stage}: {n} of the {k} shards waited for, and no new one "
                                 f"for {stall} s")
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def read_stage(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 stage file, as arrays (for comparing files)."""
    with h5py.File(path, "r") as fh:
        return {name: fh[name][()] for name in fh}


def assert_same_data(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"dataset {name!r} differs")


def copy_prepared(src: Path, dst: Path) -> Path:
    """A private run directory holding only a prepared one's prepare.h5 and config.toml."""
    dst.mkdir(parents=True)
    for name in ("prepare.h5", "config.toml"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A tiny prepared run directory made once under ``mpiexec -n 2`` (read-only in tests)."""
    base = tmp_path_factory.mktemp("tiny")
    cfg = base / "tiny.toml"
    cfg.write_text(TINY_TOML)
    run_dir = base / "run"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(run_dir)], n=2)
    return run_dir


@pytest.fixture(scope="session")
def tiny_full_run(tiny_prepared, tmp_path_factory) -> Path:
    """``tiny_prepared`` carried through train, gradcam, indicators, propensity and analyze
    under ``mpiexec -n 2`` (read-only in tests). Replica task 1 of propensity fails (a real
    LAMMPS failure, injected), so the run has every stage file and failed tasks: ensemble
    (config 0, T_0) has 3 ok replicas of 4, below min_replicas, and analyze fails it."""
    rd = copy_prepared(tiny_prepared, tmp_path_factory.mktemp("full") / "run")
    cfg = rd.parent / "full.toml"
    cfg.write_text(TINY_TOML + TINY_TRAIN_TOML + TINY_PROPENSITY_TOML)
    glasscam(["train", "--run-dir", str(rd), "--config", str(cfg)], n=2)
    for stage in ("gradcam", "indicators", "propensity", "analyze"):
        glasscam([stage, "--run-dir", str(rd)], n=2,
                 env={"GLASSCAM_INJECT_FAULT": "propensity:1"})
    return rd
