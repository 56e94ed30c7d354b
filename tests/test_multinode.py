"""Across nodes, for real: every stage on a 2-node Slurm cluster on this machine.

``hpc/slurm/localcluster.sh start DIR --nodes 2`` makes two hosts, gcn1 and gcn2, each a
network + UTS namespace with its own hostname and address (separate hosts to MPI and to
Slurm: their own shared-memory domains), one slurmd in each, one slurmctld and munged
here. The same hosts serve ``mpiexec -launcher rsh -launcher-exec DIR/rsh`` (MPICH's
hydra, no scheduler) for the placements a Slurm allocation does not give (round-robin).

What is compared with what (``read_stage``/``assert_same_data``: every dataset):
* prepare, indicators, propensity, gradcam and analyze of one ``sbatch -N 2
  --ntasks-per-node=2`` job (``srun --mpi=pmi2``) against ``mpiexec -n 1`` on one host;
* ``ranks_per_task = 2`` on 2 nodes x 2 ranks, by block and by round-robin placement,
  against 2 ranks (one group) on one host; the groups never span nodes;
* training (Horovod, DDP) with 1 rank on each of 2 nodes against 2 ranks on one host:
  the best model's and the checkpoint's tensors;
* a prepare whose node gcn2 is lost mid-stage, resubmitted, against ``mpiexec -n 2``.

Where the cluster cannot start (no root, no network namespaces, no Slurm) these tests
FAIL with localcluster.sh's message; ``GLASSCAM_SKIP_SLURM=1`` skips them on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (ROOT, TINY_PROPENSITY_TOML, TINY_TOML, TINY_TRAIN_TOML, WALLTIME_PROFILE,
                      assert_same_data, copy_prepared, glasscam, read_stage)
from glasscam_mpi.parallel import host_groups
from glasscam_mpi.slurm import submission_env

pytestmark = [pytest.mark.mpi, pytest.mark.slurm]

SCRIPT = ROOT / "hpc" / "slurm" / "localcluster.sh"
PY = sys.executable
GLASSCAM = [PY, "-m", "glasscam_mpi.cli"]
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def test_host_groups_keep_groups_on_one_host_where_possible():
    """The placement rule, without MPI: ranks host by host, cut into groups of k."""
    assert host_groups(["a", "a", "b", "b"], 2) == [[0, 1], [2, 3]]          # block
    assert host_groups(["a", "b", "a", "b"], 2) == [[0, 2], [1, 3]]          # round-robin
    assert host_groups(["a", "b", "a", "b", "a", "b"], 3) == [[0, 2, 4], [1, 3, 5]]
    # 3 ranks per host and k = 2: one group must span the hosts, and only one does
    groups = host_groups(["a", "a", "a", "b", "b", "b"], 2)
    hosts = ["a", "a", "a", "b", "b", "b"]
    assert sum(len({hosts[r] for r in g}) > 1 for g in groups) == 1
    assert groups[0][0] == 0 and sorted(sum(groups, [])) == list(range(6))
    with pytest.raises(ValueError, match="5 ranks cannot be split into groups of 2"):
        host_groups(["a"] * 5, 2)


# -- the cluster ---------------------------------------------------------------------------------

class Cluster:
    def __init__(self, state: Path):
        self.state = state
        self.rsh, self.hostfile = state / "rsh", state / "hostfile"

    def mpiexec(self, n: int, hostfile: Path | None = None) -> list[str]:
        """MPICH's hydra across the namespace hosts (rsh stand-in, the bridge's address)."""
        return ["mpiexec", "-launcher", "rsh", "-launcher-exec", str(self.rsh), "-f",
                str(hostfile or self.hostfile), "-iface", "gcbr0", "-n", str(n)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real 2-node Slurm (hpc/slurm/localcluster.sh --nodes 2) for this file's tests,
    stopped after them (namespaces, links, bridge, /etc/hosts lines, daemons)."""
    if os.environ.get("GLASSCAM_SKIP_SLURM", "") not in ("", "0"):
        pytest.skip("GLASSCAM_SKIP_SLURM is set: real-Slurm tests skipped on request")
    state = tmp_path_factory.mktemp("cluster")
    res = subprocess.run(["bash", str(SCRIPT), "start", str(state), "--nodes", "2"],
                         timeout=120, capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=60)
        pytest.fail(f"{SCRIPT} start {state} --nodes 2 failed ({res.returncode}):\n"
                    f"{res.stdout}{res.stderr}\n(set GLASSCAM_SKIP_SLURM=1 to skip the "
                    "real-Slurm tests on purpose)", pytrace=False)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield Cluster(state)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _job_state(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True,
                         text=True).stdout
    m = re.search(r"\bJobState=(\S+)", out)
    return m.group(1) if m else ""


