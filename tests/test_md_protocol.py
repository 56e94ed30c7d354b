"""The preparation protocol (METHOD.md section 2) in numbers, checked against literals.

- Step counts: n_total = round((T_high - T_G) / (rate dt)), the liquid sample at
  round((T_high - T_L) / (rate dt)), equilibration t_eq / dt.
- The thermostat target along the ramp is T_high - rate dt step (within one step's change),
  from T_high to T_G, and passes T_L at the liquid sample; the *measured* temperature in
  prepare.h5 follows it, and the stored liquid and glass configurations are the states at
  those samples (their potential energy, recomputed by LAMMPS, is the recorded one).
- Independent runs are distinct: distinct seeds, distinct configurations, and each run
  is reproduced from its recorded seeds.
- 2D confinement: atoms given out-of-plane velocities and positions (so out-of-plane
  forces) stay put in z under the package's 2D set-ups, and move without ``enforce2d``.

The protocol numbers are literals here (METHOD.md: T_high 4.0, T_G 0.05, T_L 0.8 for KAM,
timestep 0.005; the tiny test config: rate 0.2, t_eq 2.0), not read from the package.
"""

import tomllib

import h5py
import numpy as np
import pytest

from conftest import TINY_TOML
from glasscam_mpi.md.cooling import CoolingPlan, run_cooling, setup_lines
from glasscam_mpi.md.engine import commands, open_lammps
from glasscam_mpi.md.replica import dynamics_lines, load_configuration_lines
from glasscam_mpi.systems import SYSTEMS

T_HIGH, T_GLASS, DT, TDAMP = 4.0, 0.05, 0.005, 100  # METHOD.md section 2 defaults
T_LIQUID = {"KAM": 0.8, "ABM": 2.0}                  # METHOD.md section 2
TINY = tomllib.loads(TINY_TOML)["prepare"]
RATE, T_EQ = TINY["cooling_rate"], TINY["t_equilibrate"]  # 0.2, 2.0


def _steps(T_from: float, T_to: float, rate: float, dt: float = DT) -> int:
    return int(round((T_from - T_to) / (rate * dt)))


@pytest.mark.parametrize("T_L, rate, t_eq, samples", [
    (0.8, 8.33e-5, 100.0, 100),   # paper-kam
    (2.0, 8.33e-5, 100.0, 100),   # paper-abm
    (0.8, 0.02, 20.0, 60),        # demo
    (0.8, 0.2, 2.0, 12),          # the tiny test config
    (0.8, 0.037, 3.3, 7),         # nothing round
])
def test_cooling_plan_step_counts_and_targets(T_L, rate, t_eq, samples):
    plan = CoolingPlan.make(timestep=DT, t_equilibrate=t_eq, T_high=T_HIGH, T_liquid=T_L,
                            T_glass=T_GLASS, cooling_rate=rate, energy_samples=samples)
    assert plan.n_total == _steps(T_HIGH, T_GLASS, rate)
    assert plan.n_liquid == _steps(T_HIGH, T_L, rate)
    assert plan.n_equilibrate == round(t_eq / DT)
    steps = np.asarray(plan.sample_steps)
    assert steps[0] == 0 and steps[-1] == plan.n_total and (np.diff(steps) > 0).all()
    assert plan.n_liquid in steps and samples <= len(steps) <= samples + 1
    target = plan.target_temperature(T_HIGH, T_GLASS)
    per_step = rate * DT  # one step's change of the target
    assert target[0] == pytest.approx(T_HIGH, abs=1e-12)
    assert target[-1] == pytest.approx(T_GLASS, abs=1e-12)
    np.testing.assert_allclose(target, T_HIGH - per_step * steps, rtol=0, atol=per_step)
    assert abs(target[list(steps).index(plan.n_liquid)] - T_L) <= per_step


@pytest.fixture(scope="module")
def prep(tiny_prepared):
    with h5py.File(tiny_prepared / "prepare.h5", "r") as fh:
        return {k: fh[k][()] for k in fh} | {"attrs": dict(fh.attrs)}


