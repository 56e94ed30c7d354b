"""Slurm: cluster profiles, job scripts from jinja2 templates, ``sbatch`` with ``afterok`` chains.

A *profile* is small data (a TOML file): partition, nodes, tasks per node, GPUs, wall
time, the MPI launcher, setup lines (modules, venv). Templates are ``base.sbatch.j2`` and
one per stage. Both ship inside the package (``glasscam_mpi/profiles/``,
``glasscam_mpi/jobscripts/``, package data read with :mod:`importlib.resources`), so an
installed wheel submits; in a checkout, ``hpc/profiles`` and ``jobscripts`` are symlinks
to those folders. A profile *name* is looked up in the folders of ``$GLASSCAM_PROFILES``
(a site's own profiles, ':'-separated) before the packaged ones (:func:`profile_dirs`).
:class:`Slurm` takes the subprocess runner as an argument, so rendering and chaining are
testable without a scheduler; the job-script tests also run them on a real Slurm.

Quoting. Every value a template puts into a job script goes through one jinja2 filter,
``sh`` (:func:`shell_words`, built on :func:`shlex.quote`): paths, the ``glasscam``
command, the launcher's words, the log path of ``#SBATCH --output``. A run directory
named ``a b;touch x`` is one word to bash, never a second command. ``setup`` lines are
the one exception: they are shell, by design (``module load ...``, ``source ...``), and
are written as they are.

``#SBATCH`` lines are read by sbatch itself, not by a shell. Measured on Slurm 22.05
(``hpc/slurm/localcluster.sh``): sbatch splits a directive's value at unquoted
whitespace, strips ``'...'`` and ``"..."`` quotes as a shell does (so ``shlex.quote``'s
output, ``'it'"'"'s'`` included, reads back unchanged), reads an unquoted ``#`` as the
start of a comment, ends the directive at a newline, and drops a backslash *even inside
single quotes* (``'a\\b'`` reads as ``ab``); a tab or carriage return inside quotes
survives. So a value for an ``#SBATCH`` line is quoted with ``sh`` and refused
(:class:`ConfigError` at ``glasscam submit`` time, naming the field, the value and what is
allowed) when it holds a newline or a backslash, which no quoting carries through, or, to
keep the rule short, any other control character. ``--output`` is also a Slurm *filename
pattern*: ``%j`` is the job id and ``%%`` a literal ``%`` (a directory named ``run%j`` would
become ``run1234``, and the job fail at launch), so the run directory's ``%`` signs are
doubled there.
Profile fields that go into directives (partition, account, time, ``sbatch_extra``) are
checked for characters that would end or change the directive; the ``launcher`` is
command words (split as a shell would, each then quoted: no variables or operators).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from glasscam_mpi.config import ConfigError
from glasscam_mpi.walltime import EXIT_NOT_FINISHED

# The site's folders of profiles, searched by name before the packaged ones
PROFILES_ENV = "GLASSCAM_PROFILES"
# Which stages ask for GPUs, continue past a walltime, and which commands have a job script
# without being stages of the chain: their declarations (glasscam_mpi.stages: JOBS, COMMANDS)


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
    # seconds before the time limit at which Slurm warns the task farms (SIGUSR1); 0: none
    signal_lead: int = 300


# What may go into an #SBATCH line (see the module docstring for how sbatch reads them).
_NAME_LIST = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*")
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_TIME = re.compile(r"([0-9]+-)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_CHARS = "letters, digits, '_', '.', '+', '-'"


def check_profile(profile: Profile, where: str | None = None) -> None:
    """Refuse a profile value that cannot go into a job script as it is meant to.

    Raises :class:`ConfigError` naming the profile, the field, the value and what is allowed.
    """
    where = where or f"profile {profile.name!r}"

    def bad(key: str, value, allowed: str):
        raise ConfigError(f"{where}: {key} = {value!r}: {allowed}")

    if not isinstance(profile.name, str) or not profile.name or _CONTROL.search(profile.name):
        bad("name", profile.name, "a profile name needs at least one character and no "
            "control characters (it is written into a comment line of the job script)")
    for key in ("nodes", "ntasks_per_node", "cpus_per_task"):
        value = getattr(profile, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            bad(key, value, "must be an integer >= 1")
    if (isinstance(profile.gpus_per_node, bool) or not isinstance(profile.gpus_per_node, int)
            or profile.gpus_per_node < 0):
        bad("gpus_per_node", profile.gpus_per_node, "must be an integer >= 0")
    for key, pattern, allowed in (
            ("partition", _NAME_LIST, f"{_NAME_CHARS} and ',' between names (a "
                                      "comma-separated list of partitions)"),
            ("account", _NAME, _NAME_CHARS)):
        value = getattr(profile, key)
        if not isinstance(value, str) or (value and not pattern.fullmatch(value)):
            bad(key, value, f"allowed: {allowed}, or \"\" for none; it goes into "
                f"'#SBATCH --{key}=', where a space, '#', a quote or a newline would end "
                "or change the directive")
    if not isinstance(profile.time, str) or not _TIME.fullmatch(profile.time):
        bad("time", profile.time, "use [D-]HH:MM:SS")
    if (isinstance(profile.signal_lead, bool) or not isinstance(profile.signal_lead, int)
            or not 0 <= profile.signal_lead <= 65535):
        bad("signal_lead", profile.signal_lead, "seconds before the time limit at which "
            "Slurm warns the job, an integer from 0 (no warning) to 65535 (Slurm's limit)")
    if not isinstance(profile.launcher, str) or _CONTROL.search(profile.launcher):
        bad("launcher", profile.launcher, "one line of command words, e.g. \"srun --mpi=pmi2\"")
    try:
        shlex.split(profile.launcher)
    except ValueError as exc:
        bad("launcher", profile.launcher, f"cannot be split into words ({exc}); the launcher "
            "is command words split as a shell would, without variables or operators (put "
            "shell code in 'setup')")
    for key in ("setup", "sbatch_extra"):
        value = getattr(profile, key)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            bad(key, value, "must be a list of strings")
    for line in profile.sbatch_extra:
        if not line.startswith("-") or _CONTROL.search(line) or "#" in line or "\\" in line:
            bad("sbatch_extra", line, "each entry is sbatch options for one '#SBATCH' line, "
                "e.g. \"--mem=8G\": it starts with '-' and holds no control character (a "
                "newline would end the directive and start shell code), no '#' (sbatch reads "
                "the rest of the line as a comment) and no backslash")


def packaged(folder: str):
    """A folder of the package's data (``jobscripts``, ``profiles``), as an
    :mod:`importlib.resources` Traversable: the same for a checkout and an installed wheel."""
    return resources.files("glasscam_mpi").joinpath(folder)


def profile_dirs() -> list[tuple[str, object]]:
    """Where a profile name is looked up, in order: each folder named by
    ``$GLASSCAM_PROFILES`` (':'-separated), then the packaged profiles. A list of
    (description, folder); a ``$GLASSCAM_PROFILES`` entry that is not a folder is refused."""
    dirs: list[tuple[str, object]] = []
    value = os.environ.get(PROFILES_ENV, "")
    for entry in value.split(os.pathsep):
        if not entry:
            continue
        if not Path(entry).is_dir():
            raise ConfigError(f"{PROFILES_ENV}={value!r}: {entry!r} is not a folder; allowed: "
                              f"folders of profile files NAME.toml, separated by "
                              f"{os.pathsep!r} (searched in that order, before the packaged "
                              "profiles), or unset")
        dirs.append((f"{PROFILES_ENV} folder {entry}", Path(entry)))
    dirs.append((f"the packaged profiles {packaged('profiles')}", packaged("profiles")))
    return dirs


def _is_profile_path(name_or_path: str) -> bool:
    """A --profile value is a file path when it has a suffix or a '/'; otherwise a name."""
    return bool(Path(name_or_path).suffix) or "/" in name_or_path


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (``NAME.toml`` in the folders of :func:`profile_dirs`, the first
    found) or by path (a value with a suffix or a '/'); unknown keys and values that cannot
    go into a job script are refused."""
    if _is_profile_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"Slurm profile file {name_or_path!r} not found (a --profile "
                              "with a suffix or a '/' is a path; a name has neither)")
        source, where, name = path, str(path), path.stem
    else:
        dirs = profile_dirs()
        for _, folder in dirs:
            if folder.joinpath(f"{name_or_path}.toml").is_file():
                source = folder.joinpath(f"{name_or_path}.toml")
                where, name = str(source), name_or_path
                break
        else:
            known = sorted({p.name[:-len(".toml")] for _, folder in dirs if folder.is_dir()
                            for p in folder.iterdir() if p.name.endswith(".toml")})
            looked = "; ".join(what for what, _ in dirs)
            raise ConfigError(f"Slurm profile {name_or_path!r} not found; known: "
                              f"{', '.join(known)} (looked in: {looked}); or give the path "
                              "of a TOML file")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {where}: not valid TOML ({exc})") from None
    allowed = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"profile {where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    profile = Profile(name=name, **data)
    check_profile(profile, where=f"profile {where}")
    return profile


