"""Cage-relative displacement and propensity: invariances, a hand case, a loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from glasscam_mpi.analysis import cage_relative_displacement, propensity, voronoi_neighbors


@pytest.fixture
def glass():
    rng = np.random.default_rng(21)
    box = np.array([8.0, 8.0])
    ix, iy = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    x = np.stack([ix + 0.5 * (iy % 2), iy * np.sqrt(3) / 2], -1).reshape(-1, 2) * [1, 8 / 6.93]
    return box, x + rng.normal(0, 0.1, x.shape)


def test_uniform_translation_gives_zero(glass):
    box, x = glass
    nb = voronoi_neighbors(box, x)
    shift = np.random.default_rng(1).normal(size=(3, 4, 1, 2))  # (replica, time, 1, d)
    disp = np.broadcast_to(shift, (3, 4, len(x), 2))
    out = cage_relative_displacement(disp, *nb)
    assert out.shape == (3, 4, len(x))
    np.testing.assert_allclose(out, 0.0, atol=1e-12)


def test_one_particle_hopping_by_hand(glass):
    box, x = glass
    i, j = voronoi_neighbors(box, x)
    n_nb = np.bincount(i, minlength=len(x))
    disp = np.zeros((len(x), 2))
    u = np.array([0.3, -0.4])  # |u| = 0.5
    disp[5] = u
    out = cage_relative_displacement(disp, i, j)
    assert out[5] == pytest.approx(0.5 * n_nb[5] / (n_nb[5] + 1), rel=1e-12)
    nbrs = j[i == 5]
    np.testing.assert_allclose(out[nbrs], 0.5 / (n_nb[nbrs] + 1), rtol=1e-12)
    rest = np.setdiff1d(np.arange(len(x)), np.append(nbrs, 5))
    np.testing.assert_array_equal(out[rest], 0.0)


def test_matches_loop_reference_over_leading_axes(glass):
    box, x = glass
    i, j = voronoi_neighbors(box, x)
    disp = np.random.default_rng(2).normal(size=(2, 3, len(x), 2))
    out = cage_relative_displacement(disp, i, j)
    for s in range(2):
        for t in range(3):
            for p in range(len(x)):
                cage = np.append(j[i == p], p)
                ref = np.linalg.norm(disp[s, t, p] - disp[s, t, cage].mean(0))
                assert out[s, t, p] == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_duplicate_and_self_pairs_do_not_change_cages(glass):
    box, x = glass
    i, j = voronoi_neighbors(box, x)
    disp = np.random.default_rng(3).normal(size=(len(x), 2))
    messy_i = np.concatenate([i, i[:10], np.arange(5)])
    messy_j = np.concatenate([j, j[:10], np.arange(5)])
    np.testing.assert_allclose(cage_relative_displacement(disp, messy_i, messy_j),
                               cage_relative_displacement(disp, i, j), rtol=1e-14)


def test_propensity_is_the_replica_mean(glass):
    box, x = glass
    nb = voronoi_neighbors(box, x)
    disp = np.random.default_rng(4).normal(size=(5, 3, len(x), 2))
    cd = cage_relative_displacement(disp, *nb)
    np.testing.assert_array_equal(propensity(cd[:1]), cd[0])
    np.testing.assert_allclose(propensity(cd), cd.sum(0) / 5, rtol=1e-14)
    np.testing.assert_allclose(propensity(np.moveaxis(cd, 0, 1), replica_axis=1),
                               propensity(cd), rtol=1e-14)


@pytest.mark.parametrize("disp, i, j, match", [
    (np.zeros(4), [0], [1], r"\(\.\.\., N, d\)"),
    (np.full((4, 2), np.nan), [0], [1], "non-finite"),
    (np.zeros((4, 2)), [0, 1], [1], "equal length"),
    (np.zeros((4, 2)), [0], [4], r"in \[0, 4\)"),
    (np.zeros((4, 2)), [0.0], [1.0], "integer"),
])
def test_bad_inputs_are_rejected(disp, i, j, match):
    with pytest.raises(ValueError, match=match):
        cage_relative_displacement(disp, np.asarray(i), np.asarray(j))
