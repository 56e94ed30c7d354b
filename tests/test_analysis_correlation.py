"""Spatial correlation functions (analytic plane waves, brute force), crossings, r and rho."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import j0

from glasscam_mpi.analysis import first_crossing, pearson, spatial_correlation, spearman


def random_points(n, box, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, len(box))) * np.asarray(box)


def test_self_point_is_one_and_white_noise_is_uncorrelated():
    box = np.array([40.0, 40.0])
    x = random_points(3000, box, 1)
    values = np.random.default_rng(2).exponential(size=3000)
    r, C = spatial_correlation(box, x, values, r_max=6.0, bins=12)
    assert r[0] == 0.0 and C[0] == 1.0
    np.testing.assert_allclose(r[1:], (np.arange(12) + 0.5) * 0.5)
    # ~1e3 to 1e4 pairs per bin: the noise is a few 1e-2 at most.
    assert np.max(np.abs(C[1:])) < 0.06


def test_plane_wave_gives_bessel_j0_in_2d_and_sinc_in_3d():
    box = np.array([30.0, 30.0])
    x = random_points(4000, box, 3)
    k = 2 * np.pi / box[0]
    r, C = spatial_correlation(box, x, np.cos(k * x[:, 0]), r_max=14.0, bins=14)
    np.testing.assert_allclose(C, j0(k * r), atol=0.04)
    box3 = np.array([12.0, 12.0, 12.0])
    x3 = random_points(3000, box3, 4)
    k3 = 2 * np.pi / box3[2]
    r3, C3 = spatial_correlation(box3, x3, np.sin(k3 * x3[:, 2]), r_max=6.0, bins=6)
    np.testing.assert_allclose(C3, np.sinc(k3 * r3 / np.pi), atol=0.04)


def test_matches_brute_force_binned_pair_sum():
    box = np.array([8.0, 6.0])
    x = random_points(150, box, 5)
    values = np.random.default_rng(6).normal(size=(150, 2))
    r, C = spatial_correlation(box, x, values, r_max=3.0, bins=6)
    d = x[:, None] - x[None]
    d -= box * np.round(d / box)
    dist = np.sqrt((d**2).sum(-1))
    dX = values - values.mean(0)
    for b in range(6):
        i, j = np.nonzero((dist >= b * 0.5) & (dist < (b + 1) * 0.5) & ~np.eye(150, dtype=bool))
        expect = (dX[i] * dX[j]).mean(0) / (dX**2).mean(0)
        np.testing.assert_allclose(C[b + 1], expect, rtol=1e-10)


def test_empty_bins_are_nan_and_constant_fields_have_no_curve():
    box = np.array([10.0, 10.0])
    x = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    r, C = spatial_correlation(box, x, np.arange(100.0) % 7, r_max=2.0, bins=5)
    assert np.all(np.isnan(C[1:3]))  # bins [0, 0.4), [0.4, 0.8): no pair closer than 1
    assert np.all(np.isfinite(C[3:]))
    _, flat = spatial_correlation(box, x, np.ones(100), r_max=2.0, bins=4)
    assert np.all(np.isnan(flat))


def test_r_max_beyond_half_box_is_rejected():
    with pytest.raises(ValueError, match="half the shortest box edge"):
        spatial_correlation([10.0, 6.0], random_points(20, [10, 6], 0), np.ones(20), 3.5, 5)
    with pytest.raises(ValueError, match="bins must be"):
        spatial_correlation([10.0, 6.0], random_points(20, [10, 6], 0), np.ones(20), 2.0, 0)


def test_first_crossing():
    r = np.linspace(0, 20, 2001)
    assert first_crossing(r, np.exp(-r / 3), 1 / np.e) == pytest.approx(3.0, rel=1e-5)
    assert first_crossing(r, np.cos(r), 0.0) == pytest.approx(np.pi / 2, rel=1e-5)
    assert np.isnan(first_crossing(r, 1 + np.exp(-r), 0.5))
    # Linear interpolation between two bracketing points, skipping NaN (empty) bins:
    assert first_crossing([0, 1, 2, 3], [1.0, np.nan, 0.6, 0.2], 0.4) == pytest.approx(2.5)
    assert first_crossing([0, 1], [0.1, 0.0], 0.5) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        first_crossing([0, 1, 2], [1, 0], 0.5)


def test_pearson_and_spearman():
    x = np.random.default_rng(7).normal(size=500)
    y = x + np.random.default_rng(8).normal(size=500)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert pearson(x, x**3) < 0.95
    ranks = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert spearman(x, y) == pytest.approx(np.corrcoef(*ranks)[0, 1], rel=1e-12)
    assert isinstance(pearson(x, y), float) and isinstance(spearman(x, y), float)
    assert np.isnan(pearson(x, np.ones(500))) and np.isnan(spearman(np.ones(500), y))
    with pytest.raises(ValueError, match="equal length"):
        pearson(x, y[:-1])