def shell_words(value) -> str:
    """The jinja2 filter ``sh``: a value as shell text that means exactly that value.

    A string or path is one word (:func:`shlex.quote`); a list or tuple is several words,
    each quoted (a command and its arguments)."""
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


def stages_with_scripts() -> list[str]:
    """The stages that have a job script (``jobscripts/<stage>.sbatch.j2``)."""
    from glasscam_mpi.stages import COMMANDS

    return sorted(p.name.split(".")[0] for p in packaged("jobscripts").iterdir()
                  if p.name.endswith(".sbatch.j2") and not p.name.startswith("base")
                  and p.name.split(".")[0] not in COMMANDS)


def check_directive_path(what: str, path: Path | str) -> None:
    """Refuse a path that cannot be written into an ``#SBATCH`` line (module docstring)."""
    if _CONTROL.search(str(path)) or "\\" in str(path):
        raise ConfigError(
            f"{what} {str(path)!r} cannot go into a Slurm job script: it is written into "
            "'#SBATCH --output=', which sbatch reads itself, and there a newline ends the "
            "directive and a backslash is dropped, quoted or not; allowed: any character but "
            "control characters (newline, tab, ...) and backslash (spaces, quotes, ';', '%' "
            "and the like are quoted). Use another directory name.")


def _template(name: str) -> str | None:
    """The text of the packaged template ``name`` (jinja2's loader), None if there is none."""
    if "/" in name or name.startswith("."):
        return None
    source = packaged("jobscripts").joinpath(name)
    return source.read_text(encoding="utf-8") if source.is_file() else None


