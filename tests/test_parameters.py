"""The model parameters against METHOD.md Table 1, held here as literals.

Nothing below reads sigma, epsilon, cutoffs, composition, density or radii from
``glasscam_mpi.systems``: the numbers are copied from METHOD.md section 1 (paper Table 1)
and section 5, and Eq. 1 is coded here from them. The package is then checked twice:
its tables against the literals, and real LAMMPS energies and forces -- from a LAMMPS
instance set up by the package (``md.replica.load_configuration_lines``, which uses
``md.cooling.pair_lines``; ``md.cooling.setup_lines`` for boxes and compositions) --
against Eq. 1 evaluated on the literals. So a wrong number in the package fails here
even where every other test agrees with it.
"""

import math

import numpy as np
import pytest

from glasscam_mpi.md.cooling import setup_lines
from glasscam_mpi.md.engine import commands, open_lammps
from glasscam_mpi.md.replica import load_configuration_lines
from glasscam_mpi.systems import SYSTEMS

# METHOD.md section 1 (paper Table 1) and section 5 (Tong-Tanaka radii, additive:
# R_s = sigma_ss / 2), species order (A, B). Pairs are keyed "AA", "AB", "BB".
TABLE1 = {
    "KAM": {"dim": 2, "masses": (1.0, 1.0),
            "sigma": {"AA": 1.0, "AB": 0.8, "BB": 0.88},
            "epsilon": {"AA": 1.0, "AB": 1.5, "BB": 0.5},
            "rc_factor": 2.5, "density": 1.2, "counts_2000": (1300, 700),
            "radii": (0.5, 0.44), "T_liquid": 0.8},
    "ABM": {"dim": 2, "masses": (1.0, 1.0),
            "sigma": {"AA": 5 / 6, "AB": 1.0, "BB": 7 / 6},
            "epsilon": {"AA": 1.0, "AB": 1.0, "BB": 1.0},
            "rc_factor": 3.0, "density": 1.09, "counts_2000": (1000, 1000),
            "radii": (5 / 12, 7 / 12), "T_liquid": 2.0},
    # the 3D extension: standard Kob-Andersen 80:20, KAM's sigma/epsilon, rho 1.2, 2.5 sigma_ij
    "KA3D": {"dim": 3, "masses": (1.0, 1.0),
             "sigma": {"AA": 1.0, "AB": 0.8, "BB": 0.88},
             "epsilon": {"AA": 1.0, "AB": 1.5, "BB": 0.5},
             "rc_factor": 2.5, "density": 1.2, "counts_2000": (1600, 400),
             "radii": (0.5, 0.44), "T_liquid": None},
}
T_GLASS = 0.05  # METHOD.md section 2
SPECIES = "AB"
NAMES = tuple(TABLE1)


def _pair(a: int, b: int) -> str:
    return "".join(sorted(SPECIES[a] + SPECIES[b]))


def _lit(name: str, a: int, b: int) -> tuple[float, float, float]:
    """(sigma, epsilon, r_c) of the pair (a, b) from the literals."""
    t = TABLE1[name]
    key = _pair(a, b)
    return t["sigma"][key], t["epsilon"][key], t["rc_factor"] * t["sigma"][key]


def eq1_energy(r: float, sigma: float, eps: float, rc: float) -> float:
    """Paper Eq. 1: phi(r) = phi*(r) - phi*(r_c) - (r - r_c) phi*'(r_c) for r < r_c, else 0."""
    if r >= rc:
        return 0.0
    lj = 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)
    lj_c = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    dlj_c = 4 * eps * (-12 * sigma**12 / rc**13 + 6 * sigma**6 / rc**7)
    return lj - lj_c - (r - rc) * dlj_c


def eq1_force(r: float, sigma: float, eps: float, rc: float) -> float:
    """-dphi/dr of Eq. 1 (positive = repulsive) for r < r_c, else 0."""
    if r >= rc:
        return 0.0
    d = lambda x: 4 * eps * (-12 * sigma**12 / x**13 + 6 * sigma**6 / x**7)  # noqa: E731
    return -(d(r) - d(rc))


