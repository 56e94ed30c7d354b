"""Stopping a stage cleanly before a Slurm time limit.

A job script asks Slurm for a warning signal some seconds before its limit
(``#SBATCH --signal=USR1@<signal_lead>``, the profile's ``signal_lead``). Without ``B:``,
Slurm sends it to the job *steps*, i.e. to every rank that ``srun`` started. On that
signal a task farm stops handing out new tasks; the tasks in flight finish and write their
shards (atomically: a task is done exactly when its shard exists), and the stage exits with
:data:`EXIT_NOT_FINISHED` (75, ``EX_TEMPFAIL``) instead of writing its stage file. The job
script then submits the same script again (``glasscam resubmit``), which resumes from the
shards, and moves the jobs that waited for this one (``afterok``) onto the continuation.

How the signal is caught. Python runs a signal handler only in the main thread, and only
between bytecodes: during a long LAMMPS run on rank 0 the handler would wait for the task
to end, while the dispatcher thread kept handing tasks to the other ranks. So
:func:`install` blocks SIGUSR1 in the main thread *before* MPI, torch or LAMMPS start any
thread (threads inherit the mask) and a small thread waits for it with ``sigwait``: the
stop flag is set at once, whatever the main thread is doing. Only rank 0's flag matters
(its dispatcher hands out the tasks); the other ranks just get no new task.
"""

from __future__ import annotations

import signal
import sys
import threading

EXIT_NOT_FINISHED = 75  # EX_TEMPFAIL (sysexits.h): "try again later"
SIGNAL = signal.SIGUSR1

_stop = threading.Event()
_installed = False


class NotFinished(RuntimeError):
    """A stage stopped on the walltime warning with tasks left; its shards are kept."""


def install() -> None:
    """Catch the walltime warning (SIGUSR1) from now on, in a thread of its own.

    Call before anything starts threads (mpi4py, torch, LAMMPS): threads created later
    inherit the blocked mask, so the signal reaches only :func:`_wait`."""
    global _installed
    if _installed:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIGNAL})
    threading.Thread(target=_wait, daemon=True, name="walltime-signal").start()
    _installed = True


def _wait() -> None:
    while True:
        signal.sigwait({SIGNAL})
        if not _stop.is_set():
            sys.stderr.write("glasscam: walltime warning (SIGUSR1): no new tasks will start; "
                             "tasks in flight finish, then the stage exits with status "
                             f"{EXIT_NOT_FINISHED} (not finished)\n")
            sys.stderr.flush()
        _stop.set()


def stopping() -> bool:
    """Whether the walltime warning has arrived (in this process)."""
    return _stop.is_set()
