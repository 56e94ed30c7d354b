"""``glasscam``: the command line.

    mpiexec -n K glasscam prepare --preset demo --run-dir DIR
    mpiexec -n K glasscam indicators --run-dir DIR      (then propensity, ...: one per stage)
    glasscam info DIR
    mpiexec -n K glasscam run --preset demo --run-dir DIR     (every stage, in order)
    glasscam submit prepare --profile local --preset demo --run-dir DIR   (Slurm, afterok)
    glasscam plan --preset paper-kam --profile generic         (cost per stage, before submitting)
    mpiexec -n K glasscam sweep --run-dir DIR --variants V.toml [--seeds 3]   (CNN variants)
    glasscam status DIR                  (its Slurm jobs and stage progress)
    glasscam cancel DIR                  (scancel every job of the run directory not ended)
    glasscam import --run-dir DIR --system KAM glass.data      (your own configurations)
    glasscam config --preset paper-kam --set prepare.n_runs=100   (show the resolved config)
    glasscam export --run-dir DIR --format gsd --xi 2 3       (test samples for OVITO)
    glasscam env                                               (the MPI/HDF5/LAMMPS stack)

Under ``mpiexec``/``srun`` every rank runs the same command; only rank 0 prints reports.
A user error (bad config, busy run directory) is printed once and exits with status 2
on every rank; an unexpected error on any rank aborts the whole job. A stage stopped by
the walltime warning (SIGUSR1 from Slurm) with tasks left exits with status 75 on every
rank: not finished, run it again to continue (:mod:`glasscam_mpi.walltime`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from glasscam_mpi.jsonio import dumps

# Thread counts are set per rank on purpose: one MD task or analysis per rank and core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="named preset: demo, paper-kam, paper-abm, ka3d")
    g.add_argument("--config", metavar="FILE", help="TOML config file (may say preset = \"...\")")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=VALUE",
                   help="override one config value, e.g. --set prepare.n_runs=100 (repeatable)")


PROFILE_HELP = ("cluster profile: the path of a TOML file (a value with a suffix or a '/'), "
                "or a NAME looked up as NAME.toml first in the folders of $GLASSCAM_PROFILES "
                "(a site's profiles, ':'-separated, in that order), then in the packaged "
                "profiles (hpc/profiles/ in a checkout)")


def _requested(args):
    from glasscam_mpi.config import load_config, load_saved_config

    if not (args.preset or args.config or args.overrides):
        return None  # continue with the run directory's saved config
    saved = Path(args.run_dir) / "config.toml" if getattr(args, "run_dir", None) else None
    if not (args.preset or args.config) and saved is not None and saved.exists():
        # --set alone on an existing run directory changes its saved config
        return load_saved_config(saved, overrides=args.overrides)
    return load_config(preset=args.preset, path=args.config, overrides=args.overrides)


def build_parser() -> argparse.ArgumentParser:
    from glasscam_mpi import __version__

    parser = argparse.ArgumentParser(
        prog="glasscam",
        description="Grad-CAM analysis of glass configurations (Oyama, Koyama & Kawasaki 2023) "
                    "at HPC scale. Run stages under mpiexec/srun to spread them over ranks.")
    parser.add_argument("--version", action="version", version=f"glasscam-mpi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from glasscam_mpi.stages import STAGES

    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=stage.about.help, description=stage.about.description)
        p.add_argument("--run-dir", required=True, help="run directory (created if new)")
        _config_args(p)
        p.add_argument("--retry-failed", action="store_true", help="rerun tasks recorded as failed")
        if stage.about.options:
            g = p.add_mutually_exclusive_group()
            for flag, text in stage.about.options:
                g.add_argument(flag, action="store_true", help=text)

    p = sub.add_parser("run", help="every stage in order on one run directory",
                       description="Run every stage in order (" + ", ".join(STAGES) + "); a "
                                   "stage already complete is skipped, an unfinished one resumed.")
    p.add_argument("--run-dir", required=True, help="run directory (created if new)")
    _config_args(p)

    p = sub.add_parser("sweep", help="CNN variants x seeds on one prepared run, and each "
                                     "variant's seed ensemble: one table",
                       description="Train, Grad-CAM and analyze every [train]/[gradcam] variant "
                                   "of a variants file, for --seeds seeds each, in sub-run "
                                   "directories DIR/sweep/<variant>/seed-<s>/ that share DIR's "
                                   "prepare.h5, indicators.h5 and propensity.h5 (symbolic "
                                   "links, read-only); then each variant's seed ensemble. Sub-"
                                   "runs are farmed over the MPI ranks, each on one rank (the "
                                   "results do not depend on the rank count). Rerunning resumes. "
                                   "Writes DIR/sweep/table.md, table.csv and sweep.png.")
    p.add_argument("--run-dir", required=True,
                   help="the parent run directory (prepare, indicators, propensity complete)")
    p.add_argument("--variants", required=True, metavar="FILE",
                   help="TOML: [variants.NAME] tables of train.KEY / gradcam.KEY overrides, "
                        "and optionally seeds = N")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per variant (default: the file's seeds, else 3)")
    p.add_argument("--submit", metavar="PROFILE", default=None,
                   help="instead of running: render jobscripts/sweep.sbatch.j2 for this "
                        "cluster profile into DIR/jobs/sweep.sbatch and sbatch it; "
                        + PROFILE_HELP.removeprefix("cluster profile: "))
    p.add_argument("--dry-run", action="store_true",
                   help="with --submit: write and print the script, submit nothing")

    p = sub.add_parser("import", help="your own configurations as the test glasses of a new "
                                      "run directory",
                       description="Read configurations made elsewhere (LAMMPS data files and "
                                   "dumps, extxyz, GSD) and write them as the test glass samples "
                                   "of DIR/prepare.h5, with where each came from (path, format, "
                                   "frame, sha256). Every frame is checked against the system: "
                                   "species, composition, density, overlaps, a periodic box. "
                                   "Then indicators, propensity, gradcam (with [gradcam].model, "
                                   "a network trained by glasscam for the same system and box) "
                                   "and analyze run on DIR as on a prepared run. Seeds: row i is "
                                   "seeded as run i of a prepared run with the same [run].seed.")
    p.add_argument("files", nargs="+", metavar="FILE", help="configuration files, read in order; "
                   "each selected frame becomes one test run")
    p.add_argument("--run-dir", required=True, help="run directory to create (must be new)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--system", help="the system of the configurations: KAM, ABM, ABM-code, KA3D "
                                    "(the rest of the config: defaults and --set)")
    g.add_argument("--config", metavar="FILE", help="TOML config file (may say preset = \"...\"); "
                   "[system].n_particles is taken from the files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=VALUE",
                   help="override one config value, e.g. --set propensity.T_star=0.37 (repeatable)")
    p.add_argument("--format", choices=("lammps-data", "lammps-dump", "extxyz", "gsd"),
                   help="format of every FILE (default: from the suffix: .data/.lmp, "
                        ".dump/.lammpstrj, .extxyz/.xyz, .gsd)")
    p.add_argument("--frames", default=":", metavar="SPEC",
                   help="frames of each file to import: ':' all (default), '-1' the last, "
                        "'0,3', '::2'")
    p.add_argument("--types", metavar="LABEL=SPECIES,...",
                   help="type label of the files -> species of the system (default: LAMMPS "
                        "types 1, 2 -> A, B, and the species names A, B themselves)")

    p = sub.add_parser("submit", help="write Slurm job scripts and submit them (afterok chain)",
                       description="Render jobscripts/<stage>.sbatch.j2 for a cluster profile, "
                                   "save the run directory's config now (so a bad config fails "
                                   "here, not in the queue), and sbatch the stages in order, "
                                   "each after the previous succeeded.")
    p.add_argument("stages", nargs="+", metavar="STAGE", help="stages in order, e.g. prepare indicators")
    p.add_argument("--run-dir", required=True, help="run directory (on a shared file system)")
    p.add_argument("--profile", default="local",
                   help=PROFILE_HELP + " (default: local)")
    p.add_argument("--dry-run", action="store_true", help="write and print the scripts, submit nothing")
    _config_args(p)

    p = sub.add_parser("plan", help="priced plan: core-hours, GPU-hours, disk, memory, jobs "
                                    "per stage on a cluster profile, before submitting",
                       description="Calibrate on this machine (short real LAMMPS runs of the "
                                   "configured system and N at the temperatures the protocol "
                                   "visits; a few real training and Grad-CAM steps of the "
                                   "configured CNN) and print, per stage, core-hours, GPU-hours, "
                                   "disk, memory per rank, and the Slurm jobs and walltime "
                                   "windows the profile needs. Takes a few seconds to a minute.")
    _config_args(p)
    p.add_argument("--profile", default="local",
                   help=PROFILE_HELP + " (default: local)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (per stage: "
                   "core_hours, gpu_hours, wall_hours, disk_bytes, memory_per_rank_bytes, "
                   "jobs, windows; and totals)")
    p.add_argument("--rates-from", metavar="RUN_DIR",
                   help="take the training rate from RUN_DIR/logs/train.json (e.g. a short "
                        "run on the cluster's GPU) instead of measuring it here")

    p = sub.add_parser("status", help="the Slurm jobs of a run directory and its stages' progress",
                       description="Each job 'glasscam submit' recorded in DIR/jobs.json (and "
                                   "each continuation after a walltime stop) with its Slurm "
                                   "state (scontrol, else sacct), and every stage's progress "
                                   "from its task shards.")
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("cancel", help="cancel every Slurm job of a run directory not yet ended",
                       description="scancel every job recorded in DIR/jobs.json that is still "
                                   "queued or running (the whole chain, continuations included).")
    p.add_argument("run_dir", metavar="DIR")

    p = sub.add_parser("resubmit", help="continue a stage in a new Slurm job (job scripts run it)",
                       description="Called by a job script when its stage exited 75 (stopped "
                                   "on the walltime warning): submit DIR/jobs/STAGE.sbatch "
                                   "again after job JOB ends (afterany), move the queued jobs "
                                   "that waited for JOB (afterok) onto the new one, and record "
                                   "it in DIR/jobs.json.")
    p.add_argument("stage", metavar="STAGE")
    p.add_argument("--run-dir", required=True, help="run directory")
    p.add_argument("--job", required=True, help="the id of the job that stopped unfinished")

    p = sub.add_parser("info", help="JSON summary of a run directory",
                       description="Which stages are complete, tasks done/failed/missing, the "
                                   "resolved config and each stage's headline figures, as JSON.")
    p.add_argument("run_dir", metavar="DIR")

    from glasscam_mpi.export import FORMATS, SUFFIX

    p = sub.add_parser("export", help="every test sample, glass and liquid, with Gamma, Upsilon, "
                                      "Theta and Delta per particle, as a file OVITO opens",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Write every ok test sample (liquid and glass of each test "
                                   "run: one frame each, in one file) with per-particle "
                                   "columns: type, position (wrapped into the periodic box, "
                                   "as prepare.h5 keeps it), radius, Gamma of the explained "
                                   "layer and of every layer, Upsilon, Theta, and for the "
                                   "propensity configurations Delta at each delta target and "
                                   "replica temperature; every field bare and coarse-grained "
                                   "at each --xi. A value a sample lacks is NaN. The box, "
                                   "units (lj) and the run's provenance (config.toml, stage "
                                   "file versions) go in the file's own metadata; a LAMMPS "
                                   "dump has no place for provenance, so it goes to "
                                   "PATH.json beside it. Column names: glasscam_mpi/export.py.",
                       epilog="formats: extxyz (ASE's writer: reals with 8 decimals), "
                              "lammps-dump (LAMMPS's write_dump, every digit), gsd (the gsd "
                              "package, HOOMD schema: float64 columns, float32 positions)")
    p.add_argument("--run-dir", required=True, help="run directory (prepare complete; gradcam, "
                   "indicators and propensity add their columns where they are complete)")
    p.add_argument("--format", default="extxyz", choices=FORMATS,
                   help="file format (default: extxyz)")
    p.add_argument("--xi", type=float, nargs="+", default=[], metavar="X",
                   help="coarse-graining lengths, each > 0 with 2 xi <= min(L)/2 (default: "
                        "the run's [analyze].xi_pairs, the xi of the paper's Fig. 6)")
    p.add_argument("--replicas", action="store_true",
                   help="add each replica's cage-relative displacement at each delta target "
                        "(columns delta_at<d>_temp<T>_rep<s>)")
    p.add_argument("--out", metavar="PATH", default=None,
                   help="output file (default: DIR/export/test-samples"
                        f"{{{','.join(SUFFIX.values())}}})")

    p = sub.add_parser("config", help="print the resolved, validated configuration as TOML")
    _config_args(p)

    p = sub.add_parser("env", help="describe the MPI / parallel HDF5 / LAMMPS / torch stack",
                       description="Describe the software stack; with --ranks (under "
                                   "mpiexec/srun), where every rank runs: host, node-local "
                                   "rank, CPU binding and the GPU it would take (node-local "
                                   "rank modulo the node's GPUs; GLASSCAM_GPUS_PER_NODE sets "
                                   "that count, e.g. to check a GPU allocation from elsewhere).")
    p.add_argument("--ranks", action="store_true",
                   help="one line per rank (printed by rank 0): host, node-local rank, CPUs, "
                        "GPU index; then the hosts and any warnings. Run it in the job's "
                        "allocation, with the job's launcher, before a big run.")
    return parser


def _cmd_stage(args, comm) -> int:
    from glasscam_mpi.stages import STAGES

    stage = STAGES[args.command]
    extra = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
             for flag, _ in stage.about.options}
    stage.run(comm, args.run_dir, _requested(args), retry_failed=args.retry_failed, **extra)
    return 0


def _cmd_run(args, comm) -> int:
    from glasscam_mpi.stages import STAGES

    requested = _requested(args)
    for stage in STAGES.values():
        stage.run(comm, args.run_dir, requested, **stage.about.run_options)
        requested = None  # the run directory now holds the config
    return 0


def _cmd_submit(args, comm) -> int:
    from glasscam_mpi.rundir import RunDir
    from glasscam_mpi.slurm import Slurm, load_profile, render

    if comm.Get_rank() != 0:
        return 0
    profile = load_profile(args.profile)
    rd = RunDir(args.run_dir)
    # Render first: a profile value or a run directory that cannot go into a job script
    # (e.g. a newline in the path) is refused before anything is created or written.
    texts = [(stage, render(stage, profile, rd.path)) for stage in args.stages]
    requested = _requested(args)
    if requested is not None:  # before the run directory is made
        check_ranks_per_task(requested, profile, args.stages)
    check_ranks_per_task(rd.resolve_config(requested), profile, args.stages)
    scripts = []
    for stage, text in texts:
        path = rd.path / "jobs" / f"{stage}.sbatch"
        path.parent.mkdir(parents=True, exist_ok=True)
        (rd.path / "logs").mkdir(exist_ok=True)
        path.write_text(text)
        scripts.append(path)
        if args.dry_run:
            print(f"# ---- {path}\n{text}")
    if not args.dry_run:
        from glasscam_mpi.jobs import record_jobs

        jobs: list[str] = []
        try:
            for script in scripts:
                jobs.append(Slurm().submit(script, after=jobs[-1:]))
        finally:  # record what was submitted, even when a later sbatch failed
            record_jobs(rd.path, [{"stage": stage, "job": job, "script": script,
                                   "after": ([jobs[k - 1]] if k else [])}
                                  for k, (stage, job, script)
                                  in enumerate(zip(args.stages, jobs, scripts))])
        for stage, job in zip(args.stages, jobs):
            print(f"{stage}: job {job}")
    return 0


def check_ranks_per_task(cfg, profile, stages) -> None:
    """Refuse, at submission, a profile whose ranks per job are not a multiple of a
    stage's ranks_per_task (the stage would refuse it at start-up, in the queue)."""
    from glasscam_mpi.config import ConfigError

    from glasscam_mpi.stages import STAGES

    ranks = profile.nodes * profile.ntasks_per_node
    for stage in stages:
        tasks = getattr(STAGES.get(stage), "tasks", None)
        k = tasks.ranks_per_task(cfg) if tasks is not None else 1
        if k > 1 and ranks % k:
            raise ConfigError(f"[{stage}].ranks_per_task = {k}: profile {profile.name!r} runs "
                              f"{profile.nodes} node(s) x {profile.ntasks_per_node} = {ranks} "
                              f"rank(s) per job, not a multiple of {k}; allowed: a divisor "
                              f"of {ranks}, or a profile with a multiple of {k} ranks")


