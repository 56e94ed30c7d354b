"""benchmarks/scaling.py end to end at 1-2 ranks in quick mode: real mpiexec, real LAMMPS.

Checks the JSON's structure and that its values are sane (every task done, efficiencies in
(0, 1.5], the per-rank farm record adds up), and that the PNG is written. Timings are not
asserted: speed belongs to the benchmark's own output. Three repeats, because on a shared
2-core machine one measurement can be 2x off another taken a minute later (seen: a strong
"efficiency" of 2.08 from a single repeat); the medians of interleaved repeats are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scaling.py"


def scaling(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900, env={**os.environ})


def check_measurement(stage: str, key: str, k: int, m: dict) -> None:
    """One raw measurement: every task run and none failed; the farm record adds up."""
    assert m["seconds"] > 0
    if key == "ceiling":
        assert m["tasks"] == 4 * k and len(m["seconds_each"]) == k
        assert max(m["seconds_each"]) <= m["seconds"] + 1e-6
        return
    total = 4 * k if key.startswith("weak") else 4
    assert m["tasks_run"] == total and m["tasks_failed"] == 0, (stage, key, k)
    assert len(m["tasks_per_rank"]) == k and sum(m["tasks_per_rank"]) == total, m
    # every rank computed, and a rank's busy time fits in the farm's wall time
    assert all(0 < b <= m["seconds"] + 0.05 for b in m["busy_seconds"]), m


@pytest.mark.mpi
@pytest.mark.slow  # ~3-4 min on 2 cores
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores for 2 ranks")
def test_quick_study_at_one_and_two_ranks(tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    proc = scaling(tmp_path, "--quick", "--ranks", "1,2", "--bind", "core",
                   "--modes", "weak,strong", "--poll", "0.005", "--repeats", "3",
                   "--out", str(out), "--png", str(png), "--workdir", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads(out.read_text())
    assert d["ranks"] == [1, 2] and d["tasks_per_rank"] == 4 and d["strong_tasks"] == 4
    assert d["ceiling_engine"] in ("lmp", "python")
    assert d["dispatcher_poll_s"] == 0.05 and d["extra_polls_s"] == [0.005]
    assert set(d["results"]) == {"prepare", "propensity"}
    keys = {"weak_bound", "strong_bound", "ceiling", "weak_bound_poll0.005"}
    for stage, res in d["results"].items():
        assert set(res["raw"]) == keys, stage
        for key, by_rank in res["raw"].items():
            assert set(by_rank) == {"1", "2"}
            for k, ms in by_rank.items():
                assert len(ms) == 3
                for m in ms:
                    check_measurement(stage, key, int(k), m)
        table = {row["ranks"]: row for row in res["table"]}
        assert set(table) == {1, 2}
        for key in keys:
            assert table[1][f"{key}_efficiency"] == 1.0
            assert 0 < table[2][f"{key}_efficiency"] <= 1.5, (stage, key, table[2])
        for key in keys - {"ceiling"}:
            assert 0 <= table[2][f"{key}_idle_fraction"] < 1
            assert 0 < table[2][f"{key}_rank0_task_time_over_others"] < 10
        for key in ("weak_bound", "weak_bound_poll0.005"):
            ratio = table[2][f"{key}_over_ceiling"]
            assert ratio == pytest.approx(table[2][f"{key}_efficiency"]
                                          / table[2]["ceiling_efficiency"], rel=1e-3)
    # the stdout summary is the same tables
    assert json.loads(proc.stdout) == {s: r["table"] for s, r in d["results"].items()}


def test_bad_options_name_the_option_and_what_is_allowed(tmp_path):
    proc = scaling(tmp_path, "--ranks", "2,4")
    assert proc.returncode != 0 and "--ranks '2,4'" in proc.stderr and "must include 1" in proc.stderr
    proc = scaling(tmp_path, "--stages", "prepare,trian")
    assert proc.returncode != 0 and "--stages 'prepare,trian'" in proc.stderr
    assert "prepare, propensity" in proc.stderr
    proc = scaling(tmp_path, "--ranks", "1,x")
    assert proc.returncode != 0 and "comma-separated integers" in proc.stderr
    proc = scaling(tmp_path, "--nodes", "2", "--ranks", "1,2,3")
    assert proc.returncode != 0 and ("--ranks 1,2,3 with --nodes 2: 3 cannot be spread evenly "
                                     "over 2 nodes") in proc.stderr
    proc = scaling(tmp_path, "--nodes", "0")
    assert proc.returncode != 0 and "--nodes 0: must be >= 1" in proc.stderr


def test_nodes_spread_every_rank_count_but_the_baseline(monkeypatch):
    """The launcher words of --nodes 2: srun -N/--ntasks-per-node, hydra -ppn; the 1-rank
    baseline on one node. (Run across the namespace cluster: README, "Across nodes".)"""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scaling as sc

    monkeypatch.setenv("MPIEXEC", "srun --mpi=pmi2")
    assert sc.launcher(False, 1, 2) == ["srun", "--mpi=pmi2", "-N", "1", "--ntasks-per-node=1"]
    assert sc.launcher(True, 4, 2) == ["srun", "--mpi=pmi2", "-N", "2", "--ntasks-per-node=2",
                                       "--cpu-bind=cores"]
    assert sc.launcher(False, 4, 1) == ["srun", "--mpi=pmi2"]
    monkeypatch.setenv("MPIEXEC", "mpiexec -f hosts")
    assert sc.launcher(True, 4, 2) == ["mpiexec", "-f", "hosts", "-ppn", "2", "-bind-to", "core"]


def test_dispatcher_poll_knob(monkeypatch):
    from glasscam_mpi.parallel import TaskFarm, dispatcher_poll

    monkeypatch.delenv("GLASSCAM_FARM_POLL", raising=False)
    assert dispatcher_poll() == 0.05 and TaskFarm(None, [0]).poll == 0.05
    monkeypatch.setenv("GLASSCAM_FARM_POLL", "0.02")
    assert TaskFarm(None, [0]).poll == 0.02 and TaskFarm(None, [0], poll=0.01).poll == 0.01
    for bad in ("abc", "0", "5"):
        monkeypatch.setenv("GLASSCAM_FARM_POLL", bad)
        with pytest.raises(ValueError, match=f"GLASSCAM_FARM_POLL = '{bad}': allowed"):
            dispatcher_poll()


def test_dispatcher_backs_off_while_idle_and_not_past_its_limit():
    from glasscam_mpi.parallel import POLL_MIN, backoff

    waits = [POLL_MIN]
    for _ in range(10):
        waits.append(backoff(waits[-1], 0.05))
    assert waits[:4] == [0.002, 0.004, 0.008, 0.016]
    assert max(waits) == 0.05 and waits[-1] == 0.05
    assert backoff(POLL_MIN, 0.0001) == POLL_MIN  # a limit below the floor keeps the floor


def test_dispatcher_limit_follows_the_task_length():
    from glasscam_mpi.parallel import POLL_MIN, TASK_SHARE, backoff, poll_limit

    assert poll_limit(0.05, None) == 0.05               # no task finished yet: the poll
    assert poll_limit(0.05, 10.0) == 0.05               # long tasks: the poll
    assert poll_limit(0.05, 0.9) == pytest.approx(TASK_SHARE * 0.9)  # short: 1 % of one
    assert poll_limit(0.05, 1e-4) == POLL_MIN           # never below the floor
    # a dispatcher that had backed off to 50 ms comes down to the new limit at once
    assert backoff(0.05, poll_limit(0.05, 0.9)) == pytest.approx(0.009)
