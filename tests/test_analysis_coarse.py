"""Gaussian coarse-graining against a brute-force minimum-image sum; normalisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from glasscam_mpi.analysis import coarse_grain, normalize01


def brute_force(box, x, values, xi):
    """O(N^2) reference: every pair, minimum-image distance, cutoff r <= 2 xi."""
    d = x[:, None, :] - x[None, :, :]
    d -= box * np.round(d / box)
    r = np.sqrt((d**2).sum(-1))
    w = np.where(r <= 2 * xi, np.exp(-((r / xi) ** 2)), 0.0)
    return (w @ values) / w.sum(axis=1).reshape((-1,) + (1,) * (values.ndim - 1))


@pytest.fixture
def system():
    rng = np.random.default_rng(11)
    box = np.array([9.0, 7.0])
    return box, rng.uniform(0, 1, (120, 2)) * box, rng.normal(size=120)


# xi = 0.6: short range; 2.0: 2 xi > L/2 (freud's ball query would refuse this);
# 6.0: 2 xi beyond the half-diagonal, every particle enters (at its nearest image).
# Beyond L/2 the nearest-image sum is what beyond_half_box=True asks for (refused otherwise:
# test_a_kernel_beyond_half_the_box_is_refused_unless_asked).
@pytest.mark.parametrize("xi", [0.6, 2.0, 6.0])
def test_matches_brute_force_minimum_image_sum(system, xi):
    box, x, values = system
    np.testing.assert_allclose(coarse_grain(box, x, values, xi, beyond_half_box=True),
                               brute_force(box, x, values, xi), rtol=1e-12, atol=1e-12)


def test_matches_brute_force_in_3d():
    rng = np.random.default_rng(12)
    box = np.array([4.0, 5.0, 6.0])
    x = rng.uniform(0, 1, (90, 3)) * box
    values = rng.normal(size=90)
    for xi in (0.7, 2.5):
        np.testing.assert_allclose(coarse_grain(box, x, values, xi, beyond_half_box=True),
                                   brute_force(box, x, values, xi), rtol=1e-12, atol=1e-12)


def test_edge_particle_sees_its_neighbour_across_the_boundary():
    box = np.array([10.0, 10.0])
    x = np.array([[0.05, 5.0], [9.95, 5.0], [5.0, 1.0], [5.0, 9.0]])
    values = np.array([0.0, 1.0, 0.0, 0.0])
    xi = 0.5
    w = np.exp(-((0.1 / xi) ** 2))  # the two edge particles are 0.1 apart through the wall
    out = coarse_grain(box, x, values, xi, beyond_half_box=True)
    assert out[0] == pytest.approx(w / (1 + w), rel=1e-12)
    assert out[1] == pytest.approx(1 / (1 + w), rel=1e-12)
    np.testing.assert_array_equal(out[2:], 0.0)


@pytest.mark.parametrize("xi", [0.5, 3.0, 50.0])
def test_constant_field_is_returned_exactly(system, xi):
    box, x, _ = system
    out = coarse_grain(box, x, np.full(len(x), 0.37), xi, beyond_half_box=True)
    np.testing.assert_array_equal(out, 0.37)
    many = coarse_grain(box, x, np.tile([0.1, -2.0, 7.3], (len(x), 1)), xi, beyond_half_box=True)
    np.testing.assert_array_equal(many, np.tile([0.1, -2.0, 7.3], (len(x), 1)))


@pytest.mark.parametrize("k", [3, 8])  # 8 takes the sparse-product path
def test_several_fields_at_once_equal_one_at_a_time(system, k):
    box, x, _ = system
    fields = np.random.default_rng(13).normal(size=(len(x), k))
    out = coarse_grain(box, x, fields, 1.1)
    assert out.shape == fields.shape
    for col in range(k):
        np.testing.assert_allclose(out[:, col], coarse_grain(box, x, fields[:, col], 1.1),
                                   rtol=1e-12, atol=1e-14)


def test_invariant_under_uniform_periodic_shift(system):
    box, x, values = system
    np.testing.assert_allclose(coarse_grain(box, x + [13.3, -4.1], values, 1.3),
                               coarse_grain(box, x, values, 1.3), rtol=1e-10)


def test_coarse_graining_smooths_noise(system):
    box, x, values = system
    assert np.std(coarse_grain(box, x, values, 1.5)) < 0.5 * np.std(values)


def test_normalize01():
    out = normalize01(np.array([3.0, -1.0, 1.0]))
    np.testing.assert_allclose(out, [1.0, 0.0, 0.5])
    cols = normalize01(np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]))
    np.testing.assert_allclose(cols, [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(normalize01(np.full(4, 2.5)), 0.0)


@pytest.mark.parametrize("values, xi, match", [
    (np.zeros(5), 1.0, r"shape \(6,\) or \(6, k\)"),
    (np.array([0, 1, 2, np.nan, 4, 5.0]), 1.0, "non-finite"),
    (np.zeros(6), 0.0, "xi must be"),
    (np.zeros(6), np.inf, "xi must be"),
    (np.array(["a"] * 6), 1.0, "real numeric"),
])
def test_bad_inputs_are_rejected(values, xi, match):
    x = np.random.default_rng(0).random((6, 2)) * 4
    with pytest.raises(ValueError, match=match):
        coarse_grain([4.0, 4.0], x, values, xi)


def test_normalize01_rejects_non_finite():
    with pytest.raises(ValueError, match="non-finite"):
        normalize01([0.0, np.inf])


def test_a_kernel_beyond_half_the_box_is_refused_unless_asked():
    """Issue 18, defect 3: 2 xi > min(L)/2 used to be clipped to the nearest image without a
    word; now it is refused, naming xi and the largest allowed."""
    rng = np.random.default_rng(4)
    box = np.array([9.0, 7.0])
    x = rng.uniform(0, 1, (60, 2)) * box
    values = rng.normal(size=60)
    coarse_grain(box, x, values, 1.75)  # 2 xi = L_min / 2 exactly: a full ball still
    with pytest.raises(ValueError, match=r"xi = 1.8: .*half the shortest box edge \(3.5\).*"
                                         r"xi <= 1.75"):
        coarse_grain(box, x, values, 1.8)
