"""Tests written to kill surviving mutants of ``analysis/`` (tests/tools/mutation.py).

Each test checks a physical or numerical quantity against an independent reference (a
brute-force loop, a value worked out by hand, a textbook formula) or an invariant; the
docstring of each names the mutants it kills.
"""

import numpy as np
import pytest

from glasscam_mpi.analysis.checks import wrap


# -- checks -----------------------------------------------------------------------------------
def test_wrap_maps_rounding_edge_cases_into_the_half_open_box():
    """Kills ``(out >= box) | (out < 0) -> &``, ``>= -> >`` and ``0.0 -> 1.0`` in wrap: a
    tiny negative coordinate gives L - 1e-17 == L in float64, which must go to 0, never to L
    (positions live in [0, L), the cell lists and grids index them by floor(x / cell))."""
    box = np.array([10.0, 4.0])
    x = np.array([[-1e-17, 4.0], [-1e-300, -8.0], [5.0, -1.0], [25.0, 3.5]])
    out = wrap(x, box)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [0.0, 0.0], [5.0, 3.0], [5.0, 3.5]])
    assert np.all(out >= 0) and np.all(out < box)


# -- coarse -----------------------------------------------------------------------------------
def _brute_coarse(box, x, f, xi):
    """METHOD.md section 7 by brute force: sum_j f_j P(r_ij) / sum_j P(r_ij), r_ij <= 2 xi."""
    d = x[:, None, :] - x[None, :, :]
    d -= box * np.round(d / box)
    r = np.sqrt((d * d).sum(-1))
    P = np.where(r <= 2 * xi, np.exp(-(r / xi) ** 2), 0.0)
    return (P @ f) / P.sum(axis=1)[:, None]


def test_coarse_grain_many_fields_over_many_pair_blocks_matches_brute_force():
    """Kills ``continue -> break`` after the sparse product of coarse_grain (k >= 6 fields):
    with more pairs than one block (2^15) every block must be summed. 1500 particles and
    xi = 2.2 give ~55,000 pairs within 2 xi."""
    rng = np.random.default_rng(12)
    n = 1500
    L = np.sqrt(n / 1.2)
    box = np.array([L, L])
    x = rng.uniform(0, L, (n, 2))
    f = rng.normal(size=(n, 7))
    from glasscam_mpi.analysis import coarse_grain
    got = coarse_grain(box, x, f, 2.2)
    np.testing.assert_allclose(got, _brute_coarse(box, x, f, 2.2), rtol=1e-10, atol=1e-12)


# -- correlation ------------------------------------------------------------------------------
def test_first_crossing_skips_an_empty_bin_just_before_the_crossing():
    """Kills ``isfinite(C) & isfinite(r) -> |`` in first_crossing: a NaN point (an empty
    bin) right before the crossing must be dropped, so the crossing is interpolated between
    its finite neighbours: (1, 0.8) and (3, 0.2) cross 0.5 at r = 2, by hand."""
    from glasscam_mpi.analysis import first_crossing
    r = np.array([0.0, 1.0, 2.0, 3.0])
    C = np.array([1.0, 0.8, np.nan, 0.2])
    assert first_crossing(r, C, 0.5) == pytest.approx(2.0, rel=1e-14)


def test_first_crossing_counts_touching_the_level():
    """Kills ``C <= level -> C < level``: a curve that touches the level and rises again
    reaches it there (METHOD.md: the r where C *first* falls to the level)."""
    from glasscam_mpi.analysis import first_crossing
    r = np.array([0.0, 1.0, 2.0, 3.0])
    assert first_crossing(r, np.array([1.0, 0.5, 0.7, 0.3]), 0.5) == 1.0
    assert first_crossing(r, np.array([1.0, 0.0, 0.4, -0.2]), 0.0) == 1.0   # r_Gamma


