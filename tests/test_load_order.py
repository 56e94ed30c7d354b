"""LAMMPS and freud's 3D Voronoi in one process, in every load order (issue 12).

``liblammps.so`` bundles and exports voro++ 0.4.6; freud's ``_locality`` bundles a newer,
layout-incompatible voro++ under the same symbol names. Loaded ``RTLD_GLOBAL`` (what the
stock ``lammps.lammps()`` does) before freud's module binds, LAMMPS's copy wins freud's
lookups and ``freud.locality.Voronoi`` segfaults. The package opens LAMMPS with
``RTLD_LOCAL`` and binds freud first; the freud backend refuses, with a message, the one
case it cannot make safe.

A segfault kills the process that has it, so every scenario runs in a fresh Python
(``sys.executable``) and the test asserts its exit status, then checks the numbers it
wrote: Voronoi volumes tile the box, neighbours are symmetric, the volumes agree with an
independent Monte Carlo estimate (cKDTree nearest-particle areas), and every load order
gives the same tessellation. Nothing is mocked: real LAMMPS, real freud, real MPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import ROOT, mpiexec
from glasscam_mpi.systems import get_system

N = 250  # KA3D-like: 200 A + 50 B at density 1.2, box edge (N / 1.2)^(1/3) = 5.93
# freud (the 3D backend) stores the box in float32: its cells tile float32(L)^3, which
# differs from L^3 by ~4e-8 relative for this L (3 float32 roundings, each <= 6e-8).
TILE_RTOL = 1e-6

# Shared head of every scenario: helpers only; nothing here loads LAMMPS or freud.
PRELUDE = textwrap.dedent(f"""
    import json, sys
    import numpy as np

    N = {N}
    OUT = sys.argv[1]
    report = {{}}

    def ka3d_random(seed):
        from glasscam_mpi.systems import get_system
        s = get_system("KA3D")
        L = s.box_length(N)
        rng = np.random.default_rng(seed)
        types = np.repeat(np.arange(2), s.counts(N))
        return np.full(3, L), rng.uniform(0, L, (N, 3)), types, s.radii()

    def analyse(tag, box, x, types, radii):
        from glasscam_mpi.analysis import tong_tanaka, voronoi_neighbors, voronoi_volumes
        vol = voronoi_volumes(box, x)
        i, j = voronoi_neighbors(box, x)
        theta = tong_tanaka(box, x, types, radii)
        np.savez(f"{{OUT}}/{{tag}}.npz", box=box, x=x, vol=vol, i=i, j=j, theta=theta)
        report[tag] = {{"sum": float(vol.sum()), "box_volume": float(np.prod(box))}}

    def analyse_2d_freud(seed):
        from glasscam_mpi.analysis import voronoi_tessellation
        box = np.array([17.0, 23.0])
        x = np.random.default_rng(seed).uniform(0, 1, (400, 2)) * box
        ref = voronoi_tessellation(box, x, backend="delaunay")
        got = voronoi_tessellation(box, x, backend="freud")
        report["2d_freud"] = {{
            "sum": float(got.volumes.sum()), "box_volume": float(box.prod()),
            "max_diff": float(np.abs(got.volumes - ref.volumes).max()),
            "same_neighbours": all(np.array_equal(a, b) for a, b in
                                   zip(got.neighbors(), ref.neighbors()))}}

    def run_lammps(tag):
        from glasscam_mpi.md.cooling import setup_lines
        from glasscam_mpi.md.engine import commands, liblammps_is_global, open_lammps, snapshot
        from glasscam_mpi.systems import get_system
        s = get_system("KA3D")
        with open_lammps() as lmp:
            commands(lmp, setup_lines(s, N, seeds=(11, 12, 13), min_distance=0.8,
                                      timestep=0.005, T_high=4.0, tdamp_steps=100,
                                      n_equilibrate=50))
            snap = snapshot(lmp, 3)
            report["lammps"] = {{"pe": float(lmp.get_thermo("pe")),
                                "mpi": bool(lmp.has_mpi_support),
                                "global": liblammps_is_global()}}
        analyse(tag, snap["box"], snap["positions"], snap["types"], s.radii())

    def finish():
        with open(f"{{OUT}}/report.json", "w") as f:
            json.dump(report, f)
