"""The Slurm jobs of a run directory: the record, continuations, status and cancelling.

``glasscam submit`` records every job it submits in ``RUN_DIR/jobs.json``; a job that
stopped on the walltime warning records its continuation there too (``glasscam
resubmit``). Each entry::

    {"stage": "prepare", "job": "1234", "script": "RUN_DIR/jobs/prepare.sbatch",
     "submitted": "2026-11-25T23:01:02", "after": ["1233"], "continues": null}

``continues`` is the job a continuation takes over from. ``glasscam status DIR`` shows each
job's Slurm state and the stages' progress from their shards; ``glasscam cancel DIR``
cancels every job of the record that has not ended.

Slurm state comes from ``scontrol show job`` (slurmctld keeps a job for ``MinJobAge``
seconds after it ends, 300 by default), then from ``sacct`` for jobs it has forgotten
where the cluster keeps accounting; without either the state is ``UNKNOWN``.

Why not pysqa: tried (1.1.1, on the local Slurm 22.05): its dependency option writes
``--dependency=afterok:A,B``, which Slurm reads as ``afterok:A,afterany:B``; its status is
squeue's alone, so a job that completed, failed, timed out or was cancelled all read
``finished``, with no exit code; it cannot change a queued job's dependency (what a
continuation needs) and renders its own job scripts without this package's quoting rules.
What is used here is three commands (``scontrol``, ``sacct``, ``scancel``) besides
:class:`~glasscam_mpi.slurm.Slurm`'s ``sbatch``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from glasscam_mpi.jsonio import dumps
from glasscam_mpi.slurm import Runner, Slurm, SlurmError, submission_env
from glasscam_mpi.walltime import EXIT_NOT_FINISHED

ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"})


def jobs_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / "jobs.json"


def read_jobs(run_dir: Path | str) -> list[dict]:
    path = jobs_path(run_dir)
    if not path.exists():
        return []
    return json.loads(path.read_text())


@contextmanager
def _locked(run_dir: Path | str):
    """jobs.json is written by 'glasscam submit' and by the jobs (continuations): one at a
    time (an flock on jobs.json.lock), each write atomic (a temporary file renamed)."""
    path = jobs_path(run_dir)
    with open(path.with_name("jobs.json.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_jobs(run_dir: Path | str, entries: Sequence[dict]) -> None:
    """Append ``entries`` (stage, job, script, after, continues) to ``jobs.json``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    with _locked(run_dir) as path:
        jobs = read_jobs(run_dir)
        jobs += [{"stage": e["stage"], "job": str(e["job"]), "script": str(e["script"]),
                  "submitted": now, "after": [str(a) for a in e.get("after", ())],
                  "continues": e.get("continues")} for e in entries]
        tmp = path.with_name(f"jobs.json.tmp.{os.getpid()}")
        tmp.write_text(dumps(jobs, indent=2) + "\n")
        os.replace(tmp, path)


def _run(runner: Runner, cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return runner(cmd, capture_output=True, text=True, env=submission_env())
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} not found: is this a Slurm login node?") from None


# -- continuation -----------------------------------------------------------------------------
_DEP = re.compile(r"^(after\w*):(\d+)(?:\+\d+)?\((\w+)\)$")


def waiting_on(job: str, runner: Runner = subprocess.run) -> dict[str, str]:
    """{pending job: its dependency string} for every pending job of this user that waits
    on ``job`` (only the owner may change a job's dependency)."""
    res = _run(runner, ["squeue", "--me", "-h", "-t", "PD", "-o", "%i|%E"])
    if res.returncode != 0:
        raise SlurmError(f"squeue failed ({res.returncode}): {res.stderr.strip()}")
    out = {}
    for line in res.stdout.splitlines():
        jid, _, dep = line.strip().partition("|")
        if any((m := _DEP.match(tok)) and m.group(2) == job for tok in dep.split(",")):
            out[jid] = dep
    return out


def moved_dependency(dep: str, old: str, new: str) -> str:
    """A dependency as squeue prints it (``afterok:12(unfulfilled),afterany:9(...)``) with
    ``old`` replaced by ``new``, for ``scontrol update``; dependencies already fulfilled
    are left out (Slurm may have forgotten those jobs)."""
    kept = []
    for tok in dep.split(","):
        m = _DEP.match(tok)
        if m is None:
            raise SlurmError(f"cannot read the dependency {dep!r} (token {tok!r})")
        kind, jid, state = m.groups()
        if jid == old:
            kept.append(f"{kind}:{new}")
        elif state != "fulfilled":
            kept.append(f"{kind}:{jid}")
    return ",".join(kept)


def resubmit(run_dir: Path | str, stage: str, job: str, runner: Runner = subprocess.run) -> str:
    """Continue ``stage`` after job ``job`` stopped unfinished (called by that job, still
    running): submit the same script again after it ends (``afterany``), move every queued
    job that waited for ``job`` onto the continuation, and record it. Returns the new id."""
    run_dir = Path(run_dir).resolve()
    script = run_dir / "jobs" / f"{stage}.sbatch"
    if not script.exists():
        raise SlurmError(f"{script} does not exist: 'glasscam submit {stage}' writes it")
    if not str(job).isdigit():
        raise SlurmError(f"--job {job!r}: a Slurm job id (digits) is needed")
    dependents = waiting_on(job, runner)
    new = Slurm(runner).submit(script, after=[job], kind="afterany")
    for jid, dep in dependents.items():
        moved = moved_dependency(dep, job, new)
        res = _run(runner, ["scontrol", "update", f"JobId={jid}", f"Dependency={moved}"])
        if res.returncode != 0:
            raise SlurmError(f"could not move job {jid} onto continuation {new} (Dependency="
                             f"{moved}): {res.stderr.strip()}")
    record_jobs(run_dir, [{"stage": stage, "job": new, "script": script, "after": [job],
                           "continues": job}])
    return new