def test_pearson_and_spearman_of_fields_normalised_to_unit_range():
    """Kills ``ptp(x) == 0 -> == 1`` (and ``ptp(y)``) in pearson and spearman: fields from
    normalize01 have range exactly 1 and must be correlated, not returned as NaN. The
    references are the textbook formulas (Spearman = Pearson of the ranks; no ties)."""
    from glasscam_mpi.analysis import normalize01, pearson, spearman
    rng = np.random.default_rng(3)
    x = normalize01(rng.normal(size=200))
    y = normalize01(x + 0.1 * rng.normal(size=200))
    assert np.ptp(x) == 1.0 and np.ptp(y) == 1.0

    def textbook(a, b):
        da, db = a - a.mean(), b - b.mean()
        return float((da * db).sum() / np.sqrt((da * da).sum() * (db * db).sum()))

    ranks = lambda a: np.argsort(np.argsort(a)).astype(float)  # noqa: E731
    assert pearson(x, y) == pytest.approx(textbook(x, y), rel=1e-12)
    assert spearman(x, y) == pytest.approx(textbook(ranks(x), ranks(y)), rel=1e-12)
    assert pearson(x, y) > 0.5


# -- voronoi ----------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [1e-3, 1.0, 1e6])
def test_square_lattice_has_four_voronoi_neighbours_at_any_length_scale(s):
    """Kills ``faces > tol -> >=``, ``d - 1 -> d + 1`` and ``1.0 / d -> 1.0 * d`` in the face
    filter of voronoi._finish: the Voronoi cells of a square lattice of spacing s are squares
    of area s^2 with 4 edge neighbours; the 4 diagonal neighbours touch at a point only (a
    zero-length face of the Delaunay dual) and are not neighbours, in any unit of length."""
    from glasscam_mpi.analysis import voronoi_neighbors, voronoi_volumes
    g = np.arange(6) * s
    x = np.array([(a, b) for a in g for b in g])
    box = np.array([6 * s, 6 * s])
    i, j = voronoi_neighbors(box, x)
    assert np.array_equal(np.bincount(i, minlength=36), np.full(36, 4))
    d = x[j] - x[i]
    d -= box * np.round(d / box)
    np.testing.assert_allclose(np.hypot(d[:, 0], d[:, 1]), s, rtol=1e-9)
    np.testing.assert_allclose(voronoi_volumes(box, x), s * s, rtol=1e-9)


# -- delaunay ---------------------------------------------------------------------------------
@pytest.mark.parametrize("box, n", [((8.0, 8.0), 76), ((20.0, 2.0), 48)])
def test_delaunay_voronoi_equals_freud_with_a_corner_particle_and_in_a_thin_box(box, n):
    """Kills ``a < self.n -> a <= self.n`` in PeriodicDelaunay.corners (particle 0 sits in
    the box's corner, so its first periodic image, padded index N, is a Delaunay vertex next
    to the originals) and ``reach[0] <-> reach[1]`` in _pad (a 20 x 2 box needs one image
    layer along x but two along y). Reference: freud's voro++ (an independent algorithm);
    volumes also sum to the box area."""
    from glasscam_mpi.analysis import voronoi_neighbors, voronoi_volumes
    box = np.array(box)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (n, 2)) * box
    x[0] = box - 0.05
    v_del = voronoi_volumes(box, x, backend="delaunay")
    v_freud = voronoi_volumes(box, x, backend="freud")
    assert v_del.shape == (n,)
    np.testing.assert_allclose(v_del, v_freud, rtol=1e-5, atol=1e-6)
    assert v_del.sum() == pytest.approx(box.prod(), rel=1e-10)
    for a, b in zip(voronoi_neighbors(box, x, backend="delaunay"),
                    voronoi_neighbors(box, x, backend="freud")):
        np.testing.assert_array_equal(a, b)


