"""The costing of ``glasscam plan``: every stage's declared cost on a cluster profile.

Each stage prices itself (its declaration's ``flow.cost``, from this machine's
calibration); here each price is scheduled on the profile by the kind of worker the stage
runs on (``flow.runs.kind``):

* ``cpu``: a farm of equal tasks over the profile's ranks (``ranks_per_task`` to a task),
  in walltime windows: each window is one job, and a task must fit in one window, since a
  task is the unit of resume;
* ``gpu``: the stage's seconds shared by the profile's GPUs (else its ranks), linear
  scaling assumed, in as many windows as that takes (GPU-hours when the profile has GPUs).

Per stage it reports core-hours, GPU-hours, disk (the stage file; the shards hold about as
much again until they are merged), memory per rank, and the jobs and windows.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from glasscam_mpi.config import Config, ConfigError


@dataclass
class StageCost:
    stage: str
    tasks: int
    task_seconds: float         # one task on one core (a LAMMPS run, an epoch, ...)
    core_hours: float
    gpu_hours: float
    wall_hours: float           # on the profile
    disk_bytes: int             # the stage file; shards about as much again while running
    memory_per_rank_bytes: int
    jobs: int
    windows: int
    basis: str                  # what was measured and what was assumed
    memory_note: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """What the stages' cost models read: LAMMPS rates (``md``: of
    ``[prepare].lammps_style``; ``md_propensity``: of ``[propensity].lammps_style``) and
    the CNN's (``learn``)."""

    md: object
    learn: object
    md_propensity: object = None

    def __post_init__(self):
        if self.md_propensity is None:
            self.md_propensity = self.md

    @staticmethod
    def timed(fn, min_seconds: float, max_reps: int = 50) -> float:
        """Seconds per call of ``fn`` on this machine."""
        from glasscam_mpi.learn.calibrate import seconds_per_call

        return seconds_per_call(fn, min_seconds, max_reps)


def window_seconds(text: str) -> float:
    """Seconds of a Slurm time limit ``[D-]HH:MM:SS``."""
    days, _, hms = text.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days) if days else 0) * 86400 + h * 3600 + m * 60 + s


