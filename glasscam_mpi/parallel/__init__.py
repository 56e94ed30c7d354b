"""Everything that knows about MPI ranks: seeds, the task farm, groups, node memory, faults.

* :mod:`~glasscam_mpi.parallel.seeds`: the random stream of a task, never of a rank;
* :mod:`~glasscam_mpi.parallel.farm`: the task farm (dynamic load balancing, progress) and
  its dispatcher's poll tuning;
* :mod:`~glasscam_mpi.parallel.groups`: ranks_per_task groups, their placement on hosts
  and cores, and where every rank runs;
* :mod:`~glasscam_mpi.parallel.shared`: one array per node in MPI shared memory;
* :mod:`~glasscam_mpi.parallel.faults`: abort on an unexpected error, injected faults;
* :mod:`~glasscam_mpi.parallel.comm`: the world communicator, steps run once on rank 0.

The names below are this package's public face (``from glasscam_mpi.parallel import ...``).
"""

from glasscam_mpi.parallel.comm import bcast_from_root, root_only_output, world
from glasscam_mpi.parallel.farm import (POLL_MAX, POLL_MIN, TASK_SHARE, Outcome, Progress,
                                        TaskFarm, backoff, dispatcher_poll, poll_limit)
from glasscam_mpi.parallel.faults import abort_on_error, guarded, injected
from glasscam_mpi.parallel.groups import TaskGroups, host_groups, placement, spread_groups
from glasscam_mpi.parallel.seeds import lammps_seeds, task_rng
from glasscam_mpi.parallel.shared import NodeShared, proportional_set_size

__all__ = [
    "NodeShared", "Outcome", "POLL_MAX", "POLL_MIN", "Progress", "TASK_SHARE", "TaskFarm",
    "TaskGroups", "abort_on_error", "backoff", "bcast_from_root", "dispatcher_poll",
    "guarded", "host_groups", "injected", "lammps_seeds", "placement", "poll_limit",
    "proportional_set_size", "root_only_output", "spread_groups", "task_rng", "world",
]
