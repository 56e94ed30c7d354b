"""The task farm: dynamic load balancing of task indices over the ranks, with progress.

The task farm hands out task indices one at a time (dynamic load balancing). Unlike
``mpi4py.futures.MPICommExecutor``, whose root rank only manages, every rank here runs
tasks: rank 0 serves the others' requests from a light dispatcher thread (``Iprobe`` with
a short sleep, so it does not spin on a core) while its main thread computes. At 2 ranks
on 2 cores that is 2 workers instead of 1. Workers report each finished task with their
next request, so rank 0 can show progress (done / total, rate, ETA) for the whole job.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.parallel.faults import guarded

_REQUEST, _REPLY = 7701, 7702


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
