"""The one engine every stage runs on: a stage declares, the engine does the rest.

As in signac-flow, where an operation is a plain function and the project derives
eligibility, status and submission from declarations beside it, a stage here is a
declaration (:mod:`glasscam_mpi.stages.declare`): its command line (``about``), its place
in the workflow and what it runs on and opens (``flow``) and, for a task farm
(:class:`FarmStage`), its tasks and its file (``tasks``, ``output``). The engine owns the
skeleton every stage shares:

    lock -> resolve config -> open the inputs -> plan -> pending tasks -> farm (or rounds)
         -> scan shards -> write the stage file (parallel HDF5) -> reduce on rank 0
         -> finish (log) -> unlock

Stages that are not task farms (``train``, ``report``: :class:`Stage`) get the same lock,
config and inputs, then run their own ``work``.

A stage file that exists but does not open (a truncated copy, a full disk) is not
"complete": the engine says so and rebuilds it from the task shards, which are kept.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.parallel import (Outcome, Progress, TaskFarm, TaskGroups, bcast_from_root,
                                   injected)
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Flow, Output, Tasks
from glasscam_mpi.store import check_schema, label, write_stage_file
from glasscam_mpi.walltime import NotFinished, stopping


class TaskFailed(RuntimeError):
    """A task that could not produce data (its message is recorded, never data)."""


@contextlib.contextmanager
def session(comm, run_dir) -> Iterator[RunDir]:
    """The run directory of a stage, locked by rank 0 for the duration (rank 0 unlocks on
    any exit); :func:`claim` takes the lock."""
    rd = RunDir(run_dir)
    try:
        yield rd
    finally:
        if comm.Get_rank() == 0:
            rd.unlock()


def claim(rd: RunDir, name: str, requested: Config | None, reset=None) -> Config:
    """Rank 0: take the run directory's lock for stage ``name``, run ``reset`` (what must
    go before the config check, e.g. ``train --restart``) and resolve the config."""
    rd.lock(f"glasscam {name}")
    if reset is not None:
        reset(rd)
    return rd.resolve_config(requested)


# -- inputs ----------------------------------------------------------------------------------
@dataclass
class Inputs:
    """A stage's declared inputs, open (rank 0, for its ``plan``): ``files`` {stage:
    h5py.File} (an optional input that does not exist is absent), and the ok test runs of
    the input that declares ``ok_test_runs``."""

    files: dict
    ok_test_runs: np.ndarray | None = None


def open_checked(rd: RunDir, stage: str):
    """An earlier stage's file, open; clear errors for a missing, damaged or newer one."""
    import h5py

    path = rd.require(stage)
    try:
        fh = h5py.File(path, "r")
        _ = fh["status"][:1]
    except (OSError, KeyError) as exc:
        raise ConfigError(f"{path} is damaged ({exc}); rerun 'glasscam {stage} --run-dir "
                          f"{rd.path}' to rebuild it from its task shards") from None
    try:
        check_schema(fh, stage)
    except ConfigError:
        fh.close()
        raise
    return fh


@contextlib.contextmanager
def open_inputs(rd: RunDir, name: str, flow: Flow) -> Iterator[Inputs]:
    """Rank 0: the inputs of stage ``name``, checked and open, in their declared order."""
    with contextlib.ExitStack() as stack:
        inputs = Inputs({})
        for i in flow.inputs:
            if i.optional and not rd.stage_file(i.stage).exists():
                continue
            fh = inputs.files[i.stage] = stack.enter_context(open_checked(rd, i.stage))
            if i.ok_test_runs:
                inputs.ok_test_runs = np.flatnonzero((fh["status"][:] == 1)
                                                     & (fh["split"][:] == 2)).astype(np.int64)
                if len(inputs.ok_test_runs) == 0:
                    raise ConfigError(f"{rd.stage_file(i.stage)} has no ok test runs: nothing "
                                      f"for {name} to do (raise [prepare].n_runs or check the "
                                      "failed runs)")
        yield inputs


@contextlib.contextmanager
def read_inputs(rd: RunDir, flow: Flow) -> Iterator[dict]:
    """Every rank: the input files that exist, open read-only, for the tasks."""
    import h5py

    with contextlib.ExitStack() as stack:
        yield {i.stage: stack.enter_context(h5py.File(rd.stage_file(i.stage), "r"))
               for i in flow.inputs if not i.optional or rd.stage_file(i.stage).exists()}