def test_normalize01_of_a_field_with_a_range_below_one():
    """Kills ``top > 0 -> top > 1`` in normalize01: a field whose range is below 1 (e.g. a
    propensity in sigma units, a Voronoi area spread) must still be stretched onto [0, 1];
    reference: (X - min) / (max - min), column by column."""
    from glasscam_mpi.analysis import normalize01
    rng = np.random.default_rng(8)
    X = np.column_stack([0.3 * rng.random(50) + 2.0, 0.01 * rng.random(50), 5 * rng.random(50)])
    ref = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    np.testing.assert_allclose(normalize01(X), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(normalize01(X[:, 0]), ref[:, 0], rtol=1e-12, atol=1e-15)


def test_delaunay_with_a_thin_skin_still_tiles_the_torus():
    """Kills the mutants of the exactness check of periodic_delaunay (``cen = a + u -> a - u``,
    ``& -> |``, ``cen - rad -> cen + rad``, ...): started from a skin far too thin, the skin
    must grow until the triangulation is exact. Invariants of a triangulation of N points on
    a torus: 2N triangles (Euler), so 6N corners at original particles, and the corner angles
    around every particle add up to 2 pi."""
    from glasscam_mpi.analysis.delaunay import periodic_delaunay
    rng = np.random.default_rng(9)
    n = 120
    box = np.array([11.0, 9.0])
    x = rng.uniform(0, 1, (n, 2)) * box
    for skin in (0.05, None):
        dt = periodic_delaunay(box, x, skin=skin)
        apex, left, right = dt.corners()
        assert len(apex) == 6 * n
        u, v = dt.points[left] - dt.points[apex], dt.points[right] - dt.points[apex]
        ang = np.arctan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(1))
        assert np.all(ang > 0)                      # counter-clockwise corners
        np.testing.assert_allclose(np.bincount(apex, weights=ang, minlength=n), 2 * np.pi,
                                   rtol=1e-12)


# -- tongtanaka -------------------------------------------------------------------------------
def _replicate(box, x, types, k):
    d = len(box)
    shifts = np.array(np.meshgrid(*[np.arange(k)] * d, indexing="ij")).reshape(d, -1).T
    return (box * k, np.concatenate([x + s * box for s in shifts]), np.tile(types, len(shifts)))


@pytest.mark.parametrize("dim, method", [(2, "neighbors"), (2, "delaunay"), (3, "neighbors")])
def test_tong_tanaka_of_a_small_box_equals_that_of_its_periodic_replica(dim, method):
    """Kills the image-encoding mutants of tongtanaka._neighbor_triangles (``/ box -> * box``,
    ``base ** arange -> base * arange``, the key's ``+`` -> ``-``, ...): in a box of about
    three spacings Voronoi bonds are longer than L / 2, so which periodic image of j is the
    neighbour matters. A periodic system and its 3^d (2^3 in 3D) replica are the same
    system: Theta of every particle must agree."""
    from glasscam_mpi.analysis import tong_tanaka
    rng = np.random.default_rng(4)
    if dim == 2:
        box, x = np.array([3.0, 3.0]), rng.uniform(0, 3.0, (9, 2))
        k = 3
    else:
        a = np.sqrt(2.0)
        cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * a
        x = np.concatenate([cell + np.array(s) * a for s in np.ndindex(2, 2, 2)])
        x = x + rng.normal(0, 0.05, x.shape)
        box, k = np.array([2 * a] * 3), 2
    types = rng.integers(0, 2, len(x))
    theta = tong_tanaka(box, x, types, [0.5, 0.44], method)
    big = tong_tanaka(*_replicate(box, x, types, k), [0.5, 0.44], method)
    assert np.all(np.isfinite(theta))
    np.testing.assert_allclose(big.reshape(-1, len(x)), np.broadcast_to(theta, (k**dim, len(x))),
                               atol=1e-9)


