"""Cost of the ``analyze`` stage per task on one core, and how it grows with N. Prints JSON.

For each N (default 2000 and 100000), a 2D KAM-like configuration (density 1.2, a jittered
triangular lattice, 65:35 types) with smooth random fields stands in for a test sample
(Gamma, Upsilon, Theta; Gamma of 3 CNN layers) and for a propensity ensemble (Delta at
``--times`` recorded times and 3 delta targets). The stage's own task functions run on
them (``analyse_sample``: both classes of a test sample are two calls;
``analyse_ensemble``), with the default xi scan [0, 1, 2, 3, 4, 5, 6, 8], C(r) to 10 in 50
bins. Reported: median ms per call (``--repeats``), per particle (us) for the scaling,
and the pair list's size. The pair search is built once per configuration inside each
call, as in the stage.

    python benchmarks/analyze.py [--n 2000 100000] [--times 40] [--repeats 3]
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

import numpy as np  # noqa: E402

from glasscam_mpi.analysis.neighbours import PairList  # noqa: E402
from glasscam_mpi.stages.analyze import Plan, analyse_ensemble, analyse_sample  # noqa: E402

XIS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


def configuration(n: int, density: float = 1.2, seed: int = 0):
    """A jittered triangular lattice of about n particles at ``density`` (periodic)."""
    rng = np.random.default_rng(seed)
    ny = max(2, int(round(np.sqrt(n * np.sqrt(3) / 2) / 2)) * 2)
    nx = max(1, n // ny)
    a = np.sqrt(2 / (np.sqrt(3) * density))
    box = np.array([nx * a, ny * a * np.sqrt(3) / 2])
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = np.stack([(i + 0.5 * (j % 2)) * a, j * a * np.sqrt(3) / 2], axis=-1).reshape(-1, 2)
    x += rng.normal(scale=0.08 * a, size=x.shape)
    types = (rng.random(len(x)) < 0.35).astype(np.int8)
    return np.mod(x, box), types, box


def smooth_fields(box, x, k: int, seed: int = 1) -> np.ndarray:
    """k positive fields with structure on a few sigma (sums of random plane waves)."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(x), k))
    for c in range(k):
        q = 2 * np.pi * rng.integers(1, 4, size=(6, 2)) / box
        out[:, c] = 2 + np.cos(x @ q.T + rng.random(6) * 6.28).sum(axis=1) / 3
    return out + 0.1 * rng.random((len(x), k))


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 100000])
    ap.add_argument("--times", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {"benchmark": "analyze", "machine": platform.node(), "threads": 1, "xis": XIS,
           "r_corr": 10.0, "bins": 50, "times": args.times, "results": []}
    for n in args.n:
        x, types, box = configuration(n)
        n = len(x)
        plan = Plan(runs=np.arange(1), have_gamma=True, n_layers=3, box=box, xis=XIS,
                    r_corr=min(10.0, box.min() / 2), bins=50, shape=(1, 1),
                    config_rows=np.zeros(1, np.int64), n_times=args.times, n_targets=3,
                    reportable=np.ones((1, 1), np.int8), study=None,
                    sign=np.array([-1.0, 1.0, -1.0]))
        F = smooth_fields(box, x, 3)
        layers = smooth_fields(box, x, 3, seed=2)
        D = smooth_fields(box, x, args.times, seed=3).T
        at = D[[5, 15, 30]]
        t_pairs = timed(lambda: PairList(box, x, 2 * max(XIS)), args.repeats)
        pl = PairList(box, x, 2 * max(XIS))
        t_sample = timed(lambda: analyse_sample(plan, x, types, F, layers, 1, 1), args.repeats)
        t_ens = timed(lambda: analyse_ensemble(plan, PairList(box, x, 2 * max(XIS)), F, D, at),
                      args.repeats)
        out["results"].append({
            "n": n, "pairs": pl.n_pairs, "pair_list_mib": round(pl.nbytes / 2**20, 1),
            "pair_list_ms": round(1e3 * t_pairs, 1),
            "sample_class_ms": round(1e3 * t_sample, 1),
            "test_sample_ms": round(2e3 * t_sample, 1),
            "ensemble_ms": round(1e3 * t_ens, 1),
            "test_sample_us_per_particle": round(2e6 * t_sample / n, 2),
            "ensemble_us_per_particle": round(1e6 * t_ens / n, 2)})
    r = out["results"]
    if len(r) >= 2:
        out["growth"] = {"n_ratio": round(r[-1]["n"] / r[0]["n"], 1),
                         "test_sample_time_ratio": round(r[-1]["test_sample_ms"] / r[0]["test_sample_ms"], 1),
                         "ensemble_time_ratio": round(r[-1]["ensemble_ms"] / r[0]["ensemble_ms"], 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
