"""``glasscam ARGS`` with paced tasks, for kill-and-resume tests (run under mpiexec).

Every task of a stage's task farm except task 0 starts ``GLASSCAM_TEST_PACE`` seconds late,
so a test can SIGKILL the job at a known point -- task 0's result on disk, the others
not yet done, no stage file -- however fast the tasks of a tiny run directory are.
Nothing else changes: the real CLI, stage code, MPI launcher, LAMMPS, HDF5.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's package

from glasscam_mpi import parallel  # noqa: E402
from glasscam_mpi.cli import main  # noqa: E402

_run = parallel.TaskFarm.run
PACE = float(os.environ.get("GLASSCAM_TEST_PACE", "0"))


def _paced_run(self, fn):
    def paced(index):
        if index != 0:
            time.sleep(PACE)
        return fn(index)

    return _run(self, paced)


parallel.TaskFarm.run = _paced_run

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
