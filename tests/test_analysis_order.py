"""Crystallisation checks (glasscam_mpi.analysis.order): hexatic order on lattices and
random points; energy jumps on synthetic cooling ramps, smooth and with planted drops."""

from __future__ import annotations

import numpy as np
import pytest

from glasscam_mpi.analysis.order import energy_jumps, hexatic


def triangular(nx, ny, a=1.0):
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = np.stack([(ix + 0.5 * (iy % 2)) * a, iy * a * np.sqrt(3) / 2], -1).reshape(-1, 2)
    return np.array([nx * a, ny * a * np.sqrt(3) / 2]), x


# --- hexatic order ----------------------------------------------------------------------

def test_perfect_triangular_lattice_is_fully_ordered():
    box, x = triangular(20, 16, a=1.1)
    res = hexatic(box, x + [0.3, 0.2])
    np.testing.assert_allclose(res.local, 1.0, atol=1e-12)
    assert res.order == pytest.approx(1.0, abs=1e-12)
    assert res.psi6.dtype == np.complex128 and res.psi6.shape == (320,)


def test_rotated_lattice_is_still_ordered_and_its_phase_turns_by_six_times_the_angle():
    theta = 0.37
    box, x = triangular(80, 92)  # covers the 40 x 40 window at any angle
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    L = 40.0  # a rotated lattice cut out of the plane: seams at the box edges only
    y = (x - box / 2) @ rot.T + L / 2
    y = y[np.all((y >= 0) & (y < L), axis=1)]
    res = hexatic([L, L], y)
    inner = np.all((y > 3) & (y < L - 3), axis=1)
    assert inner.sum() > 900
    np.testing.assert_allclose(res.local[inner], 1.0, atol=1e-9)
    phase = np.angle(res.psi6[inner])
    np.testing.assert_allclose(np.angle(np.exp(1j * (phase - 6 * theta))), 0.0, atol=1e-9)
    # A 90-degree turn (swapped box) of any configuration: |psi6| unchanged, psi6 -> -psi6
    rng = np.random.default_rng(51)
    z = rng.uniform(0, 1, (500, 2)) * [30.0, 20.0]
    a, b = hexatic([30.0, 20.0], z), hexatic([20.0, 30.0], np.c_[z[:, 1], 30.0 - z[:, 0]])
    np.testing.assert_allclose(b.local, a.local, atol=1e-12)
    np.testing.assert_allclose(b.psi6, -a.psi6, atol=1e-12)


def test_random_points_have_order_of_n_to_the_minus_half():
    rng = np.random.default_rng(52)
    for n in (400, 1600, 6400):
        L = np.sqrt(n)
        orders = [hexatic([L, L], rng.uniform(0, L, (n, 2))).order for _ in range(4)]
        # |mean of n weakly correlated unit-scale phases|: ~ c / sqrt(n), c of order 0.5
        assert 0.1 < np.mean(orders) * np.sqrt(n) < 1.5
    local = hexatic([L, L], rng.uniform(0, L, (n, 2))).local
    assert 0.2 < local.mean() < 0.6  # Poisson-Voronoi cells are far from hexagons


def test_hexatic_is_2d_only():
    with pytest.raises(ValueError, match="2D only"):
        hexatic([5.0, 5.0, 5.0], np.random.default_rng(0).random((20, 3)) * 5)


# --- energy jumps -----------------------------------------------------------------------

T_K = 0.37


def cooling_curve(T, liquid_slope=2.5):
    """Glass line (slope 1, 2D harmonic) below T_K, Rosenfeld-Tarazona T^(3/5) above."""
    b = liquid_slope / (0.6 * T_K ** -0.4)
    U = np.where(T < T_K, -3.2 + (T - T_K), -3.2 + b * (T**0.6 - T_K**0.6))
    c = np.where(T < T_K, 1.0, 0.6 * b * T ** -0.4)  # dU/dT: sets the thermal noise
    return U, c


RAMP = np.linspace(4.0, 0.05, 101)  # 100 samples of a 4.0 -> 0.05 ramp, in time order


def noisy_run(rng, n_particles):
    """One run's (measured T, U): thermal noise sd T sqrt(c / N) on U, sqrt(1/N) on T."""
    U, c = cooling_curve(RAMP)
    U = U + RAMP * np.sqrt(c / n_particles) * rng.normal(size=RAMP.size)
    return RAMP * (1 + rng.normal(size=RAMP.size) / np.sqrt(n_particles)), U


