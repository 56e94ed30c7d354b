"""Everything that knows about MPI ranks: seeds, the task farm, progress, aborts.

Seeds come from the task, never from the rank: :func:`task_rng` keys a
``numpy.random.SeedSequence`` by (run seed, stage, system, task index), so a result does
not depend on how many ranks ran, nor in which order tasks finished.

The task farm hands out task indices one at a time (dynamic load balancing). Unlike
``mpi4py.futures.MPICommExecutor``, whose root rank only manages, every rank here runs
tasks: rank 0 serves the others' requests from a light dispatcher thread (``Iprobe`` with
a short sleep, so it does not spin on a core) while its main thread computes. At 2 ranks
on 2 cores that is 2 workers instead of 1. Workers report each finished task with their
next request, so rank 0 can show progress (done / total, rate, ETA) for the whole job.

With ``ranks_per_task`` = k > 1 (:class:`TaskGroups`), ``COMM_WORLD`` is split into groups
of k ranks of one host where possible (:func:`host_groups`); the groups' leaders (group
rank 0) form the farm's communicator,
and each leader hands the task index it gets to its group, which runs the task together
(one LAMMPS instance on the group's communicator). Only the leader writes the result.
On an oversubscribed node the groups are spread over the cores (:func:`spread_groups`).

An unexpected exception on any rank prints its traceback with rank and host and calls
``MPI.COMM_WORLD.Abort``: the job ends instead of hanging.

:class:`NodeShared` holds one array per node in MPI shared memory (the training grids).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_REQUEST, _REPLY = 7701, 7702


def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _key_int(key: object) -> int:
    if isinstance(key, (int, np.integer)) and key >= 0:
        return int(key)
    return int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "little")


def task_rng(seed: int, *keys: object) -> np.random.Generator:
    """The random stream of one task, keyed by (seed, *keys); independent of ranks."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(_key_int, keys)]))


def lammps_seeds(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    """``n`` LAMMPS random seeds (positive, below LAMMPS's 900 million limit)."""
    return tuple(int(s) for s in rng.integers(1, 900_000_000, size=n))


@dataclass
class Outcome:
    """What a task reports back: its index, success, a short message if it failed, and
    where and how long it ran (the rank, and its seconds including the shard write: the
    stage log sums them per rank, so a scaling study can tell compute from waiting)."""

    index: int
    ok: bool
    message: str = ""
    cpu_seconds: float = 0.0   # CPU time of the task's thread (what ``glasscam plan`` predicts)
    wall_seconds: float = 0.0  # wall time of the computation
    seconds: float = 0.0       # wall time of the task, its shard write included (farm record)
    rank: int = -1             # the rank that ran it


class Progress:
    """Line-oriented progress on stderr (readable in Slurm logs as well as terminals)."""

    def __init__(self, label: str, total: int, unit: str, every: float = 5.0, stream=None):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.t0 = self._last = time.monotonic()

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += not outcome.ok
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"[{self.label}] {self.done}/{self.total} {self.unit} ({pct:.0f}%) | "
                f"{self.failed} failed | {rate:.3g} {self.unit}/s | "
                f"elapsed {_hms(elapsed)} | ETA {_hms(eta)}")


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TaskFarm:
    """Run ``fn(index) -> Outcome`` for every index in ``todo`` across all ranks of ``comm``.

    Every rank must call :meth:`run` with the same ``todo``. Returns, on rank 0, the
    outcomes of all tasks sorted by index; on other ranks, an empty list.

    ``stop`` (read on rank 0) ends the farm early: once it returns True no task is handed
    out any more; the tasks in flight finish and are returned (the walltime warning,
    :mod:`glasscam_mpi.walltime`). The first task is always handed out, so a job warned
    as it starts still makes progress and a chain of continuations ends.
    """

    def __init__(self, comm, todo: Sequence[int], progress: Progress | None = None,
                 poll: float | None = None, stop: Callable[[], bool] | None = None):
        self.comm, self.todo, self.progress = comm, list(todo), progress
        self.poll = dispatcher_poll() if poll is None else poll
        self.stop = stop
        self._next = 0
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._task_seconds = 0.0  # sum of the recorded tasks' seconds (for the poll cap)

    def _take(self) -> int:
        with self._lock:
            # stop counts once a task was handed out: every window makes progress
            if self._next >= len(self.todo) or (self._next and self.stop and self.stop()):
                return -1
            index = self.todo[self._next]
            self._next += 1
            return index

    def _record(self, outcome: Outcome | list[Outcome] | None) -> None:
        """One task's outcome, or a block's list of them (FarmStage blocks)."""
        if outcome is None:
            return
        with self._lock:
            for o in (outcome if isinstance(outcome, list) else [outcome]):
                self._outcomes.append(o)
                self._task_seconds += max(o.seconds, 0.0)
                if self.progress:
                    self.progress.update(o)

    def _dispatch(self) -> None:
        from mpi4py import MPI

        status = MPI.Status()
        stopped = 0
        wait = POLL_MIN
        while stopped < self.comm.Get_size() - 1:
            if not self.comm.Iprobe(MPI.ANY_SOURCE, _REQUEST, status):
                time.sleep(wait)
                wait = backoff(wait, self._limit())
                continue
            wait = POLL_MIN
            source = status.Get_source()
            self._record(self.comm.recv(source=source, tag=_REQUEST))
            index = self._take()
            self.comm.send(index, dest=source, tag=_REPLY)
            stopped += index < 0

    def _limit(self) -> float:
        """The dispatcher's longest sleep now: ``poll``, but at most TASK_SHARE of the mean
        task so far, so that a request waits ~1 % of a task at most (short tasks)."""
        with self._lock:
            n, total = len(self._outcomes), self._task_seconds
        return poll_limit(self.poll, total / n if n and total > 0 else None)

    def run(self, fn: Callable[[int], Outcome]) -> list[Outcome]:
        rank, size = self.comm.Get_rank(), self.comm.Get_size()
        if rank == 0:
            dispatcher = None
            if size > 1:
                dispatcher = threading.Thread(target=guarded(self._dispatch), daemon=True,
                                              name="taskfarm-dispatch")
                dispatcher.start()
            while (index := self._take()) >= 0:
                self._record(fn(index))
            if dispatcher is not None:
                dispatcher.join()
            return sorted(self._outcomes, key=lambda o: o.index)
        last = None
        while True:
            self.comm.send(last, dest=0, tag=_REQUEST)
            index = self.comm.recv(source=0, tag=_REPLY)
            if index < 0:
                return []
            last = fn(index)


