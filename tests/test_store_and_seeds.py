"""Shards, the stage-file writer (serial path), and the per-task seed scheme."""
import h5py
import numpy as np
import pytest
from mpi4py import MPI

from glasscam_mpi.parallel import lammps_seeds, task_rng
from glasscam_mpi.store import (SCHEMA_VERSION, RowSpec, ShardStore, check_schema, stage_dataset,
                                write_stage_file)


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
        assert fh.attrs["stage"] == "t" and fh.attrs["schema_version"] == SCHEMA_VERSION == 3


def test_task_streams_depend_on_the_task_only():
    a = task_rng(7, "prepare", "KAM", 3).integers(0, 2**62, 4)
    assert np.array_equal(a, task_rng(7, "prepare", "KAM", 3).integers(0, 2**62, 4))
    for other in (task_rng(7, "prepare", "KAM", 4), task_rng(8, "prepare", "KAM", 3),
                  task_rng(7, "prepare", "ABM", 3), task_rng(7, "propensity", "KAM", 3)):
        assert not np.array_equal(a, other.integers(0, 2**62, 4))
    seeds = lammps_seeds(task_rng(1, "x"), 1000)
    assert min(seeds) >= 1 and max(seeds) < 900_000_000 and len(set(seeds)) > 990


# -- one schema rule for every stage file (issue 18, defect 8) ---------------------------------
def _old_propensity(path, n_c=2, n_T=2, n_s=3, min_replicas=2):
    status = np.ones(n_c * n_T * n_s, np.int8)
    status[[1, 2, 4]] = 2                       # ensemble (0, 0): 1 ok, (0, 1): 2 ok
    with h5py.File(path, "w") as fh:
        fh.attrs.update(stage="propensity", schema_version=1, min_replicas=min_replicas)
        fh["status"] = status
        fh["configs"] = np.arange(n_c)
        fh["temperatures"] = np.linspace(0.4, 0.5, n_T)
    return status


def test_an_older_file_is_read_where_the_dataset_can_be_derived(tmp_path):
    """propensity.h5 from before n_ok_replicas / reportable: both derived from status."""
    _old_propensity(tmp_path / "propensity.h5")
    with h5py.File(tmp_path / "propensity.h5", "r") as fh:
        assert check_schema(fh, "propensity") == 1
        np.testing.assert_array_equal(stage_dataset(fh, "propensity", "n_ok_replicas"),
                                      [[1, 2], [3, 3]])
        np.testing.assert_array_equal(stage_dataset(fh, "propensity", "reportable"),
                                      [[0, 1], [1, 1]])
        assert stage_dataset(fh, "propensity", "stopped_after", default=None) is None


def test_an_older_file_without_a_needed_dataset_is_refused_saying_what_to_rerun(tmp_path):
    from glasscam_mpi.config import ConfigError

    _old_propensity(tmp_path / "propensity.h5")
    with h5py.File(tmp_path / "propensity.h5", "r") as fh:
        with pytest.raises(ConfigError, match=r"schema version 1.*lacks the dataset "
                                              r"'propensity_at_delta'.*rerun 'glasscam "
                                              r"propensity --run-dir"):
            stage_dataset(fh, "propensity", "propensity_at_delta")


def test_a_newer_or_foreign_file_is_refused(tmp_path):
    from glasscam_mpi.config import ConfigError
    from glasscam_mpi.rundir import RunDir

    path = tmp_path / "propensity.h5"
    _old_propensity(path)
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ConfigError, match=r"newer than this glasscam_mpi .*upgrade"):
        RunDir(tmp_path).require("propensity")   # every reader comes through here
    with h5py.File(path, "a") as fh:
        fh.attrs["schema_version"] = 1
        fh.attrs["stage"] = "indicators"
    with pytest.raises(ConfigError, match="file of stage 'indicators', not 'propensity'"):
        RunDir(tmp_path).require("propensity")
