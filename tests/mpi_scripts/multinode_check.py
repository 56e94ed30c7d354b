"""Run under mpiexec/srun across hosts; prints one JSON line on rank 0.

    multinode_check.py nodeshared     NodeShared: per rank, its host, the shared-memory
                                      segment its array lives in (device and inode of the
                                      mapping in /proc/self/maps), and whether the array it
                                      reads holds exactly its own node's rows
    multinode_check.py groups K       TaskGroups(COMM_WORLD, K): per group, the hosts of its
                                      ranks (gathered inside the group, as a task's LAMMPS
                                      would meet there), and the farm's leader ranks
"""
import json
import sys
import zlib

import numpy as np
from mpi4py import MPI

from glasscam_mpi.parallel import NodeShared, TaskGroups

comm = MPI.COMM_WORLD
host = MPI.Get_processor_name()


def segment_of(address: int) -> list:
    """(device, inode, path) of the mapping that holds ``address`` in this process."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return [parts[3], int(parts[4]), parts[5].strip() if len(parts) > 5 else ""]
    return ["", 0, ""]


def nodeshared() -> None:
    rows, cols = 64, 8
    mark = float(zlib.crc32(host.encode()) % 65521)   # a value that names this node

    def make(lo, hi):
        return mark + np.arange(lo, hi, dtype=np.float32)[:, None] * np.ones(cols, np.float32)

    ns = NodeShared(comm, (rows, cols))
    arr = ns.fill(make)
    mine = bool(np.array_equal(arr, make(0, rows)))   # every row this node's, none another's
    seg = segment_of(arr.ctypes.data)
    out = comm.gather({"rank": comm.rank, "host": host, "shared": ns.shared,
                       "node_size": ns.node.Get_size(), "own_rows_only": mine,
                       "segment": seg}, root=0)
    ns.free()
    if comm.rank == 0:
        print(json.dumps(out))


def groups(k: int) -> None:
    g = TaskGroups(comm, k)
    members = g.group.allgather((comm.rank, host))
    leaders = g.leaders.allgather(comm.rank) if g.leaders is not None else None
    out = comm.gather({"rank": comm.rank, "host": host, "group": members,
                       "leaders": leaders}, root=0)
    g.free()
    if comm.rank == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    {"nodeshared": lambda: nodeshared(), "groups": lambda: groups(int(sys.argv[2]))}[sys.argv[1]]()
