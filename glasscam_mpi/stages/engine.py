"""The one engine every stage runs on: a stage declares, the engine does the rest.

As in signac-flow, where an operation is a plain function and the project derives
eligibility, status and submission from declarations beside it, a farmed stage here is a
:class:`FarmStage`: its tasks (``plan``), what one task computes (``task``), the rows it
writes (``rows``, ``attrs``, ``globals_``), an optional collective ``reduce`` over the
finished stage file, and the headline figures ``glasscam info`` shows (``headline``).
The engine owns the skeleton every stage shares:

    lock -> resolve config -> plan -> pending tasks -> farm -> scan shards
         -> write the stage file (parallel HDF5) -> reduce -> finish (log) -> unlock

Stages that are not task farms (``train``, ``report``) use :func:`session` for the same
lock / config / unlock part.

A stage file that exists but does not open (a truncated copy, a full disk) is not
"complete": the engine says so and rebuilds it from the task shards, which are kept.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.parallel import (Outcome, Progress, TaskFarm, TaskGroups, bcast_from_root,
                                   injected)
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import RowSpec, check_schema, write_stage_file
from glasscam_mpi.walltime import NotFinished, stopping


class TaskFailed(RuntimeError):
    """A task that could not produce data (its message is recorded, never data)."""


@contextlib.contextmanager
def session(comm, run_dir, name: str) -> Iterator[RunDir]:
    """The run directory of a stage, locked by rank 0 for the duration (rank 0 unlocks on
    any exit). Use with :func:`~glasscam_mpi.parallel.bcast_from_root` for the set-up,
    which must call ``rd.lock(...)`` first."""
    rd = RunDir(run_dir)
    try:
        yield rd
    finally:
        if comm.Get_rank() == 0:
            rd.unlock()


@dataclass(frozen=True)
class Stage:
    """A stage that is not a task farm (``train``, ``report``): its own ``run`` (every rank
    calls it; use :func:`session` for the lock) and ``summarize`` for ``glasscam info``."""

    name: str
    help: str
    description: str
    run: Callable[..., dict]
    summarize: Callable[[RunDir, Config], dict]
    run_options: dict = field(default_factory=dict)
    options: tuple = ()  # extra command-line options: (flag, help) pairs, all store_true


@dataclass(frozen=True)
class FarmStage:
    """A stage that is a farm of independent tasks, each writing one row of its file.

    Attributes:
        name: Stage name (command, file ``<name>.h5``, shard folder).
        help, description: For ``glasscam --help``.
        unit: What a task is, plural, for progress lines ("runs", "replicas").
        plan: ``(rd, cfg) -> plan`` on rank 0: reads earlier stages, validates, and returns
            an object with ``n_tasks`` (broadcast to every rank; keep it picklable).
        task: ``(ctx, index) -> {name: array}``, the arrays of task ``index``'s row.
            Raising one of ``failures`` records the task as failed with its message.
        rows: ``(cfg, plan) -> {name: RowSpec}``, the row datasets.
        attrs: ``(cfg, plan) -> dict`` of root attributes (``stage``, ``config``, ``system``,
            ``dim`` and ``n_particles`` are added by the engine).
        globals_: ``(cfg, plan) -> {name: array}`` written once.
        open: ``(rd, cfg, plan, comm)`` -> context manager yielding the ``ctx`` the tasks
            get (open input files, load a model); default yields ``(cfg, plan)``.
        banner: ``(cfg, plan, n_todo, n_ranks) -> str`` printed by rank 0 before the farm.
        reduce: ``(comm, path, cfg, plan)`` called by every rank after the stage file is
            written (derived datasets; must be collective-safe).
        headline: ``(fh, cfg, rd) -> dict`` merged into ``glasscam info``'s entry.
        failures: Exceptions that mean "this task failed" (anything else is a bug and
            aborts the job).
        ranks_per_task: ``cfg -> k``, the ranks that run one task together (default 1);
            ``task`` then gets ``(ctx, index, comm)`` with the group's communicator and is
            called on every rank of the group; the leader writes the shard.
        farm: ``(stage, comm, rd, cfg, plan, todo, progress_every) -> outcomes`` replaces
            the one-pass farm (propensity runs its replicas in rounds with
            :meth:`run_tasks`); it must leave one shard per task of ``todo``.
        run_options: Keyword arguments ``glasscam run`` passes to this stage.
        task_block: ``(ctx, [i, ...]) -> [arrays, ...]`` computes several tasks at once
            (a GPU batch); used with ``block``.
        block: ``(cfg, plan) -> k``: tasks are farmed in blocks of the k consecutive task
            indices ``[b k, (b + 1) k)`` (those still to do), fixed by the task index and
            not by the ranks, so a block is the same batch under any rank count and on a
            rerun. Each task still has its own shard; a block whose batch fails is redone
            task by task, so only the failing task is recorded failed.
    """

    name: str
    help: str
    description: str
    unit: str
    plan: Callable[[RunDir, Config], Any]
    rows: Callable[[Config, Any], dict[str, RowSpec]]
    task: Callable[[Any, int], dict] | None = None
    attrs: Callable[[Config, Any], dict] = lambda cfg, plan: {}
    globals_: Callable[[Config, Any], dict] = lambda cfg, plan: {}
    open: Callable[..., Any] | None = None
    banner: Callable[[Config, Any, int, int], str] | None = None
    reduce: Callable[..., None] | None = None
    headline: Callable[..., dict] | None = None
    failures: tuple[type[BaseException], ...] = (TaskFailed,)
    farm: Callable[..., list] | None = None
    ranks_per_task: Callable[[Config], int] = lambda cfg: 1
    run_options: dict = field(default_factory=dict)
    task_block: Callable[[Any, list[int]], list[dict]] | None = None
    block: Callable[[Config, Any], int] | None = None

    # -- running -------------------------------------------------------------------------
    def run(self, comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
            progress_every: float = 5.0) -> dict:
        """Run (or finish) the stage in ``run_dir``; every rank of ``comm`` calls this."""
        rank, t0 = comm.Get_rank(), time.time()
        with session(comm, run_dir, self.name) as rd:
            def setup():
                rd.lock(f"glasscam {self.name}")
                cfg = rd.resolve_config(requested)
                check_ranks_per_task(self.name, self.ranks_per_task(cfg), comm.Get_size())
                plan = self.plan(rd, cfg)
                todo = rd.pending(self.name, plan.n_tasks, retry_failed)
                intact = rd.intact(self.name)
                if rd.stage_file(self.name).exists() and not intact and not todo:
                    print(f"{self.name}: {rd.stage_file(self.name)} is damaged; rebuilding it "
                          "from the task shards", flush=True)
                return cfg, plan, todo, intact and not todo

            cfg, plan, todo, complete = bcast_from_root(comm, setup)
            if complete:
                if rank == 0:
                    print(f"{self.name}: {rd.stage_file(self.name)} is already complete")
                return {"complete": True}
            _timed.clear()
            t_farm = time.perf_counter()
            outcomes = self._farm(comm, rd, cfg, plan, todo, progress_every)
            t_farm = time.perf_counter() - t_farm
            # the walltime warning stopped the farm: keep the shards, write no stage file
            left = bcast_from_root(comm, lambda: rd.pending(
                self.name, plan.n_tasks, retry_failed) if stopping() else [])
            if left:
                raise NotFinished(f"{self.name}: stopped on the walltime warning with "
                                  f"{len(left)} of {plan.n_tasks} {self.unit} left; the "
                                  "finished ones are kept, and the same command continues")
            path = self._write(comm, rd, cfg, plan)
            if self.reduce is not None:
                self.reduce(comm, path, cfg, plan)
            comm.Barrier()
            if rank == 0:
                n_failed = sum(not o.ok for o in outcomes)
                rd.finish(self.name, f"{plan.n_tasks} {self.unit}; {len(outcomes) - n_failed} "
                          f"ok and {n_failed} failed in this job", time.time() - t0,
                          comm.Get_size(), outcomes, unit=self.unit.rstrip("s"),
                          farm=farm_record(t_farm, _timed, comm.Get_size()),
                          **task_seconds(outcomes))
            return {"complete": True}

    def _farm(self, comm, rd: RunDir, cfg: Config, plan, todo: list[int],
              progress_every: float) -> list[Outcome]:
        if self.farm is not None:
            return self.farm(self, comm, rd, cfg, plan, todo, progress_every)
        opener = self.open or _default_open
        with opener(rd, cfg, plan, comm) as ctx:
            if comm.Get_rank() == 0 and self.banner is not None:
                print(self.banner(cfg, plan, len(todo), comm.Get_size()), flush=True)
            k = self.ranks_per_task(cfg)
            if k > 1:
                return self.run_tasks(comm, todo, lambda i, group: self.task(ctx, i, group),
                                      rd.shards(self.name), f"{self.name} {cfg.system.name}",
                                      progress_every, ranks_per_task=k)
            b = self.block(cfg, plan) if self.block and self.task_block else 1
            return self.run_tasks(comm, todo, lambda i: self.task(ctx, i),
                                  rd.shards(self.name), f"{self.name} {cfg.system.name}",
                                  progress_every, block=b,
                                  compute_block=lambda idx: self.task_block(ctx, idx))

    def run_tasks(self, comm, todo: list[int], compute: Callable[..., dict], shards,
                  label: str, progress_every: float = 5.0, ranks_per_task: int = 1,
                  block: int = 1, compute_block: Callable[[list[int]], list[dict]] | None = None
                  ) -> list[Outcome]:
        """Farm ``compute(index) -> arrays`` over the ranks for every index in ``todo``,
        writing each result (or its recorded failure) to ``shards``; rank 0 shows progress.
        Returns the outcomes on rank 0 (sorted by index), an empty list elsewhere.

        With ``ranks_per_task`` = k > 1 the farm runs over groups of k ranks
        (:class:`~glasscam_mpi.parallel.TaskGroups`): ``compute(index, group_comm)`` is
        called on every rank of a group, a failure on any of them fails the task for the
        whole group, and the group's leader writes the shard.

        With ``block`` > 1 and ``compute_block``, the farm hands out blocks of the indices
        ``[b block, (b + 1) block)`` and computes each block in one call (see
        :class:`FarmStage`)."""
        if ranks_per_task > 1:
            return self._run_grouped(comm, todo, compute, shards, label, progress_every,
                                     ranks_per_task)
        crashes = injected("GLASSCAM_INJECT_CRASH", self.name)

        rank = comm.Get_rank()

        def one(index: int) -> Outcome:
            if index in crashes:
                raise RuntimeError(f"injected crash in {self.name} task {index}")
            t0, cpu0 = time.perf_counter(), time.thread_time()
            error, arrays = None, {}
            try:
                arrays = compute(index)
            except self.failures as exc:
                error = str(exc)
            return _store(shards, index, error, arrays, t0, cpu0, rank)

        progress = Progress(label, len(todo), self.unit, progress_every) \
            if comm.Get_rank() == 0 else None
        if block > 1 and compute_block is not None:
            blocks = task_blocks(todo, block)

            def one_block(b: int) -> list[Outcome]:
                idx = blocks[b]
                if any(i in crashes for i in idx):
                    raise RuntimeError(f"injected crash in {self.name} block of tasks {idx}")
                t0, cpu0 = time.perf_counter(), time.thread_time()
                try:
                    results = compute_block(idx)
                except self.failures:
                    return [one(i) for i in idx]  # task by task: only the failing one fails
                cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
                for i, arrays in zip(idx, results, strict=True):
                    shards.write(i, arrays)
                n = len(idx)
                seconds = time.perf_counter() - t0
                return [Outcome(i, True, cpu_seconds=cpu / n, wall_seconds=wall / n,
                                seconds=seconds / n, rank=rank) for i in idx]

            outcomes = TaskFarm(comm, list(range(len(blocks))), progress,
                                stop=stopping).run(one_block)
        else:
            outcomes = TaskFarm(comm, todo, progress, stop=stopping).run(one)
        _timed.extend(outcomes)
        return outcomes

    def _run_grouped(self, comm, todo, compute, shards, label, progress_every, k):
        crashes = injected("GLASSCAM_INJECT_CRASH", self.name)
        groups = TaskGroups(comm, k)

        def one(index: int) -> Outcome | None:
            if index in crashes and groups.group.Get_rank() == k - 1:
                # on the group's last rank only: a bug on one rank must still end the job
                raise RuntimeError(f"injected crash in {self.name} task {index}")
            error, arrays = None, {}
            t0, cpu0 = time.perf_counter(), time.thread_time()
            try:
                arrays = compute(index, groups.group)
            except self.failures as exc:
                error = str(exc)
            error = groups.agree(error)
            if not groups.leader:
                return None
            return _store(shards, index, error, arrays, t0, cpu0, comm.Get_rank())

        progress = Progress(label, len(todo), self.unit, progress_every) \
            if comm.Get_rank() == 0 else None
        outcomes = groups.run(todo, one, progress, stop=stopping)
        _timed.extend(outcomes)
        groups.free()  # collective: not in a finally, so a crash goes straight to the abort
        return outcomes

    def _write(self, comm, rd: RunDir, cfg: Config, plan):
        shards = rd.shards(self.name)
        status = bcast_from_root(comm, shards.scan)

        def row(i: int):
            ok = status.get(i)
            if ok is None:
                raise RuntimeError(f"{self.name}: task {i} has no shard after the farm finished")
            data = shards.read(i, ok)
            return (True, "", data) if ok else (False, str(data["error"]), {})

        attrs = {"stage": self.name, "system": cfg.system.name, "dim": cfg.sys.dim,
                 "n_particles": cfg.system.n_particles, **self.attrs(cfg, plan),
                 "config": cfg.to_toml()}
        return write_stage_file(rd.stage_file(self.name), comm, n_tasks=plan.n_tasks,
                                attrs=attrs, rows=self.rows(cfg, plan), row_data=row,
                                globals_=self.globals_(cfg, plan))

    # -- glasscam info ---------------------------------------------------------------------
    def summarize(self, rd: RunDir, cfg: Config) -> dict:
        """Complete or not, tasks total / done / failed / missing, headline figures."""
        path = rd.stage_file(self.name)
        found = rd.shards(self.name).scan()
        n_ok = sum(found.values())
        out: dict = {"complete": False}
        if path.exists():
            import h5py

            try:
                with h5py.File(path, "r") as fh:
                    check_schema(fh, self.name)
                    status = fh["status"][:]
                    out["complete"] = True
                    out["tasks"] = {"total": len(status), "done": int((status == 1).sum()),
                                    "failed": int((status == 2).sum()),
                                    "missing": int((status == 0).sum())}
                    if self.headline is not None:
                        out.update(self.headline(fh, cfg, rd))
                return out
            except ConfigError as exc:  # a schema this version cannot read
                out["error"] = str(exc)
            except (OSError, KeyError) as exc:
                out["error"] = (f"{path.name} is damaged ({exc}); rerun 'glasscam {self.name} "
                                f"--run-dir {rd.path}' to rebuild it from its task shards")
        if found:
            out["tasks"] = {"done": n_ok, "failed": len(found) - n_ok}
        return out


def task_seconds(outcomes) -> dict:
    """Per-task CPU and wall seconds of the ok tasks of this job (what ``glasscam plan``
    estimates), for ``logs/<stage>.json``."""
    ok = [o for o in outcomes if o.ok]
    if not ok:
        return {}
    cpu = [o.cpu_seconds for o in ok]
    wall = [o.wall_seconds for o in ok]
    return {"task_cpu_seconds": {"sum": round(sum(cpu), 3), "mean": round(sum(cpu) / len(ok), 4),
                                 "max": round(max(cpu), 4)},
            "task_wall_seconds": {"sum": round(sum(wall), 3),
                                  "mean": round(sum(wall) / len(ok), 4),
                                  "max": round(max(wall), 4)}}


def task_blocks(todo: list[int], k: int) -> list[list[int]]:
    """The tasks of ``todo`` grouped by block ``i // k`` (in order): a block is fixed by the
    task indices, never by the ranks, and on a rerun holds only what is left of it."""
    groups: dict[int, list[int]] = {}
    for i in todo:
        groups.setdefault(i // k, []).append(i)
    return list(groups.values())


# Rank 0: the timed outcomes of every run_tasks pass of the stage now running (propensity
# makes one pass per round), for the farm record of its log.
_timed: list[Outcome] = []


def farm_record(seconds: float, outcomes: list[Outcome], size: int) -> dict:
    """The farm's time on rank 0 and, per rank, the tasks it ran (propensity: segments) and
    their summed seconds (``busy_seconds``; wall minus busy is time not computing: waiting
    for a task, the end of the farm, a round's stop decision)."""
    ranks = [{"rank": r, "tasks": 0, "busy_seconds": 0.0} for r in range(size)]
    for o in outcomes:
        if 0 <= o.rank < size:
            ranks[o.rank]["tasks"] += 1
            ranks[o.rank]["busy_seconds"] += o.seconds
    for r in ranks:
        r["busy_seconds"] = round(r["busy_seconds"], 4)
    return {"seconds": round(seconds, 4), "ranks": ranks}


@contextlib.contextmanager
def _default_open(rd, cfg, plan, comm):
    yield cfg, plan


def _store(shards, index: int, error: str | None, arrays: dict, t0: float, cpu0: float,
           rank: int) -> Outcome:
    """Write one task's shard (its arrays, or its failure: never data) and return its
    Outcome, timed from ``t0`` (wall) and ``cpu0`` (this thread's CPU)."""
    if error is not None:
        shards.write(index, error=error)
        return Outcome(index, False, error, seconds=time.perf_counter() - t0, rank=rank)
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
    shards.write(index, arrays)
    return Outcome(index, True, cpu_seconds=cpu, wall_seconds=wall,
                   seconds=time.perf_counter() - t0, rank=rank)


def check_ranks_per_task(stage: str, k: int, size: int) -> None:
    """A ConfigError unless the job's ``size`` ranks split into groups of ``k``."""
    if size % k:
        raise ConfigError(f"[{stage}].ranks_per_task = {k}: this job has {size} MPI rank(s), "
                          f"not a multiple of {k}; allowed: a divisor of {size} "
                          f"(start the job with a multiple of {k} ranks, or lower it)")


def require_tasks(n: int, what: str) -> None:
    """A ConfigError when a stage has nothing to do (e.g. no ok test runs)."""
    if n == 0:
        raise ConfigError(what)
