"""Per-configuration cost of the structural indicators on one core. Prints JSON.

A 2000-particle 2D KAM-like configuration (density 1.2, a jittered triangular lattice
with 65:35 A:B types) is analysed ``--repeats`` times; the median wall time in ms of
each step is reported: Voronoi volumes, Tong-Tanaka Theta, and coarse-graining of one
field at xi = 8, plus their total (Theta reusing the triangulation of the volumes, as
in the indicators stage; also reported alone). Target: total <= 50 ms. Threads are pinned to one
(BLAS/OpenMP environment variables, freud's TBB pool). For reference it also times
freud's 2D Voronoi (the ``"freud"`` backend), which the default 2D path replaces.

    python benchmarks/indicators.py [--n 2000] [--xi 8] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import freud  # noqa: E402
import numpy as np  # noqa: E402

from glasscam_mpi.analysis import coarse_grain, tong_tanaka, voronoi_volumes  # noqa: E402
from glasscam_mpi.analysis import delaunay, voronoi  # noqa: E402  (modules: their memos)
from glasscam_mpi.systems import get_system  # noqa: E402


def configuration(n: int, density: float, seed: int = 0):
    """Jittered triangular lattice of ~n particles at ``density`` in a periodic box."""
    target = np.sqrt(n * np.sqrt(3) / 2)  # rows of a near-square box
    rows = [r for r in range(2, n + 1, 2) if n % r == 0]
    if not rows:
        raise SystemExit(f"--n {n} needs an even factor (rows of a triangular lattice)")
    ny = min(rows, key=lambda r: abs(r - target))
    nx = n // ny
    a = np.sqrt(2.0 / (np.sqrt(3) * density))
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = np.stack([(ix + 0.5 * (iy % 2)) * a, iy * a * np.sqrt(3) / 2], -1).reshape(-1, 2)
    box = np.array([nx * a, ny * a * np.sqrt(3) / 2])
    rng = np.random.default_rng(seed)
    x = x + rng.normal(0, 0.1 * a, x.shape)
    types = (rng.random(len(x)) < 0.35).astype(np.int64)
    return box, x, types


def median_ms(fn, repeats: int, setup=lambda: None) -> float:
    setup()
    fn()  # warm-up (imports)
    times = []
    for _ in range(repeats):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--xi", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    freud.parallel.set_num_threads(1)
    system = get_system("KAM")
    box, x, types = configuration(args.n, system.density)
    radii = system.radii()
    field = np.random.default_rng(1).random(len(x))

    def forget():  # the memoised triangulation / freud tessellation of the last call
        delaunay._last.clear()
        voronoi._last_freud.clear()

    ms = {
        "voronoi": median_ms(lambda: voronoi_volumes(box, x), args.repeats, setup=forget),
        # As in the indicators stage: Theta right after the volumes of the same
        # configuration reuses the memoised triangulation.
        "theta": median_ms(lambda: tong_tanaka(box, x, types, radii), args.repeats,
                           setup=lambda: (forget(), voronoi_volumes(box, x))),
        "coarse_grain": median_ms(lambda: coarse_grain(box, x, field, args.xi), args.repeats),
    }
    total = sum(ms.values())
    theta_alone = median_ms(lambda: tong_tanaka(box, x, types, radii), args.repeats,
                            setup=forget)
    reference = median_ms(lambda: voronoi_volumes(box, x, backend="freud"), args.repeats,
                          setup=forget)
    print(json.dumps({
        "n_particles": len(x), "box": box.round(4).tolist(), "xi": args.xi,
        "repeats": args.repeats, "threads": 1, "ms_per_configuration": {
            k: round(v, 2) for k, v in ms.items()},
        "total_ms": round(total, 2), "target_ms": 50.0, "meets_target": total <= 50.0,
        "theta_without_shared_triangulation_ms": round(theta_alone, 2),
        "reference_freud_voronoi_2d_ms": round(reference, 2),
        "machine": platform.processor() or platform.machine(),
        "versions": {"numpy": np.__version__, "freud": freud.__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