# -- stats ------------------------------------------------------------------------------------
def test_pearson_matrix_never_leaves_minus_one_to_one():
    """Kills the clip bounds ``1.0 -> 2.0`` of pearson_matrix: a correlation coefficient
    lies in [-1, 1] (Cauchy-Schwarz), but the product of unit-norm columns rounds to
    1 + 2e-15 for badly scaled fields; the documented range must hold exactly."""
    from glasscam_mpi.analysis.stats import pearson_matrix
    rng = np.random.default_rng(0)
    A = rng.normal(size=(1000, 200)) * rng.uniform(0.1, 1e3, 200) + rng.uniform(-1e3, 1e3, 200)
    C = pearson_matrix(A, A)
    assert C.max() <= 1.0 and C.min() >= -1.0
    np.testing.assert_allclose(np.diag(C), 1.0, atol=1e-14)
    D = pearson_matrix(A, -A)
    assert D.min() >= -1.0 and D.max() <= 1.0
    np.testing.assert_allclose(np.diag(D), -1.0, atol=1e-14)


# -- tstar ------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [None, 1.0])
def test_t_star_of_an_exact_line_and_parabola_whose_liquid_slope_falls_at_the_top(window):
    """Kills ``2.0 -> 3.0`` in the convexity test c1 + 2 c2 h_top > 0 of tstar._convex: the
    slope of the liquid branch c1 h + c2 h^2 at the top of the fit is c1 + 2 c2 h_top. Data
    exactly on a glass line (slope 1) below T* = 1 and on line + parabola above it, with
    c1 = 1, c2 = -0.4, top at h = 1: the liquid is still steeper than the glass at the top
    (1 - 0.8 > 0), so the kink at T* = 1 is a glass kink and the fit is exact."""
    from glasscam_mpi.analysis.tstar import estimate_t_star
    T = np.linspace(0.2, 2.0, 181)
    h = np.maximum(T - 1.0, 0.0)
    U = -3.0 + T + h - 0.4 * h * h
    res = estimate_t_star(T, U, window=window)
    assert res.T_star == pytest.approx(1.0, abs=1e-6)
    assert res.glass_fit == pytest.approx((1.0, -3.0), abs=1e-6)
    assert res.liquid_curvature == pytest.approx(-0.4, abs=1e-6)


def test_t_star_two_line_fit_with_a_small_slope_change():
    """Kills ``c1 > 0 -> c1 > 1`` in the two-line convexity test (curvature=False): a kink
    is any slope increase on heating, here from 1 to 1.5 at T* = 0.8 (exact data)."""
    from glasscam_mpi.analysis.tstar import estimate_t_star
    T = np.linspace(0.1, 1.6, 76)
    U = -2.0 + T + 0.5 * np.maximum(T - 0.8, 0.0)
    res = estimate_t_star(T, U, window=None, curvature=False)
    assert res.T_star == pytest.approx(0.8, abs=1e-6)
    assert res.liquid_fit == pytest.approx((1.5, -2.4), abs=1e-6)


def test_t_star_ignores_points_above_t_max_and_non_finite_points():
    """Kills ``& (T <= T_max) -> |`` and ``isfinite(T) & isfinite(U) -> |`` in
    estimate_t_star's point selection (and ``T[-1] -> T[-2]`` of the reported T_fit_max):
    points above T_max (here a second, spurious kink) and points with a non-finite U must
    not enter the fit; the estimate equals the one on the clean data below T_max."""
    from glasscam_mpi.analysis.tstar import estimate_t_star
    T = np.linspace(0.2, 2.0, 91)
    h = np.maximum(T - 1.0, 0.0)
    U = -3.0 + T + 0.8 * h - 0.1 * h * h
    clean = estimate_t_star(T, U, window=None)
    T_hot = np.linspace(2.05, 4.0, 40)
    U_hot = -3.0 + T_hot + 5.0 * (T_hot - 2.0) ** 2 + 4.0   # nothing like the curve below
    T_all = np.concatenate([T, T_hot, [0.5, 1.5]])
    U_all = np.concatenate([U, U_hot, [np.nan, np.inf]])
    got = estimate_t_star(T_all, U_all, T_max=2.0, window=None)
    assert got.T_star == pytest.approx(clean.T_star, abs=1e-9)
    assert got.T_star == pytest.approx(1.0, abs=1e-6)
    assert got.n_points == clean.n_points == len(T)
    assert got.T_fit_max == clean.T_fit_max == 2.0     # the top of the points fitted