def _progress(paths) -> tuple:
    """Files and bytes under ``paths``: what grows while a job works."""
    n = size = 0
    for p in paths:
        for f in ([p] if p.is_file() else p.rglob("*") if p.is_dir() else []):
            try:
                n, size = n + 1, size + f.stat().st_size
            except OSError:
                pass
    return n, size


def wait_job(job: str, watch, stall: float = 120) -> str:
    """Wait until Slurm job ``job`` has ended; returns its state. Bounded by progress: fails
    when nothing under ``watch`` (the log, the run directories) changed for ``stall``
    seconds while the job was pending or running."""
    last, t_last = None, time.time()
    while True:
        state = _job_state(job)
        if state in ENDED:
            return state
        now = (state, _progress(watch))
        if now != last:
            last, t_last = now, time.time()
        elif time.time() - t_last > stall:
            raise AssertionError(f"job {job} ({state}) made no progress for {stall} s")
        time.sleep(0.5)


def sbatch(script: str, path: Path) -> str:
    path.write_text(script)
    res = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True,
                         env=submission_env(), cwd=path.parent)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_script(log: Path, nodes: int, per_node: int, lines: list[str]) -> str:
    head = ["#!/bin/bash", f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={per_node}",
            f"#SBATCH --output={log}", "#SBATCH --time=00:20:00", "set -euo pipefail",
            f"cd {shlex.quote(str(ROOT))}", "export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1"]
    return "\n".join(head + lines) + "\n"


def srun(*args: str, extra: str = "") -> str:
    return " ".join(["srun --mpi=pmi2", extra, *map(shlex.quote, [*GLASSCAM, *args])])


def rank_lines(text: str) -> list[tuple[int, str, int, int, str]]:
    """(rank, host, node-local rank, node size, gpu) of each line of ``glasscam env --ranks``."""
    pat = re.compile(r"^rank +(\d+) of \d+: host (\S+), node-local rank (\d+) of (\d+), "
                     r"cpus \S+, gpu (\S+)$", re.M)
    return [(int(a), b, int(c), int(d), e) for a, b, c, d, e in pat.findall(text)]


# -- every stage under one 2-node job ------------------------------------------------------------

# analyze needs gradcam, gradcam a trained model: the tiny protocol with a small CNN,
# 2 propensity configurations in 2 rounds and the analyze section of test_mpi_analyze.
STAGES_TOML = TINY_TOML + TINY_TRAIN_TOML + TINY_PROPENSITY_TOML + """
[analyze]
xis = [0.0, 1.0, 1.5]
xi_pairs = 1.0
bins = 12
subensemble_size = 2
subensembles = 2
"""
COMPARED = ("prepare", "indicators", "propensity", "gradcam", "analyze")


@pytest.fixture(scope="module")
def one_host(tmp_path_factory):
    """Every stage under ``mpiexec -n 1`` on this host (train too: the 2-node job takes
    its model, so that gradcam and analyze explain the same network)."""
    base = tmp_path_factory.mktemp("onehost")
    cfg = base / "c.toml"
    cfg.write_text(STAGES_TOML)
    rd = base / "run"
    for stage in ("prepare", "indicators", "propensity", "train", "gradcam", "analyze"):
        glasscam([stage, "--run-dir", str(rd), *(["--config", str(cfg)] if stage == "prepare"
                                                  else [])], n=1)
    return cfg, rd


