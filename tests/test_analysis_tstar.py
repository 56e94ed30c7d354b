"""T* from the kink of U(T) (glasscam_mpi.analysis.tstar), on curves with a known kink."""

import numpy as np
import pytest

from glasscam_mpi.analysis.tstar import estimate_t_star


def _hinge(T, T_c, slope_glass=1.2, slope_liquid=2.5, U0=-3.0):
    return U0 + slope_glass * T + (slope_liquid - slope_glass) * np.maximum(0.0, T - T_c)


@pytest.mark.parametrize("T_c", [0.37, 0.55, 1.0])
def test_exact_hinge_gives_its_kink(T_c):
    T = np.linspace(0.05, 2 * T_c + 0.2, 120)
    res = estimate_t_star(T, _hinge(T, T_c))
    assert res.T_star == pytest.approx(T_c, abs=0.01 * T_c + 0.005)
    assert res.glass_fit[0] == pytest.approx(1.2, rel=1e-2)
    assert res.liquid_fit[0] == pytest.approx(2.5, rel=1e-2)
    # the two fitted lines meet at T*
    g, l = res.glass_fit, res.liquid_fit
    assert g[0] * res.T_star + g[1] == pytest.approx(l[0] * res.T_star + l[1], abs=1e-9)


def test_noise_and_order_do_not_matter_much():
    rng = np.random.default_rng(3)
    T = rng.permutation(np.linspace(0.05, 0.8, 200))
    U = _hinge(T, 0.4) + rng.normal(0, 0.003, T.size)
    assert estimate_t_star(T, U).T_star == pytest.approx(0.4, abs=0.02)


def test_points_above_T_max_are_ignored():
    T = np.linspace(0.05, 3.0, 300)
    U = _hinge(T, 0.5) + 0.8 * np.maximum(0.0, T - 1.0) ** 2  # curved hot liquid
    assert estimate_t_star(T, U, T_max=1.0).T_star == pytest.approx(0.5, abs=0.01)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="need at least 8 finite points"):
        estimate_t_star(np.linspace(0.1, 1, 5), np.zeros(5))
    with pytest.raises(ValueError, match="1D of one length"):
        estimate_t_star(np.zeros(5), np.zeros(6))


# --- the curved liquid branch (the estimator's bias; module docstring table) -------------

T_K = 0.37
RAMP_T = np.linspace(0.05, 4.0, 100)  # the prepare stage's sampling of a 4.0 -> 0.05 ramp


def _rosenfeld_tarazona(T, liquid_slope=2.5, T_k=T_K):
    """Harmonic glass (slope 1, 2D) below T_k; U ~ a + b T^(3/5) above, continuous, with
    the given slope at T_k."""
    b = liquid_slope / (0.6 * T_k ** -0.4)
    return np.where(T < T_k, -3.2 + (T - T_k), -3.2 + b * (T**0.6 - T_k**0.6))


def _saturating(T, liquid_slope=2.5, T_k=T_K):
    """A liquid branch that is not a power law: slope liquid_slope at T_k relaxing to 0.6."""
    x = np.maximum(T - T_k, 0.0)
    A = (liquid_slope - 0.6) * 0.8
    return np.where(T < T_k, -3.2 + (T - T_k), -3.2 + A * (1 - np.exp(-x / 0.8)) + 0.6 * x)


@pytest.mark.parametrize("T_c", [0.2, 0.37, 1.0])
def test_pure_hinge_is_recovered_exactly(T_c):
    T = np.linspace(0.05, 2.5, 90)
    for kwargs in ({}, {"window": None, "curvature": False}, {"window": 0.5}):
        res = estimate_t_star(T, _hinge(T, T_c), **kwargs)
        assert res.T_star == pytest.approx(T_c, abs=1e-7)
        assert res.rms_residual < 1e-9
        assert res.glass_fit == pytest.approx((1.2, -3.0), abs=1e-7)
        assert res.liquid_fit[0] == pytest.approx(2.5, abs=1e-6)
        assert res.liquid_curvature == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("curve", [_rosenfeld_tarazona, _saturating])
@pytest.mark.parametrize("liquid_slope", [2.0, 3.5])
def test_curved_liquid_branch_recovered_at_any_T_max(curve, liquid_slope):
    U = curve(RAMP_T, liquid_slope)
    for T_max in (0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0):
        keep = RAMP_T <= T_max
        res = estimate_t_star(RAMP_T[keep], U[keep])
        assert res.T_star == pytest.approx(T_K, abs=0.003), T_max
        assert res.T_fit_max <= 2 * res.T_star + 0.04  # the liquid window: up to 2 T*
        assert res.glass_fit[0] == pytest.approx(1.0, abs=0.02)