@pytest.mark.mpi
def test_prepare_h5_ramp_and_liquid_sample(prep):
    """prepare.h5 (made by ``mpiexec -n 2 glasscam prepare``) follows the protocol."""
    step, target, T = prep["step"], prep["T_target"], prep["T"]
    per_step = RATE * DT
    n_total, n_liquid = _steps(T_HIGH, T_GLASS, RATE), _steps(T_HIGH, T_LIQUID["KAM"], RATE)
    assert step[0] == 0 and step[-1] == n_total
    assert prep["attrs"]["T_high"] == T_HIGH and prep["attrs"]["T_glass"] == T_GLASS
    assert prep["attrs"]["T_liquid"] == T_LIQUID["KAM"]
    assert target[0] == pytest.approx(T_HIGH, abs=1e-12)
    assert target[-1] == pytest.approx(T_GLASS, abs=1e-12)
    np.testing.assert_allclose(target, T_HIGH - per_step * step, rtol=0, atol=per_step)
    (k,) = np.flatnonzero(step == n_liquid)  # the liquid sample is one of the samples
    assert abs(target[k] - T_LIQUID["KAM"]) <= per_step
    # the measured temperature there is T_L (6 runs of N = 64: +-0.05; the system lags the
    # fast test ramp by ~0.1) -- not 2.4, not 0.4
    assert np.all(prep["status"] == 1)
    assert T[:, k].mean() == pytest.approx(T_LIQUID["KAM"], abs=0.2), T[:, k]
    assert T[:, -1].mean() < 0.3 and T[:, 0].mean() > 3.0
    # and follows the target all along the ramp (above ~2.5 a 64-particle system is noisy)
    cool = target < 2.5
    assert np.abs(T[:, cool].mean(axis=0) - target[cool]).max() < 0.3, \
        np.c_[target, T.mean(axis=0)]


def _pe_per_particle(name: str, box, positions, types) -> float:
    """LAMMPS potential energy per particle of a stored configuration (package set-up)."""
    s = SYSTEMS[name]
    n, d = positions.shape
    x3 = np.zeros((n, 3))
    x3[:, :d] = positions
    with open_lammps() as lmp:
        commands(lmp, [*load_configuration_lines(s, box), "thermo_style custom step pe",
                       "thermo_modify norm yes"])
        lmp.create_atoms(n, list(range(1, n + 1)), [int(t) + 1 for t in types],
                         x3.ravel().tolist())
        commands(lmp, ["run 0"])
        return float(lmp.get_thermo("pe"))


@pytest.mark.mpi
def test_stored_samples_are_the_states_at_T_L_and_T_G(prep):
    """The liquid configuration is the state at the sample step where the target passes T_L
    (its energy is the energy recorded there), the glass one the state at T_G."""
    k = int(np.flatnonzero(prep["step"] == _steps(T_HIGH, T_LIQUID["KAM"], RATE))[0])
    for run in range(len(prep["status"])):
        liquid = _pe_per_particle("KAM", prep["box"], prep["liquid"][run], prep["types"][run])
        glass = _pe_per_particle("KAM", prep["box"], prep["glass"][run], prep["types"][run])
        assert liquid == pytest.approx(prep["pe"][run, k], rel=1e-9, abs=1e-12)
        assert glass == pytest.approx(prep["pe"][run, -1], rel=1e-9, abs=1e-12)
        # and the two differ (a glass sample is not a copy of the liquid one)
        assert glass < liquid


