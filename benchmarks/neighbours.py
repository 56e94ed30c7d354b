"""Per-configuration cost of PairList (analysis.neighbours) on one core. Prints JSON.

For each N (2D, density 1.2, uniform random positions: the pair count of a dense liquid)
it reports the median wall and CPU (process) time in ms over ``--repeats`` runs (one run
for N > 10^4) of:

* ``build``: ``PairList(box, x, r_max=16)``, with the pair count, the bytes kept and the
  peak memory of the construction (numpy allocations by tracemalloc, and the process's
  peak RSS, measured in a fresh subprocess per N so earlier sizes do not count);
* ``scan_3x7``: ``coarse_grain_scan`` of 3 fields at xi = 1, 2, 3, 4, 5, 6, 8;
* ``scan_40x5``: 40 fields (propensity at 40 times) at xi = 1, 2, 3, 4, 5;
* ``correlation_3``: C(r) of 3 fields to r = 16 in 64 bins; ``rdf``: g(r) with 2 species;
* ``baseline_coarse_3x7`` (N <= 10^4): the same 3 x 7 scan with the per-call
  ``analysis.coarse.coarse_grain`` (a fresh pair search per xi).

Threads are pinned to one (BLAS/OpenMP variables). The machine's load average is
printed with the result: on a shared machine wall times scale with it, CPU times less.

    python benchmarks/neighbours.py [--n 2000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

R_MAX, DENSITY = 16.0, 1.2
XI_SCAN, XI_PROP = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0), (1.0, 2.0, 3.0, 4.0, 5.0)


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """(wall, cpu) median milliseconds of fn() over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return round(1e3 * statistics.median(wall), 1), round(1e3 * statistics.median(cpu), 1)


def maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def one(n: int, repeats: int) -> dict:
    from glasscam_mpi.analysis import coarse_grain
    from glasscam_mpi.analysis.neighbours import PairList

    rng = np.random.default_rng(0)
    L = np.sqrt(n / DENSITY)
    box = np.array([L, L])
    x = rng.uniform(0, L, (n, 2))
    types = (rng.random(n) < 0.35).astype(np.int64)
    f3, f40 = rng.normal(size=(n, 3)), rng.normal(size=(n, 40))
    reps = repeats if n <= 10_000 else 1
    rss0 = maxrss_mb()
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    pl = PairList(box, x, R_MAX)
    first = (round(1e3 * (time.perf_counter() - t0), 1), round(1e3 * (time.process_time() - c0), 1))
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    timings = {"build": first if reps == 1 else median_ms(lambda: PairList(box, x, R_MAX), reps),
               "scan_3x7": median_ms(lambda: pl.coarse_grain_scan(f3, XI_SCAN), reps),
               "scan_40x5": median_ms(lambda: pl.coarse_grain_scan(f40, XI_PROP), reps),
               "correlation_3": median_ms(lambda: pl.correlation(f3, R_MAX, 64), reps),
               "rdf": median_ms(lambda: pl.rdf(types, bins=64, r_max=R_MAX), reps)}
    if n <= 10_000:
        timings["baseline_coarse_3x7"] = median_ms(
            lambda: [coarse_grain(box, x, f3, xi) for xi in XI_SCAN], reps)
    out = {
        "n": n, "box": round(float(L), 3), "r_max": R_MAX, "pairs": pl.n_pairs,
        "pair_list_mb": round(pl.nbytes / 2**20, 1),
        "build_peak_numpy_mb": round(traced_peak, 1),
        "build_peak_rss_increase_mb": round(maxrss_mb() - rss0, 1),
        "wall_ms": {k: v[0] for k, v in timings.items()},
        "cpu_ms": {k: v[1] for k, v in timings.items()},
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 100_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one N, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.repeats)))
        return
    results = []
    for n in args.n:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--repeats",
                               str(args.repeats)], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout))
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "loadavg_at_end": os.getloadavg(), "cpus": os.cpu_count(),
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