def test_smooth_curves_are_not_flagged():
    for slope in (2.0, 2.5, 3.5):  # noise-free, including the sharp glass kink
        res = energy_jumps(RAMP, cooling_curve(RAMP, slope)[0])
        assert not res.flagged and res.start.size == 0
    rng = np.random.default_rng(53)
    for n in (200, 2000):
        flags = sum(energy_jumps(*noisy_run(rng, n)).flagged for _ in range(150))
        assert flags == 0


def test_a_planted_drop_is_found_where_it_is():
    rng = np.random.default_rng(54)
    for _ in range(30):
        T, U = noisy_run(rng, 2000)
        U[89:] -= 0.3  # the run crystallises between samples 88 and 89 (T ~ 0.52)
        res = energy_jumps(T, U)
        assert res.flagged
        np.testing.assert_array_equal(res.start, [88])
        np.testing.assert_array_equal(res.stop, [89])
        assert res.drop[0] == pytest.approx(0.3, abs=0.12)  # noise sd ~0.03
        assert res.T[0] == T[88]


def test_a_drop_spread_over_two_samples_is_one_jump():
    U = cooling_curve(RAMP)[0]
    U[60:] -= 0.15
    U[61:] -= 0.15
    res = energy_jumps(RAMP, U)
    np.testing.assert_array_equal(res.start, [59])
    np.testing.assert_array_equal(res.stop, [61])
    assert 0.2 < res.drop[0] <= 0.3 + 1e-9  # a lower bound on the drop


def test_a_drop_smaller_than_the_trend_step_is_not_a_jump():
    U = cooling_curve(RAMP)[0]
    step = U[70] - U[71]  # the liquid's own decrease per sample there
    U[71:] -= 0.5 * step
    assert not energy_jumps(RAMP, U).flagged
    U[71:] -= 2.0 * step
    assert energy_jumps(RAMP, U).flagged


@pytest.mark.parametrize("kwargs, match", [
    ({"T": np.ones(20), "U": np.ones(19)}, "1D of one length"),
    ({"T": np.ones(8), "U": np.ones(8)}, "need at least 12 points"),
    ({"T": -np.ones(20), "U": np.ones(20)}, "T must be absolute temperatures"),
    ({"T": np.ones(20), "U": np.r_[np.ones(19), np.nan]}, "finite"),
    ({"T": np.ones(20), "U": np.ones(20), "n_sigma": 0}, "n_sigma"),
    ({"T": np.ones(20), "U": np.ones(20), "half_window": 2}, "half_window"),
])
def test_energy_jumps_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        energy_jumps(**kwargs)


def test_prepare_flags_exactly_the_run_whose_energy_jumps(tmp_path):
    """prepare.h5's energy_jump: 1 for the run with a planted crystallisation drop, 0 for
    smooth runs, -1 for a failed run; energy_jump_T where the drop starts."""
    import h5py

    from glasscam_mpi.stages.prepare import add_energy_jumps

    rng = np.random.default_rng(0)
    T = np.linspace(4.0, 0.05, 100)
    U = np.where(T < 0.4, -3.2 + (T - 0.4), -3.2 + 2.8 * (T ** 0.6 - 0.4 ** 0.6))
    rows = [U + rng.normal(0, 0.003, T.size) for _ in range(4)]
    rows[2] = rows[2] - 0.3 * (T < 1.05)          # a sudden drop of 0.3 per particle at T ~ 1
    with h5py.File(tmp_path / "prepare.h5", "w") as fh:
        fh["status"] = np.array([1, 1, 1, 1, 2], dtype=np.int8)
        fh["T"] = np.stack([T] * 4 + [np.full(100, np.nan)])
        fh["pe"] = np.stack(rows + [np.full(100, np.nan)])
    add_energy_jumps(tmp_path / "prepare.h5")
    with h5py.File(tmp_path / "prepare.h5", "r") as fh:
        np.testing.assert_array_equal(fh["energy_jump"][:], [0, 0, 1, 0, -1])
        jump_T = fh["energy_jump_T"][:]
        assert 1.0 < jump_T[2] < 1.2 and np.isnan(np.delete(jump_T, 2)).all()