# -- order: energy jumps ----------------------------------------------------------------------
def _jumps_by_the_docstring(T, U, n_sigma=8.0, ratio=1.0, max_width=3, h=5):
    """analysis.order.energy_jumps' documented criterion, one candidate run at a time."""
    n = len(T)
    z2 = [(U[k + 1] - 2 * U[k] + U[k - 1]) / T[k] for k in range(1, n - 1)]
    s = 1.4826 * np.median(np.abs(z2 - np.median(z2))) / np.sqrt(6)
    taken, found = set(), []
    for w in range(1, max_width + 1):
        cands = []
        for k in range(0, n - w):
            left = (U[k] - U[k - h]) / h if k >= h else None
            right = (U[k + w + h] - U[k + w]) / h if k + w + h <= n - 1 else None
            sides = [v for v in (left, right) if v is not None]
            if not sides:
                continue
            E = U[k + w] - U[k] - w * min(sides)
            sigma_E = s * np.sqrt((T[k] ** 2 + T[k + w] ** 2) * (1 + (w / h) ** 2))
            if E < 0 and -E > n_sigma * sigma_E and -E > ratio * w * max(abs(v) for v in sides):
                cands.append((E, k))
        for E, k in sorted(cands):                     # largest drop first
            if not taken & set(range(k, k + w)):
                taken |= set(range(k, k + w))
                found.append([k, k + w, -E])
    merged = []
    for a, b, drop in sorted(found):
        if merged and merged[-1][1] == a:
            merged[-1][1], merged[-1][2] = b, merged[-1][2] + drop
        else:
            merged.append([a, b, drop])
    return merged, s


def test_energy_jumps_follow_the_documented_criterion_exactly():
    """Kills the mutants of energy_jumps' internals that tune no default but change the
    criterion (the noise scale's median, the side windows ``k >= h``, ``k + w + h <= n``,
    the sigma_E formula, the side-by-side masks, the width range): an explicit loop over
    candidate runs, written from the docstring, must give the same jumps, drops, T and
    noise scale on noisy ramps with drops of 1 to 3 samples planted near the threshold."""
    from glasscam_mpi.analysis.order import energy_jumps
    rng = np.random.default_rng(21)
    T = np.linspace(4.0, 0.05, 101)
    n_flagged = 0
    for trial in range(150):
        U = np.where(T < 0.37, -3.2 + (T - 0.37), -3.2 + 2.5 * (T - 0.37))
        U = U + 0.01 * T * rng.normal(size=T.size)
        for _ in range(rng.integers(1, 4)):
            w = int(rng.integers(1, 4))
            ends = [0, 4, 5, 6, 94 - w, 95 - w, 99 - w, 100 - w]   # windows just fit / not
            k = int(rng.choice(ends)) if trial % 2 else int(rng.integers(0, 101 - w))
            size = 0.113 * T[k] * rng.uniform(0.7, 1.6) + 0.1 * w * rng.uniform(0, 1.5)
            U -= size * np.clip((np.arange(T.size) - k) / w, 0, 1)   # near the threshold
        got = energy_jumps(T, U)
        ref, s = _jumps_by_the_docstring(T, U)
        assert got.noise == pytest.approx(s, rel=1e-12)
        assert got.start.tolist() == [j[0] for j in ref]
        assert got.stop.tolist() == [j[1] for j in ref]
        np.testing.assert_allclose(got.drop, [j[2] for j in ref], rtol=1e-12)
        np.testing.assert_allclose(got.T, T[[j[0] for j in ref]])
        n_flagged += got.flagged
    assert 20 < n_flagged < 150     # the planted drops straddle the threshold


# -- neighbours (PairList) --------------------------------------------------------------------
def _random_liquid(n, dim, seed):
    rng = np.random.default_rng(seed)
    L = (n / 1.2) ** (1 / dim)
    return np.full(dim, L), rng.uniform(0, L, (n, dim))