# The dispatcher thread on rank 0 sleeps between Iprobe calls, from POLL_MIN after a
# request doubling up to dispatcher_poll() while none comes: a stream of short tasks is
# served within milliseconds, and during long tasks the thread wakes ~20 times a second
# instead of 200. Measured on a 16-core node (KAM N = 2000, 16 ranks, benchmarks/
# scaling.py, one repeat each): with a fixed 5 ms poll rank 0's tasks took 1.24x the
# others' and the farm reached 0.86 of the pinned-lmp ceiling; with 50 ms, 1.09x and 0.995.
# A request that arrives while the dispatcher sleeps waits half the sleep on average, so a
# fixed 50 ms cost short tasks: propensity replicas of 0.9 s on 2 ranks (N = 1000) left
# 8 % of the rank time idle and reached 0.92 of the ceiling, against 1.3 % and 0.99 with a
# 5 ms poll (benchmarks/scaling.py, 3 repeats, this 2-core machine). The cap is therefore
# also TASK_SHARE of the mean task seen so far: 9 ms for those replicas (idle 2 %, 0.95
# unbound and 0.98 bound; 2 % of a task gave idle 4 %), still 50 ms for tasks of 5 s and
# more, where the 16-rank measurement above chose it.
POLL_MIN = 0.002
POLL_MAX = 0.05
TASK_SHARE = 0.01


def poll_limit(poll: float, mean_task_seconds: float | None) -> float:
    """The dispatcher's longest sleep: ``poll``, lowered to TASK_SHARE of the mean task
    once one is known (never below POLL_MIN)."""
    if mean_task_seconds is None:
        return poll
    return max(POLL_MIN, min(poll, TASK_SHARE * mean_task_seconds))


def backoff(wait: float, limit: float) -> float:
    """The dispatcher's next sleep after an idle probe: doubled, at most ``limit``."""
    return min(2.0 * wait, max(limit, POLL_MIN))


def dispatcher_poll() -> float:
    """The longest sleep of the dispatcher between ``Iprobe`` calls: 0.05 s, or
    ``GLASSCAM_FARM_POLL`` (a knob for benchmarks/scaling.py, which measures what the
    dispatcher thread costs rank 0's tasks against how long a request waits)."""
    import os

    text = os.environ.get("GLASSCAM_FARM_POLL", "")
    if not text:
        return POLL_MAX
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0001 <= value <= 1.0:
        raise ValueError(f"GLASSCAM_FARM_POLL = {text!r}: allowed: seconds from 0.0001 to 1")
    return value


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
