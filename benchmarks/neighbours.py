"""Per-configuration cost of PairList (analysis.neighbours) on one core, before and after
the band/CSR pair order, side by side. Prints JSON.

For each N (2D, density 1.2, uniform random positions: the pair count of a dense liquid,
r_max = 16) one subprocess builds both pair lists, :class:`ReferencePairList` (the
previous implementation, copied below unchanged in its arithmetic: pairs sorted by 4096
distance shells, COO products over blocks of pairs) and the package's ``PairList``, and
times each operation on both, alternately, in the same process:

* ``build``: ``PairList(box, x, r_max=16)``;
* ``scan_3``, ``scan_40``: ``coarse_grain_scan`` of 3 fields (the indicators) and of 40
  (propensity at 40 times) over the analyze stage's default xi = 0, 1, 2, 3, 4, 5, 6, 8;
* ``correlation_3``, ``correlation_40``: C(r) to r = 16 in 64 bins; ``rdf``: g(r), 2 species
  (the reference side times only its pair histogram, the new side the whole ``rdf``);
* ``baseline_coarse_3`` (N <= 10^4, new side only): the same 3-field scan with the per-call
  ``analysis.coarse.coarse_grain`` (a fresh pair search per xi).

Reported per operation and implementation: median CPU (process) and wall ms over
``--repeats`` runs (one run for N > 10^4), ns per stored pair, us per particle, and, for the
scans, ns per pair per field (pairs counted once per xi whose cutoff 2 xi they lie
within: 2.42 M for this xi list); ``speedup`` (reference / new CPU time) and
``max_abs_diff`` of the results. Then ``growth``: us per particle at the largest N over
the smallest, per implementation (1 = cost proportional to N). Memory: each
implementation's build runs once more in a fresh subprocess per N, which reports the
bytes kept, the numpy peak (tracemalloc) and the process's peak RSS increase (this
includes scipy's own pair buffer in query_pairs). N must be at least ~1300 (C(r) to 16
needs a box edge of 32). A text table goes to stderr.

Threads are pinned to one (BLAS/OpenMP variables). On a shared machine run it with
``nice``, compare the two columns of one run (ratios), not runs with each other.

    python benchmarks/neighbours.py [--n 2000 20000 100000] [--repeats 3]
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
import scipy.sparse  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from glasscam_mpi.analysis.checks import (as_box, as_field, as_positions,  # noqa: E402
                                           as_positive, wrap)

R_MAX, DENSITY, BINS = 16.0, 1.2, 64
XIS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)  # the analyze stage's default
PAIR_PASSES = sum((2 * xi / R_MAX) ** 2 for xi in XIS)  # pairs within 2 xi, summed, / M


class ReferencePairList:
    """The previous PairList (before the band/CSR order), for comparison: pairs stored as
    (i, j, r) sorted by 4096 equal-volume distance shells, tree order inside a shell;
    coarse-graining by scipy COO products over blocks of pairs of every shell up to 2 xi.
    Only what the benchmark calls; arithmetic unchanged."""

    _SHELLS, _BLOCK, _CHUNK = 4096, 1 << 20, 1 << 22

    def __init__(self, box, positions, r_max: float):
        self._box = as_box(box)
        x = wrap(as_positions(positions, self._box), self._box)
        self._n, self._d = x.shape
        self._r_max = as_positive(r_max, "r_max")
        tree = cKDTree(x, boxsize=self._box)
        self._perm = np.asarray(tree.indices, dtype=np.int64)
        inv = np.empty(self._n, dtype=np.int64)
        inv[self._perm] = np.arange(self._n)
        found = tree.query_pairs(self._r_max, output_type="ndarray")
        del tree
        m = len(found)
        itype = np.int32 if self._n < 2**31 else np.int64
        cols = [np.ascontiguousarray(x[:, axis]) for axis in range(self._d)]
        lo, hi = np.empty(m, itype), np.empty(m, itype)
        dist, key = np.empty(m), np.empty(m, np.uint16)
        for s in range(0, m, self._CHUNK):
            i, j = found[s:s + self._CHUNK, 0], found[s:s + self._CHUNK, 1]
            part = slice(s, s + len(i))
            r2 = np.zeros(len(i))
            for c, length in zip(cols, self._box):
                dx = c[j] - c[i]
                dx -= length * np.rint(dx * (1.0 / length))
                r2 += dx * dx
            dist[part] = np.sqrt(r2)
            key[part] = self._shell(dist[part])
            a, b = inv[i], inv[j]
            lo[part], hi[part] = np.minimum(a, b), np.maximum(a, b)
        del found
        order = np.argsort(key, kind="stable")
        self._offsets = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=self._SHELLS))])
        del key
        self._i = lo[order]
        del lo
        self._j = hi[order]
        del hi
        self._r = dist[order]
        del dist, order

    def _shell(self, r):
        s = np.floor(self._SHELLS * (r / self._r_max) ** self._d)
        return np.clip(s, 0, self._SHELLS - 1).astype(np.uint16)

    def _span(self, r):
        if r >= self._r_max:
            return len(self._r), len(self._r)
        shell = int(self._shell(np.array([r]))[0])
        return (int(self._offsets[max(shell - 1, 0)]),
                int(self._offsets[min(shell + 2, self._SHELLS)]))

    @property
    def n_pairs(self) -> int:
        return len(self._r)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._i, self._j, self._r, self._perm, self._offsets))

    def _blocks(self, r, width=1):
        end = self._span(r)[1]
        step = max(self._BLOCK, 2 * self._n * width)
        for s in range(0, end, step):
            e = min(s + step, end)
            yield self._i[s:e], self._j[s:e], self._r[s:e]

    def coarse_grain_scan(self, values, xis):
        X = as_field(values, self._n)
        xis = np.asarray(xis, dtype=float)
        F = X.reshape(self._n, -1)
        ref = F[0].copy()
        k = F.shape[1]
        G = np.ones((self._n, k + 1))
        G[:, :k] = F[self._perm] - ref
        live = np.flatnonzero(xis > 0)
        acc = np.zeros((len(live), self._n, k + 1))
        acc += G
        if live.size:
            shape = (self._n, self._n)
            cuts = 2.0 * xis[live]
            for i, j, r in self._blocks(float(cuts.max()), G.shape[1]):
                r2 = r * r
                lo, hi = r.min(), r.max()
                for a, (xi, cut) in enumerate(zip(xis[live], cuts)):
                    if lo > cut:
                        continue
                    w = np.exp(r2 * (-1.0 / (xi * xi)))
                    if hi > cut:
                        w[r > cut] = 0.0
                    W = scipy.sparse.coo_array((w, (i, j)), shape=shape)
                    acc[a] += W @ G
                    acc[a] += W.T @ G
        out = np.empty((len(xis), self._n, k))
        out[:] = F
        out[live[:, None], self._perm[None, :]] = ref + acc[..., :k] / acc[..., k:]
        return out.reshape((len(xis),) + X.shape)

    def _bin_index(self, r, r_max, bins):
        b = np.minimum((r / (r_max / bins)).astype(np.int64), bins - 1)
        b[r > r_max] = bins
        return b

    def correlation(self, values, r_max, bins=50):
        X = as_field(values, self._n)
        dX = X.reshape(self._n, -1) - X.reshape(self._n, -1).mean(axis=0)
        var = np.mean(dX * dX, axis=0)
        D = np.ascontiguousarray(dX[self._perm])
        k = D.shape[1]
        counts = np.zeros(bins + 1)
        sums = np.zeros((bins + 1, k))
        step = max(1, self._BLOCK // k)
        for i, j, r in self._blocks(r_max):
            b = self._bin_index(r, r_max, bins)
            counts += np.bincount(b, minlength=bins + 1)
            for s in range(0, len(b), step):
                bb, ii, jj = b[s:s + step], i[s:s + step], j[s:s + step]
                if k == 1:
                    sums[:, 0] += np.bincount(bb, weights=D[ii, 0] * D[jj, 0],
                                              minlength=bins + 1)
                    continue
                H = scipy.sparse.coo_array((np.ones(len(bb)), (bb, np.arange(len(bb)))),
                                           shape=(bins + 1, len(bb)))
                sums += H @ (D[ii] * D[jj])
        C = np.ones((bins + 1, k))
        with np.errstate(invalid="ignore", divide="ignore"):
            C[1:] = sums[:bins] / counts[:bins, None] / var
        C[:, var == 0] = np.nan
        r = np.concatenate([[0.0], (np.arange(bins) + 0.5) * (r_max / bins)])
        return r, (C[:, 0] if X.ndim == 1 else C)

    def rdf_counts(self, types, bins, r_max, n_species=2):
        """The histogram at the heart of PairList.rdf (the normalisation is O(bins))."""
        t_int = types[self._perm]
        hist = np.zeros(n_species * n_species * (bins + 1), np.int64)
        for i, j, r in self._blocks(r_max):
            b = self._bin_index(r, r_max, bins)
            key = (t_int[i] * n_species + t_int[j]) * (bins + 1) + b
            hist += np.bincount(key, minlength=hist.size)
        return hist.reshape(n_species, n_species, bins + 1)[..., :bins]


def timed(fn, repeats: int):
    """(median cpu ms, median wall ms, last result) of fn() over ``repeats`` calls."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(cpu), 1e3 * statistics.median(wall), out


def maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def configuration(n: int):
    rng = np.random.default_rng(0)
    L = np.sqrt(n / DENSITY)
    box = np.array([L, L])
    x = rng.uniform(0, L, (n, 2))
    types = (rng.random(n) < 0.35).astype(np.int64)
    return rng, box, x, types


def memory(n: int, impl: str) -> dict:
    """Build once in this fresh process: bytes kept and the build's peak memory."""
    from glasscam_mpi.analysis.neighbours import PairList

    cls = ReferencePairList if impl == "reference" else PairList
    _, box, x, _ = configuration(n)
    rss0 = maxrss_mb()
    tracemalloc.start()
    pl = cls(box, x, R_MAX)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"pairs": pl.n_pairs, "kept_mb": round(pl.nbytes / 2**20, 1),
            "kept_bytes_per_pair": round(pl.nbytes / max(pl.n_pairs, 1), 2),
            "build_peak_numpy_mb": round(peak / 2**20, 1),
            "build_peak_rss_increase_mb": round(maxrss_mb() - rss0, 1)}


def one(n: int, repeats: int) -> dict:
    from glasscam_mpi.analysis import coarse_grain
    from glasscam_mpi.analysis.neighbours import PairList

    rng, box, x, types = configuration(n)
    f3, f40 = rng.normal(size=(n, 3)), rng.normal(size=(n, 40))
    reps = repeats if n <= 10_000 else 1
    ref_cpu, ref_wall, ref = timed(lambda: ReferencePairList(box, x, R_MAX), reps)
    new_cpu, new_wall, new = timed(lambda: PairList(box, x, R_MAX), reps)
    m = new.n_pairs
    assert ref.n_pairs == m
    ops = {
        "scan_3": (lambda pl: pl.coarse_grain_scan(f3, XIS), 3),
        "scan_40": (lambda pl: pl.coarse_grain_scan(f40, XIS), 40),
        "correlation_3": (lambda pl: pl.correlation(f3, R_MAX, BINS)[1], None),
        "correlation_40": (lambda pl: pl.correlation(f40, R_MAX, BINS)[1], None),
        "rdf": (None, None),
    }
    rows = {"build": {"reference": (ref_cpu, ref_wall), "new": (new_cpu, new_wall),
                      "max_abs_diff": 0.0}}
    for name, (fn, fields) in ops.items():
        if name == "rdf":
            run_ref = lambda: ref.rdf_counts(types, BINS, R_MAX)  # noqa: E731
            run_new = lambda: new.rdf(types, bins=BINS, r_max=R_MAX, n_species=2)  # noqa: E731
        else:
            run_ref, run_new = (lambda: fn(ref)), (lambda: fn(new))
        rc, rw, a = timed(run_ref, reps)
        nc, nw, b = timed(run_new, reps)
        if name == "rdf":  # compare the pair counts behind g(r)
            counts = b.counts
            diff = float(np.abs(a.sum(axis=(0, 1)) - counts).max())
        else:
            diff = float(np.nanmax(np.abs(a - b)))
        rows[name] = {"reference": (rc, rw), "new": (nc, nw), "max_abs_diff": diff,
                      "fields": fields}
    if n <= 10_000:
        c, w, _ = timed(lambda: [coarse_grain(box, x, f3, xi) for xi in XIS if xi > 0], reps)
        rows["baseline_coarse_3"] = {"new": (c, w), "fields": 3}
    out = {"n": n, "pairs": m, "pairs_per_particle": round(m / n, 1), "ops": {}}
    for name, row in rows.items():
        entry = {}
        for impl in ("reference", "new"):
            if impl not in row:
                continue
            cpu, wall = row[impl]
            e = {"cpu_ms": round(cpu, 1), "wall_ms": round(wall, 1),
                 "ns_per_pair": round(1e6 * cpu / m, 2),
                 "us_per_particle": round(1e3 * cpu / n, 2)}
            if row.get("fields") and name.startswith("scan"):
                passes = m * PAIR_PASSES * row["fields"]
                e["ns_per_pair_pass_field"] = round(1e6 * cpu / passes, 3)
            entry[impl] = e
        if "reference" in row:
            entry["speedup"] = round(row["reference"][0] / max(row["new"][0], 1e-9), 2)
            entry["max_abs_diff"] = row["max_abs_diff"]
        out["ops"][name] = entry
    return out