def _known_run_dir(path: str) -> Path:
    from glasscam_mpi.config import ConfigError

    if not (Path(path) / "config.toml").exists():
        raise ConfigError(f"{path} is not a run directory (no config.toml)")
    return Path(path)


def _cmd_sweep(args, comm) -> int:
    from glasscam_mpi.config import ConfigError
    from glasscam_mpi.sweep import _check_parent, load_variants, run_sweep

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: allowed: an integer >= 1")
    if args.submit is None:
        run_sweep(comm, args.run_dir, args.variants, args.seeds)
        return 0
    if comm.Get_rank() != 0:
        return 0
    from glasscam_mpi.jobs import record_jobs
    from glasscam_mpi.slurm import Slurm, load_profile, render

    run_dir = Path(args.run_dir).resolve()
    load_variants(args.variants, _check_parent(run_dir), args.seeds)  # refuse a bad file now
    text = render("sweep", load_profile(args.submit), run_dir,
                  extra={"variants": Path(args.variants).resolve(), "seeds": args.seeds})
    path = run_dir / "jobs" / "sweep.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    path.write_text(text)
    if args.dry_run:
        print(f"# ---- {path}\n{text}")
        return 0
    job = Slurm().submit(path)
    record_jobs(run_dir, [{"stage": "sweep", "job": job, "script": path, "after": []}])
    print(f"sweep: job {job}")
    return 0


