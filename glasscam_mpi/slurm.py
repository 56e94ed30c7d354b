"""Slurm: cluster profiles, job scripts from jinja2 templates, ``sbatch`` with ``afterok`` chains.

A *profile* is small data (``hpc/profiles/NAME.toml`` or any TOML file): partition,
nodes, tasks per node, GPUs, wall time, the MPI launcher, setup lines (modules, venv).
Templates live in ``jobscripts/`` (``base.sbatch.j2`` and one per stage).
:class:`Slurm` takes the subprocess runner as an argument, so rendering and chaining are
testable without a scheduler; the job-script tests also run them on a real Slurm.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glasscam_mpi.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
JOBSCRIPTS = ROOT / "jobscripts"
PROFILES = ROOT / "hpc" / "profiles"
GPU_STAGES = frozenset({"train", "gradcam"})


class SlurmError(RuntimeError):
    """sbatch failed, or its answer was not a job id."""


@dataclass(frozen=True)
class Profile:
    name: str
    partition: str = ""
    account: str = ""
    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    time: str = "01:00:00"
    launcher: str = "srun --mpi=pmi2"
    setup: tuple[str, ...] = ()
    sbatch_extra: tuple[str, ...] = field(default=())


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (``hpc/profiles/NAME.toml``) or path; unknown keys are refused."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.toml")))
        raise ConfigError(f"Slurm profile {name_or_path!r} not found; known: {known} "
                          "(or give the path of a TOML file)")
    data = tomllib.loads(path.read_text())
    allowed = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"profile {path}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        if key in ("nodes", "ntasks_per_node", "cpus_per_task") and (
                not isinstance(value, int) or value < 1):
            raise ConfigError(f"profile {path}: {key} = {value!r}: must be an integer >= 1")
        if key == "time" and not re.fullmatch(r"(\d+-)?\d{1,2}:\d{2}:\d{2}", str(value)):
            raise ConfigError(f"profile {path}: time = {value!r}: use [D-]HH:MM:SS")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return Profile(name=path.stem, **data)


def render(stage: str, profile: Profile, run_dir: Path | str, *, glasscam: str | None = None,
           workdir: Path | str | None = None) -> str:
    """The sbatch script of ``stage`` for ``profile``."""
    import jinja2

    template = JOBSCRIPTS / f"{stage}.sbatch.j2"
    if not template.exists():
        known = sorted(p.name.split(".")[0] for p in JOBSCRIPTS.glob("*.sbatch.j2")
                       if not p.name.startswith("base"))
        raise ConfigError(f"no job script for stage {stage!r}; stages with scripts: {', '.join(known)}")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(JOBSCRIPTS),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    run_dir = Path(run_dir).resolve()
    return env.get_template(template.name).render(
        p=profile, stage=stage, gpu=stage in GPU_STAGES, run_dir=run_dir,
        job_name=f"glasscam-{stage}", log=run_dir / "logs" / f"slurm-{stage}-%j.out",
        glasscam=glasscam or f"{sys.executable} -m glasscam_mpi.cli",
        workdir=Path(workdir or run_dir).resolve())


Runner = Callable[..., subprocess.CompletedProcess]

# Variables that tie a process to *this* MPI job or Slurm step. sbatch exports the
# submitting environment into the job (--export=ALL); if 'glasscam submit' itself runs
# under MPI (it does: MPI_Init as a singleton starts a PMI server), the job's srun/mpiexec
# would find a PMI_PORT of a process long gone and hang in MPI_Init. So they are dropped.
_JOB_BOUND = ("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPIR_", "OMPI_", "SLURM_JOB", "SLURM_STEP",
              "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS", "SLURM_TASK")


def submission_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for sbatch: this one without MPI/Slurm job-bound variables."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if not k.startswith(_JOB_BOUND)}


class Slurm:
    """Submit scripts with ``sbatch --parsable``; ``runner`` defaults to subprocess.run."""

    def __init__(self, runner: Runner | None = None):
        self.runner = runner or subprocess.run

    def submit_command(self, script: Path | str, after: Sequence[str] = ()) -> list[str]:
        cmd = ["sbatch", "--parsable"]
        if after:
            cmd.append("--dependency=afterok:" + ":".join(after))
        return [*cmd, str(script)]

    def submit(self, script: Path | str, after: Sequence[str] = ()) -> str:
        cmd = self.submit_command(script, after)
        try:
            res = self.runner(cmd, capture_output=True, text=True, env=submission_env())
        except FileNotFoundError:
            raise SlurmError("sbatch not found: is this a Slurm login node?") from None
        if res.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        job = res.stdout.strip().split(";")[0]
        if not job.isdigit():
            raise SlurmError(f"{' '.join(cmd)} answered {res.stdout!r}, not a job id")
        return job

    def submit_chain(self, scripts: Sequence[Path | str]) -> list[str]:
        """Submit scripts in order, each after the previous one succeeded (afterok)."""
        jobs: list[str] = []
        for script in scripts:
            jobs.append(self.submit(script, after=jobs[-1:]))
        return jobs