def _previous_estimator(T, U, T_max):
    """The estimator before this change (git history): one line per branch, continuous,
    fitted to every point up to T_max, the kink on a 400-point grid."""
    keep = T <= T_max
    T, U = T[keep], U[keep]
    best = None
    for t_c in np.linspace(T[3], T[-4], 400):
        A = np.stack([np.ones_like(T), T, np.maximum(0.0, T - t_c)], axis=1)
        coef = np.linalg.lstsq(A, U, rcond=None)[0]
        sse = float(np.sum((A @ coef - U) ** 2))
        best = (sse, t_c) if best is None or sse < best[0] else best
    return best[1]


def test_the_previous_estimator_was_biased_on_the_same_curves():
    """The 'before' row of the docstring table: one line per branch up to T_max."""
    U = _rosenfeld_tarazona(RAMP_T)
    before = [_previous_estimator(RAMP_T, U, T_max) - T_K for T_max in (0.8, 1.5, 4.0)]
    assert before == pytest.approx([-0.018, -0.113, 1.297], abs=0.002)
    assert _previous_estimator(RAMP_T, _hinge(RAMP_T, 0.5), 4.0) == pytest.approx(0.5, abs=0.005)


def test_noise_at_the_level_of_run_averages():
    rng = np.random.default_rng(61)
    U = _rosenfeld_tarazona(RAMP_T)
    for T_max in (0.8, 4.0):
        keep = RAMP_T <= T_max
        est = [estimate_t_star(RAMP_T[keep], U[keep] + rng.normal(0, 0.003, keep.sum())).T_star
               for _ in range(20)]
        assert np.mean(est) == pytest.approx(T_K, abs=0.004)  # spread sd ~0.002
        assert np.max(np.abs(np.array(est) - T_K)) < 0.015


def test_a_kink_at_abm_like_temperatures():
    U = _rosenfeld_tarazona(RAMP_T, 2.5, T_k=1.0)
    for T_max in (2.0, 3.0, 4.0):
        assert estimate_t_star(RAMP_T, U, T_max=T_max).T_star == pytest.approx(1.0, abs=0.01)


def test_swapped_arguments_are_caught():
    U = _rosenfeld_tarazona(RAMP_T)
    with pytest.raises(ValueError, match="are T and U swapped"):
        estimate_t_star(U, RAMP_T)  # U < 0 as "temperatures"
    try:  # energies shifted positive: either refused or far off (in energy units)
        res = estimate_t_star(U + 10.0, RAMP_T)
    except ValueError as exc:
        assert "kink" in str(exc)
    else:
        assert abs(res.T_star - T_K) > 1.0


def test_no_kink_and_bad_parameters_are_errors():
    T = np.linspace(0.05, 2.0, 60)
    with pytest.raises(ValueError, match="glass-transition kink"):
        estimate_t_star(T, -3.0 + 1.5 * T)  # a straight line
    with pytest.raises(ValueError, match="glass-transition kink"):
        estimate_t_star(T, -3.0 + 2.5 * T - 1.3 * np.maximum(0, T - 0.5))  # concave
    with pytest.raises(ValueError, match="window must be"):
        estimate_t_star(T, _hinge(T, 0.5), window=0.0)
    with pytest.raises(ValueError, match="min_points must be"):
        estimate_t_star(T, _hinge(T, 0.5), min_points=1)
    with pytest.raises(ValueError, match="T must be absolute temperatures"):
        estimate_t_star(T - 1.0, _hinge(T, 0.5))


def test_positional_signature_is_unchanged():
    T = np.linspace(0.05, 1.2, 60)
    res = estimate_t_star(T, _hinge(T, 0.4), 1.0, 5)
    assert res.T_star == pytest.approx(0.4, abs=1e-7) and res.split == res.T_star


def test_the_prepare_stage_estimates_t_star_from_measured_t_and_u(tmp_path):
    """estimate_t_star_of reads prepare.h5's run-averaged measured T and U (not the target,
    not U as T): on runs whose U(T) has a kink at 0.37 it finds 0.37; failed runs are left
    out."""
    import h5py

    from glasscam_mpi.config import load_config
    from glasscam_mpi.stages.prepare import estimate_t_star_of

    rng = np.random.default_rng(3)
    T_target = np.linspace(4.0, 0.05, 100)
    runs = []
    for _ in range(8):
        T = T_target + rng.normal(0, 0.01, T_target.size)        # measured lags the target
        U = np.where(T < 0.37, -3.2 + (T - 0.37), -3.2 + 2.8 * (T ** 0.6 - 0.37 ** 0.6))
        runs.append((T, U + rng.normal(0, 0.002, T.size)))
    with h5py.File(tmp_path / "prepare.h5", "w") as fh:
        fh["status"] = np.array([1] * 8 + [2], dtype=np.int8)
        fh["T"] = np.stack([t for t, _ in runs] + [np.full(100, np.nan)])
        fh["pe"] = np.stack([u for _, u in runs] + [np.full(100, np.nan)])
        fh["T_target"] = T_target + 0.5  # a wrong column the estimate must not use
    res = estimate_t_star_of(tmp_path / "prepare.h5", load_config(preset="demo"))
    assert res.T_star == pytest.approx(0.37, abs=0.01)
