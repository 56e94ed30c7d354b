"""Run under mpiexec -n 2k... with ranks_per_task K: the engine's grouped farm
(FarmStage.run_tasks with ranks_per_task > 1). Every task runs exactly once, on every rank
of one group together; a failure raised on ONE rank of a group fails the task for the
whole group (recorded by the leader, no data); only leaders write shards; on an
oversubscribed machine the ranks of a group run on different cores, and get their own
affinity back afterwards. Prints one JSON line on rank 0.  Usage: groups_check.py SHARD_DIR K N_TASKS"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

from glasscam_mpi.stages.declare import About, Flow, Output, Tasks
from glasscam_mpi.stages.engine import FarmStage, TaskFailed
from glasscam_mpi.store import ShardStore

comm = MPI.COMM_WORLD
shard_dir, k, n_tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ran = []
before = sorted(os.sched_getaffinity(0))
during = set()


def compute(i, group):
    ran.append(i)
    during.add(tuple(sorted(os.sched_getaffinity(0))))
    # the group's ranks meet inside the task, as LAMMPS's collectives make them do
    members = group.allgather(comm.rank)
    if i % 5 == 3 and group.rank == group.size - 1:  # fails on the group's last rank only
        raise TaskFailed(f"task {i} failed on world rank {comm.rank}")
    return {"members": np.array(members, dtype=np.int64)}


stage = FarmStage("groups", About("", ""), Flow(), Tasks("tasks", plan=None), Output(rows=None))
store = ShardStore(shard_dir)
outcomes = stage.run_tasks(comm, list(range(n_tasks)), compute, store, "groups", 0.0,
                           ranks_per_task=k)
per_rank = comm.gather(sorted(ran), root=0)
# the CPUs each rank ran its tasks on, and whether it got its own affinity back afterwards
cpus = comm.gather([list(c) for c in sorted(during)], root=0)
restored = comm.gather(sorted(os.sched_getaffinity(0)) == before, root=0)
if comm.rank == 0:
    found = store.scan()
    members = {i: store.read(i, True)["members"].tolist() for i, ok in found.items() if ok}
    errors = {i: str(store.read(i, False)["error"]) for i, ok in found.items() if not ok}
    print(json.dumps({"per_rank": per_rank, "members": members, "errors": errors,
                      "cpus": cpus, "restored": restored, "n_cpus": len(before),
                      "outcomes": [[o.index, o.ok, o.message] for o in outcomes]}))
