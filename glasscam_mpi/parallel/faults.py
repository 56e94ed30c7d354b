"""Faults: what an unexpected exception does, and the faults the tests inject.

An unexpected exception on any rank prints its traceback with rank and host and calls
``MPI.COMM_WORLD.Abort``: the job ends instead of hanging (:func:`abort_on_error`, and
:func:`guarded` for threads such as the task farm's dispatcher). :func:`injected` reads
the task indices that the tests make fail (``GLASSCAM_INJECT_FAULT``) or crash
(``GLASSCAM_INJECT_CRASH``) to drive the real failure paths.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
from collections.abc import Callable

from glasscam_mpi.parallel.comm import world


def injected(variable: str, stage: str) -> set[int]:
    """Task indices named for ``stage`` in an environment variable such as
    ``GLASSCAM_INJECT_FAULT=prepare:3,5``. The tests use it to drive the real failure paths:
    FAULT makes LAMMPS itself fail mid-run (two atoms put on one spot), CRASH raises an
    unexpected exception in the task (a bug), which must abort the whole job.
    """
    import os

    spec = os.environ.get(variable, "")
    name, _, ids = spec.partition(":")
    return {int(i) for i in ids.split(",") if i.strip()} if name == stage else set()


def abort_on_error(exc: BaseException) -> None:
    """Print the traceback with rank and host, then end every rank of the job."""
    comm = world()
    head = f"glasscam: rank {comm.Get_rank()} of {comm.Get_size()} on {socket.gethostname()}"
    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(f"{head}: unexpected error, aborting all ranks\n{text}")
    sys.stderr.flush()
    if comm.Get_size() > 1:
        # let the launcher forward this message before MPI_Abort makes it kill the ranks
        # (mpiexec/hydra drops output still in flight: seen as an empty stderr)
        time.sleep(0.5)
        comm.Abort(1)
    raise SystemExit(1)


def guarded(fn: Callable) -> Callable:
    """Wrap ``fn`` so an exception in it (e.g. in a thread) aborts the whole job."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - any escape must end the job
            abort_on_error(exc)
    return wrapper
