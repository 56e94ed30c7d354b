"""Run under mpiexec: every task runs exactly once, every rank (rank 0 too) runs tasks,
and rank 0 hears of every outcome. Prints one JSON line on rank 0."""
import json
import sys
import time

from mpi4py import MPI

from glasscam_mpi.parallel import Outcome, Progress, TaskFarm

comm = MPI.COMM_WORLD
n_tasks = int(sys.argv[1])
todo = list(range(0, 2 * n_tasks, 2))  # task ids need not be contiguous
ran = []


def task(i):
    time.sleep(0.01 * (1 + (i * 7919) % 5))  # uneven task lengths
    ran.append(i)
    return Outcome(i, ok=(i % 10 != 4), message="" if i % 10 != 4 else f"task {i} failed")


prog = Progress("farm", len(todo), "tasks", every=0.0) if comm.rank == 0 else None
outcomes = TaskFarm(comm, todo, prog).run(task)
per_rank = comm.gather(sorted(ran), root=0)
if comm.rank == 0:
    print(json.dumps({"per_rank": per_rank, "outcomes": [[o.index, o.ok] for o in outcomes],
                      "progress_done": prog.done, "progress_failed": prog.failed}))
