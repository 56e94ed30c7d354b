"""Shards, the stage-file writer (serial path), and the per-task seed scheme."""
import h5py
import numpy as np
import pytest
from mpi4py import MPI

from glasscam_mpi.parallel import lammps_seeds, task_rng
from glasscam_mpi.store import RowSpec, ShardStore, write_stage_file


def test_shards_are_atomic_and_carry_their_status(tmp_path):
    store = ShardStore(tmp_path / "s")
    assert store.scan() == {}
    store.write(3, {"x": np.arange(4.0)})
    store.write(12, error="LAMMPS: Lost atoms")
    (tmp_path / "s" / "0000005.tmp.999.npz").write_bytes(b"half a file")  # a killed writer
    assert store.scan() == {3: True, 12: False}
    assert store.clean_partial() == 1 and store.scan() == {3: True, 12: False}
    np.testing.assert_array_equal(store.read(3, True)["x"], np.arange(4.0))
    assert str(store.read(12, False)["error"]) == "LAMMPS: Lost atoms"
    store.write(12, {"x": np.ones(4)})  # a retried task replaces its failure
    assert store.scan() == {3: True, 12: True}


def test_stage_file_rows_fill_and_rename(tmp_path):
    data = {0: (True, "", {"x": np.array([1.0, 2.0])}), 1: (False, "boom", {}),
            2: (True, "", {"x": np.array([5.0, 6.0])})}
    path = write_stage_file(tmp_path / "s.h5", MPI.COMM_SELF, n_tasks=3, attrs={"stage": "t"},
                            rows={"x": RowSpec((2,), "f8")}, row_data=data.__getitem__,
                            globals_={"box": np.array([3.0, 3.0])})
    assert not (tmp_path / "s.h5.partial").exists()
    with h5py.File(path) as fh:
        assert list(fh["status"][:]) == [1, 2, 1] and fh["error"][1] == b"boom"
        assert np.isnan(fh["x"][1]).all() and fh["x"][2].tolist() == [5.0, 6.0]
        assert fh.attrs["stage"] == "t" and fh.attrs["schema_version"] == 1


def test_task_streams_depend_on_the_task_only():
    a = task_rng(7, "prepare", "KAM", 3).integers(0, 2**62, 4)
    assert np.array_equal(a, task_rng(7, "prepare", "KAM", 3).integers(0, 2**62, 4))
    for other in (task_rng(7, "prepare", "KAM", 4), task_rng(8, "prepare", "KAM", 3),
                  task_rng(7, "prepare", "ABM", 3), task_rng(7, "propensity", "KAM", 3)):
        assert not np.array_equal(a, other.integers(0, 2**62, 4))
    seeds = lammps_seeds(task_rng(1, "x"), 1000)
    assert min(seeds) >= 1 and max(seeds) < 900_000_000 and len(set(seeds)) > 990
