"""Pooling C_{X,Delta}(delta) over configurations at common delta, and flags for maxima at
the edge of the data (glasscam_mpi.analysis.pooling and analyze's reduce).

Issue 18, defects 1, 2 and 7: the reduce used to average configurations at a fixed time
record (so at different delta), did not say when delta* or xi_best was the last point of
the data, and did not flag a Fig. 8 zero crossing already at the first shell.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fake_analysis import fake_config, summarize, write_fake_run
from glasscam_mpi.analysis.pooling import (EDGE_FIRST, EDGE_LAST, EDGE_NONE, PER_DECADE,
                                           common_log_grid, curve_max_edge, interpolate_log,
                                           pool_at_common_delta, scan_edge)


# -- the numerics ------------------------------------------------------------------------------
def test_grid_spans_only_the_delta_every_configuration_reached():
    D = np.array([[0.1, 0.5, 2.0, 8.0, np.nan],
                  [0.3, 1.0, 3.0, 5.0, 9.0]])
    g = common_log_grid(D, per_decade=10)
    assert g[0] == 0.3 and g[-1] == 8.0
    assert np.allclose(np.diff(np.log10(g)), np.log10(8.0 / 0.3) / (len(g) - 1))
    assert len(g) == math.ceil(10 * np.log10(8.0 / 0.3)) + 1
    # no shared delta: empty
    assert common_log_grid(np.array([[0.1, 0.2], [0.5, 0.9]])).size == 0


def test_interpolation_is_exact_for_curves_linear_in_log_delta():
    delta = np.geomspace(0.1, 10.0, 9)
    C = 0.2 + 0.3 * np.log(delta)
    grid = np.geomspace(0.05, 20.0, 50)
    out = interpolate_log(delta, C, grid)
    inside = (grid >= 0.1) & (grid <= 10.0)
    np.testing.assert_allclose(out[inside], 0.2 + 0.3 * np.log(grid[inside]), atol=1e-12)
    assert np.isnan(out[~inside]).all()


def test_pooled_mean_and_spread_are_over_configurations_at_one_delta():
    # C_c(delta) = a_c + log(delta), each configuration on its own records
    rng = np.random.default_rng(5)
    a = np.array([0.1, 0.2, 0.6])
    D = np.stack([np.geomspace(lo, lo * 100, 12) for lo in (0.01, 0.02, 0.05)])
    C = (a[:, None] + np.log(D))[..., None]
    grid, mean, std, n = pool_at_common_delta(D, C)
    assert grid[0] == pytest.approx(0.05) and grid[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(mean[:, 0], a.mean() + np.log(grid), atol=1e-12)
    np.testing.assert_allclose(std[:, 0], np.std(a, ddof=1), atol=1e-12)
    assert (n == 3).all()
    # an ensemble that was not analysed (all NaN) is left out, not counted
    D2 = np.vstack([D, np.full((1, 12), np.nan)])
    C2 = np.concatenate([C, np.full((1, 12, 1), np.nan)])
    g2, m2, _, n2 = pool_at_common_delta(D2, C2)
    np.testing.assert_array_equal(g2, grid)
    np.testing.assert_allclose(m2, mean)
    assert (n2 == 3).all()
    del rng


def test_curve_max_edge_and_scan_edge():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    assert curve_max_edge(x, np.array([0.1, 0.5, 0.3, 0.2, np.nan]))[2] == EDGE_NONE
    assert curve_max_edge(x, np.array([0.1, 0.2, 0.3, 0.4, np.nan])) == (0.4, 4.0, EDGE_LAST)
    assert curve_max_edge(x, np.array([0.9, 0.2, 0.3, 0.4, np.nan]))[2] == EDGE_FIRST
    assert scan_edge([0, 1, 2, 4], 4.0) == EDGE_LAST
    assert scan_edge([0, 1, 2, 4], 0.0) == EDGE_FIRST
    assert scan_edge([0, 1, 2, 4], 2.0) == EDGE_NONE


# -- the reduce of analyze, on known curves -------------------------------------------------------
def _curves_with_stop(offsets, speeds, peak=0.90, at=2.0, width=0.05, stop=6.0, n_times=40):
    """Configurations whose delta(t) = s_c t^0.4 grows at different speeds and stops
    (NaN records) once delta > ``stop``, each with C_c(delta) = peak + b_c
    - width ln^2(delta / at): the mean over configurations at common delta peaks at
    ``peak`` at delta = ``at`` exactly (the b_c average to 0)."""
    t = np.geomspace(1.0, 1e5, n_times)
    D = np.stack([s * t ** 0.4 for s in speeds])
    D[D > stop] = np.nan
    C = np.array(offsets)[:, None] + peak - width * np.log(D / at) ** 2
    return D, C


def test_reduce_pools_configurations_at_common_delta(tmp_path):
    """The issue's synthetic check: true C^max 0.90 at delta* 2.0. Fast configurations stop
    early; the slow ones, which remain alone at late records, correlate better. Averaging at
    fixed records reported 0.918 at 2.64 there; pooling at common delta must give 0.90 at
    2.0 (to the grid's step)."""
    D, C = _curves_with_stop(offsets=[-0.03, -0.01, 0.01, 0.03], speeds=[0.4, 0.2, 0.1, 0.05])
    X, m = 3, 3
    corr = np.repeat(np.repeat(C[:, None, :, None, None], X, axis=3), m, axis=4)
    cfg = fake_config()
    plan = write_fake_run(tmp_path / "run", cfg, D[:, None], corr)
    S, head = summarize(tmp_path / "run", cfg, plan)
    step = 10 ** (1 / PER_DECADE)
    for x in range(X):
        c_max, d_star = S["table5"][x, -1, 0], S["table5"][x, -1, 1]
        assert c_max == pytest.approx(0.90, abs=1e-3)
        assert 2.0 / step ** 0.5 <= d_star <= 2.0 * step ** 0.5
    # the spread over configurations is stored beside the pooled curve: std of the offsets
    k_peak = int(np.nanargmax(S["curves"][1, 1, 0]))
    assert S["curves_std"][1, 1, 0, k_peak] == pytest.approx(np.std([-0.03, -0.01, 0.01, 0.03],
                                                                    ddof=1), rel=2e-3)
    assert S["curve_n_configs"][0] == 4
    # every pooled point holds all four configurations: the grid ends at the smallest last delta
    assert np.nanmax(S["curve_delta"][0]) == pytest.approx(np.nanmin(np.nanmax(D, axis=1)))


def test_reduce_flags_maxima_at_the_edge_of_the_data(tmp_path):
    """C rising until the last recorded delta: delta* is the last point, a lower bound;
    C growing with xi: xi_best is the largest xi scanned. Both flagged in analysis.h5 and
    in the headline (what ``glasscam info`` shows)."""
    t = np.geomspace(1.0, 100.0, 20)
    D = np.stack([0.1 * t ** 0.5, 0.12 * t ** 0.5])[:, None]           # (n_c, 1, d_t)
    rising = 0.3 + 0.05 * np.log(D[:, 0])                                # (n_c, d_t)
    xi_gain = np.array([0.0, 0.05, 0.1])                                 # C grows with xi
    corr = rising[:, None, :, None, None] + xi_gain[None, None, None, None, :]
    corr = np.repeat(corr, 3, axis=3)
    cfg = fake_config()
    plan = write_fake_run(tmp_path / "run", cfg, D, corr)
    S, head = summarize(tmp_path / "run", cfg, plan)
    assert (S["table5_edge"][:, -1] == EDGE_LAST).all()
    assert (S["delta_star_edge"] == EDGE_LAST).all()
    assert (S["xi_best_edge"] == EDGE_LAST).all()
    assert S["table5"][0, -1, 1] == pytest.approx(np.nanmin(D[:, 0, -1]))
    entry = head["table5"]["volume"]
    assert entry["delta_star_at"].startswith("last") and entry["xi_at"].startswith("last")
    assert any("lower bound" in n for n in head["notes"])
    assert any("largest xi scanned" in n for n in head["notes"])
    # an interior maximum is not flagged
    D2, C2 = _curves_with_stop(offsets=[0.0, 0.0], speeds=[0.2, 0.1], stop=50.0)
    corr2 = np.repeat(np.repeat(C2[:, None, :, None, None], 3, axis=3), 3, axis=4)
    corr2 = corr2 - np.array([0.0, 0.01, 0.02])       # best at xi = 0 ... the smallest
    corr2[..., 1] += 0.02                              # now best at xi = 1: inside the scan
    plan = write_fake_run(tmp_path / "run2", cfg, D2[:, None], corr2)
    S2, head2 = summarize(tmp_path / "run2", cfg, plan)
    assert (S2["table5_edge"] == EDGE_NONE).all() and (S2["xi_best_edge"] == EDGE_NONE).all()
    assert S2["xi_best"][1] == 1.0
    assert not any("lower bound" in n for n in head2["notes"])


def test_reduce_flags_a_zero_crossing_at_the_first_shell(tmp_path):
    """Fig. 8: where C(r) of an indicator is <= 0 at the first pair distance already, its
    'r where C = 0' is the first bin's centre, an upper bound: flagged."""
    t = np.geomspace(1.0, 100.0, 10)
    D = (0.1 * t ** 0.5)[None, None]
    corr = np.full((1, 1, 10, 3, 3), 0.5)
    cfg = fake_config()
    bins = 8
    r = np.concatenate([[0.0], (np.arange(bins) + 0.5) * 0.5])
    C = np.exp(-r / 2.0)[None, None, :, None] * np.ones((2, 2, 1, 3))
    C[:, :, 1:, 2] = -0.05 * np.exp(-r[1:] / 2.0)      # theta: negative from the first shell
    plan = write_fake_run(tmp_path / "run", cfg, D, corr, corr_r=C, bins=bins)
    S, head = summarize(tmp_path / "run", cfg, plan)
    assert S["r_zero"][1, 2] == pytest.approx(r[1])
    np.testing.assert_array_equal(S["r_zero_first_shell"][1], [0, 0, 1])
    assert head["r_zero_glass_first_shell"] == ["theta"]
    assert any("first pair distance" in n and "theta" in n for n in head["notes"])