# -- the package's tables -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_system_table_equals_method_table1(name):
    t, s = TABLE1[name], SYSTEMS[name]
    assert s.dim == t["dim"] and s.species == ("A", "B")
    assert s.masses == pytest.approx(t["masses"], abs=0)
    for a in range(2):
        for b in range(2):
            sigma, eps, rc = _lit(name, a, b)
            assert s.sigma_ab(a, b) == pytest.approx(sigma, rel=1e-14), (name, a, b, "sigma")
            assert s.epsilon_ab(a, b) == pytest.approx(eps, rel=1e-14), (name, a, b, "epsilon")
            assert s.cutoff(a, b) == pytest.approx(rc, rel=1e-14), (name, a, b, "r_c")
    assert s.density == pytest.approx(t["density"], rel=1e-14)
    np.testing.assert_allclose(s.fractions, np.array(t["counts_2000"]) / 2000, rtol=1e-14)
    np.testing.assert_allclose(s.radii(), t["radii"], rtol=1e-14, err_msg=f"{name} TT radii")
    assert s.T_glass == pytest.approx(T_GLASS, rel=1e-14)
    if t["T_liquid"] is not None:
        assert s.T_liquid == pytest.approx(t["T_liquid"], rel=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_species_counts_and_box_for_n_2000(name):
    t, s = TABLE1[name], SYSTEMS[name]
    assert s.counts(2000) == t["counts_2000"]
    L = (2000 / t["density"]) ** (1 / t["dim"])
    assert s.box_length(2000) == pytest.approx(L, rel=1e-14)


def test_ka3d_is_80_20_at_every_size():
    for n in (100, 250, 1000, 4000):
        assert SYSTEMS["KA3D"].counts(n) == (4 * n // 5, n // 5)


@pytest.mark.parametrize("name, n", [("KAM", 2000), ("ABM", 2000), ("KA3D", 2000),
                                     ("KA3D", 1000)])
def test_lammps_box_and_composition_from_the_package_set_up(name, n):
    """The box LAMMPS builds (``setup_lines``, up to its minimisation) has edge
    (N / rho)^(1/d) and holds the Table 1 numbers of A and B."""
    t, s = TABLE1[name], SYSTEMS[name]
    lines = setup_lines(s, n, seeds=(11, 12, 13), min_distance=0.7, timestep=0.005,
                        T_high=4.0, tdamp_steps=100, n_equilibrate=0)
    upto = next(i for i, line in enumerate(lines) if line.startswith("minimize"))
    with open_lammps() as lmp:
        commands(lmp, lines[:upto])
        nlocal = lmp.extract_global("nlocal")
        types = np.array(lmp.numpy.extract_atom("type")[:nlocal])
        lo, hi = (np.array(v) for v in lmp.extract_box()[:2])
        masses = np.array(lmp.numpy.extract_atom("mass"))[1:3]
    d = t["dim"]
    L = (n / t["density"]) ** (1 / d)
    np.testing.assert_allclose((hi - lo)[:d], L, rtol=1e-12)
    assert n / np.prod((hi - lo)[:d]) == pytest.approx(t["density"], rel=1e-12)
    counts = tuple(int(c) for c in np.bincount(types, minlength=3)[1:])
    expect = t["counts_2000"] if n == 2000 else (round(0.8 * n), round(0.2 * n))
    assert counts == expect
    np.testing.assert_array_equal(masses, t["masses"])


# -- LAMMPS against Eq. 1 from the literals ----------------------------------------------------
def _lammps_energy_forces(lmp, name: str, positions, types) -> tuple[float, np.ndarray]:
    """Total potential energy and (n, d) forces of atoms placed in a fresh package box."""
    s = SYSTEMS[name]
    d = s.dim
    L = 4 * 3.5  # > 2 * the largest cutoff of any system (ABM BB: 3.0 * 7/6)
    box = np.full(d, L)
    n = len(types)
    x3 = np.zeros((n, 3))
    x3[:, :d] = positions
    commands(lmp, ["clear", *load_configuration_lines(s, box),
                   "thermo_style custom step pe", "thermo_modify norm no"])
    lmp.create_atoms(n, list(range(1, n + 1)), [int(t) + 1 for t in types], x3.ravel().tolist())
    commands(lmp, ["run 0"])
    nlocal = lmp.extract_global("nlocal")
    ids = np.array(lmp.numpy.extract_atom("id")[:nlocal])
    f = np.array(lmp.numpy.extract_atom("f")[:nlocal, :d])
    forces = np.empty_like(f)
    forces[ids - 1] = f
    return float(lmp.get_thermo("pe")), forces


def _direction(d: int) -> np.ndarray:
    u = np.array([0.6, 0.8]) if d == 2 else np.array([2.0, 3.0, 6.0]) / 7.0
    return u / np.linalg.norm(u)


@pytest.mark.parametrize("name", NAMES)
def test_lammps_pair_energy_and_force_equal_eq1_of_table1(name):
    d = TABLE1[name]["dim"]
    u = _direction(d)
    centre = np.full(d, 7.0)
    with open_lammps() as lmp:
        for a in range(2):
            for b in range(2):
                sigma, eps, rc = _lit(name, a, b)
                for r in (0.9 * sigma, sigma, 2 ** (1 / 6) * sigma, 1.3 * sigma, 1.8 * sigma,
                          2.2 * sigma, 0.98 * rc):
                    pe, f = _lammps_energy_forces(lmp, name, [centre, centre + r * u], [a, b])
                    want_e, want_f = eq1_energy(r, sigma, eps, rc), eq1_force(r, sigma, eps, rc)
                    assert pe == pytest.approx(want_e, rel=1e-9, abs=1e-12), (name, a, b, r)
                    # the force on the second atom points along u when repulsive
                    np.testing.assert_allclose(f[1], want_f * u, rtol=1e-9, atol=1e-12,
                                               err_msg=f"{name} {a}{b} r={r}")
                    np.testing.assert_allclose(f[0], -f[1], rtol=1e-12, atol=1e-12)
                # at r_c and just beyond: energy and force zero (absolute tolerance); just
                # inside: small, continuous with zero
                for r, tol in ((rc, 1e-12), (1.001 * rc, 1e-12), (rc * (1 - 1e-6), 1e-5)):
                    pe, f = _lammps_energy_forces(lmp, name, [centre, centre + r * u], [a, b])
                    assert abs(pe) < tol * eps and np.abs(f).max() < tol * eps * 10, \
                        (name, a, b, r, pe, f)


@pytest.mark.parametrize("name", NAMES)
def test_lammps_triple_is_the_sum_of_eq1_pairs(name):
    """Three atoms (A, B, B) close enough that every pair interacts: the energy and the
    force on each atom are sums of Eq. 1 pair terms with the right (sigma, eps, r_c)."""
    d = TABLE1[name]["dim"]
    rng = np.random.default_rng(5)
    types = [0, 1, 1]
    with open_lammps() as lmp:
        for _ in range(4):
            while True:  # not too close (no 1e6 energies), within every pair's cutoff
                x = 7.0 + rng.uniform(-1.0, 1.0, size=(3, d))
                r = [np.linalg.norm(x[i] - x[j]) for i in range(3) for j in range(i + 1, 3)]
                if min(r) > 0.85:
                    break
            pe, f = _lammps_energy_forces(lmp, name, x, types)
            want_e, want_f = 0.0, np.zeros((3, d))
            for i in range(3):
                for j in range(i + 1, 3):
                    sigma, eps, rc = _lit(name, types[i], types[j])
                    rij = x[j] - x[i]
                    r = float(np.linalg.norm(rij))
                    want_e += eq1_energy(r, sigma, eps, rc)
                    fj = eq1_force(r, sigma, eps, rc) * rij / r
                    want_f[j] += fj
                    want_f[i] -= fj
            assert pe == pytest.approx(want_e, rel=1e-9, abs=1e-12)
            np.testing.assert_allclose(f, want_f, rtol=1e-8, atol=1e-10)


def test_eq1_as_coded_here():
    """The test's own Eq. 1: zero value and slope at r_c, LJ plus a linear term inside."""
    sigma, eps, rc = 0.8, 1.5, 2.0
    assert eq1_energy(rc, sigma, eps, rc) == 0.0 and eq1_force(rc, sigma, eps, rc) == 0.0
    assert abs(eq1_energy(rc * (1 - 1e-9), sigma, eps, rc)) < 1e-12
    h, r = 1e-6, 1.1
    num = -(eq1_energy(r + h, sigma, eps, rc) - eq1_energy(r - h, sigma, eps, rc)) / (2 * h)
    assert eq1_force(r, sigma, eps, rc) == pytest.approx(num, rel=1e-7)
    # minimum of bare LJ at 2^(1/6) sigma: Eq. 1's force there is the (small) shift only
    rm = 2 ** (1 / 6) * sigma
    shift = 4 * eps * (-12 * sigma**12 / rc**13 + 6 * sigma**6 / rc**7)
    assert eq1_force(rm, sigma, eps, rc) == pytest.approx(shift, rel=1e-9)
    assert math.isclose(eq1_energy(sigma, sigma, eps, rc),
                        -4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
                        - (sigma - rc) * shift, rel_tol=1e-12)
