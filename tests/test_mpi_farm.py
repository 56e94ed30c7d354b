"""The task farm under real mpiexec with 1, 2 and 3 ranks."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, mpiexec

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [1, 2, 3])
def test_each_task_once_and_every_rank_works(n):
    out = subprocess.run([*mpiexec(n), sys.executable, str(ROOT / "tests/mpi_scripts/farm_check.py"),
                          "40"], capture_output=True, text=True, timeout=120, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    everything = sorted(i for ranks in res["per_rank"] for i in ranks)
    assert everything == list(range(0, 80, 2))           # each task exactly once
    assert all(len(r) > 0 for r in res["per_rank"])       # rank 0 computes too
    assert [i for i, _ in res["outcomes"]] == everything  # rank 0 heard of every outcome
    assert res["progress_done"] == 40 and res["progress_failed"] == 8
    assert "[farm] 40/40 tasks (100%) | 8 failed" in out.stderr


# --- where the ranks of a task group run (ranks_per_task > 1): a pure function, no MPI ---

def test_spread_groups_pins_an_oversubscribed_unbound_node_round_robin():
    from glasscam_mpi.parallel import spread_groups

    all2 = (0, 1)
    pins, note = spread_groups([("n", all2)] * 4, 2)
    assert pins == [0, 1, 0, 1]  # groups (0, 1) and (2, 3): each on both cores
    assert "4 ranks on 2 CPU(s), unbound; pinned round-robin" in note
    assert "mpiexec -bind-to core" in note and "srun --cpu-bind=cores" in note
    # a group larger than the cores cannot be spread: pinned anyway, and said
    pins, note = spread_groups([("n", all2)] * 3, 3)
    assert pins == [0, 1, 0] and "impossible for 3 > 2 cores" in note


def test_spread_groups_leaves_alone_what_is_not_oversubscribed_or_already_bound():
    from glasscam_mpi.parallel import spread_groups

    # enough cores: the scheduler spreads them
    assert spread_groups([("n", tuple(range(8)))] * 4, 2) == ([None] * 4, "")
    # two nodes of 2 cores, 2 ranks each: not oversubscribed
    assert spread_groups([("a", (0, 1))] * 2 + [("b", (0, 1))] * 2, 2) == ([None] * 4, "")
    # bound by the launcher with the groups across the cores (-bind-to core): fine
    assert spread_groups([("n", (0,)), ("n", (1,)), ("n", (0,)), ("n", (1,))], 2) == \
        ([None] * 4, "")
    # bound with a group on one core: left as bound, but the user is told which ranks
    pins, note = spread_groups([("n", (0,)), ("n", (0,)), ("n", (1,)), ("n", (1,))], 2)
    assert pins == [None] * 4
    assert "ranks 0, 1, 2, 3 are bound to a core that another rank of their task group" in note
    # no affinity known (not Linux): nothing is done
    assert spread_groups([("n", None)] * 4, 2) == ([None] * 4, "")