# -- status -----------------------------------------------------------------------------------
def _field(text: str, key: str) -> str:
    m = re.search(rf"(?:^|\s){key}=(\S*)", text)
    return m.group(1) if m else ""


def slurm_state(job: str, runner: Runner = subprocess.run) -> dict:
    """{"state", "exit_code", "reason", "source"} of one job: scontrol, else sacct."""
    res = _run(runner, ["scontrol", "show", "job", "--oneliner", str(job)])
    if res.returncode == 0 and _field(res.stdout, "JobState"):
        code = _field(res.stdout, "ExitCode").split(":")[0]
        return {"state": _field(res.stdout, "JobState"),
                "exit_code": int(code) if code.isdigit() else None,
                "reason": _field(res.stdout, "Reason"), "source": "scontrol"}
    res = _run(runner, ["sacct", "-n", "-X", "-P", "-j", str(job), "-o", "State,ExitCode"])
    line = res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else ""
    if line:
        state, _, code = line.partition("|")
        code = code.split(":")[0]
        return {"state": state.split()[0], "exit_code": int(code) if code.isdigit() else None,
                "reason": "", "source": "sacct"}
    return {"state": "UNKNOWN", "exit_code": None, "reason": "", "source": None}


def status(run_dir: Path | str, runner: Runner = subprocess.run) -> dict:
    """Every recorded job with its Slurm state, and the stages' progress (``glasscam info``)."""
    jobs = read_jobs(run_dir)
    continued = {j["continues"]: j["job"] for j in jobs if j.get("continues")}
    out = []
    for j in jobs:
        s = slurm_state(j["job"], runner)
        entry = {**j, **s}
        if s["state"] == "NODE_FAIL":
            entry["note"] = ("a node of the job failed or was lost (NODE_FAIL): the tasks "
                             "finished before are kept as shards; submit the stage again "
                             "to resume")
        elif s["exit_code"] == EXIT_NOT_FINISHED:
            entry["note"] = (f"not finished (exit {EXIT_NOT_FINISHED}): continued as job "
                             f"{continued[j['job']]}" if j["job"] in continued else
                             f"not finished (exit {EXIT_NOT_FINISHED}), no continuation recorded")
        out.append(entry)
    return {"run_dir": str(Path(run_dir).resolve()), "jobs": out,
            "stages": stage_progress(run_dir)}


def stage_progress(run_dir: Path | str) -> dict[str, dict]:
    """{stage: complete, done, failed, total}: ``glasscam info``'s task counts, plus the
    total of a task farm under way (from its plan, which reads only earlier stages)."""
    from glasscam_mpi.config import ConfigError
    from glasscam_mpi.info import describe
    from glasscam_mpi.rundir import RunDir
    from glasscam_mpi.stages import STAGES

    rd = RunDir(run_dir)
    out = {}
    for name, s in describe(run_dir)["stages"].items():
        entry = {"complete": s.get("complete", False), **s.get("tasks", {})}
        if not entry["complete"] and "done" in entry:
            try:
                total = STAGES[name].total(rd, rd.saved_config())
            except (ConfigError, OSError, KeyError):
                total = None  # an earlier stage it reads is missing or damaged: no total
            if total is not None:
                entry["total"] = total
        out[name] = entry
    return out


def format_status(st: dict) -> str:
    lines = [f"run directory {st['run_dir']}", "",
             f"{'stage':<11} {'job':>8}  {'state':<11} {'exit':>4}  note"]
    for j in st["jobs"]:
        note = j.get("note") or (j["reason"] if j["reason"] not in ("", "None") else "")
        code = "" if j["exit_code"] is None else str(j["exit_code"])
        lines.append(f"{j['stage']:<11} {j['job']:>8}  {j['state']:<11} {code:>4}  {note}")
    if not st["jobs"]:
        lines.append("(no jobs recorded: 'glasscam submit' records them in jobs.json)")
    lines += ["", f"{'stage':<11} {'complete':<9} {'done':>6} {'failed':>6} {'total':>6}"]
    for name, s in st["stages"].items():
        lines.append(f"{name:<11} {'yes' if s['complete'] else 'no':<9} {s.get('done', ''):>6} "
                     f"{s.get('failed', ''):>6} {s.get('total', ''):>6}")
    return "\n".join(lines)


# -- cancel -----------------------------------------------------------------------------------
def cancel(run_dir: Path | str, runner: Runner = subprocess.run) -> list[str]:
    """``scancel`` every recorded job that has not ended; returns their ids. Twice: a job
    stopping on its walltime warning may record a continuation while the first pass runs."""
    cancelled: list[str] = []
    for _ in range(2):
        live = [j["job"] for j in read_jobs(run_dir) if j["job"] not in cancelled
                and slurm_state(j["job"], runner)["state"] not in ENDED | {"UNKNOWN"}]
        if not live:
            break
        res = _run(runner, ["scancel", *live])
        if res.returncode != 0:
            raise SlurmError(f"scancel {' '.join(live)} failed ({res.returncode}): "
                             f"{res.stderr.strip()}")
        cancelled += live
    return cancelled
