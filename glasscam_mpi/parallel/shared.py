"""Node memory: one array per node in MPI shared memory, and what a rank's memory costs.

:class:`NodeShared` holds the training grids once per node (``MPI.Win.Allocate_shared``
on ``Split_type(COMM_TYPE_SHARED)``); :func:`proportional_set_size` measures a rank's
share of the node's memory.
"""

from __future__ import annotations

import numpy as np


class NodeShared:
    """One float32 array per node in MPI shared memory (``MPI.Win.Allocate_shared``).

    The ranks of a node each fill a block of rows and then all read the whole array: the
    training grids are held once per node instead of once per rank, and gridded in parallel.
    Where the MPI cannot allocate a shared window (e.g. a tiny /dev/shm), every rank holds a
    private copy instead (``shared`` is then False), as with ``share=False``. Call
    :meth:`free` when done.
    """

    def __init__(self, comm, shape: tuple[int, ...], share: bool = True):
        from mpi4py import MPI

        self.node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(self.shape)) * 4
        self.win = None
        if not share:
            self.array = np.empty(self.shape, dtype=np.float32)
        else:
            self._allocate(MPI, nbytes)
        self.shared = self.win is not None

    def _allocate(self, MPI, nbytes: int) -> None:
        try:
            win = MPI.Win.Allocate_shared(nbytes if self.node.Get_rank() == 0 else 0, 4,
                                          comm=self.node)
            buf, _ = win.Shared_query(0)
            self.array = np.ndarray(buffer=buf, dtype=np.float32, shape=self.shape)
            self.win = win
        except MPI.Exception as exc:  # pragma: no cover - depends on the machine
            print(f"glasscam: no MPI shared memory ({exc}); each rank keeps its own copy",
                  flush=True)
            self.array = np.empty(self.shape, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def fill(self, make_rows, chunk: int = 256) -> np.ndarray:
        """``make_rows(lo, hi)`` -> rows lo..hi-1, called in chunks; each rank of the node
        makes one block (every rank makes all rows where memory is not shared). Returns
        the filled array."""
        n = self.shape[0]
        lo, hi = 0, n
        if self.shared:
            k, size = self.node.Get_rank(), self.node.Get_size()
            lo, hi = n * k // size, n * (k + 1) // size
            self.win.Fence()
        for a in range(lo, hi, chunk):
            b = min(a + chunk, hi)
            self.array[a:b] = make_rows(a, b)
        if self.shared:
            self.win.Fence()
        return self.array

    def free(self) -> None:
        self.array = None
        if self.win is not None:
            self.win.Free()
            self.win = None
        self.node.Free()


def proportional_set_size() -> float:
    """This process's proportional set size in MiB (shared pages split among the processes
    that map them; summed over a node's ranks it is the node's memory), NaN off Linux."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
