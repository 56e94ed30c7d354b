"""Bootstrap uncertainty and shift null of C^max (glasscam_mpi.analysis.uncertainty),
issue 18, item 5: checked against the sampling distribution of a known model, and the
shift null against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from glasscam_mpi.analysis.stats import pearson_matrix
from glasscam_mpi.analysis.uncertainty import (null_curves, pooled_maxima, replica_bootstrap,
                                               replica_weights, shifted_indices)


def test_wild_weights_perturb_the_mean_by_signed_deviations():
    rng = np.random.default_rng(0)
    W = replica_weights(7, 2000, rng)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    # W - 1/n = (g - mean g) / n with g = +-1: the perturbation of the mean has the
    # covariance of the mean, (1/n^2) sum_s (r_s - r)(r_s - r)^T (1 - 1/n), on average
    dev = W * 7 - 1.0
    assert np.allclose(np.abs(dev + dev.mean(axis=1, keepdims=True) * 0), np.abs(dev))
    cov = dev.T @ dev / len(W)
    np.testing.assert_allclose(cov, np.eye(7) - 1 / 7, atol=0.08)


def test_uniform_weights_give_the_ensembles_own_curve():
    """Coarse-graining is linear: the weighted mean of coarse replica fields with equal
    weights is the coarse propensity; its Pearson with each indicator is the curve."""
    rng = np.random.default_rng(1)
    cg = rng.normal(size=(6, 4, 50))
    ind = rng.normal(size=(50, 2))
    C, D = replica_bootstrap(cg, cg.mean(axis=2), ind, np.full((1, 6), 1 / 6))
    for t in range(4):
        np.testing.assert_allclose(C[0, t], pearson_matrix(cg[:, t].mean(axis=0), ind)[0],
                                   atol=1e-12)
    np.testing.assert_allclose(D[0], cg.mean(axis=(0, 2)), atol=1e-12)


def test_bootstrap_spread_matches_the_sampling_spread_of_a_known_model():
    """Replicas r_s = f + noise_s (iid): the std of C = pearson(mean_s r_s, f + e) over
    fresh draws of the replicas is what the bootstrap over one draw's replicas must
    estimate. The two agree within the bootstrap's own accuracy (here 20 %); multinomial
    draws of the replicas overstated it by 1.3-1.5x on this model (see replica_weights)."""
    rng = np.random.default_rng(2)
    n, n_s = 400, 12
    f = rng.normal(size=n)
    ind = (f + 1.0 * rng.normal(size=n))[:, None]

    def draw():
        return (f + 3.0 * rng.normal(size=(n_s, n)))[:, None, :]     # (n_s, 1, N)

    truth = [pearson_matrix(draw()[:, 0].mean(axis=0), ind)[0, 0] for _ in range(400)]
    boot = []
    for _ in range(5):
        reps = draw()
        C, _ = replica_bootstrap(reps, reps.mean(axis=2), ind,
                                 replica_weights(n_s, 400, rng))
        boot.append(C[:, 0, 0].std(ddof=1))
    ratio = np.mean(boot) / np.std(truth, ddof=1)
    assert 0.8 < ratio < 1.2, ratio


def test_shifted_indices_take_the_particle_nearest_the_shifted_point():
    a = 1.0
    g = np.arange(8) * a
    x = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2) + 0.2
    box = np.array([8.0, 8.0])
    idx = shifted_indices(box, x, 5, np.random.default_rng(3))
    shifts = np.random.default_rng(3).uniform(0.0, 1.0, (5, 2)) * box  # the same draws
    for s in range(5):
        target = x + shifts[s]
        d = x[None, :, :] - target[:, None, :]
        d -= box * np.rint(d / box)
        brute = np.argmin((d * d).sum(-1), axis=1)
        np.testing.assert_array_equal(idx[s], brute)
        assert len(np.unique(idx[s])) == len(x)      # a lattice shift is a permutation


def test_null_of_an_unrelated_field_is_small_and_of_the_field_itself_is_not_the_curve():
    """A field against itself: C = 1, but shifted copies of it, against the original, give
    the null: well below 1 and centred near 0 for a field uncorrelated beyond a few
    particles."""
    rng = np.random.default_rng(4)
    L, n = 20.0, 400
    box = np.array([L, L])
    x = rng.uniform(0, L, (n, 2))
    field = rng.normal(size=n)
    idx = shifted_indices(box, x, 300, rng)
    C = null_curves(field[None, :], field[:, None], idx)[:, 0, 0]     # (S,)
    # white noise: centred on 0 with a spread of about 1 / sqrt(N); a little more, since
    # reading at the nearest particle repeats some particles (Voronoi cells differ)
    assert abs(C.mean()) < 0.02 and 1.0 < C.std() * np.sqrt(n) < 1.6
    assert np.percentile(C, 95) < 0.2
    # and the unshifted pairing (idx = identity) is the curve itself
    same = null_curves(field[None, :], field[:, None], np.arange(n)[None])
    assert same[0, 0, 0] == pytest.approx(1.0)


def test_pooled_maxima_of_drawn_configurations():
    """Drawing configuration 0 twice and 1 never gives configuration 0's own C^max."""
    t = np.geomspace(0.1, 10, 30)
    D = np.stack([t, 1.3 * t])[:, None, :]                     # (n_c, R = 1, d_t)
    C = np.stack([0.5 - (np.log(t)) ** 2, 0.2 - (np.log(1.3 * t / 2)) ** 2])[:, None, :, None]
    cm, ds = pooled_maxima(D, C, np.array([[0, 0]]))
    assert cm[0, 0] == pytest.approx(0.5, abs=1e-2) and ds[0, 0] == pytest.approx(1.0, rel=0.1)
    cm1, _ = pooled_maxima(D, C, np.array([[1, 1]]))
    assert cm1[0, 0] == pytest.approx(0.2, abs=1e-2)