def _cmd_import(args, comm) -> int:
    from glasscam_mpi.importer import run_import
    from glasscam_mpi.parallel import bcast_from_root

    bcast_from_root(comm, lambda: run_import(
        args.run_dir, args.files, system=args.system, config=args.config,
        overrides=args.overrides, fmt=args.format, frames=args.frames, types=args.types))
    return 0


def _cmd_status(args, comm) -> int:
    from glasscam_mpi.jobs import format_status, status

    if comm.Get_rank() == 0:
        st = status(_known_run_dir(args.run_dir))
        print(dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _cmd_cancel(args, comm) -> int:
    from glasscam_mpi.jobs import cancel

    if comm.Get_rank() == 0:
        done = cancel(_known_run_dir(args.run_dir))
        print(f"cancelled {len(done)} job(s): {' '.join(done)}" if done else
              f"no job of {args.run_dir} is queued or running")
    return 0


def _cmd_resubmit(args, comm) -> int:
    from glasscam_mpi.jobs import resubmit

    if comm.Get_rank() == 0:
        new = resubmit(_known_run_dir(args.run_dir), args.stage, args.job)
        print(f"{args.stage}: not finished in job {args.job}; continues as job {new}", flush=True)
    return 0


def _cmd_info(args, comm) -> int:
    if comm.Get_rank() == 0:
        from glasscam_mpi.info import describe

        print(dumps(describe(args.run_dir), indent=2))
    return 0


def _cmd_plan(args, comm) -> int:
    from glasscam_mpi.config import ConfigError, load_config
    from glasscam_mpi.plan import plan, render_table
    from glasscam_mpi.slurm import load_profile

    if comm.Get_rank() != 0:
        return 0
    cfg = load_config(preset=args.preset, path=args.config, overrides=args.overrides)
    profile = load_profile(args.profile)
    if args.rates_from is not None and not Path(args.rates_from).is_dir():
        raise ConfigError(f"--rates-from {args.rates_from!r}: not a directory; give a run "
                          "directory whose train stage has run")
    result = plan(cfg, profile, rates_from=args.rates_from)
    print(dumps(result, indent=2) if args.json else render_table(result))
    return 0


def _cmd_export(args, comm) -> int:
    from glasscam_mpi.export import export

    if comm.Get_rank() == 0:
        path = export(_known_run_dir(args.run_dir), args.format, args.xi, args.out,
                      args.replicas)
        print(f"export: wrote {path}", flush=True)
    return 0


def _cmd_config(args, comm) -> int:
    from glasscam_mpi.config import load_config

    cfg = _requested(args) or load_config()
    if comm.Get_rank() == 0:
        print(cfg.to_toml(), end="")
    return 0


def _cmd_env(args, comm) -> int:
    from glasscam_mpi.env import check_stack, format_placement, gpus_per_node

    if args.ranks:
        from glasscam_mpi.parallel import bcast_from_root, placement

        bcast_from_root(comm, gpus_per_node)   # a bad GLASSCAM_GPUS_PER_NODE: one clear error
        rows = placement(comm)
        if comm.Get_rank() == 0:
            print(format_placement(rows), flush=True)
        return 0
    if comm.Get_rank() == 0:
        for key, value in check_stack().items():
            print(f"{key:>10}: {value}")
    return 0


COMMANDS = {"import": _cmd_import, "run": _cmd_run, "sweep": _cmd_sweep, "submit": _cmd_submit, "plan": _cmd_plan, "info": _cmd_info,
            "status": _cmd_status, "cancel": _cmd_cancel, "resubmit": _cmd_resubmit,
            "config": _cmd_config, "env": _cmd_env, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    from glasscam_mpi import walltime

    # first of all: Slurm may warn as soon as the job starts, and SIGUSR1's default action
    # ends the process; and before MPI, torch or LAMMPS start threads (see walltime)
    walltime.install()
    args = build_parser().parse_args(argv)
    from glasscam_mpi.config import ConfigError
    from glasscam_mpi.parallel import abort_on_error, world
    from glasscam_mpi.rundir import RunDirBusy
    from glasscam_mpi.slurm import SlurmError

    comm = world()
    try:
        return COMMANDS.get(args.command, _cmd_stage)(args, comm)
    except (ConfigError, RunDirBusy, SlurmError) as exc:
        if comm.Get_rank() == 0:
            print(f"glasscam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except walltime.NotFinished as exc:
        if comm.Get_rank() == 0:
            print(f"glasscam {args.command}: not finished: {exc}", file=sys.stderr, flush=True)
        return walltime.EXIT_NOT_FINISHED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - any other failure ends every rank
        abort_on_error(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
