"""Correlation matrices against scipy, curve maxima, sub-ensembles and summaries
(glasscam_mpi.analysis.stats)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from glasscam_mpi.analysis.stats import (constant_columns, curve_max, describe,
                                         pearson_matrix, spearman_matrix, subensembles)


@pytest.fixture(scope="module")
def fields():
    rng = np.random.default_rng(41)
    A = rng.normal(size=(500, 3))
    B = np.column_stack([A[:, 0] + rng.normal(size=500), np.exp(A[:, 1]),
                         rng.integers(0, 5, 500), rng.normal(size=500)])  # ties in col 2
    return A, B


@pytest.mark.parametrize("fn, ref", [(pearson_matrix, scipy.stats.pearsonr),
                                     (spearman_matrix, scipy.stats.spearmanr)])
def test_matrix_equals_scipy_pair_by_pair(fields, fn, ref):
    A, B = fields
    C = fn(A, B)
    assert C.shape == (3, 4) and C.dtype == np.float64
    for a in range(3):
        for b in range(4):
            assert C[a, b] == pytest.approx(ref(A[:, a], B[:, b]).statistic, abs=1e-12)


@pytest.mark.parametrize("fn", [pearson_matrix, spearman_matrix])
def test_perfect_correlations(fields, fn):
    A, _ = fields
    np.testing.assert_allclose(np.diag(fn(A, A)), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.diag(fn(A, 1.0 - A)), -1.0, atol=1e-14)
    X = np.random.default_rng(42).random(300)  # a normalised field and its complement
    assert fn(X, 1 - X)[0, 0] == pytest.approx(-1.0, abs=1e-14)
    assert fn(X, 3 * X + 2)[0, 0] == pytest.approx(1.0, abs=1e-14)
    assert fn(X, X)[0, 0] == pytest.approx(1.0, abs=1e-14)
    assert np.all(np.abs(fn(A, A)) <= 1.0)


def test_spearman_is_invariant_under_monotone_maps_and_averages_ties():
    rng = np.random.default_rng(43)
    x = rng.normal(size=400)
    assert spearman_matrix(x, np.exp(3 * x))[0, 0] == pytest.approx(1.0, abs=1e-14)
    assert pearson_matrix(x, np.exp(3 * x))[0, 0] < 0.9
    t = np.repeat([0.0, 1.0, 2.0, 3.0], 100)  # heavy ties
    y = t + rng.normal(size=400)
    assert spearman_matrix(t, y)[0, 0] == pytest.approx(scipy.stats.spearmanr(t, y).statistic,
                                                        abs=1e-12)


@pytest.mark.parametrize("fn", [pearson_matrix, spearman_matrix])
def test_constant_columns_give_nan_exactly_there(fields, fn):
    A, B = fields
    A = A.copy()
    A[:, 1] = 0.1  # constant (0.1 is not exact in binary: the mean must not leak noise)
    B = B.copy()
    B[:, 3] = -7.0
    C = fn(A, B)
    expect = constant_columns(A)[:, None] | constant_columns(B)[None, :]
    np.testing.assert_array_equal(np.isnan(C), expect)
    assert int(np.isnan(C).sum()) == 4 + 3 - 1


def test_shapes_and_errors(fields):
    A, B = fields
    assert pearson_matrix(A[:, 0], B[:, 0]).shape == (1, 1)
    assert spearman_matrix(A, B[:, 0]).shape == (3, 1)
    with pytest.raises(ValueError, match="B has 499 rows but the other argument has 500"):
        pearson_matrix(B, A[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        pearson_matrix(np.r_[A[:-1, 0], np.nan], B)
    with pytest.raises(ValueError, match="N >= 2"):
        spearman_matrix([1.0], [2.0])
    with pytest.raises(ValueError, match="real numeric"):
        pearson_matrix(np.array(["a", "b"]), [1.0, 2.0])


def test_curve_max():
    delta = np.array([0.1, 0.3, 1.0, 3.0, 10.0])
    assert curve_max(delta, [0.2, np.nan, 0.9, 0.7, 0.5]) == (0.9, 1.0)
    assert curve_max(delta, [0.9, 0.1, 0.9, 0.7, 0.5]) == (0.9, 0.1)  # first of ties
    y_max, x_at = curve_max(delta, np.full(5, np.nan))
    assert np.isnan(y_max) and np.isnan(x_at)
    assert isinstance(curve_max(delta, delta)[0], float)
    with pytest.raises(ValueError, match="one length"):
        curve_max(delta, delta[:-1])
    with pytest.raises(ValueError, match="x must be finite"):
        curve_max([np.nan, 1.0], [1.0, 2.0])


def test_subensembles_of_the_paper_are_disjoint():
    sets = subensembles(100)  # paper Table 4: e30^A, e30^B, e30^C within e100
    assert sets.shape == (3, 30) and sets.dtype == np.int64
    flat = sets.ravel()
    assert len(np.unique(flat)) == 90 and flat.min() >= 0 and flat.max() < 100
    np.testing.assert_array_equal(np.sort(flat), np.arange(90))  # consecutive blocks
    np.testing.assert_array_equal(sets[1], np.arange(30, 60))
    rand = subensembles(100, seed=5)
    assert len(np.unique(rand)) == 90 and rand.max() < 100
    assert np.all(np.diff(rand, axis=1) > 0)
    np.testing.assert_array_equal(rand, subensembles(100, seed=5))
    assert not np.array_equal(rand, subensembles(100, seed=6))
    np.testing.assert_array_equal(subensembles(12, size=4, count=3).ravel(), np.arange(12))


@pytest.mark.parametrize("args, match", [
    ((89,), r"3 disjoint sub-ensembles of 30 replicas need 90 replicas; only 89"),
    ((100, 0), "size must be a positive integer"),
    ((100, 30, 2.5), "count must be a positive integer"),
])
def test_subensembles_errors(args, match):
    with pytest.raises(ValueError, match=match):
        subensembles(*args)


def test_describe():
    rng = np.random.default_rng(44)
    v = rng.normal(0.5, 0.2, 600)
    out = describe(np.r_[v, np.nan, np.nan])
    assert out["n"] == 600 and out["n_nan"] == 2
    assert out["mean"] == pytest.approx(v.mean(), rel=1e-14)
    assert out["std"] == pytest.approx(v.std(ddof=1), rel=1e-14)
    assert out["median"] == pytest.approx(np.median(v), rel=1e-14)
    assert (out["q25"], out["q75"]) == pytest.approx(tuple(np.percentile(v, [25, 75])))
    assert (out["min"], out["max"]) == (v.min(), v.max())
    assert describe(v, ddof=0)["std"] == pytest.approx(v.std(), rel=1e-14)
    empty = describe([np.nan, np.nan])
    assert empty["n"] == 0 and empty["n_nan"] == 2 and np.isnan(empty["mean"])
    assert np.isnan(describe([1.0])["std"])
    with pytest.raises(ValueError, match="not infinite"):
        describe([1.0, np.inf])
