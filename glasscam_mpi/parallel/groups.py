"""Groups of ranks that run one task together, and where ranks are placed.

With ``ranks_per_task`` = k > 1 (:class:`TaskGroups`), ``COMM_WORLD`` is split into groups
of k ranks of one host where possible (:func:`host_groups`); the groups' leaders (group
rank 0) form the farm's communicator, and each leader hands the task index it gets to its
group, which runs the task together (one LAMMPS instance on the group's communicator).
Only the leader writes the result. On an oversubscribed node the groups are spread over
the cores (:func:`spread_groups`). :func:`placement` says where every rank runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from glasscam_mpi.parallel.farm import Outcome, Progress, TaskFarm


_said: set[str] = set()


def host_groups(hosts: Sequence[str], k: int) -> list[list[int]]:
    """The task groups of k ranks, given each rank's host (``hosts[r]``): the placement rule.

    Ranks are taken host by host (hosts in the order of their lowest rank, each host's
    ranks in rank order) and cut into groups of k. So a group spans hosts only where it
    cannot be avoided: when a host's rank count is not a multiple of k, its last ranks
    join the first ranks of the next host. Under block placement (``srun``'s default,
    ``mpiexec -ppn``) these are the groups of k consecutive ranks; under round-robin
    placement (``srun --distribution=cyclic``, a hydra host list of ``host:1`` entries)
    consecutive ranks alternate between hosts, and groups of consecutive ranks would put
    every LAMMPS instance across the network. A group's leader is its lowest rank; rank 0
    leads the first group.
    """
    if k < 1 or len(hosts) % k:
        raise ValueError(f"{len(hosts)} ranks cannot be split into groups of {k}")
    by_host: dict[str, list[int]] = {}
    for r, host in enumerate(hosts):
        by_host.setdefault(host, []).append(r)
    order = [r for ranks in by_host.values() for r in ranks]
    return [order[i:i + k] for i in range(0, len(order), k)]


class TaskGroups:
    """``comm`` split into groups of ``k`` ranks that each run one task at a time, the ranks
    of a group on one host wherever the placement allows it (:func:`host_groups`).

    ``group``: this rank's group communicator (size k); ``leaders``: the communicator of the
    group leaders (``None`` on the other ranks), on which the :class:`TaskFarm` runs, its
    dispatcher on ``comm``'s rank 0. Every rank of ``comm`` must create it (collective) and
    call :meth:`free` when done. ``comm``'s size must be a multiple of ``k``.

    On a node with more ranks than cores and unbound ranks (a laptop's ``mpiexec -n 4`` on
    2 cores) the main threads are pinned round-robin until :meth:`free`, so that the ranks
    of one group never share a core (:func:`spread_groups` says why and measures it).
    """

    def __init__(self, comm, k: int):
        from mpi4py import MPI

        size, rank = comm.Get_size(), comm.Get_rank()
        if k < 1 or size % k:
            raise ValueError(f"{size} ranks cannot be split into groups of {k}")
        self.k = k
        self._affinity = _cpu_affinity()
        seen = comm.allgather((MPI.Get_processor_name(), self._affinity))
        self.groups = host_groups([host for host, _ in seen], k)
        color = next(g for g, members in enumerate(self.groups) if rank in members)
        self.group = comm.Split(color, rank)
        self.leader = self.group.Get_rank() == 0
        leaders = comm.Split(0 if self.leader else MPI.UNDEFINED, rank)
        self.leaders = None if leaders == MPI.COMM_NULL else leaders
        pins, note = spread_groups(seen, k)
        if pins[rank] is not None:
            os.sched_setaffinity(0, {pins[rank]})
        if rank == 0 and note and note not in _said:  # once per job, not per round
            _said.add(note)
            print(note, file=sys.stderr, flush=True)

    def run(self, todo: Sequence[int], fn: Callable[[int], Outcome | None],
            progress: Progress | None = None,
            stop: Callable[[], bool] | None = None) -> list[Outcome]:
        """Run ``fn(index)`` on every rank of a group for each task of ``todo`` (each task
        by one group). ``fn`` returns its Outcome on the leader (what it returns elsewhere
        is ignored). Returns the sorted outcomes on ``comm``'s rank 0, [] elsewhere."""
        if not self.leader:
            while (index := self.group.bcast(None, root=0)) >= 0:
                fn(index)
            return []

        def lead(index: int) -> Outcome:
            self.group.bcast(index, root=0)
            return fn(index)

        outcomes = TaskFarm(self.leaders, todo, progress, stop=stop).run(lead)
        self.group.bcast(-1, root=0)
        return outcomes

    def agree(self, error: str | None) -> str | None:
        """Collective over the group: the first rank's error message if any rank of the
        group failed the task (so all of them record the same failure), else None."""
        errors = self.group.allgather(error)
        return next((e for e in errors if e is not None), None)

    def free(self) -> None:
        """Free the communicators (collective) and give back the CPU affinity the rank
        had before (a later stage of the same process, e.g. training, is not pinned)."""
        if self.leaders is not None:
            self.leaders.Free()
        self.group.Free()
        if self._affinity is not None and _cpu_affinity() != self._affinity:
            os.sched_setaffinity(0, set(self._affinity))