@pytest.fixture(scope="module")
def two_node_job(cluster, one_host, tmp_path_factory):
    """One sbatch -N 2 --ntasks-per-node=2 job: env --ranks, then the stages with srun."""
    cfg, ref = one_host
    base = tmp_path_factory.mktemp("twonode")
    rd, log = base / "run", base / "job.out"
    lines = ["export GLASSCAM_GPUS_PER_NODE=2",
             srun("env", "--ranks"),
             srun("prepare", "--config", str(cfg), "--run-dir", str(rd)),
             srun("indicators", "--run-dir", str(rd)),
             srun("propensity", "--run-dir", str(rd)),
             # the one-host run's model (training across nodes: test_train_across_nodes...)
             f"cp -r {shlex.quote(str(ref / 'train.h5'))} {shlex.quote(str(ref / 'train'))} "
             f"{shlex.quote(str(rd))}/",
             srun("gradcam", "--run-dir", str(rd)),
             srun("analyze", "--run-dir", str(rd))]
    job = sbatch(job_script(log, 2, 2, lines), base / "job.sbatch")
    state = wait_job(job, [log, rd])
    text = log.read_text() if log.exists() else ""
    assert state == "COMPLETED", f"job {job}: {state}\n{text}"
    return rd, text


def test_the_job_has_2_ranks_on_each_of_2_hosts_and_gpus_by_node_local_rank(two_node_job):
    """glasscam env --ranks in the job: hosts, node-local ranks (Split_type), and the GPU
    index each rank would take with 2 GPUs per node (GLASSCAM_GPUS_PER_NODE): 0, 1, 0, 1."""
    _, log = two_node_job
    rows = rank_lines(log)
    assert [r[0] for r in rows] == [0, 1, 2, 3], log
    assert [(r[1], r[2], r[3]) for r in rows] == [("gcn1", 0, 2), ("gcn1", 1, 2),
                                                  ("gcn2", 0, 2), ("gcn2", 1, 2)], log
    assert [r[4] for r in rows] == ["0", "1", "0", "1"]
    assert "2 host(s), 4 rank(s); 2 GPU(s) per node (GLASSCAM_GPUS_PER_NODE)" in log
    assert "warning" not in log


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, in groups too (analysis.h5 has them)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                      else None)
    return out


@pytest.mark.parametrize("stage", COMPARED)
def test_stage_file_across_2_nodes_equals_one_rank_on_one_host(stage, two_node_job, one_host):
    rd, log = two_node_job
    name = "analysis.h5" if stage == "analyze" else f"{stage}.h5"
    assert f"{stage}: wrote {rd / name}" in log, log
    # written by the 4 ranks of both hosts with parallel HDF5 (no rank-0 fallback warning)
    assert "HDF5 output is gathered and written by rank 0" not in log
    ref, got = read_all(one_host[1] / name), read_all(rd / name)
    assert len(ref) >= 3
    assert_same_data(ref, got)


# -- ranks_per_task = 2 ----------------------------------------------------------------------------

K2_TOML = TINY_TOML + "ranks_per_task = 2\n"


@pytest.fixture(scope="module")
def k2_one_host(tmp_path_factory):
    """prepare with ranks_per_task = 2 on 2 ranks of this host: one group."""
    base = tmp_path_factory.mktemp("k2")
    cfg = base / "k2.toml"
    cfg.write_text(K2_TOML)
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(base / "run")], n=2)
    return cfg, base / "run"


def test_ranks_per_task_2_under_slurm_on_2_nodes_equals_one_host(cluster, k2_one_host, tmp_path):
    cfg, ref = k2_one_host
    rd, log = tmp_path / "run", tmp_path / "job.out"
    job = sbatch(job_script(log, 2, 2, [srun("prepare", "--config", str(cfg), "--run-dir",
                                             str(rd))]), tmp_path / "job.sbatch")
    assert wait_job(job, [log, rd]) == "COMPLETED", log.read_text()
    assert "on 4 rank(s) in groups of 2 per run" in log.read_text()
    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(rd / "prepare.h5"))


