"""The engine (glasscam_mpi/stages/engine.py, rounds.py) without MPI jobs: the blocks a
farm hands out, how the inputs a stage declares are checked before its plan, and where
rounds keep their state. The engine under mpiexec is tested with the stages (test_mpi_*:
prepare, gradcam's blocks, propensity's rounds; test_walltime: the walltime stop)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from glasscam_mpi.config import ConfigError
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import Flow, Input
from glasscam_mpi.stages.engine import open_inputs
from glasscam_mpi.stages.rounds import RoundFiles
from glasscam_mpi.store import RowSpec, write_stage_file


def test_blocks_follow_the_task_index_not_the_ranks():
    from glasscam_mpi.stages.engine import task_blocks

    assert task_blocks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    # a rerun: what is left of each block, never regrouped across blocks
    assert task_blocks([1, 2, 3, 7, 8], 3) == [[1, 2], [3], [7, 8]]
    assert task_blocks([4, 0], 2) == [[4], [0]]
    assert task_blocks([], 4) == []


def _prepare_file(rd: RunDir, status, split) -> None:
    from mpi4py import MPI

    with warnings.catch_warnings():  # a synthetic prepare.h5: its row 'x' has no dims
        warnings.filterwarnings("ignore", message=".*axes without a declared name")
        write_stage_file(rd.stage_file("prepare"), MPI.COMM_SELF, n_tasks=len(status),
                         attrs={"stage": "prepare"}, rows={"x": RowSpec((), "f8")},
                         row_data=lambda i: (bool(status[i]), "" if status[i] else "lost atoms",
                                             {"x": float(i)}),
                         globals_={"split": np.array(split, dtype=np.int8)})


def test_inputs_give_the_ok_test_runs_and_refuse_none(tmp_path):
    rd = RunDir(tmp_path)
    flow = Flow(needs=("prepare",), inputs=(Input("prepare", ok_test_runs=True),
                                            Input("gradcam", optional=True)))
    with pytest.raises(ConfigError, match="has no prepare.h5: run 'glasscam prepare' first"):
        with open_inputs(rd, "indicators", flow):
            pass
    _prepare_file(rd, [1, 1, 1, 0], [0, 2, 1, 2])  # test runs 1 and 3; run 3 failed
    with open_inputs(rd, "indicators", flow) as inputs:
        assert inputs.ok_test_runs.tolist() == [1] and inputs.ok_test_runs.dtype == np.int64
        assert set(inputs.files) == {"prepare"}  # gradcam is optional and absent
    _prepare_file(rd, [1, 1, 1, 0], [0, 0, 1, 2])
    with pytest.raises(ConfigError, match="has no ok test runs: nothing for indicators to do"):
        with open_inputs(rd, "indicators", flow):
            pass


def test_a_damaged_input_is_one_clear_error(tmp_path):
    rd = RunDir(tmp_path)
    rd.stage_file("prepare").write_bytes(b"not hdf5")
    flow = Flow(needs=("prepare",), inputs=(Input("prepare"),))
    with pytest.raises(ConfigError, match="prepare.h5 is damaged .*rerun 'glasscam prepare"):
        with open_inputs(rd, "analyze", flow):
            pass


def test_round_files_carry_state_from_one_segment_to_the_next(tmp_path):
    files = RoundFiles(RunDir(tmp_path), "propensity")
    first, middle, last = (files.carry(5, r, 3) for r in range(3))
    assert first.load is None and first.save == files.state(5, 0)
    assert middle.load == files.state(5, 0) and middle.save == files.state(5, 1)
    assert last.load == files.state(5, 1) and last.save is None
    assert files.state(5, 0).parent.is_dir() and files.shards(2).root.name == "r2"
    files.remove()
    assert not files.root.exists()
