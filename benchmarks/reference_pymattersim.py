"""Cross-check our Tong-Tanaka Theta and Voronoi neighbours against pymattersim. Prints JSON.

pymattersim (PyPI ``pymattersim`` 0.2.4, Y.-C. Hu et al.) has an independent 2D
Tong-Tanaka "packing capability" (``PyMatterSim.static.geometric.packing_capability_2d``)
on top of freud Voronoi neighbours (``PyMatterSim.neighbors.freud_neighbors.cal_neighbors``).
For each chosen configuration of a glasscam ``prepare.h5`` this script

1. writes a LAMMPS text dump (``ITEM: ATOMS id type x y``, types numbered from 1, box
   bounds ``0 L`` from the ``box`` dataset, positions printed with 17 significant digits
   so the float64 values round-trip exactly) into a temporary directory and reads it back
   with ``DumpReader(dump, ndim=2).read_onefile()``;
2. runs pymattersim: ``cal_neighbors(snapshots, outputfile=PREFIX)`` then
   ``packing_capability_2d(snapshots, sigmas, PREFIX + ".neighbor.dat")`` with
   ``sigmas[a][b] = R_a + R_b`` (additive radii of ``get_system(attrs["system"]).radii()``);
3. computes ours, ``glasscam_mpi.analysis.tong_tanaka(box, x, types, radii)`` (default
   method) and ``voronoi_neighbors(box, x)``, and compares Theta per particle and the
   Voronoi neighbour set of every particle.

Units / conventions (read from pymattersim's source, ``static/geometric.py``): its Theta is
in radians (``np.arccos`` of the unit-vector dot product minus ``utils.geometry.
triangle_angle`` = ``np.arccos`` of the law of cosines), summed over every unordered pair
(i, j) of o's neighbours that are in each other's neighbour lists (by particle id, images
not checked), and divided by o's coordination number (not by the number of such pairs).
In 2D a Voronoi cell with CN faces has exactly CN Delaunay triangles, so this equals our
mean over triangles except where o, i, j are pairwise neighbours without o-i-j being a
Delaunay triangle (a separating triangle), or where neighbour lists differ. The JSON lists
such particles (``diagnostics``) and also gives pymattersim's definition evaluated on our
own neighbour lists (``pms_definition_on_our_neighbours``) to separate definition from
neighbour-list differences.

A numpy-2 workaround is applied: ``read_neighbors`` (as imported into
``PyMatterSim.static.geometric``) is wrapped to return an int array (reported needed
elsewhere because slicing with float entries fails; with pymattersim 0.2.4 + numpy 2.4 it
already returned int32 here, so the cast is a no-op; the JSON records the raw dtype in
``read_neighbors_raw_dtype``). No package file is modified.

Environment (pymattersim pins ovito, so it lives in its own venv, outside the project)::

    python3 -m venv /tmp/venv-pms
    /tmp/venv-pms/bin/pip install pymattersim==0.2.4 h5py scipy   # pulls freud-analysis
    PYTHONPATH=/path/to/glasscam-mpi /tmp/venv-pms/bin/python \\
        benchmarks/reference_pymattersim.py --prepare-h5 RUN/prepare.h5 \\
        [--runs 0,1] [--which glass|liquid|both] [--out-json out.json]

Only ``glasscam_mpi.analysis`` and ``glasscam_mpi.systems`` are imported (no MPI/LAMMPS).
pymattersim's loop is pure Python: a few seconds per 2000-particle configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import h5py
import numpy as np

from glasscam_mpi.analysis import tong_tanaka, voronoi_neighbors
from glasscam_mpi.systems import get_system

TOL = 1e-6  # rad
CONVENTION = (
    "radians; Theta_o = sum over unordered pairs (i, j) of o's freud-Voronoi neighbours that "
    "list each other as neighbours (ids only) of |arccos(u_oi . u_oj) - arccos(law of "
    "cosines with sigma_oi, sigma_oj, sigma_ij)|, divided by o's coordination number "
    "(static/geometric.py packing_capability_2d); sigmas passed = R_a + R_b (additive). "
    "No conversion needed.")


def _import_pymattersim():
    """Import pymattersim quietly and install the numpy-2 read_neighbors workaround."""
    with contextlib.redirect_stdout(sys.stderr):
        from PyMatterSim.neighbors import freud_neighbors
        from PyMatterSim.reader.dump_reader import DumpReader
        from PyMatterSim.static import geometric
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("PyMatterSim"):
            logging.getLogger(name).setLevel(logging.WARNING)
    original = geometric.read_neighbors
    seen = {}

    def read_neighbors_int(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.setdefault("dtype", str(out.dtype))
        return np.asarray(out).astype(np.int64)

    geometric.read_neighbors = read_neighbors_int
    return DumpReader, freud_neighbors, geometric, seen


def write_dump(path: Path, box: np.ndarray, x: np.ndarray, types: np.ndarray) -> None:
    """LAMMPS atomic dump, 2D: box bounds 0..L (third line is a dummy z), ids/types from 1."""
    n = x.shape[0]
    lines = ["ITEM: TIMESTEP", "0", "ITEM: NUMBER OF ATOMS", str(n),
             "ITEM: BOX BOUNDS pp pp pp", f"0 {float(box[0])!r}", f"0 {float(box[1])!r}",
             "-0.5 0.5", "ITEM: ATOMS id type x y"]
    lines += [f"{k + 1} {int(t) + 1} {xx!r} {yy!r}"
              for k, (t, xx, yy) in enumerate(zip(types, x[:, 0].tolist(), x[:, 1].tolist()))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_neighbor_file(path: Path, n: int) -> list[list[int]]:
    """pymattersim's PREFIX.neighbor.dat -> per particle the list of 0-based neighbour ids."""
    out: list[list[int]] = [[] for _ in range(n)]
    with open(path, encoding="utf-8") as f:
        f.readline()
        for _ in range(n):
            item = f.readline().split()
            o, cn = int(item[0]) - 1, int(item[1])
            out[o] = [int(v) - 1 for v in item[2:2 + cn]]
    return out