def table(results: list, growth: dict) -> str:
    """The JSON's CPU times as text: us per particle and ns per pair, reference -> new."""
    lines = [f"{'N':>7} {'pairs':>9}  {'operation':<18}{'reference':>22}{'new':>22}"
             f"{'speedup':>9}{'max diff':>10}",
             f"{'':>7} {'':>9}  {'':<18}{'us/particle  ns/pair':>22}{'us/particle  ns/pair':>22}"]
    for res in results:
        for name, e in res["ops"].items():
            cells = "".join(f"{e[i]['us_per_particle']:>12.1f}{e[i]['ns_per_pair']:>10.1f}"
                            if i in e else f"{'':>22}" for i in ("reference", "new"))
            extra = (f"{e['speedup']:>8.2f}x{e['max_abs_diff']:>10.0e}" if "speedup" in e
                     else "")
            lines.append(f"{res['n']:>7} {res['pairs']:>9}  {name:<18}{cells}{extra}")
        for impl, mem in res.get("memory", {}).items():
            lines.append(f"{res['n']:>7} {'':>9}  memory {impl:<11}kept {mem['kept_mb']} MB "
                         f"({mem['kept_bytes_per_pair']} B/pair), build peak: numpy "
                         f"{mem['build_peak_numpy_mb']} MB, "
                         f"RSS +{mem['build_peak_rss_increase_mb']} MB")
    if growth:
        lines.append(f"growth of us/particle, N = {results[-1]['n']} over N = {results[0]['n']}:")
        lines += [f"  {name:<18} reference {g.get('reference', float('nan')):>6.2f}"
                  f"   new {g['new']:>6.2f}" for name, g in growth.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 20_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one N, JSON out
    ap.add_argument("--memory", type=int, help=argparse.SUPPRESS)  # internal: one build
    ap.add_argument("--impl", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.repeats)))
        return
    if args.memory:
        print(json.dumps(memory(args.memory, args.impl)))
        return

    def sub(*extra):
        proc = subprocess.run([sys.executable, __file__, *map(str, extra)],
                              capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)

    results = []
    for n in args.n:
        res = sub("--one", n, "--repeats", args.repeats)
        if not args.no_memory:
            res["memory"] = {impl: sub("--memory", n, "--impl", impl)
                             for impl in ("reference", "new")}
        results.append(res)
        print(f"N = {n}: done", file=sys.stderr, flush=True)
    growth = {}
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        for name, entry in hi["ops"].items():
            growth[name] = {impl: round(entry[impl]["us_per_particle"]
                                        / lo["ops"][name][impl]["us_per_particle"], 2)
                            for impl in ("reference", "new") if impl in entry}
    print(table(results, growth), file=sys.stderr)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "loadavg_at_end": os.getloadavg(), "cpus": os.cpu_count(),
                      "r_max": R_MAX, "density": DENSITY, "xis": XIS, "bins": BINS,
                      "results": results,
                      "growth_us_per_particle_nmax_over_nmin": growth}, indent=1))


if __name__ == "__main__":
    main()