@dataclass(frozen=True)
class Stage:
    """A stage that is not a task farm (``train``, ``report``).

    Attributes:
        name: Stage name (command, file ``<name>.h5``).
        about, flow: Its command line and place in the workflow (:mod:`.declare`).
        work: ``(comm, rd, cfg, ready, progress_every=..., **options) -> dict``, called by
            every rank once the run directory is locked, the config resolved and the
            inputs checked (``options``: the stage's ``about.options`` flags).
        summarize: ``(rd, cfg) -> dict`` for ``glasscam info``.
        setup: ``(rd, cfg, **options) -> ready``, on rank 0 after the inputs are checked
            (broadcast to every rank as ``work``'s ``ready``).
        reset: ``(rd, **options)``, on rank 0 after the lock and before the config check.
    """

    name: str
    about: About
    flow: Flow
    work: Callable[..., dict]
    summarize: Callable[[RunDir, Config], dict]
    setup: Callable[..., Any] | None = None
    reset: Callable[..., None] | None = None

    def run(self, comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
            progress_every: float = 5.0, **options) -> dict:
        """Run the stage in ``run_dir``; every rank of ``comm`` calls this."""
        with session(comm, run_dir) as rd:
            def setup():
                reset = (lambda rd: self.reset(rd, **options)) if self.reset else None
                cfg = claim(rd, self.name, requested, reset)
                for i in self.flow.inputs:
                    if not i.optional:
                        rd.require(i.stage)
                return cfg, (self.setup(rd, cfg, **options) if self.setup else None)

            cfg, ready = bcast_from_root(comm, setup)
            return self.work(comm, rd, cfg, ready, progress_every=progress_every, **options)

    def total(self, rd: RunDir, cfg: Config) -> int | None:
        """The number of tasks (a task farm's; None here)."""
        return None


@dataclass(frozen=True)
class FarmStage:
    """A stage that is a farm of independent tasks, each writing one row of its file.

    Attributes:
        name: Stage name (command, file ``<name>.h5``, shard folder).
        about, flow: Its command line and place in the workflow (:mod:`.declare`).
        tasks: Its tasks (:class:`~glasscam_mpi.stages.declare.Tasks`).
        output: Its stage file (:class:`~glasscam_mpi.stages.declare.Output`).
    """

    name: str
    about: About
    flow: Flow
    tasks: Tasks
    output: Output

    @property
    def unit(self) -> str:
        return self.tasks.unit

    @property
    def failures(self) -> tuple[type[BaseException], ...]:
        return self.tasks.failures or (TaskFailed,)

    # -- running -------------------------------------------------------------------------
    def plan(self, rd: RunDir, cfg: Config):
        """Rank 0: the stage's plan, with its inputs open."""
        with open_inputs(rd, self.name, self.flow) as inputs:
            return self.tasks.plan(rd, cfg, inputs)

    def total(self, rd: RunDir, cfg: Config) -> int:
        """The number of tasks of the stage (from its plan, which reads earlier stages)."""
        return self.plan(rd, cfg).n_tasks

    def run(self, comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
            progress_every: float = 5.0) -> dict:
        """Run (or finish) the stage in ``run_dir``; every rank of ``comm`` calls this."""
        rank, t0 = comm.Get_rank(), time.time()
        with session(comm, run_dir) as rd:
            def setup():
                cfg = claim(rd, self.name, requested)
                check_ranks_per_task(self.name, self.tasks.ranks_per_task(cfg), comm.Get_size())
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
            if rank == 0:  # reduce on root; the other ranks wait at the barrier
                if self.output.reduce is not None:
                    self.output.reduce(path, cfg, plan)
                    label(path, self.name)  # name the axes of what the reduce added
                if self.tasks.rounds is not None:
                    from glasscam_mpi.stages.rounds import RoundFiles

                    RoundFiles(rd, self.name).remove()
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
        t = self.tasks
        with read_inputs(rd, self.flow) as files:
            ctx = (t.context(cfg, plan, files, comm) if t.context is not None
                   else (cfg, plan, files))
            if comm.Get_rank() == 0 and t.banner is not None:
                print(t.banner(cfg, plan, len(todo), comm.Get_size()), flush=True)
            if t.rounds is not None:
                from glasscam_mpi.stages.rounds import run_rounds

                return run_rounds(self, comm, rd, cfg, plan, todo, ctx, progress_every)
            k = t.ranks_per_task(cfg)
            if k > 1:
                return self.run_tasks(comm, todo, lambda i, group: t.task(ctx, i, group),
                                      rd.shards(self.name), f"{self.name} {cfg.system.name}",
                                      progress_every, ranks_per_task=k)
            b = t.block.size(cfg, plan) if t.block is not None else 1
            return self.run_tasks(comm, todo, lambda i: t.task(ctx, i),
                                  rd.shards(self.name), f"{self.name} {cfg.system.name}",
                                  progress_every, block=b,
                                  compute_block=lambda idx: t.block.compute(ctx, idx))

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

        out = self.output
        attrs = {"stage": self.name, "system": cfg.system.name, "dim": cfg.sys.dim,
                 "n_particles": cfg.system.n_particles, **out.attrs(cfg, plan),
                 "config": cfg.to_toml()}
        return write_stage_file(rd.stage_file(self.name), comm, n_tasks=plan.n_tasks,
                                attrs=attrs, rows=out.rows(cfg, plan), row_data=row,
                                globals_=out.globals_(cfg, plan))

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
                    if self.output.headline is not None:
                        out.update(self.output.headline(fh, cfg, rd))
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