def _cpu_affinity() -> tuple[int, ...] | None:
    """This process's CPUs (sorted), or None where the OS cannot say (not Linux)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return None


def spread_groups(seen: Sequence[tuple[str, tuple[int, ...] | None]], k: int
                  ) -> tuple[list[int | None], str]:
    """Where to pin each rank so that the ranks of one task group never share a core.

    ``seen[r]`` is rank r's (host, CPU affinity); groups are those of :func:`host_groups`
    (k consecutive ranks of one host, in rank order, wherever possible). MPICH
    (ch4) busy-waits in ``MPI_Wait`` without yielding the core, so two ranks of one LAMMPS
    instance on one core exchange each message only when the scheduler switches them: a
    job of 3 s then takes 30 times as long or more (measured: 4 ranks, groups of 2, on 2
    cores, unbound; about 1 launch in 3 put a group's ranks on one core and ran over 90 s;
    each group bound to one core, 3 of 3 over 30 s). That only happens when a host has more ranks than cores. Ranks that
    are already bound (an affinity narrower than the host's) are left alone.

    Returns one CPU (or None: leave the rank as it is) per rank, and a note for the user
    ("" when nothing was wrong): on an oversubscribed host whose ranks are unbound, its
    ranks are pinned round-robin over its CPUs in rank order, so the k ranks of a group
    (consecutive among the host's ranks) land on k different cores whenever k <= the
    host's cores.
    """
    pins: list[int | None] = [None] * len(seen)
    group_of = {r: members for members in host_groups([h for h, _ in seen], k)
                for r in members}
    by_host: dict[str, list[int]] = {}
    for r, (host, _) in enumerate(seen):
        by_host.setdefault(host, []).append(r)
    notes = []
    for host, ranks in by_host.items():
        sets = [seen[r][1] for r in ranks]
        if any(a is None for a in sets):
            continue
        cpus = sorted(set().union(*sets))
        if len(ranks) <= len(cpus):
            continue  # one core per rank is possible: the scheduler spreads them
        unbound = all(a == tuple(cpus) for a in sets)
        shared = [r for r in ranks if _shares_a_core(seen, r, group_of[r])]
        if unbound:
            for j, r in enumerate(ranks):
                pins[r] = cpus[j % len(cpus)]
            notes.append(f"{host}: {len(ranks)} ranks on {len(cpus)} CPU(s), unbound; pinned "
                         f"round-robin so that the {k} ranks of a task group run on different "
                         f"cores" + ("" if k <= len(cpus) else
                                     f" (impossible for {k} > {len(cpus)} cores: slow)"))
        elif shared:
            notes.append(f"{host}: {len(ranks)} ranks on {len(cpus)} CPU(s), and ranks "
                         f"{', '.join(map(str, shared))} are bound to a core that another rank "
                         f"of their task group has: each message will wait for the scheduler")
    if not notes:
        return pins, ""
    return pins, ("glasscam: ranks_per_task = %d on an oversubscribed node (%s). MPI "
                  "busy-waits, so two ranks of one LAMMPS run must not share a core; for "
                  "speed give each rank its own core (mpiexec -bind-to core, srun "
                  "--cpu-bind=cores)." % (k, "; ".join(notes)))


def _shares_a_core(seen, r: int, group: Sequence[int]) -> bool:
    """Whether rank r is bound to a single core that another rank of its group is bound to."""
    mine = seen[r][1]
    return len(mine) == 1 and any(seen[q][1] == mine and seen[q][0] == seen[r][0]
                                  for q in group if q != r)


def placement(comm) -> list[dict]:
    """Where every rank of ``comm`` runs (collective; the list on rank 0, [] elsewhere):
    rank, host (``MPI.Get_processor_name``), ``node`` (the lowest rank of its shared-memory
    domain, ``Split_type(COMM_TYPE_SHARED)``: what MPI counts as one node), node-local rank
    and size, and its CPU affinity (None where the OS cannot say)."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        leader = node.bcast(comm.Get_rank(), root=0)
        mine = {"rank": comm.Get_rank(), "host": MPI.Get_processor_name(), "node": leader,
                "local_rank": node.Get_rank(), "local_size": node.Get_size(),
                "cpus": _cpu_affinity()}
    finally:
        node.Free()
    rows = comm.gather(mine, root=0)
    return rows if rows is not None else []
