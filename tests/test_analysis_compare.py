"""The analyze stage's numerics as array functions, without MPI or files.

- ``analysis.crossing``: the delta-target crossing against an analytic delta(t);
- ``analysis.coarse.normalize01`` along a particle axis, NaN left out;
- ``analysis.compare``: a test sample's pairwise correlations and C(r), and an ensemble's
  indicator-propensity correlations, on fields whose correlations are known exactly;
- ``analysis.subensembles``: sub-ensemble fields against a brute-force mean, and the
  ensemble study where every replica is the same (all correlations 1).
"""

import numpy as np
import pytest
import scipy.stats

from glasscam_mpi.analysis.coarse import normalize01
from glasscam_mpi.analysis.compare import (INDICATORS, PAIR_NAMES, compare_ensemble,
                                           compare_sample, forms, one_minus, pair_list)
from glasscam_mpi.analysis.crossing import delta_crossing
from glasscam_mpi.analysis.stats import subensembles
from glasscam_mpi.analysis.subensembles import (ENSEMBLE_COLUMNS, ensemble_study,
                                                subensemble_fields)

XIS = (0.0, 1.0)


@pytest.fixture(scope="module")
def config2d():
    """100 particles in a 2D periodic box (no overlaps needed: no physics of packing)."""
    rng = np.random.default_rng(11)
    box = np.array([10.0, 10.0])
    x = rng.uniform(0, 10.0, size=(100, 2))
    types = (np.arange(100) % 3 == 0).astype(np.int8)
    return box, x, types, rng


# --------------------------------------------------------------------------- crossing
def test_crossing_interpolates_linearly_in_delta_and_log_time():
    """delta(t) = log10(t) + 2 at t = 10^k: target 1.25 lies 1/4 of the way from t = 0.1
    (delta 1) to t = 1 (delta 2), so w = 1/4, the field is 3/4 X_a + 1/4 X_b and the time
    10^(-1 + 1/4) exactly (delta is linear in log t)."""
    t = 10.0 ** np.arange(-2, 3)
    delta = np.log10(t) + 2
    X = np.arange(15.0).reshape(5, 3) ** 2
    c = delta_crossing(delta, 1.25)
    assert (c.a, c.b) == (1, 2) and c.w == pytest.approx(0.25, abs=1e-15)
    np.testing.assert_allclose(c.field(X), 0.75 * X[1] + 0.25 * X[2], rtol=1e-15)
    assert c.time(t) == pytest.approx(10 ** -0.75, rel=1e-14)


def test_crossing_edges_and_nan_records():
    delta = np.array([0.5, 1.0, 2.0, np.nan, np.nan])
    assert delta_crossing(delta, 3.0) is None                   # never reached
    assert delta_crossing(delta, 0.2) is None                   # past it at the first record
    first = delta_crossing(delta, 0.5)                          # reached exactly there
    assert (first.a, first.b) == (0, 0)
    np.testing.assert_array_equal(first.field(np.eye(5)), np.eye(5)[0])
    assert delta_crossing(delta, 0.5, at_first=False) is None  # the ensemble study's rule
    c = delta_crossing(delta, 2.0)                              # equal at a later record
    assert (c.a, c.b) == (1, 2) and c.w == 1.0


def test_crossing_keeps_a_float32_field_interpolation_in_float64():
    """The weight stays a NumPy float64, so a float32 field is interpolated in float64
    (as the propensity stage always did) and only rounded when stored."""
    delta = np.array([0.1, 0.3], dtype=np.float32)
    field = np.array([[1.0, 2.0], [1.0 + 2 ** -20, 3.0]], dtype=np.float32)
    c = delta_crossing(delta, np.float64(0.2))
    assert isinstance(c.w, np.float64)
    out = c.field(field)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, (1 - c.w) * field[0].astype(np.float64)
                                  + c.w * field[1].astype(np.float64))
    assert out[0] != np.float32((1 - np.float32(c.w)) * field[0, 0] + np.float32(c.w) * field[1, 0])