def render(stage: str, profile: Profile, run_dir: Path | str, *,
           glasscam: str | Sequence[str] | None = None,
           workdir: Path | str | None = None, extra: dict | None = None) -> str:
    """The sbatch script of ``stage`` for ``profile``.

    ``glasscam`` is the command that runs glasscam: the path of an executable, or a list
    of words (default: this Python with ``-m glasscam_mpi.cli``). Raises
    :class:`ConfigError` for a stage without a script, a profile value or a run directory
    that cannot go into the script.
    """
    import jinja2

    from glasscam_mpi.stages import COMMANDS, JOBS

    known = stages_with_scripts()
    extra = dict(extra or {})
    if stage not in known and stage not in COMMANDS:
        raise ConfigError(f"no job script for stage {stage!r}; stages with scripts: {', '.join(known)}")
    command = COMMANDS.get(stage)  # a command with its own arguments, not a stage of the chain
    for name in command.files if command else ():
        if name not in extra:
            raise ConfigError(f"the {stage}'s job script needs its {name} file: submit it "
                              f"with '{command.usage}'")
        if _CONTROL.search(str(extra[name])):
            raise ConfigError(f"{name} file {str(extra[name])!r} cannot go into a job "
                              "script: allowed: any character but control characters "
                              "(newline, tab, ...); rename it")
    for name in command.optional if command else ():
        extra.setdefault(name, None)
    runs = JOBS[stage]
    check_profile(profile)
    run_dir = Path(run_dir).resolve()
    check_directive_path("run directory", run_dir)
    if glasscam is None:
        glasscam = [sys.executable, "-m", "glasscam_mpi.cli"]
    elif isinstance(glasscam, (str, os.PathLike)):
        glasscam = [os.fspath(glasscam)]
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_template),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["sh"] = shell_words
    # --output is a filename pattern: %j is the job id, %% a literal % (module docstring)
    log = str(run_dir / "logs").replace("%", "%%") + f"/slurm-{stage}-%j.out"
    cpus = profile.cpus_per_task
    if runs.rank_per_gpu and profile.gpus_per_node:  # one task per GPU, the cores shared out
        cpus = max(1, profile.ntasks_per_node * profile.cpus_per_task // profile.gpus_per_node)
    return env.get_template(f"{stage}.sbatch.j2").render(
        p=profile, stage=stage, gpu=runs.kind == "gpu", run_dir=run_dir,
        cpus_per_task=cpus,
        job_name=f"glasscam-{stage}", log=log, launcher=shlex.split(profile.launcher),
        glasscam=list(glasscam), workdir=Path(workdir or run_dir).resolve(),
        continued=runs.continues and profile.signal_lead > 0,
        not_finished=EXIT_NOT_FINISHED, **extra)


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

    def submit_command(self, script: Path | str, after: Sequence[str] = (),
                       kind: str = "afterok") -> list[str]:
        cmd = ["sbatch", "--parsable"]
        if after:
            cmd.append(f"--dependency={kind}:" + ":".join(after))
        return [*cmd, str(script)]

    def submit(self, script: Path | str, after: Sequence[str] = (), kind: str = "afterok") -> str:
        """Submit ``script`` after the jobs ``after`` (``kind``: afterok, afterany)."""
        cmd = self.submit_command(script, after, kind)
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
