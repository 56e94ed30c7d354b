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