def farm_schedule(n_tasks: int, task_s: float, ranks: int, per_task: int, window_s: float,
                   name: str) -> tuple[float, int, list[str]]:
    """(wall seconds, windows, warnings) of n_tasks equal tasks of task_s wall seconds each,
    farmed over the ranks, per_task ranks to a task."""
    slots = max(1, ranks // per_task)
    warnings = []
    if task_s <= 0:  # not priced (report): one job, no time
        return 0.0, 1, warnings
    if task_s > window_s:
        warnings.append(f"{name}: one task takes {task_s / 3600:.2f} h, longer than the "
                        f"profile's window of {window_s / 3600:.2f} h: it can never finish "
                        "(a task is the unit of resume); raise the profile's time or shorten "
                        "the task")
        return math.inf, 0, warnings
    if ranks % per_task:
        warnings.append(f"{name}: {ranks} ranks are not a multiple of ranks_per_task = "
                        f"{per_task}; {ranks - slots * per_task} rank(s) idle")
    if math.isinf(window_s):
        windows = 1
    else:
        per_window = slots * max(1, int(window_s // task_s))
        windows = max(1, math.ceil(n_tasks / per_window))
    waves = math.ceil(n_tasks / slots)
    return waves * task_s, windows, warnings


def schedule(name: str, kind: str, cost, profile) -> StageCost:
    """A stage's :class:`~glasscam_mpi.stages.declare.Cost` on ``profile``."""
    ranks = profile.nodes * profile.ntasks_per_node
    window_s = window_seconds(profile.time) or math.inf  # Slurm: a time of 0 is no limit
    basis, warnings = cost.basis, list(cost.warnings)
    if kind == "gpu":
        gpus = profile.nodes * profile.gpus_per_node
        seconds = cost.total_seconds
        wall = seconds / (gpus or ranks)
        windows = max(1, math.ceil(wall / window_s))
        return StageCost(name, cost.tasks, cost.task_seconds, 0.0 if gpus else seconds / 3600,
                         seconds / 3600 if gpus else 0.0, wall / 3600, cost.disk_bytes,
                         cost.memory_bytes, windows, windows, basis, cost.memory_note,
                         warnings)
    # task_seconds is one core's seconds; a task on k ranks (ranks_per_task) is assumed to
    # scale perfectly over them (not measured here: a lower bound on its cost)
    k = cost.ranks_per_task
    wall, windows, warn = farm_schedule(cost.tasks, cost.task_seconds / k, ranks, k,
                                        window_s, name)
    if k > 1:
        basis += (f"; {k} ranks per task, assumed to scale perfectly (a lower bound on the "
                  "cost)")
    return StageCost(name, cost.tasks, cost.task_seconds, cost.total_seconds / 3600, 0.0,
                     wall / 3600, cost.disk_bytes, cost.memory_bytes, windows, windows, basis,
                     cost.memory_note, warnings + warn)


def make_plan(cfg: Config, profile, md, learn, md_propensity=None) -> dict:
    """Every stage's cost on ``profile`` from the calibration ``md`` and ``learn``
    (``md_propensity``: the replicas' rates where ``[propensity].lammps_style`` differs from
    ``[prepare]``'s; default ``md``), in workflow order."""
    from glasscam_mpi.stages import STAGES

    cal = Calibration(md, learn, md_propensity)
    stages = [schedule(name, s.flow.runs.kind, s.flow.cost(cfg, cal, profile), profile)
              for name, s in STAGES.items() if s.flow.cost is not None]
    return _with_totals(cfg, profile, stages, md, learn)


def read_train_log(run_dir) -> dict:
    """``samples_per_s``, ``ranks``, ``device`` of an earlier run's ``logs/train.json``."""
    path = Path(run_dir) / "logs" / "train.json"
    try:
        log = json.loads(path.read_text())
        rate = float(log["samples_per_s"])
    except FileNotFoundError:
        raise ConfigError(f"--rates-from {run_dir}: {path} does not exist; give a run "
                          "directory whose train stage has run") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"--rates-from {run_dir}: {path} has no usable samples_per_s "
                          f"({exc})") from None
    if not rate > 0 or not math.isfinite(rate):
        raise ConfigError(f"--rates-from {run_dir}: samples_per_s = {rate} in {path}; "
                          "must be a number > 0")
    return {"path": str(path), "samples_per_s": rate, "ranks": int(log.get("ranks", 1)),
            "device": str(log.get("device", "unknown"))}


def _with_totals(cfg: Config, profile, stages: list[StageCost], md, learn) -> dict:
    out = {"config": {"system": cfg.system.name, "n_particles": cfg.system.n_particles,
                      "dim": cfg.sys.dim, "n_runs": cfg.prepare.n_runs},
           "profile": {"name": profile.name, "nodes": profile.nodes,
                       "ntasks_per_node": profile.ntasks_per_node,
                       "gpus_per_node": profile.gpus_per_node, "time": profile.time},
           "calibration": {"md": md.to_dict(), "learning": learn.to_dict(),
                           "clock": "CPU seconds of the calling thread (MD); wall (learning)"},
           "stages": {}}
    for s in stages:
        row = asdict(s)
        row.pop("stage")
        for k in ("core_hours", "gpu_hours", "wall_hours", "task_seconds"):
            row[k] = float(row[k])
        out["stages"][s.stage] = row
    keys = ("core_hours", "gpu_hours", "wall_hours", "disk_bytes", "jobs", "windows")
    out["total"] = {k: sum(out["stages"][s][k] for s in out["stages"]) for k in keys}
    # a stage that can never finish in the profile's window: wall time null (strict JSON)
    for row in (*out["stages"].values(), out["total"]):
        if not math.isfinite(row["wall_hours"]):
            row["wall_hours"] = None
    out["total"]["memory_per_rank_bytes"] = max(s.memory_per_rank_bytes for s in stages)
    out["warnings"] = [w for s in stages for w in s.warnings]
    return out