def pms_definition(box, x, types, radii, nbrs: list[list[int]]) -> np.ndarray:
    """pymattersim's Theta formula (sum over mutual pairs / CN) on given neighbour lists."""
    sets = [set(v) for v in nbrs]
    theta = np.zeros(x.shape[0])
    for o, cn in enumerate(nbrs):
        total = 0.0
        for i, j in combinations(cn, 2):
            if j in sets[i] and i in sets[j]:
                v = x[[i, j]] - x[o]
                v -= box * np.rint(v / box)
                c = np.dot(v[0], v[1]) / (np.linalg.norm(v[0]) * np.linalg.norm(v[1]))
                a, b, cc = (radii[types[o]] + radii[types[i]], radii[types[o]] + radii[types[j]],
                            radii[types[i]] + radii[types[j]])
                ideal = np.arccos((a * a + b * b - cc * cc) / (2 * a * b))
                total += abs(np.arccos(np.clip(c, -1, 1)) - ideal)
        theta[o] = total / len(cn) if cn else np.nan
    return theta


def mutual_pairs(nbrs: list[list[int]]) -> np.ndarray:
    """Per particle, the number of unordered pairs of its neighbours that are neighbours."""
    sets = [set(v) for v in nbrs]
    return np.array([sum(1 for i, j in combinations(v, 2) if j in sets[i] and i in sets[j])
                     for v in nbrs])