# --------------------------------------------------------------------------- normalize01
def test_normalize01_along_an_axis_leaves_nan_out():
    rng = np.random.default_rng(3)
    F = rng.normal(size=(2, 20, 3))
    F[0, 4, 1] = np.nan
    out = normalize01(F, axis=-2, ignore_nan=True)
    assert np.isnan(out[0, 4, 1]) and np.isfinite(np.delete(out.reshape(-1), 4 * 3 + 1)).all()
    for m in range(2):
        for k in range(3):
            col = F[m, :, k][np.isfinite(F[m, :, k])]
            got = out[m, :, k][np.isfinite(out[m, :, k])]
            np.testing.assert_allclose(got, (col - col.min()) / (col.max() - col.min()),
                                       rtol=1e-15)
            assert got.min() == 0.0 and got.max() == 1.0
    with pytest.raises(ValueError, match="non-finite"):
        normalize01(F, axis=-2)
    with pytest.raises(ValueError, match=r"axis 1.*got shape \(4, 0\)"):
        normalize01(np.zeros((4, 0)), axis=1)


# --------------------------------------------------------------------------- compare
def test_forms_follow_the_setting():
    assert one_minus("paper", "ABM") == ("gamma", "volume")
    assert one_minus("paper", "unknown") == ("gamma", "theta")
    assert one_minus("none", "KAM") == ()
    assert forms(" theta ,volume", "KAM") == {"gamma": "X", "volume": "1 - X", "theta": "1 - X"}


def test_sample_correlations_are_those_of_the_bare_fields(config2d):
    """At xi = 0 the pairwise correlations are Pearson / Spearman of the bare fields (a
    [0, 1] normalisation changes neither); a field that is an increasing function of
    another correlates with it with Spearman 1; without Gamma its pairs are NaN."""
    box, x, types, rng = config2d
    vol = rng.normal(size=100)
    theta = rng.normal(size=100)
    gamma = np.exp(vol)                                  # increasing in vol: Spearman 1
    F = np.stack([gamma, vol, theta], axis=1)
    pl = pair_list(box, x, XIS, 3.0)
    out = compare_sample(pl, x, types, F, box=box, xis=XIS, r_corr=3.0, bins=6,
                         rdf_bins=20, predicted=1, label=1)
    p = {name: out["pearson"][0, q] for q, name in enumerate(PAIR_NAMES)}
    s = {name: out["spearman"][0, q] for q, name in enumerate(PAIR_NAMES)}
    assert p["gamma-volume"] == pytest.approx(scipy.stats.pearsonr(gamma, vol)[0], abs=1e-12)
    assert p["theta-volume"] == pytest.approx(scipy.stats.pearsonr(theta, vol)[0], abs=1e-12)
    assert s["gamma-volume"] == pytest.approx(1.0, abs=1e-12)
    assert s["gamma-theta"] == pytest.approx(scipy.stats.spearmanr(gamma, theta)[0],
                                             abs=1e-12)
    assert out["correct"] == 1 and out["constant"].tolist() == [0, 0, 0]
    assert np.all(np.abs(out["pearson"][1]) <= 1)        # coarse-grained at xi = 1
    assert out["corr_r"].shape == (7, 3)
    np.testing.assert_allclose(out["corr_r"][0], 1.0, rtol=1e-12)   # C(0) = 1
    assert 0 <= out["psi6"] <= 1 and out["rdf"].shape == (20, 3)

    F[:, 0] = np.nan                                     # no CNN: no Gamma
    out = compare_sample(pl, x, types, F, box=box, xis=XIS, r_corr=3.0, bins=6,
                         rdf_bins=20)
    assert np.isnan(out["pearson"][:, :2]).all() and np.isfinite(out["pearson"][:, 2]).all()
    assert out["correct"] == -1 and np.isnan(out["corr_r"][:, 0]).all()


