"""The MD layer checked as physics, against independent references.

- LAMMPS energy and force for every pair type equal Eq. 1 (computed in numpy from
  System.pair_energy / pair_force), both zero at r_c.
- A thermostatted run holds its target temperature.
- Density, composition and 2D confinement are as configured.
"""

import numpy as np
import pytest

from glasscam_mpi.md.cooling import CoolingPlan, pair_lines, run_cooling, setup_lines
from glasscam_mpi.md.engine import MDError, commands, open_lammps, snapshot, thermo
from glasscam_mpi.systems import SYSTEMS, get_system


def _two_atoms(lmp, system, a: int, b: int, r: float) -> tuple[float, float]:
    """Energy and x-force on atom 2 for two atoms of types a, b at distance r."""
    L = 4 * system.max_cutoff
    d = system.dim
    zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, L)
    commands(lmp, ["clear", "units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
                   "atom_modify map array", f"region box block 0 {L} 0 {L} {zlo} {zhi}",
                   f"create_box {system.n_species} box", "mass * 1.0",
                   f"create_atoms {a + 1} single {L / 2} {L / 2} 0.0",
                   f"create_atoms {b + 1} single {L / 2 + r!r} {L / 2} 0.0",
                   *pair_lines(system), "thermo_style custom step pe", "thermo_modify norm no",
                   "run 0"])
    f = lmp.numpy.extract_atom("f")
    ids = lmp.numpy.extract_atom("id")
    return float(lmp.get_thermo("pe")), float(f[np.argmax(ids == 2), 0])


@pytest.mark.parametrize("name", ["KAM", "ABM", "KA3D"])
def test_pair_energy_and_force_equal_eq1(name):
    system = SYSTEMS[name]
    with open_lammps() as lmp:
        for a in range(system.n_species):
            for b in range(system.n_species):
                s, rc = system.sigma_ab(a, b), system.cutoff(a, b)
                for r in (0.85 * s, s, 2 ** (1 / 6) * s, 1.5 * s, 2.2 * s, 0.99 * rc):
                    pe, fx = _two_atoms(lmp, system, a, b, r)
                    ref_e = float(system.pair_energy(r, a, b))
                    ref_f = float(system.pair_force(r, a, b))
                    assert pe == pytest.approx(ref_e, rel=1e-8, abs=1e-12), (a, b, r)
                    assert fx == pytest.approx(ref_f, rel=1e-8, abs=1e-12), (a, b, r)
                # energy and force vanish at and beyond the cutoff, and are continuous there
                for r in (rc, rc * 1.001):
                    pe, fx = _two_atoms(lmp, system, a, b, r)
                    assert pe == 0.0 and fx == 0.0
                pe, fx = _two_atoms(lmp, system, a, b, rc * (1 - 1e-6))
                assert abs(pe) < 1e-9 and abs(fx) < 1e-5


def test_reference_potential_is_eq1():
    """The numpy reference itself: phi(r_c) = 0, phi'(r_c) = 0, and phi = LJ + linear terms."""
    s = get_system("KAM")
    rc = s.cutoff(0, 1)
    assert s.pair_energy(rc * (1 - 1e-9), 0, 1) == pytest.approx(0, abs=1e-9)
    h = 1e-6
    r = 1.1
    num_force = -(s.pair_energy(r + h, 0, 1) - s.pair_energy(r - h, 0, 1)) / (2 * h)
    assert s.pair_force(r, 0, 1) == pytest.approx(num_force, rel=1e-6)
    lj = lambda x: 4 * 1.5 * ((0.8 / x) ** 12 - (0.8 / x) ** 6)  # noqa: E731
    # the difference to bare LJ is linear in r
    diffs = [float(s.pair_energy(x, 0, 1)) - lj(x) for x in (1.0, 1.2, 1.4)]
    assert diffs[1] - diffs[0] == pytest.approx(diffs[2] - diffs[1], rel=1e-9)


@pytest.mark.parametrize("name, n", [("KAM", 256), ("KA3D", 250)])
def test_nvt_holds_its_temperature(name, n):
    """Mean temperature of a Nose-Hoover run within 3% of the target."""
    system, T = SYSTEMS[name], 1.5
    with open_lammps() as lmp:
        commands(lmp, setup_lines(system, n, seeds=(11, 12, 13), min_distance=0.7,
                                  timestep=0.005, T_high=T, tdamp_steps=100, n_equilibrate=2000))
        temps = []
        for _ in range(100):
            commands(lmp, ["run 40 pre no post no"])
            temps.append(thermo(lmp, "temp")[0])
    assert np.mean(temps) == pytest.approx(T, rel=0.03)


@pytest.mark.parametrize("name, n", [("KAM", 100), ("ABM", 90), ("KA3D", 120)])
def test_cooling_run_density_composition_and_plane(name, n):
    system = SYSTEMS[name]
    plan = CoolingPlan.make(timestep=0.005, t_equilibrate=1.0, T_high=4.0,
                            T_liquid=system.T_liquid, T_glass=0.05, cooling_rate=0.1,
                            energy_samples=10)
    res = run_cooling(system, n, plan, seeds=(3, 4, 5), min_distance=0.7, timestep=0.005,
                      T_high=4.0, T_glass=0.05, tdamp_steps=100)
    d = system.dim
    assert res.liquid.shape == res.glass.shape == (n, d)
    assert n / np.prod(res.box) == pytest.approx(system.density, rel=1e-12)
    assert tuple(np.bincount(res.types, minlength=2)) == system.counts(n)
    for x in (res.liquid, res.glass):
        assert np.all(x >= 0) and np.all(x < res.box)
    # recorded along the ramp; the end is cold
    assert res.T.shape == res.pe.shape == (len(plan.sample_steps),)
    assert res.T[-1] < 0.3 and res.T[0] > 2.0
    assert res.pe[-1] < res.pe[0]


def test_2d_stays_in_the_plane():
    system = SYSTEMS["KAM"]
    with open_lammps() as lmp:
        commands(lmp, setup_lines(system, 100, seeds=(1, 2, 3), min_distance=0.7,
                                  timestep=0.005, T_high=4.0, tdamp_steps=100, n_equilibrate=500))
        x = lmp.numpy.extract_atom("x")[:100]
        v = lmp.numpy.extract_atom("v")[:100]
        assert np.all(x[:, 2] == 0.0) and np.all(v[:, 2] == 0.0)
        snap = snapshot(lmp, 2)
        assert snap["positions"].shape == (100, 2)


def test_a_lammps_failure_is_an_mderror():
    system = SYSTEMS["KAM"]
    plan = CoolingPlan.make(timestep=0.005, t_equilibrate=0.5, T_high=4.0, T_liquid=0.8,
                            T_glass=0.05, cooling_rate=1.0, energy_samples=5)
    with pytest.raises(MDError):
        run_cooling(system, 64, plan, seeds=(1, 2, 3), min_distance=0.7, timestep=0.005,
                    T_high=4.0, T_glass=0.05, tdamp_steps=100, inject_fault=True)