def stats(ours: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(ours - ref)
    ok = np.isfinite(d)
    r = np.corrcoef(ours[ok], ref[ok])[0, 1] if ok.sum() > 1 else float("nan")
    return {"max_abs_dtheta": float(d[ok].max()), "mean_abs_dtheta": float(d[ok].mean()),
            "pearson_r": float(r), "frac_abs_dtheta_lt_1e-6": float(np.mean(d < TOL)),
            "n_nan": int((~ok).sum())}


def compare_one(box, x, types, radii, sigmas, workdir: Path, tag: str, pms) -> tuple[dict, dict]:
    DumpReader, freud_neighbors, geometric, _ = pms
    n = x.shape[0]
    dump = workdir / f"{tag}.dump"
    write_dump(dump, box, x, types)
    with contextlib.redirect_stdout(sys.stderr):
        reader = DumpReader(str(dump), ndim=2)
        reader.read_onefile()
        snaps = reader.snapshots
        snap = snaps.snapshots[0]
        prefix = str(workdir / tag)
        freud_neighbors.cal_neighbors(snaps, outputfile=prefix)
        # pymattersim asserts sigmas.shape[0] == the largest type id present
        top = int(types.max()) + 1
        theta_pms = np.asarray(geometric.packing_capability_2d(
            snaps, sigmas[:top, :top], prefix + ".neighbor.dat"))[0]
    read_back = {"positions_max_abs_diff": float(np.abs(snap.positions - x).max()),
                 "types_equal": bool(np.array_equal(snap.particle_type - 1, types)),
                 "boxlength": snap.boxlength.tolist()}

    theta_ours = tong_tanaka(box, x, types, radii)
    theta_ours_nb = tong_tanaka(box, x, types, radii, method="neighbors")
    bi, bj = voronoi_neighbors(box, x)
    off = np.searchsorted(bi, np.arange(n + 1))
    ours_nbrs = [bj[off[k]:off[k + 1]].tolist() for k in range(n)]
    pms_nbrs = read_neighbor_file(Path(prefix + ".neighbor.dat"), n)
    same = np.array([set(a) == set(b) for a, b in zip(ours_nbrs, pms_nbrs)])
    dup = np.array([len(set(v)) != len(v) for v in pms_nbrs])
    cn_pms = np.array([len(v) for v in pms_nbrs])
    cn_ours = np.diff(off)
    extra = mutual_pairs(pms_nbrs) - cn_pms  # != 0: separating triangles or odd cells
    pms_on_ours = pms_definition(box, x, types, radii, ours_nbrs)

    d = np.abs(theta_ours - theta_pms)
    bad = np.flatnonzero(~(d < TOL))
    res = {"N": n, **stats(theta_ours, theta_pms),
           "frac_identical_neighbour_sets": float(same.mean()),
           "n_particles_neighbour_sets_differ": int((~same).sum()),
           "mean_cn_ours": float(cn_ours.mean()), "mean_cn_pymattersim": float(cn_pms.mean()),
           "max_cn_pymattersim": int(cn_pms.max()),
           "theta_mean_ours": float(np.nanmean(theta_ours)),
           "theta_mean_pymattersim": float(np.nanmean(theta_pms)),
           "ours_method_neighbors_vs_pymattersim": stats(theta_ours_nb, theta_pms),
           "pms_definition_on_our_neighbours": {
               "vs_pymattersim": stats(pms_on_ours, theta_pms),
               "vs_ours": stats(pms_on_ours, theta_ours)},
           "diagnostics": {
               "n_particles_dtheta_ge_1e-6": int(bad.size),
               "n_mutual_pairs_ne_cn": int((extra != 0).sum()),
               "n_duplicate_ids_in_pymattersim_lists": int(dup.sum()),
               "bad_particles_with_differing_neighbour_sets": int((~same[bad]).sum()),
               "bad_particles_with_mutual_pairs_ne_cn": int((extra[bad] != 0).sum()),
               "worst": [{"id": int(k), "type": int(types[k]),
                          "theta_ours": float(theta_ours[k]),
                          "theta_pymattersim": float(theta_pms[k]),
                          "cn_ours": int(cn_ours[k]), "cn_pymattersim": int(cn_pms[k]),
                          "mutual_pairs_pymattersim": int(cn_pms[k] + extra[k]),
                          "only_ours": sorted(set(ours_nbrs[k]) - set(pms_nbrs[k])),
                          "only_pymattersim": sorted(set(pms_nbrs[k]) - set(ours_nbrs[k]))}
                         for k in bad[np.argsort(-d[bad])][:5]]},
           "read_back": read_back}
    arrays = {"ours": theta_ours, "pms": theta_pms, "same": same}
    return res, arrays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepare-h5", required=True, type=Path)
    ap.add_argument("--runs", default=None, help="comma-separated run indices "
                    "(default: the first 2 runs with status 1)")
    ap.add_argument("--which", choices=("glass", "liquid", "both"), default="both")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)

    pms = _import_pymattersim()
    import PyMatterSim  # noqa: F401  (version only)
    from importlib.metadata import version

    with h5py.File(args.prepare_h5, "r") as f:
        system_name = f.attrs["system"]
        system_name = system_name.decode() if isinstance(system_name, bytes) else str(system_name)
        box = np.asarray(f["box"][()], dtype=float)
        status = np.asarray(f["status"][()])
        if args.runs:
            runs = [int(s) for s in args.runs.split(",") if s.strip()]
        else:
            runs = [int(k) for k in np.flatnonzero(status == 1)[:2]]
        kinds = ("glass", "liquid") if args.which == "both" else (args.which,)
        configs = [(r, k, np.asarray(f["types"][r], dtype=np.int64),
                    np.asarray(f[k][r], dtype=float)) for r in runs for k in kinds]
    if box.shape != (2,):
        raise SystemExit(f"2D only: box has shape {box.shape}")
    radii = get_system(system_name).radii()
    sigmas = radii[:, None] + radii[None, :]

    out = {"prepare_h5": str(args.prepare_h5), "system": system_name, "box": box.tolist(),
           "radii": radii.tolist(), "sigmas_passed": sigmas.tolist(),
           "runs": runs, "status_of_runs": [int(status[r]) for r in runs],
           "pymattersim_version": version("pymattersim"),
           "freud_version": version("freud-analysis"), "numpy_version": np.__version__,
           "pymattersim_convention": CONVENTION,
           "ours": "glasscam_mpi.analysis.tong_tanaka(box, x, types, radii) default "
                   "method ('auto' = 'delaunay' in 2D); voronoi_neighbors default backend",
           "configurations": {}}
    all_ours, all_pms, all_same = [], [], []
    with tempfile.TemporaryDirectory(prefix="pms-ref-", dir="/tmp") as tmp:
        for r, kind, types, x in configs:
            tag = f"run{r}_{kind}"
            res, arr = compare_one(box, x, types, radii, sigmas, Path(tmp), tag, pms)
            out["configurations"][tag] = res
            all_ours.append(arr["ours"])
            all_pms.append(arr["pms"])
            all_same.append(arr["same"])
    out["read_neighbors_raw_dtype"] = pms[3].get("dtype")
    ours, ref, same = map(np.concatenate, (all_ours, all_pms, all_same))
    out["overall"] = {"N": int(ours.size), **stats(ours, ref),
                      "frac_identical_neighbour_sets": float(same.mean())}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out_json:
        args.out_json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