@pytest.mark.mpi
def test_runs_are_independent(prep):
    seeds = prep["seeds"]
    n = len(seeds)
    assert seeds.shape == (n, 3) and len(set(seeds.ravel().tolist())) == 3 * n
    for i in range(n):
        for j in range(i + 1, n):
            for cls in ("liquid", "glass"):
                assert not np.allclose(prep[cls][i], prep[cls][j]), (cls, i, j)
            assert not np.allclose(prep["pe"][i], prep["pe"][j])
    # each run is reproduced, bit for bit, by its recorded seeds
    run = n - 1
    plan = CoolingPlan.make(timestep=DT, t_equilibrate=T_EQ, T_high=T_HIGH,
                            T_liquid=T_LIQUID["KAM"], T_glass=T_GLASS, cooling_rate=RATE,
                            energy_samples=TINY["energy_samples"])
    res = run_cooling(SYSTEMS["KAM"], 64, plan, seeds=tuple(int(s) for s in seeds[run]),
                      min_distance=0.7, timestep=DT, T_high=T_HIGH, T_glass=T_GLASS,
                      tdamp_steps=TDAMP)
    np.testing.assert_array_equal(res.liquid, prep["liquid"][run])
    np.testing.assert_array_equal(res.glass, prep["glass"][run])


# -- 2D confinement --------------------------------------------------------------------------
def _cooling_setup(lmp, keep_2d: bool) -> None:
    lines = setup_lines(SYSTEMS["KAM"], 64, seeds=(1, 2, 3), min_distance=0.7, timestep=DT,
                        T_high=1.0, tdamp_steps=TDAMP, n_equilibrate=0)
    commands(lmp, [line for line in lines if keep_2d or "enforce2d" not in line])


def _replica_setup(lmp, keep_2d: bool) -> None:
    s = SYSTEMS["KAM"]
    n = 64
    L = s.box_length(n)
    g = np.arange(8) * L / 8  # a square lattice: far from overlaps
    xy = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    x3 = np.c_[xy, np.zeros(n)]
    lines = load_configuration_lines(s, np.array([L, L]))
    commands(lmp, [line for line in lines if keep_2d or "enforce2d" not in line])
    lmp.create_atoms(n, list(range(1, n + 1)), [1 + (i % 3 == 0) for i in range(n)],
                     x3.ravel().tolist())
    commands(lmp, dynamics_lines(T=1.0, seed=5, timestep=DT, ensemble="nvt",
                                 tdamp_steps=TDAMP))


def _out_of_plane_motion(setup, keep_2d: bool) -> tuple[float, float, float]:
    """Kick every atom out of the plane (z offsets, so pair forces get z components, and
    z velocities), run 40 steps; return max |z - z0|, max |vz|, max |fz|."""
    with open_lammps() as lmp:
        setup(lmp, keep_2d)
        n = lmp.extract_global("nlocal")
        rng = np.random.default_rng(0)
        x = lmp.numpy.extract_atom("x")
        v = lmp.numpy.extract_atom("v")
        x[:n, 2] = rng.uniform(-0.05, 0.05, n)
        v[:n, 2] = rng.uniform(-0.5, 0.5, n)
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        z0 = dict(zip(ids.tolist(), x[:n, 2].tolist()))
        commands(lmp, ["run 40"])
        n = lmp.extract_global("nlocal")
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        z = np.array(lmp.numpy.extract_atom("x")[:n, 2])
        dz = np.abs(z - np.array([z0[i] for i in ids.tolist()]))
        return (float(dz.max()), float(np.abs(lmp.numpy.extract_atom("v")[:n, 2]).max()),
                float(np.abs(lmp.numpy.extract_atom("f")[:n, 2]).max()))


@pytest.mark.parametrize("setup", [_cooling_setup, _replica_setup], ids=["cooling", "replica"])
def test_2d_set_ups_keep_atoms_in_their_plane(setup):
    dz, vz, fz = _out_of_plane_motion(setup, keep_2d=True)
    assert dz == 0.0 and vz == 0.0 and fz == 0.0
    # the control: the same set-up without enforce2d lets the kicked atoms leave the plane,
    # so the check above can fail
    dz, vz, fz = _out_of_plane_motion(setup, keep_2d=False)
    assert dz > 0.01 and vz > 0.01 and fz > 0.01
