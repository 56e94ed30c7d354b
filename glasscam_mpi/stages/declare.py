"""What a stage declares about itself, in a few small records (signac-flow's operations).

A stage is the whole truth about itself: its command line (:class:`About`), where it sits
in the workflow and what it runs on (:class:`Flow`: ``needs``, ``runs``, ``inputs``,
``cost``), and, for a task farm, its tasks and its file (:class:`Tasks`, :class:`Output`).
The engine (:mod:`glasscam_mpi.stages.engine`) and every command read these records:

* ``glasscam run`` and the ``plan`` rows take the stages in :func:`order` (topological
  from ``needs``, ties in the registry's order);
* ``glasscam submit`` asks for GPUs where ``runs.kind == "gpu"``, and writes the walltime
  continuation into the job scripts of the stages with ``runs.continues``;
* the engine opens the ``inputs`` (and refuses a missing, damaged or newer-schema file,
  or one without what the stage requires of it) before the stage's own ``plan``;
* ``glasscam plan`` prices a stage with its ``cost`` (:class:`Cost`).

No module but the registry (:mod:`glasscam_mpi.stages`) lists stages by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class About:
    """The stage's command line.

    Attributes:
        help, description: For ``glasscam --help`` and ``glasscam STAGE --help``.
        options: Extra flags of ``glasscam STAGE``: (flag, help) pairs, all store_true and
            mutually exclusive; passed to the stage as keyword arguments.
        run_options: The keyword arguments ``glasscam run`` passes to this stage.
    """

    help: str
    description: str
    options: tuple[tuple[str, str], ...] = ()
    run_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Runs:
    """What a job of the stage runs on.

    Attributes:
        kind: ``"cpu"`` (one rank per core) or ``"gpu"`` (the job asks for the profile's
            GPUs; ``plan`` prices it in GPU-hours when the profile has GPUs).
        rank_per_gpu: With GPUs, one rank per GPU, the node's cores shared out among them
            (data-parallel training); otherwise the profile's ranks per node.
        continues: Stops on the walltime warning with its finished tasks kept, and the job
            script resubmits it (exit status 75): the task farms.
    """

    kind: str = "cpu"
    rank_per_gpu: bool = False
    continues: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Runs.kind = {self.kind!r}: allowed: {', '.join(KINDS)}")


@dataclass(frozen=True)
class Command:
    """A command with a job script that is not a stage of the afterok chain (it submits
    itself, with its own arguments: ``glasscam sweep``).

    Attributes:
        runs: What its job runs on.
        files: The template values it needs, each a file path (e.g. ``variants``).
        optional: Template values it may take (None when not given).
        usage: How to submit it, for the error when a file is missing.
    """

    runs: Runs
    files: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    usage: str = ""


@dataclass(frozen=True)
class Input:
    """An earlier stage's file that the stage opens.

    Attributes:
        stage: The earlier stage (its file: ``RunDir.stage_file(stage)``).
        optional: Opened when it exists; the stage runs without it.
        ok_test_runs: The stage needs at least one ok test run in this file (prepare.h5);
            the engine reads them (``inputs.ok_test_runs``) and refuses an empty set.
    """

    stage: str
    optional: bool = False
    ok_test_runs: bool = False


@dataclass
class Cost:
    """A stage's price on one worker, for ``glasscam plan`` (which schedules it on the
    profile: a ``cpu`` stage as a farm of ``tasks`` equal tasks over the ranks, a ``gpu``
    stage as ``seconds`` shared by the profile's GPUs, else its ranks).

    Attributes:
        tasks: Tasks (farm) or units of work (epochs) of the stage.
        task_seconds: One task on one core (or one worker).
        disk_bytes: The stage file (the shards hold about as much again while it runs).
        memory_bytes: Memory per rank.
        basis: What was measured and what was assumed.
        ranks_per_task: Ranks that run one task together (cpu stages).
        seconds: The whole stage on one worker (default ``tasks * task_seconds``).
        memory_note, warnings: Said with the estimate.
    """

    tasks: int
    task_seconds: float
    disk_bytes: int
    memory_bytes: int
    basis: str
    ranks_per_task: int = 1
    seconds: float | None = None
    memory_note: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.tasks * self.task_seconds if self.seconds is None else self.seconds


def gib(n: float) -> str:
    """Bytes as GiB or MiB, for the plan's table and notes."""
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.4g} MiB"


@dataclass(frozen=True)
class Flow:
    """Where the stage sits in the workflow.

    Attributes:
        needs: Earlier stages it runs after (every input's stage is one of them).
        runs: What its jobs run on (:class:`Runs`).
        inputs: The earlier stage files it opens (:class:`Input`).
        cost: ``(cfg, calibration, profile) -> Cost`` for ``glasscam plan``; the
            calibration holds ``md`` (LAMMPS rates, :class:`~glasscam_mpi.md.calibrate.MDRates`
            of ``[prepare].lammps_style``), ``md_propensity`` (of
            ``[propensity].lammps_style``) and ``learn``
            (:class:`~glasscam_mpi.learn.calibrate.LearnRates`).
    """

    needs: tuple[str, ...] = ()
    runs: Runs = Runs()
    inputs: tuple[Input, ...] = ()
    cost: Callable[..., Cost] | None = None


