"""Isoconfigurational replicas (glasscam_mpi.md.replica) on a real glass from ``prepare``:
the drawn velocities, determinism, unwrapping, and the cage-relative displacement."""

import h5py
import numpy as np
import pytest

from glasscam_mpi.analysis import cage_relative_displacement, voronoi_neighbors
from glasscam_mpi.md.engine import commands, open_lammps, snapshot, wrap_counting_images
from glasscam_mpi.md.replica import log_times, run_replica
from glasscam_mpi.systems import get_system

KAM = get_system("KAM")


@pytest.fixture(scope="module")
def glass(tiny_prepared):
    with h5py.File(tiny_prepared / "prepare.h5", "r") as fh:
        return fh["glass"][0], fh["types"][0], fh["box"][:]


def _run(glass, T=0.6, seed=11, steps=(10, 100, 1000), **kw):
    x, types, box = glass
    return run_replica(KAM, x, types, box, T=T, seed=seed, timestep=0.005,
                       steps=np.array(steps), **kw)


@pytest.mark.parametrize("T", [0.3, 1.2])
def test_drawn_velocities_have_the_temperature_and_no_momentum(glass, T):
    res = _run(glass, T=T, steps=(1,))
    v = res.velocities0
    n, d = v.shape
    # independent of LAMMPS's thermo: equipartition with d(N-1) degrees of freedom (unit masses)
    assert (v ** 2).sum() / (d * (n - 1)) == pytest.approx(T, rel=1e-10)
    np.testing.assert_allclose(v.sum(axis=0), 0.0, atol=1e-10)
    assert res.T0 == pytest.approx(T, rel=1e-10)
    np.testing.assert_allclose(res.momentum0, v.sum(axis=0))


def test_same_seed_same_trajectory_other_seed_other(glass):
    a, b, c = _run(glass, seed=5), _run(glass, seed=5), _run(glass, seed=6)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(a.velocities0, c.velocities0)
    assert not np.allclose(a.positions[-1], c.positions[-1])


def test_positions_are_unwrapped_and_recorded_at_the_steps(glass):
    x0, _, box = glass
    steps = log_times(0.005, 20.0, 12)
    res = _run(glass, T=1.5, steps=steps)  # hot: particles do cross the boundary
    np.testing.assert_array_equal(res.steps, steps)
    assert res.positions.shape == (len(steps), len(x0), 2)
    wrapped = np.mod(res.positions, box)
    crossed = np.any((res.positions < 0) | (res.positions >= box), axis=(0, 2))
    assert crossed.any(), "no particle left the box: the test would not see a wrapping bug"
    # between consecutive records nobody jumps by anything like a box length
    jumps = np.abs(np.diff(np.concatenate([x0[None], res.positions]), axis=0))
    assert jumps.max() < 0.25 * box.min()
    assert np.all((wrapped >= 0) & (wrapped < box))


def test_early_stop_keeps_a_prefix(glass):
    steps = np.array([10, 20, 40, 80, 160])
    seen = []

    def stop(X):
        seen.append(len(X))
        return len(X) == 3

    res = _run(glass, steps=steps, stop=stop)
    np.testing.assert_array_equal(res.steps, steps[:3])
    assert seen == [1, 2, 3] and len(res.positions) == 3


def test_cage_displacement_of_a_replica_ignores_a_uniform_drift(glass):
    x0, _, box = glass
    res = _run(glass, T=0.8)
    disp = res.positions - x0
    cage = voronoi_neighbors(box, x0)
    a = cage_relative_displacement(disp, *cage)
    b = cage_relative_displacement(disp + np.array([0.37, -1.9]), *cage)
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a[-1].mean() > a[0].mean() > 0


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_centre_of_mass_stays_put(glass, ensemble):
    # zero total momentum at t = 0 is conserved by NVE and by Nose-Hoover (uniform scaling)
    x0 = glass[0]
    res = _run(glass, ensemble=ensemble, T=0.8)
    com_shift = (res.positions - x0).mean(axis=1)
    rms_disp = np.sqrt(((res.positions[-1] - x0) ** 2).sum(axis=1).mean())
    assert rms_disp > 0.05
    np.testing.assert_allclose(com_shift, 0.0, atol=1e-9)


def test_bad_ensemble_is_refused(glass):
    with pytest.raises(ValueError, match="ensemble = 'npt'; allowed: 'nvt', 'nve'"):
        _run(glass, ensemble="npt")


def test_wrapping_keeps_the_unwrapped_position_in_rounding_cases():
    """x - L floor(x / L) can round to exactly L (x a hair below 0) or below 0 (x a hair
    below a multiple of L): the position must land in [0, L) and the image count must
    change with it, so position + image * L is still the coordinate."""
    L = np.array([10.0, 7.3])
    x = np.array([[-1e-17, 7.3 * 3 - 1e-15], [10.0, -7.3], [19.999999999999996, 0.0],
                  [-10.0, 14.6], [-1e-300, 7.3 * 1e6]])
    pos, wraps = wrap_counting_images(x.copy(), L)
    assert np.all(pos >= 0) and np.all(pos < L)
    np.testing.assert_allclose(pos + wraps * L, x, rtol=0, atol=1e-9)
    assert wraps[0, 0] == 0 and pos[0, 0] == 0.0      # -1e-17 is 0 of period 0, not L
    assert wraps[1].tolist() == [1, -1]


def test_snapshot_of_an_atom_a_hair_below_zero(glass):
    """The same through LAMMPS: an atom put at x = -1e-17 (LAMMPS keeps it there until the
    next re-neighbouring) is reported at 0 with image 0, and its unwrapped position is the
    coordinate LAMMPS holds."""
    x0, types, box = glass
    from glasscam_mpi.md.replica import load_configuration_lines

    with open_lammps() as lmp:
        commands(lmp, load_configuration_lines(KAM, box))
        n = len(x0)
        x3 = np.zeros((n, 3))
        x3[:, :2] = x0
        lmp.create_atoms(n, list(range(1, n + 1)), [int(t) + 1 for t in types], x3.ravel().tolist())
        commands(lmp, ["set atom 1 x -1e-17", "set atom 2 y -1e-15"])
        snap = snapshot(lmp, 2)
    unwrapped = snap["positions"] + snap["images"] * snap["box"]
    assert np.all(snap["positions"] >= 0) and np.all(snap["positions"] < snap["box"])
    np.testing.assert_allclose(unwrapped[0, 0], -1e-17, atol=1e-12)
    np.testing.assert_allclose(unwrapped[1, 1], -1e-15, atol=1e-12)
    np.testing.assert_allclose(unwrapped[2:], x0[2:], atol=1e-12)
