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
