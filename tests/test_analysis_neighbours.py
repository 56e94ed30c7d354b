"""PairList (glasscam_mpi.analysis.neighbours): brute force, the existing definitions,
analytic correlation functions and coarse-graining optima, and the ideal-gas g(r)."""

from __future__ import annotations

import numpy as np
import pytest

from glasscam_mpi.analysis import coarse_grain, first_crossing, spatial_correlation
from glasscam_mpi.analysis.neighbours import PairList


def min_image_distances(box, x):
    d = x[:, None, :] - x[None, :, :]
    d -= box * np.round(d / box)
    return np.sqrt((d**2).sum(-1))


def brute_coarse(box, x, values, xi):
    """O(N^2) reference of METHOD.md s. 7: every pair, minimum image, cutoff r <= 2 xi."""
    r = min_image_distances(box, x)
    w = np.where(r <= 2 * xi, np.exp(-((r / xi) ** 2)), 0.0)
    return (w @ values) / w.sum(axis=1).reshape((-1,) + (1,) * (values.ndim - 1))


def smooth_field(box, x, ell, rng):
    """A stationary random field at the points x with the correlation function of white
    noise smoothed at length ell, C(r) = exp(-r^2 / (2 ell^2)), and that function as
    this box's Fourier modes realise it.

    The field is sum_k sqrt(2 P_k) cos(k . x + phi_k) over the box's wave vectors (one
    of each +-k, no k = 0) with P_k ~ exp(-k^2 ell^2 / 2), the Fourier transform of C,
    and random phases phi_k. With fixed amplitudes every realisation has exactly this
    power spectrum, so its correlation function is sum_k P_k j(k r) / sum_k P_k, j = J0
    in 2D and sin(x)/x in 3D (cos(k . r) averaged over directions), the continuum
    C(r) up to the box's discreteness, without realisation-to-realisation scatter.
    """
    from scipy.special import j0

    d = len(box)
    axes = [2 * np.pi * np.arange(-int(5 * L / (2 * np.pi * ell)) - 1,
                                  int(5 * L / (2 * np.pi * ell)) + 2) / L for L in box]
    K = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    first = np.array([k[np.flatnonzero(k)[0]] if np.any(k) else 0.0 for k in K])
    K = K[first > 0]  # one of each +-k, no k = 0 (the mean)
    P = np.exp(-0.5 * (K**2).sum(1) * ell**2)
    K, P = K[P > 1e-8], P[P > 1e-8] / P[P > 1e-8].sum()  # unit variance
    field = np.cos(x @ K.T + rng.uniform(0, 2 * np.pi, len(P))) @ np.sqrt(2 * P)
    k = np.sqrt((K**2).sum(1))

    def correlation(r):
        kr = np.outer(r, k)
        return (j0(kr) if d == 2 else np.sinc(kr / np.pi)) @ P

    return field, correlation


@pytest.fixture(scope="module")
def small2d():
    rng = np.random.default_rng(21)
    box = np.array([9.0, 7.0])
    return box, rng.uniform(0, 1, (150, 2)) * box, rng.normal(size=(150, 3))


# --- coarse-graining --------------------------------------------------------------------

@pytest.mark.parametrize("xi", [0.6, 1.5, 2.0, 3.0])  # 2.0, 3.0: 2 xi beyond L/2
def test_coarse_grain_matches_brute_force_2d(small2d, xi):
    box, x, values = small2d
    pl = PairList(box, x, r_max=6.0)
    np.testing.assert_allclose(pl.coarse_grain(values, xi, beyond_half_box=True),
                               brute_coarse(box, x, values, xi),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pl.coarse_grain(values[:, 0], xi, beyond_half_box=True),
                               brute_coarse(box, x, values[:, 0], xi), rtol=1e-12, atol=1e-12)


def test_coarse_grain_matches_brute_force_3d_and_many_fields():
    rng = np.random.default_rng(22)
    box = np.array([4.0, 5.0, 6.0])
    x = rng.uniform(0, 1, (120, 3)) * box
    values = rng.normal(size=(120, 40))  # propensity at 40 times
    pl = PairList(box, x, r_max=5.0)
    for xi in (0.7, 2.5):
        np.testing.assert_allclose(pl.coarse_grain(values, xi, beyond_half_box=True),
                                   brute_coarse(box, x, values, xi), rtol=1e-12, atol=1e-12)


