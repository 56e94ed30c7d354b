"""The engine's rounds: tasks run in consecutive segments, a stop rule between them
(:class:`~glasscam_mpi.stages.declare.Rounds`; propensity's replica ensembles).

Every task still to do runs segment r, then the stop rule judges each group of tasks from
its ok tasks' segment-r arrays; a stopped group's tasks run no further, and a task that
failed in a round runs no further either. Each round has its own shard folder, so a kill
and resume continues the round where it was; the rounds are merged into the stage's one
shard per task (and its row) once every round is done. The decisions only read shards,
so results do not depend on the rank count or on the order tasks finish in.
"""

from __future__ import annotations

import shutil

import numpy as np

from glasscam_mpi.parallel import Outcome, bcast_from_root
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import Carry
from glasscam_mpi.store import ShardStore
from glasscam_mpi.walltime import stopping


class RoundFiles:
    """Where the segments of a stage's tasks live: one shard folder per round, plus the
    state files a task continues from (removed when the stage file is written)."""

    def __init__(self, rd: RunDir, stage: str):
        self.root = rd.path / "shards" / stage / "rounds"

    def shards(self, r: int) -> ShardStore:
        return ShardStore(self.root / f"r{r}")

    def state(self, index: int, r: int):
        return self.root / "state" / f"{index:07d}.r{r}.restart"

    def carry(self, index: int, r: int, n_rounds: int) -> Carry:
        """The state task ``index`` loads in round r and the one it saves (made ready)."""
        save = None if r == n_rounds - 1 else self.state(index, r)
        if save is not None:
            save.parent.mkdir(parents=True, exist_ok=True)
        return Carry(self.state(index, r - 1) if r else None, save)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_rounds(stage, comm, rd: RunDir, cfg, plan, todo: list[int], ctx,
               progress_every: float) -> list[Outcome]:
    """Run the rounds of every task in ``todo``, stopping groups as the rule says, and
    write each finished task's shard (its segments merged). Returns the outcomes on every
    rank (empty when the walltime warning stopped a round)."""
    spec = stage.tasks.rounds
    files = RoundFiles(rd, stage.name)
    n_rounds = spec.count(plan)
    rule = spec.stop(cfg, plan)
    k = stage.tasks.ranks_per_task(cfg)
    stopped = np.zeros(spec.n_groups(plan), dtype=bool)
    for r in range(n_rounds):
        store = files.shards(r)

        def pending_now():
            store.clean_partial()
            found = store.scan()
            failed_before = set()
            for rr in range(r):
                failed_before |= {i for i, ok in files.shards(rr).scan().items() if not ok}
            return [i for i in todo if not stopped[spec.group(plan, i)]
                    and i not in found and i not in failed_before]

        work = bcast_from_root(comm, pending_now)
        stage.run_tasks(comm, work, lambda i, group=None: spec.segment(
            ctx, i, r, files.carry(i, r, n_rounds), group),
            store, f"{stage.name} {cfg.system.name} round {r + 1}/{n_rounds}", progress_every,
            ranks_per_task=k)
        if bcast_from_root(comm, stopping):
            return []  # walltime warning: a round half done decides and merges nothing
        if rule is not None and r < n_rounds - 1:
            def decide():
                out = stopped.copy()
                found = store.scan()
                members: dict[int, list[int]] = {}
                for i in range(plan.n_tasks):
                    members.setdefault(spec.group(plan, i), []).append(i)
                for g in np.flatnonzero(~out):
                    out[g] = rule([store.read(i, True) for i in members.get(int(g), ())
                                   if found.get(i)])
                return out
            stopped = bcast_from_root(comm, decide)
    return bcast_from_root(comm, lambda: _merge(spec, plan, files, n_rounds,
                                                rd.shards(stage.name), todo, stage.name))


def _merge(spec, plan, files: RoundFiles, n_rounds: int, final: ShardStore,
           todo: list[int], name: str) -> list[Outcome]:
    """Rank 0: one shard per task from its segments (the first failed round's error)."""
    scans = [files.shards(r).scan() for r in range(n_rounds)]
    outcomes = []
    for i in todo:
        segments, error = [], None
        for r in range(n_rounds):
            ok = scans[r].get(i)
            if ok is None:
                break
            data = files.shards(r).read(i, ok)
            if not ok:
                error = f"round {r + 1}: {data['error']}"
                break
            segments.append(data)
        if error is None and not segments:
            raise RuntimeError(f"{name}: task {i} has no first segment after the farm")
        if error is not None:
            final.write(i, error=error)
        else:
            final.write(i, spec.merge(plan, segments))
        outcomes.append(Outcome(i, error is None, error or ""))
    return outcomes