@pytest.mark.parametrize("placement", ["block", "round-robin"])
def test_task_groups_stay_on_one_node(cluster, placement, tmp_path):
    """4 ranks on 2 hosts, groups of 2: by block (gcn1:2, gcn2:2) and round-robin
    (gcn1:1, gcn2:1: ranks alternate hosts) every group's ranks share a host, and the
    leaders (the farm) are one per group, rank 0 among them."""
    hostfile = cluster.hostfile
    if placement == "round-robin":
        hostfile = tmp_path / "hostfile"
        hostfile.write_text("gcn1:1\ngcn2:1\n")
    res = subprocess.run([*cluster.mpiexec(4, hostfile), PY,
                          str(ROOT / "tests" / "mpi_scripts" / "multinode_check.py"),
                          "groups", "2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    ranks = json.loads(res.stdout.strip().splitlines()[-1])
    hosts = [r["host"] for r in ranks]
    assert sorted(hosts) == ["gcn1", "gcn1", "gcn2", "gcn2"]
    if placement == "round-robin":
        assert hosts == ["gcn1", "gcn2", "gcn1", "gcn2"]   # consecutive ranks alternate
    for r in ranks:
        assert len({h for _, h in r["group"]}) == 1, ranks   # the group is on one host
        assert r["rank"] in [m for m, _ in r["group"]]
    assert ranks[0]["leaders"] == sorted({min(m for m, _ in r["group"]) for r in ranks})
    assert ranks[0]["leaders"][0] == 0


def test_ranks_per_task_2_round_robin_over_2_hosts_equals_one_host(cluster, k2_one_host,
                                                                   tmp_path):
    cfg, ref = k2_one_host
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("gcn1:1\ngcn2:1\n")
    rd = tmp_path / "run"
    res = subprocess.run([*cluster.mpiexec(4, hostfile), *GLASSCAM, "prepare", "--config",
                          str(cfg), "--run-dir", str(rd)], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "ranks_per_task = 2 on an oversubscribed node" not in res.stderr  # 2 per host
    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(rd / "prepare.h5"))


# -- node-local shared memory ----------------------------------------------------------------------

def test_node_shared_is_one_window_per_node_and_never_read_across_nodes(cluster):
    """Each node's ranks fill their node's array with values that name the node: every rank
    reads exactly its own node's rows (never the other node's), the two ranks of a node
    map the same shared-memory segment (one copy per node), the nodes different ones."""
    res = subprocess.run([*cluster.mpiexec(4), PY,
                          str(ROOT / "tests" / "mpi_scripts" / "multinode_check.py"),
                          "nodeshared"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    ranks = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["host"] for r in ranks] == ["gcn1", "gcn1", "gcn2", "gcn2"]
    assert all(r["shared"] and r["node_size"] == 2 and r["own_rows_only"] for r in ranks), ranks
    segments = {}
    for r in ranks:
        assert r["segment"][1] != 0, r   # a shared mapping with an inode, not private memory
        segments.setdefault(r["host"], set()).add(tuple(r["segment"][:2]))
    assert all(len(s) == 1 for s in segments.values()), segments   # one copy per node
    assert segments["gcn1"] != segments["gcn2"]


# -- training across nodes -------------------------------------------------------------------------

TRAIN_TOML = TINY_TOML + """
[train]
backend = "{backend}"
epochs = 2
batch_size = 4
n_grid = 16
channels = [4, 4, 4]
kernels = [3, 3, 3]
strides = [1, 2, 2]
hidden = 8
check_sync = true
"""


def _tensors(path: Path) -> dict:
    import torch

    out = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj.detach().cpu().numpy()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)
    walk("", torch.load(path, map_location="cpu", weights_only=False))
    return out


@pytest.mark.slow
def test_train_with_1_rank_on_each_of_2_nodes_equals_2_ranks_on_one_host(cluster, tiny_prepared,
                                                                         tmp_path):
    """Horovod and DDP: the same best model and checkpoint, tensor for tensor."""
    runs, lines = {}, []
    for backend in ("horovod", "ddp"):
        cfg = tmp_path / f"{backend}.toml"
        cfg.write_text(TRAIN_TOML.format(backend=backend))
        for where in ("host", "nodes"):
            runs[backend, where] = copy_prepared(tiny_prepared, tmp_path / f"{backend}-{where}")
        glasscam(["train", "--config", str(cfg), "--run-dir", str(runs[backend, "host"])], n=2)
        lines.append(srun("train", "--config", str(cfg), "--run-dir",
                          str(runs[backend, "nodes"])))
    log = tmp_path / "job.out"
    job = sbatch(job_script(log, 2, 1, [srun("env", "--ranks"), *lines]), tmp_path / "job.sbatch")
    assert wait_job(job, [log, tmp_path]) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert [(r[1], r[2]) for r in rank_lines(text)] == [("gcn1", 0), ("gcn2", 0)], text
    for backend in ("horovod", "ddp"):
        assert f"backend {backend} on 2 rank(s)" in text
        for name in ("best.pt", "checkpoint.pt"):
            a = _tensors(runs[backend, "host"] / "train" / name)
            b = _tensors(runs[backend, "nodes"] / "train" / name)
            assert a.keys() == b.keys() and len(a) > 4, (backend, name)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{backend} {name} {key}")


# -- a node lost mid-stage -------------------------------------------------------------------------

# 16 runs of ~0.5 s (2 ranks of an idle 2-core machine): the farm is under way when gcn2 goes
LOST_TOML = TINY_TOML.replace("n_runs = 6", "n_runs = 16").replace("cooling_rate = 0.2",
                                                                   "cooling_rate = 0.02")


def _ok_shards(rd: Path) -> list[Path]:
    folder = rd / "shards" / "prepare"
    return sorted(folder.glob("*.ok.npz")) if folder.is_dir() else []


@pytest.mark.slow
def test_a_node_lost_mid_prepare_fails_the_job_and_a_resubmission_resumes(cluster, tmp_path):
    """glasscam submit with the 2-node profile (local2); once some runs are done, node gcn2
    is lost (its slurmd, job step and ranks killed, and the node set DOWN, as a health
    check would); the job fails, glasscam status says so and counts only whole shards;
    with gcn2 back, the same stage submitted again resumes and gives mpiexec's data."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(LOST_TOML)
    ref = tmp_path / "ref"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(ref)], n=2)
    rd = tmp_path / "run"
    res = glasscam(["submit", "prepare", "--profile", "local2", "--config", str(cfg),
                    "--run-dir", str(rd)])
    job = res.stdout.split("job ")[1].split()[0]
    last, t_last = None, time.time()
    while len(_ok_shards(rd)) < 3:   # bounded by progress: a new shard within 120 s
        assert _job_state(job) not in ENDED, (rd / "logs").iterdir()
        n = len(_ok_shards(rd))
        if n != last:
            last, t_last = n, time.time()
        assert time.time() - t_last < 120, f"no new shard for 120 s ({n})"
        time.sleep(0.2)
    killed = subprocess.run(["ip", "netns", "pids", "gcn2"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert killed, "nothing ran on gcn2"
    subprocess.run(["kill", "-9", *killed], check=False)
    subprocess.run(["scontrol", "update", "nodename=gcn2", "state=DOWN",
                    "reason=test: node lost"], check=True)
    state = wait_job(job, [rd])
    assert state in ("NODE_FAIL", "FAILED"), state
    # the job has ended for Slurm; wait until its ranks on gcn1 are gone too (slurmd
    # kills them), so that no shard appears after the count below
    slurmd = (cluster.state / "slurmd-gcn1.pid").read_text().split()
    t0 = time.time()
    while set(subprocess.run(["ip", "netns", "pids", "gcn1"], capture_output=True,
                             text=True).stdout.split()) - set(slurmd):
        assert time.time() - t0 < 60, "the job's processes on gcn1 outlived it by 60 s"
        time.sleep(0.5)
    assert not (rd / "prepare.h5").exists()
    done = _ok_shards(rd)
    assert 3 <= len(done) < 16
    for shard in done:   # every shard counted as done is whole
        with np.load(shard) as npz:
            assert npz.files
    st = json.loads(glasscam(["status", str(rd), "--json"]).stdout)
    assert [(j["job"], j["state"]) for j in st["jobs"]] == [(job, state)]
    assert st["stages"]["prepare"]["done"] == len(done) and not st["stages"]["prepare"]["complete"]
    table = glasscam(["status", str(rd)]).stdout
    print(table)
    assert f"prepare     {job:>8}  {state:<11}" in table
    if state == "NODE_FAIL":
        assert "a node of the job failed or was lost (NODE_FAIL)" in table

    subprocess.run(["bash", str(SCRIPT), "start-node", str(cluster.state), "gcn2"], check=True,
                   timeout=60)
    t0 = time.time()
    while subprocess.run(["sinfo", "-h", "-n", "gcn2", "-o", "%t"], capture_output=True,
                         text=True).stdout.strip() not in ("idle", "mix", "alloc"):
        assert time.time() - t0 < 60, "gcn2 did not come back"
        time.sleep(0.5)
    res = glasscam(["submit", "prepare", "--profile", "local2", "--run-dir", str(rd)])
    again = res.stdout.split("job ")[1].split()[0]
    assert wait_job(again, [rd]) == "COMPLETED"
    out = (rd / "logs" / f"slurm-prepare-{again}.out").read_text()
    assert f"{16 - len(done)} of 16 runs to do" in out, out
    assert "on 2 node(s), 4 rank(s)" in out
    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(rd / "prepare.h5"))
    st = json.loads(glasscam(["status", str(rd), "--json"]).stdout)
    assert [j["state"] for j in st["jobs"]] == [state, "COMPLETED"]
    assert st["stages"]["prepare"]["complete"]


# -- the walltime continuation on the other node ------------------------------------------------

# WALLTIME_PROFILE (conftest): 1-node jobs of 2 ranks under a 1-minute limit, warned 50 s
# before it (the warning came 15-35 s into such a job on 22.05: test_slurm.py); 80 runs of
# ~1-2 s need 2 jobs or more also on an idle machine (40 fitted into one job there)
WALLTIME_TOML = TINY_TOML.replace("n_runs = 6", "n_runs = 80").replace("cooling_rate = 0.2",
                                                                       "cooling_rate = 0.005")


def _job_field(job: str, key: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True,
                         text=True).stdout
    m = re.search(rf"(?:^|\s){key}=(\S*)", out)
    return m.group(1) if m else ""


def _set_node(node: str, state: str) -> None:
    cmd = ["scontrol", "update", f"nodename={node}", f"state={state}"]
    subprocess.run(cmd + (["reason=test: continuation elsewhere"] if state == "DRAIN" else []),
                   check=True, capture_output=True)


@pytest.mark.slow
def test_walltime_continuation_runs_on_the_other_node_and_equals_mpiexec(cluster, tmp_path):
    """A prepare stopped by the walltime warning continues in a new job; while a
    continuation waits, the node of the job it continues is drained (as for maintenance),
    so it starts on the other node and reads the shards the first node wrote. The chain
    ends with the data of an uninterrupted mpiexec run."""
    from glasscam_mpi.jobs import read_jobs

    cfg, profile = tmp_path / "c.toml", tmp_path / "short.toml"
    cfg.write_text(WALLTIME_TOML)
    profile.write_text(WALLTIME_PROFILE)
    ref = tmp_path / "ref"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(ref)], n=2)
    rd = tmp_path / "run"
    glasscam(["submit", "prepare", "--profile", str(profile), "--config", str(cfg),
              "--run-dir", str(rd)])
    drained: dict[str, str] = {}   # continuation job -> the node drained for it
    last, t_last = None, time.time()
    try:
        while True:
            jobs = read_jobs(rd)
            states = {j["job"]: _job_state(j["job"]) for j in jobs}
            for j in jobs:
                before = j.get("continues")
                if before and j["job"] not in drained and states[j["job"]] == "PENDING":
                    node = _job_field(before, "BatchHost")
                    if node:
                        _set_node(node, "DRAIN")
                        drained[j["job"]] = node
                if j["job"] in drained and states[j["job"]] not in ("PENDING", ""):
                    _set_node(drained.pop(j["job"]), "RESUME")
            if jobs and all(s in ENDED for s in states.values()) and read_jobs(rd) == jobs:
                break
            now = (tuple(states.items()), _progress([rd]))
            if now != last:
                last, t_last = now, time.time()
            assert time.time() - t_last < 180, f"no progress for 180 s: {states}"
            time.sleep(0.1)   # a continuation may start ~1 s after it is recorded
    finally:
        for node in set(drained.values()):
            _set_node(node, "RESUME")
    chain = [j["job"] for j in read_jobs(rd)]
    assert len(chain) >= 2, chain
    hosts = [_job_field(j, "BatchHost") for j in chain]
    for a, b, ha, hb in zip(chain, chain[1:], hosts, hosts[1:]):
        assert (_job_field(a, "JobState"), _job_field(a, "ExitCode")) == ("FAILED", "75:0")
        assert hb != ha, f"continuation {b} ran on {hb}, as {a} did"
    assert _job_field(chain[-1], "JobState") == "COMPLETED"
    assert set(hosts) == {"gcn1", "gcn2"}
    assert_same_data(read_stage(ref / "prepare.h5"), read_stage(rd / "prepare.h5"))
