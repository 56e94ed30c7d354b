"""``ranks_per_task`` under real mpiexec: LAMMPS tasks run by groups of 2 ranks (a split
communicator, LAMMPS's own domain decomposition), on 4 ranks (oversubscribed on a small
machine: fine for correctness).

What is compared with what:
* the same k = 2 on 2 and on 4 ranks: bit-identical stage files (a task always runs on a
  2-rank group with the same decomposition; seeds come from the task);
* k = 2 against k = 1: not bit-identical, and it cannot be: the decomposition changes the
  order forces are summed in, and the chaotic dynamics amplify the last-bit difference.
  Compared instead are what does not depend on it (seeds, split, species by atom id: LAMMPS
  places random atoms independently of the processor count), replica trajectories over
  short times (same start, same velocities: they agree to float32 rounding over the first
  ~500 steps), and the glass energy of the cooling runs as a statistic (its mean over the
  runs, within 4 standard errors of the difference of two means).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import (ROOT, TINY_TOML, assert_same_data, copy_prepared, glasscam, mpiexec,
                      read_stage)
from test_mpi_indicators_propensity import PROPENSITY_TOML as PROPENSITY_1_ROUND

pytestmark = pytest.mark.mpi

K2 = "ranks_per_task = 2\n"
# the propensity tests' ensembles, in 2 rounds (a restart file between them)
PROPENSITY_TOML = PROPENSITY_1_ROUND + "rounds = 2\n"


def _config(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _prepare(cfg, run_dir, n, **kw):
    return glasscam(["prepare", "--config", str(cfg), "--run-dir", str(run_dir)], n=n, **kw)


@pytest.fixture(scope="module")
def k2_prepared(tmp_path_factory):
    """prepare with [prepare].ranks_per_task = 2 under mpiexec -n 4 (two groups)."""
    base = tmp_path_factory.mktemp("k2")
    cfg = _config(base, "k2.toml", TINY_TOML + K2)
    res = _prepare(cfg, base / "run", 4)
    return base, cfg, res


def test_groups_give_the_same_dataset_on_2_and_4_ranks(k2_prepared, tiny_prepared):
    base, cfg, res = k2_prepared
    assert "on 4 rank(s) in groups of 2 per run" in res.stdout
    ref = read_stage(base / "run" / "prepare.h5")
    _prepare(cfg, base / "n2", 2)  # one group
    assert_same_data(ref, read_stage(base / "n2" / "prepare.h5"))
    assert np.all(ref["status"] == 1)
    # against one rank per task (tiny_prepared: same config, k = 1): what is independent
    # of the decomposition is identical ...
    k1 = read_stage(tiny_prepared / "prepare.h5")
    for name in ("seeds", "split", "types", "T_target", "step", "box"):
        np.testing.assert_array_equal(ref[name], k1[name], err_msg=name)
    # ... the trajectories are not (evidence that LAMMPS really ran decomposed) ...
    assert not np.array_equal(ref["glass"], k1["glass"])
    # ... and the glass energy agrees as a statistic: mean over the 6 runs, within 4
    # standard errors of a difference of two 6-run means
    U2, U1 = ref["pe"][:, -1], k1["pe"][:, -1]
    se = np.sqrt((U1.var(ddof=1) + U2.var(ddof=1)) / len(U1))
    assert abs(U2.mean() - U1.mean()) < 4 * se, (U1, U2)


def test_failure_on_one_rank_of_a_group_fails_the_task_for_the_group(tmp_path):
    out = subprocess.run([*mpiexec(4), sys.executable,
                          str(ROOT / "tests/mpi_scripts/groups_check.py"), str(tmp_path / "s"),
                          "2", "12"], capture_output=True, text=True, timeout=120, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    per_rank = res["per_rank"]
    assert per_rank[0] == per_rank[1] and per_rank[2] == per_rank[3]  # groups run together
    assert sorted(per_rank[0] + per_rank[2]) == list(range(12))       # each task once
    assert per_rank[0] and per_rank[2]                               # both groups work
    assert {int(i) for i in res["members"]} == set(range(12)) - {3, 8}
    assert all(m in ([0, 1], [2, 3]) for m in res["members"].values())
    assert sorted(int(i) for i in res["errors"]) == [3, 8]
    for i, message in res["errors"].items():  # the failing rank is the group's second
        assert message.startswith(f"task {i} failed on world rank ") and message[-1] in "13"
    assert [[i, ok] for i, ok, _ in res["outcomes"]] == [[i, i not in (3, 8)] for i in range(12)]
    # where the ranks ran: on a machine with fewer cores than 4 (CI has 2), unbound ranks
    # are pinned round-robin, so the two ranks of a group never share a core (MPICH
    # busy-waits: sharing one turns seconds into minutes); with enough cores, untouched
    cpus, n_cpus = res["cpus"], res["n_cpus"]
    if n_cpus < 4:
        assert all(len(c) == 1 and len(c[0]) == 1 for c in cpus), cpus
        assert cpus[0] != cpus[1] and cpus[2] != cpus[3], cpus
    else:
        assert all(c == [list(range(n_cpus))] or len(c[0]) > 1 for c in cpus), cpus
    assert all(res["restored"])


def test_failed_lammps_run_in_a_group_is_recorded_not_stored(tmp_path, k2_prepared):
    base, cfg, _ = k2_prepared
    run_dir = tmp_path / "faulty"
    res = _prepare(cfg, run_dir, 4, env={"GLASSCAM_INJECT_FAULT": "prepare:2"})
    assert "run 2 FAILED: " in res.stdout and "1 failed" in res.stdout
    data = read_stage(run_dir / "prepare.h5")
    ref = read_stage(base / "run" / "prepare.h5")
    assert list(data["status"]) == [1, 1, 2, 1, 1, 1]
    assert data["error"][2].decode().startswith(("LAMMPS:", "non-finite"))
    assert np.all(np.isnan(data["glass"][2])) and np.all(np.isnan(data["pe"][2]))
    ok = data["status"] == 1
    np.testing.assert_array_equal(data["glass"][ok], ref["glass"][ok])


def test_exception_on_one_rank_of_a_group_ends_the_whole_job(tmp_path):
    cfg = _config(tmp_path, "k2.toml", TINY_TOML + K2)
    res = _prepare(cfg, tmp_path / "crash", 4, check=False, timeout=120,
                   env={"GLASSCAM_INJECT_CRASH": "prepare:4"})
    assert res.returncode != 0
    assert "injected crash in prepare task 4" in res.stderr
    assert "aborting all ranks" in res.stderr
    assert not (tmp_path / "crash" / "prepare.h5").exists()


def test_rank_count_not_a_multiple_is_one_clear_message(tmp_path):
    cfg = _config(tmp_path, "k2.toml", TINY_TOML + K2)
    res = _prepare(cfg, tmp_path / "x", 3, check=False)
    assert res.returncode == 2
    assert res.stderr.count("[prepare].ranks_per_task = 2: this job has 3 MPI rank(s), not a "
                            "multiple of 2; allowed: a divisor of 3") == 1
    res = glasscam(["prepare", "--config", str(cfg), "--run-dir", str(tmp_path / "y"),
                    "--set", "prepare.ranks_per_task=0"], check=False)
    assert res.returncode == 2
    assert "[prepare].ranks_per_task = 0: allowed: an integer >= 1" in res.stderr


def test_propensity_groups_rank_independent_and_close_to_one_rank(tmp_path, tiny_prepared):
    cfg1 = _config(tmp_path, "p1.toml", TINY_TOML + PROPENSITY_TOML)
    cfg2 = _config(tmp_path, "p2.toml", TINY_TOML + PROPENSITY_TOML + K2)
    runs = {}
    for name, cfg, n in (("k1", cfg1, 2), ("k2n2", cfg2, 2), ("k2n4", cfg2, 4)):
        run_dir = copy_prepared(tiny_prepared, tmp_path / name)
        res = glasscam(["propensity", "--config", str(cfg), "--run-dir", str(run_dir)], n=n)
        runs[name] = read_stage(run_dir / "propensity.h5")
    assert "in groups of 2 per replica" in res.stdout
    assert_same_data(runs["k2n2"], runs["k2n4"])
    k1, k2 = runs["k1"], runs["k2n2"]
    assert np.all(k2["status"] == 1)
    # same start and the same drawn velocities (LAMMPS 'loop geom' is decomposition-free)
    np.testing.assert_allclose(k2["T0"], k1["T0"], rtol=1e-12)
    np.testing.assert_allclose(k2["momentum0"], k1["momentum0"], atol=1e-12)
    # short times (the first 6 records, up to 440 steps, across the round boundary and
    # its restart file): the same trajectory to float32 rounding
    early = k1["steps"] <= 500
    assert early.sum() >= 5
    np.testing.assert_allclose(k2["cage_displacement"][:, early], k1["cage_displacement"][:, early],
                               atol=1e-5)


def test_a_run_directory_keeps_its_ranks_per_task(tiny_prepared, tmp_path):
    # k changes the trajectories (see the module doc), so a resumed job may not change it
    run_dir = copy_prepared(tiny_prepared, tmp_path / "run")
    res = glasscam(["prepare", "--run-dir", str(run_dir), "--set", "prepare.ranks_per_task=2"],
                   check=False)
    assert res.returncode == 2 and "[prepare].ranks_per_task: 1 -> 2" in res.stderr