def test_equals_the_existing_coarse_grain_and_correlation():
    rng = np.random.default_rng(23)
    box = np.array([30.0, 26.0])
    x = rng.uniform(0, 1, (900, 2)) * box
    values = rng.normal(size=(900, 2))
    pl = PairList(box, x, r_max=12.0)
    for xi in (1.0, 3.0, 6.0):
        np.testing.assert_allclose(pl.coarse_grain(values, xi, beyond_half_box=True),
                                   coarse_grain(box, x, values, xi, beyond_half_box=True),
                                   rtol=1e-12, atol=1e-12)
    for vals in (values, values[:, 1]):
        r1, C1 = pl.correlation(vals, 12.0, 48)
        r2, C2 = spatial_correlation(box, x, vals, 12.0, 48)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_allclose(C1, C2, rtol=1e-12, atol=1e-12)


def test_scan_equals_single_lengths_and_zero_is_the_bare_field(small2d):
    box, x, values = small2d
    pl = PairList(box, x, r_max=6.0)
    xis = [2.0, 0.0, 0.8, 2.0, 1.3]  # any order, repeats, 0
    scan = pl.coarse_grain_scan(values, xis, beyond_half_box=True)
    assert scan.shape == (5,) + values.shape
    np.testing.assert_array_equal(scan[1], values)
    for a, xi in enumerate(xis):
        if xi > 0:
            np.testing.assert_allclose(scan[a], brute_coarse(box, x, values, xi),
                                       rtol=1e-12, atol=1e-12)
    assert pl.coarse_grain_scan(values[:, 0], [0.0, 1.0]).shape == (2, len(x))


@pytest.mark.parametrize("xi", [0.5, 2.0, 3.0])
def test_constant_field_exact_and_result_is_a_weighted_mean(small2d, xi):
    box, x, values = small2d
    pl = PairList(box, x, r_max=6.0)
    np.testing.assert_array_equal(pl.coarse_grain(np.full(len(x), 0.37), xi,
                                                  beyond_half_box=True), 0.37)
    const = np.tile([0.1, -2.0, 7.3], (len(x), 1))
    np.testing.assert_array_equal(pl.coarse_grain(const, xi, beyond_half_box=True), const)
    out = pl.coarse_grain(values, xi, beyond_half_box=True)  # within [min, max] per field
    assert np.all(out >= values.min(0) - 1e-12) and np.all(out <= values.max(0) + 1e-12)
    assert np.all(out.std(0) < values.std(0))


def test_coarse_grain_refuses_kernels_beyond_r_max(small2d):
    box, x, values = small2d
    pl = PairList(box, x, r_max=3.0)
    with pytest.raises(ValueError, match=r"2 xi = 3.2 .* exceeds this PairList's r_max = 3"):
        pl.coarse_grain(values, 1.6)
    with pytest.raises(ValueError, match="2 xi"):
        pl.coarse_grain_scan(values, [0.5, 1.6])
    pl.coarse_grain(values, 1.5)  # 2 xi == r_max is allowed
    for bad in ([-1.0], [np.nan], [], [[1.0]]):
        with pytest.raises(ValueError, match="xis must be"):
            pl.coarse_grain_scan(values, bad)
    with pytest.raises(ValueError, match="xi must be"):
        pl.coarse_grain(values, 0.0)
    with pytest.raises(ValueError, match=r"shape \(150,\) or \(150, k\)"):
        pl.coarse_grain(values[:-1], 1.0)


# --- pairs ------------------------------------------------------------------------------

def test_pairs_and_counts_equal_brute_force():
    rng = np.random.default_rng(24)
    box = np.array([11.0, 8.0])
    x = rng.uniform(0, 1, (300, 2)) * box
    dist = min_image_distances(box, x)
    pl = PairList(box, x, r_max=5.0)
    iu, ju = np.triu_indices(len(x), 1)
    shells = 5.0 * (np.array([1, 17, 1000, 4095]) / 4096) ** 0.5  # on shell boundaries
    for r in [0.3, 1.0, 2.5, 4.99, 5.0, *shells]:
        within = dist[iu, ju] <= r
        assert pl.count(r) == int(within.sum())
        i, j, rij = pl.pairs(r)
        assert np.all(i < j)
        got = set(zip(i.tolist(), j.tolist()))
        assert got == set(zip(iu[within].tolist(), ju[within].tolist()))
        np.testing.assert_allclose(rij, dist[i, j], rtol=1e-14)
    assert pl.n_pairs == pl.count(5.0) and pl.n_particles == 300
    assert pl.nbytes >= 12 * pl.n_pairs  # int32 partner + float64 distance per pair
    with pytest.raises(ValueError, match="exceeds this PairList's r_max"):
        pl.count(5.5)


