"""``[system] name = "custom"``: any Lennard-Jones mixture, checked as physics.

- KAM written out as a custom mixture *is* the built-in KAM: the same System, the same
  LAMMPS input, and (under mpiexec) bit-identical prepare and indicators datasets.
- The Wahnstrom 50:50 mixture (G. Wahnstrom, Phys. Rev. A 44, 3752 (1991): sigma_AA = 1.0,
  sigma_AB = 1.1, sigma_BB = 1.2, all epsilon = 1.0, m_A = 1, m_B = 2; r_c,ij = 2.5
  sigma_ij as the paper's KAM), in 2D (the shipped example) and 3D (density 0.82): LAMMPS
  energy and force of two particles, set up by the package's md/ layer from the config,
  equal Eq. 1 evaluated here by hand from those literals, for each pair type.
- A ternary mixture cools in LAMMPS with its configured composition.
- The Theta radii given in the config are the ones the analysis uses.
- Every validation error names the field, the value and what is allowed.
"""

import math
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, TINY_TOML, glasscam
from glasscam_mpi.analysis import tong_tanaka
from glasscam_mpi.config import ConfigError, build_config, load_config, load_saved_config
from glasscam_mpi.learn.grid import GridSpec
from glasscam_mpi.md.cooling import CoolingPlan, pair_lines, run_cooling
from glasscam_mpi.md.engine import commands, open_lammps
from glasscam_mpi.md.replica import load_configuration_lines
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.systems import SYSTEMS

EXAMPLE = ROOT / "hpc" / "custom-wahnstrom.example.toml"

# KAM (METHOD.md section 1) as a custom mixture; N = 60 gives whole counts (39 A, 21 B)
KAM_CUSTOM = """
name = "custom"
label = "KAM"
dim = 2
species = ["A", "B"]
masses = [1.0, 1.0]
fractions = [0.65, 0.35]
sigma = [[1.0, 0.8], [0.8, 0.88]]
epsilon = [[1.0, 1.5], [1.5, 0.5]]
rc_factor = 2.5
density = 1.2
T_liquid = 0.8
T_star = 0.37
"""
TINY_60 = TINY_TOML.replace("n_particles = 64", "n_particles = 60")
TINY_60_CUSTOM = TINY_60.replace('name = "KAM"\n', KAM_CUSTOM.lstrip())

# the Wahnstrom mixture in 3D, with the per-pair cutoff matrix instead of rc_factor
WAHNSTROM_3D = """
[system]
name = "custom"
label = "Wahnstrom3D"
n_particles = 400
dim = 3
species = ["A", "B"]
masses = [1.0, 2.0]
fractions = [0.5, 0.5]
sigma = [[1.0, 1.1], [1.1, 1.2]]
epsilon = [[1.0, 1.0], [1.0, 1.0]]
cutoff = [[2.5, 2.75], [2.75, 3.0]]
density = 0.82
T_liquid = 1.0
unit = ["A", "A"]
"""

# the literature values, typed here (not read from the package): pair -> (sigma, epsilon)
WAHNSTROM = {(0, 0): (1.0, 1.0), (0, 1): (1.1, 1.0), (1, 1): (1.2, 1.0)}