def test_ensemble_correlations_of_a_propensity_built_from_one_indicator(config2d):
    """Delta(t) = a_t * Upsilon + b_t with a_t > 0: at xi_a = xi_b = 0 the propensity
    correlates with Upsilon with Pearson +1, with 1 - Upsilon with -1; records after the
    ensemble stopped (NaN) stay NaN; maps are [0, 1] and 1 - X is 1 minus the X map."""
    box, x, _, rng = config2d
    vol, theta = rng.normal(size=100), rng.normal(size=100)
    F = np.stack([np.full(100, np.nan), vol, theta], axis=1)
    D = np.outer([0.1, 0.5, 2.0, np.nan], vol) + np.array([[1.0], [2.0], [3.0], [np.nan]])
    at = D[[0, 3]]                                       # one target reached, one not
    pl = pair_list(box, x, XIS, 3.0)
    runs = {}
    for sign in (1.0, -1.0):
        runs[sign] = compare_ensemble(pl, F, D, at, xis=XIS, sign=np.array([-1.0, sign, 1.0]),
                                      r_corr=3.0, bins=6)
    plain, flipped = runs[1.0], runs[-1.0]
    v = INDICATORS.index("volume")
    np.testing.assert_allclose(plain["corr"][:3, v, 0, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(flipped["corr"][:3, v, 0, 0], -1.0, atol=1e-12)
    assert np.isnan(plain["corr"][3]).all() and np.isnan(plain["corr"][:, 0]).all()
    maps = plain["maps_indicators"]
    assert maps.dtype == np.float32 and np.nanmin(maps[1:]) == 0 and np.nanmax(maps[1:]) == 1
    np.testing.assert_allclose(flipped["maps_indicators"][v], 1 - maps[v], atol=1e-7)
    assert np.isfinite(plain["corr_delta_r"][0]).all() and np.isnan(plain["corr_delta_r"][1]).all()
    assert np.isnan(plain["maps_delta"][1]).all()


# --------------------------------------------------------------------------- subensembles
def test_subensemble_fields_are_replica_means_at_the_full_crossing():
    rng = np.random.default_rng(5)
    disp = np.cumsum(rng.uniform(0.0, 0.2, size=(6, 5, 30)), axis=1)   # (n_s, t, N), growing
    full_delta = disp.mean(axis=(0, 2))
    target = 0.5 * (full_delta[1] + full_delta[2])
    fields = subensemble_fields(disp, target, 3, 2)
    assert fields.shape == (30, 3)
    w = (target - full_delta[1]) / (full_delta[2] - full_delta[1])
    for u, s in enumerate(subensembles(6, 3, 2)):
        want = (1 - w) * disp[s, 1].mean(axis=0) + w * disp[s, 2].mean(axis=0)
        np.testing.assert_allclose(fields[:, u], want, rtol=1e-13)
    np.testing.assert_allclose(fields[:, 2].mean(), target, rtol=1e-13)
    first = disp.mean(axis=0).mean(axis=1)[0]      # delta at the first record, as computed
    assert subensemble_fields(disp, first, 3, 2) is None                # needs two records
    assert subensemble_fields(disp, 99.0, 3, 2) is None                 # never reached


def test_ensemble_study_of_identical_replicas_is_all_ones(config2d):
    """Every replica the same field: every sub-ensemble equals the full ensemble, so the
    columns comparing like with like (bare with bare, coarse with coarse) are 1 at every
    xi, and the three comparing a bare field with a coarse one are equal (1 at xi = 0,
    below 1 once coarse-graining smooths); a target never reached is NaN."""
    box, x, _, rng = config2d
    one = np.cumsum(rng.uniform(0.0, 0.2, size=(4, 100)), axis=0)      # (t, N)
    disp = np.repeat(one[None], 6, axis=0)
    target = one.mean(axis=1)[2]
    pl = pair_list(box, x, XIS, 3.0)
    out = ensemble_study(pl, disp, np.array([target, 99.0]), XIS, 3, 2)
    assert out.shape == (2, len(XIS), len(ENSEMBLE_COLUMNS))
    like = [ENSEMBLE_COLUMNS.index(c) for c in ("e30-e30 bare", "e30~-e30~", "e30~-e100~")]
    cross = [ENSEMBLE_COLUMNS.index(c) for c in ("e30-e30~ own", "e100-e100~",
                                                 "e30-e30~ other")]
    np.testing.assert_allclose(out[0][:, like], 1.0, atol=1e-12)
    np.testing.assert_allclose(out[0, 0], 1.0, atol=1e-12)              # xi = 0: all bare
    np.testing.assert_allclose(out[0, 1, cross], out[0, 1, cross[0]], rtol=1e-12)
    assert 0 < out[0, 1, cross[0]] < 0.99
    assert np.isnan(out[1]).all()