def order(stages: Iterable) -> list:
    """The stages in workflow order: every stage after the stages it ``needs``; among
    those free to go, the one listed first. A need that is not a stage, or a cycle, is a
    ValueError naming it."""
    stages = list(stages)
    names = [s.name for s in stages]
    for s in stages:
        for n in s.flow.needs:
            if n not in names:
                raise ValueError(f"stage {s.name!r} needs {n!r}, which is not a stage; "
                                 f"stages: {', '.join(names)}")
        for i in s.flow.inputs:
            if i.stage not in s.flow.needs:
                raise ValueError(f"stage {s.name!r} opens {i.stage!r}'s file but does not "
                                 f"need it; add {i.stage!r} to its needs")
    done: list = []
    left = list(stages)
    while left:
        free = [s for s in left if all(n in {d.name for d in done} for n in s.flow.needs)]
        if not free:
            raise ValueError("the stages' needs form a cycle: "
                             + ", ".join(f"{s.name} needs {list(s.flow.needs)}" for s in left))
        done.append(free[0])
        left.remove(free[0])
    return done


@dataclass(frozen=True)
class Block:
    """Tasks computed several at once (a GPU batch).

    Attributes:
        size: ``(cfg, plan) -> k``: tasks are farmed in blocks of the k consecutive task
            indices ``[b k, (b + 1) k)`` (those still to do), fixed by the task index and not
            by the ranks, so a block is the same batch under any rank count and on a rerun.
        compute: ``(ctx, [i, ...]) -> [arrays, ...]``. Each task still has its own shard; a
            block whose batch fails is redone task by task, so only the failing task is
            recorded failed.
    """

    size: Callable[[Any, Any], int]
    compute: Callable[[Any, list[int]], list[dict]]


@dataclass(frozen=True)
class Rounds:
    """Tasks that run in consecutive segments, all tasks a segment at a time, with a stop
    rule per group of tasks between segments (propensity's replica ensembles).

    The engine keeps each round's shards in ``shards/<stage>/rounds/r<r>/`` and the state a
    task carries from one segment to the next in ``.../rounds/state/``; a task that failed
    in a round runs no further; on the walltime warning a round half done decides and
    merges nothing; when every round is done it merges each task's segments into the
    stage's one shard per task, and removes the rounds once the stage file is written.

    Attributes:
        count: ``plan -> n`` rounds.
        segment: ``(ctx, index, r, carry, comm) -> arrays`` of task ``index`` in round r;
            ``carry.load`` is the state file the previous round saved (None in round 0),
            ``carry.save`` where to save this round's (None in the last round).
        group: ``(plan, index) -> g``, the group the stop rule judges a task with.
        n_groups: ``plan -> number of groups``.
        stop: ``(cfg, plan) -> rule or None``; the rule ``[arrays of the group's ok tasks
            in this round] -> bool`` says whether the group stops (no rule: none stops).
        merge: ``(plan, [arrays of round 0, 1, ...]) -> arrays`` of the task's row.
    """

    count: Callable[[Any], int]
    segment: Callable[..., dict]
    group: Callable[[Any, int], int]
    n_groups: Callable[[Any], int]
    stop: Callable[[Any, Any], Callable[[list[dict]], bool] | None]
    merge: Callable[[Any, list[dict]], dict]


@dataclass(frozen=True)
class Carry:
    """The state file a task's segment continues from (``load``) and saves (``save``)."""

    load: Any = None
    save: Any = None


@dataclass(frozen=True)
class Tasks:
    """A task farm's tasks.

    Attributes:
        unit: What a task is, plural, for progress lines ("runs", "replicas").
        plan: ``(rd, cfg, inputs) -> plan`` on rank 0, with the declared inputs open
            (:class:`~glasscam_mpi.stages.engine.Inputs`): validates, and returns an object
            with ``n_tasks`` (broadcast to every rank; keep it picklable).
        task: ``(ctx, index) -> {name: array}``, the arrays of task ``index``'s row.
            Raising one of ``failures`` records the task as failed with its message.
        context: ``(cfg, plan, files, comm) -> ctx`` on every rank before the farm, with
            the inputs open (``files``: {stage: h5py.File}); default ``(cfg, plan, files)``.
        banner: ``(cfg, plan, n_todo, n_ranks) -> str`` printed by rank 0 before the farm.
        failures: Exceptions that mean "this task failed" (anything else is a bug and
            aborts the job); default :class:`~glasscam_mpi.stages.engine.TaskFailed`.
        ranks_per_task: ``cfg -> k``, the ranks that run one task together (default 1);
            ``task`` then gets ``(ctx, index, comm)`` with the group's communicator and is
            called on every rank of the group; the leader writes the shard.
        block: Tasks computed several at once (:class:`Block`).
        rounds: Tasks run in segments with a stop rule between them (:class:`Rounds`).
    """

    unit: str
    plan: Callable[..., Any]
    task: Callable[..., dict] | None = None
    context: Callable[..., Any] | None = None
    banner: Callable[[Any, Any, int, int], str] | None = None
    failures: tuple[type[BaseException], ...] = ()
    ranks_per_task: Callable[[Any], int] = lambda cfg: 1
    block: Block | None = None
    rounds: Rounds | None = None


@dataclass(frozen=True)
class Output:
    """A task farm's stage file.

    Attributes:
        rows: ``(cfg, plan) -> {name: RowSpec}``, the row datasets (``glasscam plan``
            prices the file from them too).
        attrs: ``(cfg, plan) -> dict`` of root attributes (``stage``, ``config``,
            ``system``, ``dim`` and ``n_particles`` are added by the engine).
        globals_: ``(cfg, plan) -> {name: array}`` written once.
        reduce: ``(path, cfg, plan)`` run by rank 0 on the written file (derived datasets),
            while the other ranks wait.
        headline: ``(fh, cfg, rd) -> dict`` merged into ``glasscam info``'s entry.
    """

    rows: Callable[[Any, Any], dict]
    attrs: Callable[[Any, Any], dict] = lambda cfg, plan: {}
    globals_: Callable[[Any, Any], dict] = lambda cfg, plan: {}
    reduce: Callable[..., None] | None = None
    headline: Callable[..., dict] | None = None