def lattice_with_exact_distances():
    """A square lattice of unit spacing (slightly thinned) and 40 random points: distances
    1, 2, 3, sqrt(5), ... occur exactly, between many others, and integer ones lie on the
    PairList's band edges (multiples of a power of two)."""
    rng = np.random.default_rng(31)
    box = np.array([14.0, 12.0])
    grid = np.stack(np.meshgrid(np.arange(14.0), np.arange(12.0), indexing="ij"), -1)
    x = np.concatenate([grid.reshape(-1, 2)[rng.random(14 * 12) < 0.85],
                        rng.uniform(0, 1, (40, 2)) * box])
    return box, x, rng.normal(size=(len(x), 2))


def test_cutoffs_on_and_near_band_edges_are_exact():
    """Pairs at exactly r = 2 xi count (r <= 2 xi), whether the cutoff lies on a band edge
    (r_max = 6: bands of width 1/4), inside a band, or one ulp either side of an edge."""
    box, x, values = lattice_with_exact_distances()
    pl = PairList(box, x, r_max=6.0)
    dist = min_image_distances(box, x)
    iu, ju = np.triu_indices(len(x), 1)
    first_above_2 = dist[dist > 2.0].min()  # a band's smallest distance as the cutoff
    for r in [1.0, 2.0, np.sqrt(5.0), 3.0, np.nextafter(2.0, 0), np.nextafter(2.0, 3),
              1.1, 2.6, 6.0, first_above_2]:
        within = dist[iu, ju] <= r
        assert pl.count(r) == int(within.sum()) > 0
        i, j, _ = pl.pairs(r)
        assert set(zip(i.tolist(), j.tolist())) == set(zip(iu[within].tolist(),
                                                            ju[within].tolist()))
    assert pl.count(2.0) > pl.count(np.nextafter(2.0, 0))  # the pairs at exactly 2
    root5 = np.sqrt(5.0)  # inside the band (2, 2.25]: that band is masked
    xis = [0.5, 1.0, 1.5, np.nextafter(1.0, 0), np.nextafter(1.0, 2), 0.55, 1.3, 3.0,
           root5 / 2, np.nextafter(root5, 0) / 2]
    scan = pl.coarse_grain_scan(values, xis, beyond_half_box=True)
    for a, xi in enumerate(xis):
        np.testing.assert_allclose(scan[a], brute_coarse(box, x, values, xi),
                                   rtol=1e-12, atol=1e-12)
    assert not np.allclose(scan[1], scan[3])  # r = 2 exactly: in at xi = 1, out just below
    assert not np.allclose(scan[8], scan[9])  # r = sqrt(5) exactly, inside a band


def test_blocks_and_public_product_fallback_give_the_same_results(monkeypatch):
    """Many small row blocks per band, and scipy's public products instead of its
    in-place kernels, change nothing beyond rounding."""
    import glasscam_mpi.analysis.neighbours as nb

    rng = np.random.default_rng(32)
    box = np.array([16.0, 13.0])
    x = rng.uniform(0, 1, (250, 2)) * box
    values = rng.normal(size=(250, 6))
    types = rng.integers(0, 2, 250)

    def everything():
        pl = PairList(box, x, r_max=6.0)
        return ([pl.coarse_grain_scan(values, [0.0, 0.7, 1.6, 3.0], beyond_half_box=True),
                 pl.coarse_grain_scan(values[:, 0], [2.2], beyond_half_box=True)],
                [pl.correlation(values, 6.0, 30)[1], pl.correlation(values[:, :2], 6.0, 30)[1]],
                [pl.rdf(types, bins=30).partial, np.sort(pl.pairs(4.3)[2])])

    reference = everything()
    monkeypatch.setattr(nb, "_BLOCK", 97)
    small_blocks = everything()
    monkeypatch.setattr(nb, "_csr_matvecs", None)
    monkeypatch.setattr(nb, "_csc_matvecs", None)
    public = everything()
    for other in (small_blocks, public):
        for group_ref, group in zip(reference, other):
            for a, b in zip(group_ref, group):
                np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    for a, b in zip(reference[2], public[2]):
        np.testing.assert_array_equal(b, a)  # counts and distances: exact