def test_pairlist_correlation_of_many_fields_equals_spatial_correlation():
    """Kills the mutants of PairList.correlation's many-field path (k > 4: per-bin CSR
    products over ``range(b.min(), min(b.max(), bins - 1) + 1)``, ``b == beta``, the
    ``sums[beta] +=``, ``Y.fill(0)``): 5 fields must give analysis.correlation's curves (an
    independent pair loop); 5000 particles put more than one row block (2^16 pairs) into
    the outer distance bands."""
    from glasscam_mpi.analysis import spatial_correlation
    from glasscam_mpi.analysis.neighbours import PairList
    box, x = _random_liquid(5000, 2, 31)
    rng = np.random.default_rng(32)
    F = rng.normal(size=(5000, 5)) + np.sin(x[:, :1])        # correlated in space
    r, C = PairList(box, x, r_max=8.0).correlation(F, 8.0, bins=40)
    r_ref, C_ref = spatial_correlation(box, x, F, 8.0, bins=40)
    np.testing.assert_allclose(r, r_ref, rtol=1e-14)
    np.testing.assert_allclose(C, C_ref, rtol=1e-9, atol=1e-12)


def test_pairlist_rdf_bin_centres_and_absent_species():
    """Kills the mutants of ``0.5 * (edges[1:] + edges[:-1])`` (the r of g(r)) and
    ``expect[expect == 0] -> [expect == 1]`` in PairList.rdf: bins are [b w, (b + 1) w)
    with centres (b + 1/2) w; g_aa needs two particles of a (one pair expected: finite),
    a species with one particle or none has no g_aa (NaN)."""
    from glasscam_mpi.analysis.neighbours import PairList
    box, x = _random_liquid(400, 2, 33)
    types = np.zeros(400, np.int64)
    types[:150] = 1
    types[150:152] = 2                                       # two particles of species 2
    types[152] = 3                                           # one particle of species 3
    pl = PairList(box, x, r_max=5.0)
    res = pl.rdf(types, bins=25, r_max=5.0, n_species=5)     # species 4: none
    np.testing.assert_allclose(res.r, (np.arange(25) + 0.5) * 0.2, rtol=1e-14)
    assert np.all(np.isnan(res.partial[4])) and np.all(np.isnan(res.partial[:, 4]))
    assert np.all(np.isnan(res.partial[3, 3]))
    assert np.all(np.isfinite(res.partial[2, 2])) and np.all(np.isfinite(res.partial[2, 3]))
    assert np.all(np.isfinite(res.partial[0, 1])) and np.all(np.isfinite(res.partial[1, 1]))


def test_pairlist_properties_empty_pairs_and_default_rdf_range():
    """Kills ``return None`` of PairList.box / r_max, the mutants of the empty result of
    pairs(r) (r below the closest distance), and ``min(L) / 2 -> / 3`` of rdf's default
    range (documented: min(r_max, min(L) / 2))."""
    from glasscam_mpi.analysis.neighbours import PairList
    box, x = _random_liquid(100, 3, 34)
    pl = PairList(box, x, r_max=2.5)
    np.testing.assert_array_equal(pl.box, box)
    assert pl.r_max == 2.5 and pl.n_particles == 100
    i, j, r = pl.pairs(1e-9)
    assert (i.shape, j.shape, r.shape) == ((0,), (0,), (0,))
    assert i.dtype == j.dtype == np.int64 and r.dtype == np.float64
    wide = PairList(box, x, r_max=float(box.min()))
    res = wide.rdf(bins=10)
    assert res.r[-1] + 0.5 * (res.r[1] - res.r[0]) == pytest.approx(box.min() / 2, rel=1e-12)
    d = x[:, None] - x[None]
    d -= box * np.round(d / box)
    assert pl.n_pairs == int(np.sum(np.triu(np.sqrt((d * d).sum(-1)) <= 2.5, 1)))