""")

SCENARIOS = {
    # The reported crash: LAMMPS through the package, then freud's 3D Voronoi.
    "lammps_first": """
        run_lammps("md")
        analyse("random", *ka3d_random(5))
        analyse_2d_freud(6)
    """,
    # Analysis first, LAMMPS in between, analysis again (new configurations: no memo).
    "analysis_first": """
        analyse("random", *ka3d_random(5))
        run_lammps("md")
        analyse_2d_freud(6)
    """,
    # The user imports the LAMMPS Python module before anything of the package.
    "user_imports_lammps": """
        import lammps
        import glasscam_mpi, glasscam_mpi.analysis, glasscam_mpi.md.engine
        run_lammps("md")
        analyse("random", *ka3d_random(5))
        analyse_2d_freud(6)
    """,
}


def run_scenario(body: str, out: Path, timeout: float = 240) -> dict:
    """Run PRELUDE + body in a fresh Python; assert it exits 0; return its report."""
    code = PRELUDE + textwrap.dedent(body) + "\nfinish()\n"
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, (f"scenario exited {res.returncode} (-11 or 139 = SIGSEGV)"
                                 f"\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr[-4000:]}")
    return json.loads((out / "report.json").read_text())


def monte_carlo_volumes(box: np.ndarray, x: np.ndarray, samples: int, seed: int):
    """Volume of the region nearest to each particle (periodic), sampled; and its sigma."""
    pts = np.random.default_rng(seed).uniform(0, 1, (samples, len(box))) * box
    _, owner = cKDTree(x, boxsize=box).query(pts)
    frac = np.bincount(owner, minlength=len(x)) / samples
    return frac * box.prod(), np.sqrt(frac * (1 - frac) / samples) * box.prod()


def check_tessellation(path: Path) -> dict:
    """Invariants of one saved analysis; returns its arrays."""
    d = dict(np.load(path))
    box, vol, i, j, theta = d["box"], d["vol"], d["i"], d["j"], d["theta"]
    assert vol.shape == (N,) and np.all(vol > 0)
    assert vol.sum() == pytest.approx(box.prod(), rel=TILE_RTOL)
    # Unique pairs, no self-pairs, every cell closed (>= 4 faces). Symmetry (j in N(i) iff
    # i in N(j)) is not asserted: freud's voro++ drops a small face from one of its two
    # cells now and then (e.g. 1 of 3909 bonds here, whatever the load order), a freud
    # property unrelated to the library clash.
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)
    assert np.all(i != j) and np.all(np.bincount(i, minlength=N) >= 4)
    assert np.all(np.isfinite(theta)) and np.all(theta >= 0)
    return d


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = {}
    for name, body in SCENARIOS.items():
        folder = tmp_path_factory.mktemp(name)
        out[name] = (run_scenario(body, folder), folder)
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lammps_and_3d_voronoi_in_one_process(reports, name):
    report, folder = reports[name]
    for tag in ("md", "random"):
        assert report[tag]["sum"] == pytest.approx(report[tag]["box_volume"], rel=TILE_RTOL)
        check_tessellation(folder / f"{tag}.npz")
    # LAMMPS itself worked, with MPI, and its library stayed out of the global scope.
    assert np.isfinite(report["lammps"]["pe"]) and report["lammps"]["mpi"] is True
    assert report["lammps"]["global"] is False
    # freud's 2D Voronoi (also voro++) after LAMMPS equals the project's Delaunay backend.
    r2 = report["2d_freud"]
    assert r2["sum"] == pytest.approx(r2["box_volume"], rel=1e-10)
    assert r2["max_diff"] < 1e-4 and r2["same_neighbours"]


def test_every_load_order_gives_the_same_tessellation(reports):
    ref = dict(np.load(reports["lammps_first"][1] / "random.npz"))
    for name in SCENARIOS:
        got = dict(np.load(reports[name][1] / "random.npz"))
        np.testing.assert_array_equal(got["vol"], ref["vol"], err_msg=name)
        np.testing.assert_array_equal(got["i"], ref["i"], err_msg=name)
        np.testing.assert_array_equal(got["j"], ref["j"], err_msg=name)
        np.testing.assert_array_equal(got["theta"], ref["theta"], err_msg=name)
        md = dict(np.load(reports[name][1] / "md.npz"))
        md_ref = dict(np.load(reports["lammps_first"][1] / "md.npz"))
        np.testing.assert_array_equal(md["x"], md_ref["x"], err_msg=name)
        np.testing.assert_array_equal(md["vol"], md_ref["vol"], err_msg=name)


@pytest.mark.parametrize("tag", ["md", "random"])
def test_volumes_after_lammps_match_monte_carlo(reports, tag):
    """Independent reference: cell i is the region nearer to i than to any other particle."""
    d = dict(np.load(reports["lammps_first"][1] / f"{tag}.npz"))
    mc, sigma = monte_carlo_volumes(d["box"], d["x"], 400_000, seed=17)
    assert np.all(np.abs(d["vol"] - mc) < 5 * sigma + 1e-9)


# -- the cure itself and the guard ---------------------------------------------------------

def test_stock_lammps_before_freud_is_refused_with_a_message_not_a_crash(tmp_path):
    # A lammps.lammps() created directly (RTLD_GLOBAL) before freud is loaded: freud
    # would bind to LAMMPS's voro++. The freud backend must say so; 2D Delaunay still works.
    report = run_scenario("""
        from mpi4py import MPI
        from lammps import lammps
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"],
                     comm=MPI.COMM_SELF)
        from glasscam_mpi.md.engine import liblammps_is_global
        report["global"] = liblammps_is_global()
        try:
            analyse("random", *ka3d_random(5))
            report["error"] = None
        except RuntimeError as exc:
            report["error"] = str(exc)
        report["freud_loaded"] = "freud._locality" in sys.modules
        from glasscam_mpi.analysis import voronoi_volumes
        box = np.array([9.0, 8.0])
        report["sum_2d"] = float(voronoi_volumes(box, np.random.default_rng(1).uniform(
            0, 8, (100, 2))).sum())
        lmp.close()
    """, tmp_path)
    assert report["global"] is True
    assert report["error"] is not None
    assert "liblammps.so" in report["error"] and "open_lammps" in report["error"]
    assert report["freud_loaded"] is False  # refused before freud could bind wrongly
    assert report["sum_2d"] == pytest.approx(72.0, rel=1e-12)


@pytest.mark.parametrize("first", ["import freud", "package_lammps"])
def test_stock_lammps_after_freud_is_bound_is_harmless(tmp_path, first):
    # freud bound its own voro++ first (imported by the user, or by open_lammps before
    # LAMMPS): a stock lammps.lammps() that makes liblammps global afterwards cannot hurt.
    pre = "import freud" if first == "import freud" else "run_lammps('md')"
    report = run_scenario(f"""
        {pre}
        from mpi4py import MPI
        from lammps import lammps
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"],
                     comm=MPI.COMM_SELF)
        from glasscam_mpi.md.engine import liblammps_is_global
        report["global"] = liblammps_is_global()
        analyse("random", *ka3d_random(5))
        lmp.close()
    """, tmp_path)
    assert report["global"] is True
    assert report["random"]["sum"] == pytest.approx(report["random"]["box_volume"],
                                                    rel=TILE_RTOL)
    check_tessellation(tmp_path / "random.npz")


def test_freud_and_lammps_both_work_after_the_cure(tmp_path):
    # liblammps RTLD_LOCAL: a second instance, MD after freud, and freud's other
    # compiled modules (AABB neighbour query) against a brute-force reference.
    report = run_scenario("""
        run_lammps("md")
        analyse("random", *ka3d_random(5))
        import freud
        box, x, _, _ = ka3d_random(8)
        q = freud.locality.AABBQuery(freud.box.Box(*box), x - box / 2)
        nl = q.query(x - box / 2, {"r_max": 1.4, "exclude_ii": True}).toNeighborList()
        d = x[:, None, :] - x[None, :, :]
        d -= box * np.round(d / box)
        r = np.sqrt((d ** 2).sum(-1))
        report["aabb_pairs"] = int(len(nl.distances))
        report["brute_pairs"] = int(((r < 1.4) & (r > 0)).sum())
        run_lammps("md2")
    """, tmp_path)
    assert report["aabb_pairs"] == report["brute_pairs"] > 0
    assert report["lammps"]["global"] is False and report["lammps"]["mpi"] is True
    a = dict(np.load(tmp_path / "md.npz"))
    b = dict(np.load(tmp_path / "md2.npz"))
    np.testing.assert_array_equal(a["x"], b["x"])  # the same seeded MD, bit for bit
    np.testing.assert_array_equal(a["vol"], b["vol"])


def test_glasscam_env_still_reports_lammps_with_mpi():
    res = subprocess.run([sys.executable, "-m", "glasscam_mpi.cli", "env"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("lammps:"))
    assert "(MPI;" in line and "lj/smooth/linear ok" in line, line


@pytest.mark.mpi
def test_two_mpi_ranks_run_lammps_then_3d_voronoi(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from mpi4py import MPI
        from glasscam_mpi.analysis import voronoi_volumes
        from glasscam_mpi.md.engine import commands, open_lammps
        comm = MPI.COMM_WORLD
        with open_lammps() as lmp:
            commands(lmp, ["units lj", "region b block 0 5 0 5 0 5", "create_box 1 b",
                           f"create_atoms 1 random 100 {{101 + comm.rank}} NULL",
                           "mass 1 1", "pair_style lj/cut 2.5", "pair_coeff * * 1 1",
                           "run 0"])
            pe = float(lmp.get_thermo("pe"))
        box = np.array([6.0, 7.0, 8.0])
        x = np.random.default_rng(comm.rank).uniform(0, 1, ({N}, 3)) * box
        sums = comm.gather(float(voronoi_volumes(box, x).sum()), root=0)
        if comm.rank == 0:
            print("SUMS", sums, comm.size, np.isfinite(pe))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # this checkout's package
    res = subprocess.run([*mpiexec(2), sys.executable, str(script)], capture_output=True,
                         text=True, timeout=240, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("SUMS"))
    assert line.endswith("2 True"), line
    sums = json.loads(line.split("SUMS ")[1].rsplit(" ", 2)[0])
    assert sums == pytest.approx([336.0, 336.0], rel=1e-10)


def test_ka3d_system_is_what_the_scenarios_assume():
    s = get_system("KA3D")
    assert s.dim == 3 and s.counts(N) == (200, 50)