def _config(text: str, tmp_path: Path, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_config(path=path)


# -- KAM as a custom mixture is the built-in KAM ----------------------------------------------
def test_kam_as_custom_is_the_builtin_kam(tmp_path):
    custom = _config(TINY_60_CUSTOM, tmp_path, "custom.toml")
    builtin = _config(TINY_60, tmp_path, "kam.toml")
    s, k = custom.sys, builtin.sys
    assert s == k == SYSTEMS["KAM"]
    # every derived quantity the stages read
    assert s.counts(60) == k.counts(60) == (39, 21)
    assert s.box_length(60) == k.box_length(60)
    assert s.max_cutoff == k.max_cutoff == 2.5
    np.testing.assert_array_equal(s.radii(), [0.5, 0.44])
    assert [s.cutoff(a, b) for a in (0, 1) for b in (0, 1)] == \
        [k.cutoff(a, b) for a in (0, 1) for b in (0, 1)]
    assert pair_lines(s) == pair_lines(k)                # LAMMPS pair coefficients
    assert GridSpec.for_system(s, custom.n_grid) == GridSpec.for_system(k, builtin.n_grid)
    assert (custom.T_liquid, custom.T_glass) == (builtin.T_liquid, builtin.T_glass) == (0.8, 0.05)


def _datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, groups walked."""
    out = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.mpi
def test_kam_as_custom_gives_bit_identical_prepare_and_indicators(tmp_path):
    files = {}
    for name, text in (("builtin", TINY_60), ("custom", TINY_60_CUSTOM)):
        cfg, rd = tmp_path / f"{name}.toml", tmp_path / name
        cfg.write_text(text)
        glasscam(["prepare", "--config", str(cfg), "--run-dir", str(rd)], n=2)
        glasscam(["indicators", "--run-dir", str(rd)], n=2)
        files[name] = rd
    for stage in ("prepare", "indicators"):
        a = _datasets(files["builtin"] / f"{stage}.h5")
        b = _datasets(files["custom"] / f"{stage}.h5")
        assert a.keys() == b.keys() and len(a) >= 5
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            if a[key].dtype.kind == "O":  # strings (e.g. the names of a dimension scale)
                assert a[key].tolist() == b[key].tolist(), f"{stage}.h5 {key} differs"
            else:
                assert a[key].tobytes() == b[key].tobytes(), f"{stage}.h5 {key} differs"
    with h5py.File(files["custom"] / "prepare.h5", "r") as fh:  # real runs, not empty files
        assert (fh["status"][:] == 1).all() and np.isfinite(fh["glass"][:]).all()
    # the saved config is the custom one and reloads to the same system
    saved = RunDir(files["custom"]).saved_config()
    assert saved.system.name == "custom" and saved.sys == SYSTEMS["KAM"]


# -- the saved config reloads to the same system ----------------------------------------------
def test_saved_config_reloads_to_the_same_system(tmp_path):
    for text in (EXAMPLE.read_text(), WAHNSTROM_3D):
        cfg = _config(text, tmp_path)
        (tmp_path / "saved.toml").write_text(cfg.to_toml())
        again = load_saved_config(tmp_path / "saved.toml")
        assert again == cfg and again.sys == cfg.sys
    assert again.sys.rc == ((2.5, 2.75), (2.75, 3.0)) and again.sys.unit_pair == ("A", "A")


def test_the_example_is_the_wahnstrom_mixture():
    cfg = load_config(path=EXAMPLE)
    s = cfg.sys
    assert (s.name, s.dim, s.species, s.masses, s.fractions) == \
        ("Wahnstrom2D", 2, ("A", "B"), (1.0, 2.0), (0.5, 0.5))
    for (a, b), (sigma, eps) in WAHNSTROM.items():
        assert (s.sigma_ab(a, b), s.sigma_ab(b, a), s.epsilon_ab(a, b)) == (sigma, sigma, eps)
        assert s.cutoff(a, b) == 2.5 * sigma
    assert s.counts(cfg.system.n_particles) == (100, 100)
    np.testing.assert_array_equal(s.radii(), [0.5, 0.6])


# -- Wahnstrom: LAMMPS against Eq. 1 by hand --------------------------------------------------
def eq1(r: float, sigma: float, eps: float, rc: float) -> tuple[float, float]:
    """Paper Eq. 1 (LJ minus its value and slope at r_c) and F = -dphi/dr, by hand."""
    if r >= rc:
        return 0.0, 0.0
    lj = 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)
    lj_c = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    f = 24 * eps * (2 * sigma**12 / r**13 - sigma**6 / r**7)       # -dLJ/dr at r
    f_c = 24 * eps * (2 * sigma**12 / rc**13 - sigma**6 / rc**7)    # -dLJ/dr at r_c
    return lj - lj_c + (r - rc) * f_c, f - f_c


def test_eq1_by_hand_is_eq1():
    """The hand formula: zero value and slope at r_c; its force is minus its slope."""
    sigma, eps, rc = 1.1, 1.0, 2.75
    assert eq1(rc * (1 - 1e-12), sigma, eps, rc)[0] == pytest.approx(0, abs=1e-12)
    assert eq1(rc * (1 - 1e-12), sigma, eps, rc)[1] == pytest.approx(0, abs=1e-10)
    h, r = 1e-6, 1.3
    slope = (eq1(r + h, sigma, eps, rc)[0] - eq1(r - h, sigma, eps, rc)[0]) / (2 * h)
    assert eq1(r, sigma, eps, rc)[1] == pytest.approx(-slope, rel=1e-7)
    # the shifted LJ minimum: only the constant shift force remains at 2^(1/6) sigma
    assert eq1(2 ** (1 / 6) * sigma, sigma, eps, rc)[1] == pytest.approx(
        -24 * eps * (2 * sigma**12 / rc**13 - sigma**6 / rc**7), rel=1e-9)


def _two_particles(lmp, system, a: int, b: int, r: float) -> tuple[float, np.ndarray]:
    """Energy and force on particle 2 of an a-b pair at distance r, in a box set up by the
    package (md.replica.load_configuration_lines: masses, pair_style and pair_coeff)."""
    d = system.dim
    L = 4 * system.max_cutoff
    u = np.array([0.6, 0.8, 0.0]) if d == 2 else np.array([2.0, 3.0, 6.0]) / 7.0
    x = np.zeros((2, 3))
    x[0, :d] = L / 2
    x[1] = x[0] + r * u
    commands(lmp, ["clear", *load_configuration_lines(system, np.full(d, L)),
                   "thermo_style custom step pe", "thermo_modify norm no"])
    lmp.create_atoms(2, [1, 2], [a + 1, b + 1], x.ravel().tolist())
    commands(lmp, ["run 0"])
    ids = np.array(lmp.numpy.extract_atom("id")[:2])
    f = np.array(lmp.numpy.extract_atom("f")[:2])[np.argsort(ids)]
    np.testing.assert_allclose(f[0], -f[1], rtol=1e-12, atol=1e-14)   # Newton's third law
    return float(lmp.get_thermo("pe")), f[1] @ u                   # > 0: repulsive


@pytest.mark.parametrize("dim", [2, 3])
def test_wahnstrom_pair_energy_and_force_equal_eq1_by_hand(dim, tmp_path):
    text = EXAMPLE.read_text() if dim == 2 else WAHNSTROM_3D
    system = _config(text, tmp_path).sys
    assert system.dim == dim
    with open_lammps() as lmp:
        for (a, b), (sigma, eps) in WAHNSTROM.items():
            rc = 2.5 * sigma if dim == 2 else {(0, 0): 2.5, (0, 1): 2.75, (1, 1): 3.0}[a, b]
            for ab in ((a, b), (b, a)):
                for r in (0.9 * sigma, sigma, 2 ** (1 / 6) * sigma, 1.5 * sigma, 0.99 * rc):
                    pe, f = _two_particles(lmp, system, *ab, r)
                    want_e, want_f = eq1(r, sigma, eps, rc)
                    assert pe == pytest.approx(want_e, rel=1e-10, abs=1e-13), (ab, r)
                    assert f == pytest.approx(want_f, rel=1e-10, abs=1e-12), (ab, r)
            # nothing at (to the rounding of the positions) and beyond r_c; continuous just
            # inside it
            pe, f = _two_particles(lmp, system, a, b, rc)
            assert abs(pe) < 1e-14 and abs(f) < 1e-12
            assert _two_particles(lmp, system, a, b, 1.01 * rc) == (0.0, 0.0)
            pe, f = _two_particles(lmp, system, a, b, rc * (1 - 1e-6))
            assert abs(pe) < 1e-10 and abs(f) < 1e-4


# -- more than two species ---------------------------------------------------------------------
TERNARY = """
[system]
name = "custom"
label = "ternary"
n_particles = 100
dim = 2
species = ["A", "B", "C"]
masses = [1.0, 1.5, 2.0]
fractions = [0.5, 0.3, 0.2]
sigma = [[1.0, 0.9, 1.05], [0.9, 0.85, 1.0], [1.05, 1.0, 1.1]]
epsilon = [[1.0, 1.2, 0.9], [1.2, 0.6, 1.0], [0.9, 1.0, 0.8]]
rc_factor = 2.5
density = 1.0
T_liquid = 0.9
"""


def test_a_ternary_mixture_cools_with_its_composition(tmp_path):
    cfg = _config(TERNARY, tmp_path)
    s, p = cfg.sys, cfg.prepare
    plan = CoolingPlan.make(timestep=p.timestep, t_equilibrate=0.5, T_high=2.0,
                            T_liquid=s.T_liquid, T_glass=s.T_glass, cooling_rate=2.0,
                            energy_samples=4)
    res = run_cooling(s, 100, plan, seeds=(11, 12, 13), min_distance=0.7, timestep=p.timestep,
                      T_high=2.0, T_glass=s.T_glass, tdamp_steps=p.tdamp_steps)
    assert np.bincount(res.types, minlength=3).tolist() == [50, 30, 20]
    assert np.isfinite(res.glass).all() and np.isfinite(res.pe).all()
    assert len(pair_lines(s)) == 1 + 6 + 2        # pair_style, 6 pair_coeff, neighbour lines


# -- the Theta radii of the config reach the analysis -----------------------------------------
def test_theta_uses_the_configured_radii(tmp_path):
    """A triangular lattice of equal discs has Theta = 0 (METHOD.md section 5): with both
    species given the same radius it is 0 whatever the species; with sigma_ss / 2 (the
    default, unequal) it is not."""
    n = 8
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = np.stack([(i + 0.5 * (j % 2)).ravel(), (j * math.sqrt(3) / 2).ravel()], axis=1)
    box = np.array([n, n * math.sqrt(3) / 2])
    types = np.random.default_rng(3).integers(0, 2, len(x))
    equal = _config(EXAMPLE.read_text().replace("radii = [0.5, 0.6]", "radii = [0.55, 0.55]"),
                    tmp_path)
    default = _config(EXAMPLE.read_text().replace("radii = [0.5, 0.6]", ""), tmp_path)
    np.testing.assert_array_equal(equal.sys.radii(), [0.55, 0.55])
    np.testing.assert_array_equal(default.sys.radii(), [0.5, 0.6])
    assert np.abs(tong_tanaka(box, x, types, equal.sys.radii())).max() < 1e-9
    assert tong_tanaka(box, x, types, default.sys.radii()).mean() > 1e-3


# -- bad input ----------------------------------------------------------------------------------
def _with(**changes) -> dict:
    system = tomllib.loads("[s]\n" + KAM_CUSTOM)["s"]
    system["n_particles"] = 60
    for key, value in changes.items():
        if value is None:
            system.pop(key)
        else:
            system[key] = value
    return {"system": system}


@pytest.mark.parametrize("changes, needle", [
    ({"fractions": [0.6, 0.35]},
     "[system].fractions = [0.6, 0.35]: sum to 0.95; allowed: number fractions > 0 that sum to 1"),
    ({"n_particles": 64},
     "[system].fractions = [0.65, 0.35]: give 41.6 A, 22.4 B particles for "
     "[system].n_particles = 64; allowed: fractions whose products with n_particles are whole "
     "numbers (the nearest: n_particles = 60 or 80)"),
    ({"fractions": [1.2, -0.2]}, "[system].fractions[1] = -0.2 (species B): allowed: a number > 0"),
    ({"masses": [1.0]}, "[system].masses = [1.0]: 1 values for 2 species ['A', 'B']; allowed: "
                        "one value > 0 per species"),
    ({"masses": [1.0, 0.0]}, "[system].masses[1] = 0.0 (species B): allowed: a number > 0"),
    ({"sigma": [[1.0, 0.8], [0.81, 0.88]]},
     "[system].sigma[0][1] = 0.8 but [system].sigma[1][0] = 0.81 (pair AB): the matrix must be "
     "symmetric; allowed: the same value at [a][b] and [b][a]"),
    ({"sigma": [[1.0, 0.8], [0.8, -0.88]]},
     "[system].sigma[1][1] = -0.88 (pair BB): allowed: a number > 0"),
    ({"epsilon": [[1.0, 1.5], [1.5, 0.0]]},
     "[system].epsilon[1][1] = 0.0 (pair BB): allowed: a number > 0"),
    ({"epsilon": [[1.0, 1.5, 1.0], [1.5, 0.5, 1.0]]},
     "[system].epsilon = [[1.0, 1.5, 1.0], [1.5, 0.5, 1.0]]: 2 rows of 3/3; allowed: an 2 x 2 "
     "matrix"),
    ({"sigma": [1.0, 0.8]}, "[system].sigma[0] = 1.0: expected a non-empty list of floats"),
    ({"rc_factor": 1.0}, "[system].rc_factor = 1.0: allowed: a number > 1 (r_c,ab = rc_factor "
                         "* sigma_ab must exceed sigma_ab)"),
    ({"rc_factor": None, "cutoff": [[2.5, 0.8], [0.8, 2.2]]},
     "[system].cutoff[0][1] = 0.8 (pair AB): must exceed [system].sigma[0][1] = 0.8; allowed: "
     "r_c > sigma for every pair"),
    ({"rc_factor": None, "cutoff": [[2.5, 2.0], [2.1, 2.2]]},
     "[system].cutoff[0][1] = 2.0 but [system].cutoff[1][0] = 2.1 (pair AB): the matrix must "
     "be symmetric"),
    ({"cutoff": [[2.5, 2.0], [2.0, 2.2]]},
     "[system].rc_factor = 2.5 and [system].cutoff = [[2.5, 2.0], [2.0, 2.2]] are both set; "
     "allowed: one of them"),
    ({"rc_factor": None}, "[system].name = \"custom\" needs [system].rc_factor or cutoff"),
    ({"sigma": None, "density": None}, "[system].name = \"custom\" needs [system].sigma, "
                                       "density; see README"),
    ({"density": -1.2}, "[system].density = -1.2: allowed: a number > 0"),
    ({"dim": 4}, "[system].dim = 4: allowed: 2 or 3"),
    ({"species": ["A", "A"]}, "[system].species = ['A', 'A']: allowed: 1 to 8 distinct names"),
    ({"species": ["A", "B-"]}, "[system].species = ['A', 'B-']: allowed: 1 to 8 distinct"),
    ({"radii": [0.5, 0.0]}, "[system].radii[1] = 0.0 (species B): allowed: a number > 0"),
    ({"radii": [0.5]}, "[system].radii = [0.5]: 1 values for 2 species"),
    ({"T_liquid": 0.04}, "[system].T_liquid = 0.04, T_glass = 0.0 (0 = 0.05): allowed: "
                         "T_liquid > T_glass > 0"),
    ({"T_glass": 0.9}, "[system].T_liquid = 0.8, T_glass = 0.9: allowed: T_liquid > T_glass > 0"),
    ({"T_glass": -0.1}, "[system].T_liquid = 0.8, T_glass = -0.1: allowed: T_liquid > T_glass > 0"),
    ({"T_star": -1.0}, "[system].T_star = -1.0: allowed: a number >= 0 (0 = none)"),
    ({"unit": ["A", "B"]}, "[system].unit = ['A', 'B']: sigma = 0.8, epsilon = 1.5 for that "
                           "pair; allowed: the pair whose sigma and epsilon are both 1"),
    ({"unit": ["A", "C"]}, "[system].unit = ['A', 'C']: allowed: two of the species ['A', 'B']"),
    ({"label": "my mixture"}, "[system].label = 'my mixture': allowed: 1 to 32 letters, digits"),
    ({"name": "KAM"}, "[system].label = 'KAM': [system].name = 'KAM' is a built-in system, "
                      "whose fields are fixed (systems.py); allowed: leave label unset, or set "
                      "name = \"custom\""),
    ({"n_particles": 20, "fractions": [0.5, 0.5]},
     "[system].n_particles = 20: box L = 4.08 is not larger than twice the cutoff 2.5"),
])
def test_bad_mixture_is_refused_with_field_value_and_allowed(changes, needle):
    with pytest.raises(ConfigError) as err:
        build_config(_with(**changes))
    assert needle in str(err.value)
