"""The world communicator, and steps run once on rank 0 for every rank.

:func:`bcast_from_root` runs a set-up step (reading files, validating input) on rank 0 and
gives every rank its result or its exception, so a user error is raised identically on
every rank; :func:`root_only_output` prints reports once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def bcast_from_root(comm, compute: Callable[[], object]) -> object:
    """Run ``compute`` on rank 0 only and give every rank its result, or its exception.

    Used for steps that read the file system or validate input, so that a user error is
    raised identically on every rank (and printed once) instead of leaving ranks waiting.
    """
    payload: tuple[bool, object] | None = None
    if comm.Get_rank() == 0:
        try:
            payload = (True, compute())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            payload = (False, exc)
    ok, value = comm.bcast(payload, root=0)
    if not ok:
        raise value  # type: ignore[misc]
    return value


@contextmanager
def root_only_output(comm) -> Iterator[None]:
    """Silence stdout on ranks other than 0 (reports are printed once)."""
    if comm.Get_rank() == 0:
        yield
        return
    saved = sys.stdout
    with open("/dev/null", "w") as null:
        sys.stdout = null
        try:
            yield
        finally:
            sys.stdout = saved