def test_rejects_bad_construction():
    with pytest.raises(ValueError, match="r_max must be"):
        PairList([5.0, 5.0], np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        PairList([5.0, 5.0], np.zeros((3, 3)), 1.0)


# --- correlation functions --------------------------------------------------------------

def test_correlation_length_of_a_smooth_field_2d():
    """C_S(r) = exp(-r^2 / (2 l^2)) first falls to 1/e at sqrt(2) l (continuum)."""
    rng = np.random.default_rng(25)
    ell, L = 2.0, 44.0
    box = np.array([L, L])
    cross = []
    for _ in range(3):
        x = rng.uniform(0, L, (int(2.4 * L * L), 2))
        S, exact = smooth_field(box, x, ell, rng)
        r, C = PairList(box, x, 3 * ell).correlation(S, 3 * ell, 15)
        # Sampling noise per bin (measured over seeds): sd ~0.025 below r = 1.6, ~0.01
        # beyond; the first bin (r < 0.4, fewest pairs) is left out.
        np.testing.assert_allclose(C[2:], exact(r[2:]), atol=0.08)
        cross.append(first_crossing(r, C, 1 / np.e))
    assert np.mean(cross) == pytest.approx(np.sqrt(2) * ell, rel=0.03)  # sd ~0.6 %
    fine = np.linspace(0, 3 * ell, 601)  # the box's modes realise the continuum C closely
    np.testing.assert_allclose(exact(fine), np.exp(-fine**2 / (2 * ell**2)), atol=0.02)


def test_correlation_function_of_a_smooth_field_3d():
    rng = np.random.default_rng(26)
    ell, L = 1.0, 13.0
    box = np.array([L, L, L])
    x = rng.uniform(0, L, (int(2.4 * L**3), 3))
    S, exact = smooth_field(box, x, ell, rng)
    r, C = PairList(box, x, 3 * ell).correlation(S, 3 * ell, 10)
    np.testing.assert_allclose(C[2:], exact(r[2:]), atol=0.08)  # sd <= 0.02 from bin 2
    assert first_crossing(r, C, 1 / np.e) == pytest.approx(np.sqrt(2) * ell, rel=0.05)
    np.testing.assert_allclose(exact(r), np.exp(-r**2 / (2 * ell**2)), atol=0.02)


def analytic_pearson(xi, ell, rho, noise):
    """corr(coarse_grain(S + noise, xi), S) in 2D for C_S = exp(-r^2 / 2 l^2), unit var.

    Particle i's own term has weight 1, its neighbours (density rho) a total weight
    M = rho pi xi^2 (1 - e^-4) (cutoff 2 xi) and squared weights M2 = rho pi xi^2 / 2
    (1 - e^-8). Gaussian integrals of the kernel exp(-r^2 / xi^2) against C_S give
    g1 = l^2 / (l^2 + xi^2 / 2) (kernel x field) and g2 = l^2 / (l^2 + xi^2) (kernel x
    kernel x field). Then cov = (1 + M g1) / (1 + M) and
    var = (1 + 2 M g1 + M^2 g2 + M2 + noise^2 (1 + M2)) / (1 + M)^2.
    """
    M = rho * np.pi * xi**2 * (1 - np.exp(-4))
    M2 = rho * np.pi * xi**2 / 2 * (1 - np.exp(-8))
    g1, g2 = ell**2 / (ell**2 + xi**2 / 2), ell**2 / (ell**2 + xi**2)
    cov = (1 + M * g1) / (1 + M)
    var = (1 + 2 * M * g1 + M * M * g2 + M2 + noise**2 * (1 + M2)) / (1 + M) ** 2
    return cov / np.sqrt(var)


def test_xi_scan_recovers_the_analytic_optimum_and_it_grows_with_noise():
    from glasscam_mpi.analysis.stats import pearson_matrix

    rng = np.random.default_rng(27)
    ell, rho, L = 2.0, 1.2, 44.0
    box = np.array([L, L])
    n = int(rho * L * L)
    xis = np.arange(0.25, 4.01, 0.25)
    fine = np.linspace(0.05, 6.0, 4000)
    found = {}
    for noise in (1.0, 4.0):
        curve = np.zeros(len(xis))
        for _ in range(3):
            x = rng.uniform(0, L, (n, 2))
            S, _ = smooth_field(box, x, ell, rng)
            pl = PairList(box, x, 2 * xis.max())
            scan = pl.coarse_grain_scan(S + noise * rng.normal(size=n), xis,
                                        beyond_half_box=True)
            curve += pearson_matrix(scan.T, S)[:, 0] / 3
        best = xis[np.argmax(curve)]
        expect = fine[np.argmax(analytic_pearson(fine, ell, rho, noise))]
        assert best == pytest.approx(expect, rel=0.2)
        np.testing.assert_allclose(curve, analytic_pearson(xis, ell, rho, noise), atol=0.06)
        found[noise] = best
    assert found[4.0] > found[1.0]  # noisier fields need more smoothing


def test_correlation_checks_its_range(small2d):
    box, x, values = small2d
    pl = PairList(box, x, r_max=6.0)
    with pytest.raises(ValueError, match="half the shortest box edge"):
        pl.correlation(values, 3.6)
    with pytest.raises(ValueError, match="exceeds this PairList's r_max"):
        PairList(box, x, 2.0).correlation(values, 3.0)
    with pytest.raises(ValueError, match="bins must be"):
        pl.correlation(values, 3.0, 0)
    r, C = pl.correlation(np.ones(len(x)), 3.0, 6)
    assert np.all(np.isnan(C))


# --- g(r) -------------------------------------------------------------------------------

@pytest.mark.parametrize("d, n, L", [(2, 4000, 50.0), (3, 4000, 16.0)])
def test_rdf_of_an_ideal_gas_is_one(d, n, L):
    rng = np.random.default_rng(28 + d)
    box = np.full(d, L)
    x = rng.uniform(0, L, (n, d))
    types = (rng.random(n) < 0.3).astype(int)
    res = PairList(box, x, L / 2).rdf(types=types, bins=20)
    assert res.r.shape == (20,) and res.partial.shape == (2, 2, 20)
    # Poisson error per bin: 1 / sqrt(expected pairs); the first bins hold fewest pairs.
    expect = res.counts / res.g
    np.testing.assert_allclose(res.g, 1.0, atol=5 / np.sqrt(expect.min()))
    assert np.average(res.g, weights=expect) == pytest.approx(1.0, abs=0.01)
    for a in range(2):
        for b in range(2):
            assert np.mean(res.partial[a, b, 5:]) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_array_equal(res.partial, np.swapaxes(res.partial, 0, 1))


def test_rdf_counts_equal_brute_force_and_partials_add_up():
    rng = np.random.default_rng(30)
    box = np.array([12.0, 10.0])
    x = rng.uniform(0, 1, (400, 2)) * box
    types = rng.integers(0, 3, 400)
    res = PairList(box, x, 6.0).rdf(types=types, bins=12, r_max=4.8)
    dist = min_image_distances(box, x)[np.triu_indices(400, 1)]
    np.testing.assert_array_equal(res.counts, np.histogram(dist, bins=12, range=(0, 4.8))[0])
    n_a = np.bincount(types)  # the partial pair counts add up to the total's
    total = sum(res.partial[a, b] * (n_a[a] * (n_a[a] - 1) / 2 if a == b else n_a[a] * n_a[b])
                for a in range(3) for b in range(a, 3))
    np.testing.assert_allclose(total, res.g * 400 * 399 / 2, rtol=1e-12)
    assert PairList(box, x, 6.0).rdf().partial is None
    one = PairList(box, x, 6.0).rdf(types=np.zeros(400, int), bins=12, n_species=2)
    assert one.partial.shape == (2, 2, 12) and np.all(np.isnan(one.partial[1]))
    np.testing.assert_allclose(one.partial[0, 0], one.g, rtol=1e-12)
    with pytest.raises(ValueError, match="n_species must be"):
        PairList(box, x, 6.0).rdf(types=types, n_species=2)
    with pytest.raises(ValueError, match="half the shortest box edge"):
        PairList(box, x, 6.0).rdf(r_max=5.5)


def test_a_kernel_beyond_half_the_box_is_refused_unless_asked(small2d):
    """Issue 18, defect 3: the pair list coarse-grains a 2 xi beyond min(L)/2 only when asked
    (there the box clips the kernel to the nearest image)."""
    box, x, values = small2d
    pl = PairList(box, x, r_max=6.0)
    with pytest.raises(ValueError, match="half the shortest box edge"):
        pl.coarse_grain_scan(values, [0.5, 2.0])
    with pytest.raises(ValueError, match="beyond_half_box"):
        pl.coarse_grain(values, 1.8)
    np.testing.assert_allclose(pl.coarse_grain(values, 2.0, beyond_half_box=True),
                               brute_coarse(box, x, values, 2.0), rtol=1e-12, atol=1e-12)
