"""Seed ensembles without MPI: network seeds, the ensemble's Gamma (each member normalised to
[0, 1] per sample, then averaged), one gradcam.h5 row of an ensemble, and the member rows
of analysis.h5's summary, each against an independent numpy computation."""

import numpy as np
import pytest

from glasscam_mpi.learn.ensemble import SPREAD, ensemble_gamma, network_seed, spread


def _norm(x):
    """Independent [0, 1] normalisation of the last axis (a constant row -> 0)."""
    lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    return np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)


def test_network_zero_is_the_run_seed_and_the_others_are_distinct_and_reproducible():
    assert network_seed(2023, 0) == 2023 and network_seed(7, 0) == 7
    seeds = [network_seed(2023, j) for j in range(1, 200)]
    assert len(set(seeds)) == len(seeds) and 2023 not in seeds
    assert seeds == [network_seed(2023, j) for j in range(1, 200)]   # no hidden state
    assert all(0 <= s < 2**63 - 1 for s in seeds)
    assert network_seed(2024, 1) != network_seed(2023, 1)            # from the run seed too
    with pytest.raises(ValueError, match="network index"):
        network_seed(1, -1)


def test_one_member_is_its_own_field_unchanged():
    g = np.random.default_rng(0).random((5, 2, 30)).astype(np.float32) * 7
    out = ensemble_gamma(g[None])
    np.testing.assert_array_equal(out, g.astype(np.float64))


def test_ensemble_is_the_mean_of_the_members_normalised_per_sample():
    rng = np.random.default_rng(1)
    members = rng.random((3, 4, 2, 50)) * rng.uniform(0.1, 10, (3, 4, 2, 1))
    members[1, 2, 0] = 0.25                     # ReLU cut everything: a constant field
    out = ensemble_gamma(members)
    np.testing.assert_allclose(out, _norm(members).mean(axis=0), rtol=0, atol=1e-15)
    assert out.shape == (4, 2, 50) and out.min() >= 0 and out.max() <= 1
    # a member's scale and offset per sample do not matter (only its pattern)
    scaled = members * rng.uniform(0.5, 5, (3, 4, 2, 1)) + rng.uniform(-1, 1, (3, 4, 2, 1))
    np.testing.assert_allclose(ensemble_gamma(scaled), out, atol=1e-12)
    # two members with opposite patterns cancel to a constant 1/2
    a = rng.random(40)
    np.testing.assert_allclose(ensemble_gamma(np.stack([a, -a])), np.full(40, 0.5), atol=1e-15)


def test_ensemble_refuses_a_shape_without_member_and_particle_axes():
    with pytest.raises(ValueError, match="members must have shape"):
        ensemble_gamma(np.zeros(5))
    with pytest.raises(ValueError, match="members must have shape"):
        ensemble_gamma(np.zeros((0, 5)))


def test_spread_over_members_ignores_nan():
    s = spread([0.2, np.nan, 0.6, 0.4])
    assert list(s) == list(SPREAD)
    np.testing.assert_allclose([s["mean"], s["std"], s["min"], s["max"]],
                               [0.4, np.std([0.2, 0.6, 0.4]), 0.2, 0.6])
    assert all(np.isnan(v) for v in spread([np.nan]).values())


def test_gradcam_row_of_an_ensemble():
    from glasscam_mpi.stages.gradcam import ensemble_row

    rng = np.random.default_rng(2)
    layers = rng.random((3, 2, 3, 20)).astype(np.float32)          # (K, class, L, N)
    p = np.array([[0.2, 0.9], [0.4, 0.7], [0.3, 0.1]])
    row = ensemble_row(layers, p, layer=2)
    np.testing.assert_allclose(row["gamma_layers"], _norm(layers.astype(np.float64)).mean(0),
                               rtol=1e-6)
    np.testing.assert_array_equal(row["gamma"], row["gamma_layers"][:, 2])
    np.testing.assert_array_equal(row["gamma_members"], layers[:, :, 2].transpose(1, 0, 2))
    np.testing.assert_allclose(row["p_glass"], [0.3, 1.7 / 3], rtol=1e-6)
    np.testing.assert_array_equal(row["predicted"], [0, 1])
    one = ensemble_row(layers[:1], p[:1], layer=1)                   # k = 1: as before
    assert "gamma_members" not in one
    np.testing.assert_array_equal(one["gamma_layers"], layers[0])
    np.testing.assert_array_equal(one["p_glass"], p[0].astype(np.float32))


def test_member_table5_rows_pool_at_common_delta_like_the_main_summary():
    """Each field is pooled over configurations at common delta; C^max is the maximum of
    each temperature's pooled curve, 'all T' the temperature with the largest; xi_best the
    xi with the largest 'all T' C^max. Checked against the pooling module directly."""
    from glasscam_mpi.analysis.pooling import curve_max_edge, pool_at_common_delta
    from glasscam_mpi.stages.analyze_members import pooled_table5

    rng = np.random.default_rng(3)
    xis = np.array([0.0, 1.0, 2.0])
    n_c, n_T, d_t, F = 3, 2, 9, 2
    delta = np.sort(rng.uniform(0.05, 3.0, (n_c, n_T, d_t)), axis=-1)
    corr = rng.uniform(-0.2, 0.9, (n_c, n_T, d_t, F, len(xis)))
    delta[1, 1, 7:] = np.nan                                     # a stopped ensemble
    corr[1, 1, 7:] = np.nan
    cmax, dstar, xi_best, t5, t5_edge = pooled_table5(corr, delta, xis)
    edges = np.zeros((F, len(xis), n_T), np.int8)
    assert cmax.shape == (F, 3, n_T + 1) and t5.shape == (F, n_T + 1, 3)
    for f in range(F):
        for a in range(len(xis)):
            for k in range(n_T):
                grid, mean, _, _ = pool_at_common_delta(delta[:, k], corr[:, k, :, f, a])
                want = curve_max_edge(grid, mean)
                assert (cmax[f, a, k], dstar[f, a, k]) == pytest.approx(want[:2])
                edges[f, a, k] = want[2]
            k = int(np.nanargmax(cmax[f, a, :n_T]))
            assert cmax[f, a, n_T] == cmax[f, a, k] and dstar[f, a, n_T] == dstar[f, a, k]
        a = int(np.nanargmax(cmax[f, :, n_T]))
        assert xi_best[f] == xis[a]
        np.testing.assert_array_equal(t5[f, :, 0], cmax[f, a])
        np.testing.assert_array_equal(t5[f, :, 2], xis[a])
        np.testing.assert_array_equal(t5_edge[f, :n_T], edges[f, a])
