"""Gridding M and its inverse M^-1 (glasscam_mpi.learn.grid): conservation, translation
covariance, interpolation accuracy against analytic fields and scipy, periodic wrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from glasscam_mpi.learn.grid import (GridSpec, from_grid, from_grid_batch, to_grid,
                                     to_grid_batch)
from glasscam_mpi.systems import get_system


def _config(rng, box, n, n_species=2):
    box = np.asarray(box, dtype=float)
    x = rng.random((n, len(box))) * box
    # particles right at / across the edges: exactly 0, just below L, negative, beyond L
    x[0] = 0.0
    x[1] = box - 1e-12
    x[2] = -0.3 * np.ones(len(box))
    x[3] = box + 0.2
    types = rng.integers(0, n_species, n)
    types[:n_species] = np.arange(n_species)
    return x, types


@pytest.mark.parametrize("box,n_grid", [((9.0, 6.5), 32), ((5.0, 6.0, 4.5), 16)])
def test_channels_integrate_to_species_counts(box, n_grid):
    rng = np.random.default_rng(1)
    dim = len(box)
    spec = GridSpec(dim=dim, n_grid=n_grid, n_species=3, widths=(0.5, 0.44, 0.6))
    x, types = _config(rng, box, 57, n_species=3)
    field = to_grid(spec, box, x, types, dtype=np.float64)
    assert field.shape == (3,) + (n_grid,) * dim
    cell = np.prod(np.asarray(box) / n_grid)
    integral = field.reshape(3, -1).sum(axis=1) * cell
    np.testing.assert_allclose(integral, np.bincount(types, minlength=3), rtol=1e-12)
    assert field.min() >= 0.0


def test_single_particle_profile_is_the_normalised_gaussian():
    # particle on grid point (5, 7): along axis 0 the channel is a sampled Gaussian of
    # standard deviation w at periodic distances, zero beyond cutoff * w.
    box, n, w = np.array([8.0, 8.0]), 32, 0.45
    h = box[0] / n
    spec = GridSpec(dim=2, n_grid=n, n_species=1, widths=(w,), cutoff=3.0)
    field = to_grid(spec, box, [[5 * h, 7 * h]], [0], dtype=np.float64)[0]
    k = np.arange(n)
    d = ((k - 5 + n // 2) % n - n // 2) * h  # minimum image: points 31, 30.. are left of 0
    g = np.where(np.abs(d) <= 3 * w, np.exp(-0.5 * (d / w) ** 2), 0.0)
    g /= g.sum()
    np.testing.assert_allclose(field[:, 7] / field[5, 7], g / g[5], rtol=1e-12, atol=1e-15)
    assert field[5, 7] == pytest.approx(g[5] ** 2 / h**2, rel=1e-12)
    assert np.count_nonzero(field[:, 7]) == int(np.sum(np.abs(d) <= 3 * w))


@pytest.mark.parametrize("box", [(9.0, 6.5), (5.0, 6.0, 4.5)])
def test_matches_a_particle_by_particle_reference(box):
    # independent reference: loop over particles, minimum-image displacement of every grid
    # point along each axis, Gaussian truncated at cutoff * w and normalised per axis.
    rng = np.random.default_rng(9)
    box = np.asarray(box)
    dim, n = len(box), 12
    spec = GridSpec(dim=dim, n_grid=n, n_species=2, widths=(0.5, 0.4), cutoff=2.5)
    x, types = _config(rng, box, 7)
    ref = np.zeros(spec.shape)
    for xi, ti in zip(x, types):
        w = spec.widths[ti]
        weight = np.ones((n,) * dim)
        for a in range(dim):
            d = np.arange(n) * box[a] / n - xi[a]
            d -= box[a] * np.round(d / box[a])
            g = np.where(np.abs(d) <= 2.5 * w, np.exp(-d**2 / (2 * w**2)), 0.0)
            shape = [1] * dim
            shape[a] = n
            weight = weight * (g / g.sum()).reshape(shape)
        ref[ti] += weight / np.prod(box / n)
    got = to_grid(spec, box, x, types, dtype=np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * ref.max())


@pytest.mark.parametrize("box,n_grid,shift", [((9.0, 6.5), 32, (3, -5)),
                                              ((5.0, 6.0, 4.5), 16, (1, 7, -2))])
def test_translation_by_whole_cells_rolls_the_grid(box, n_grid, shift):
    rng = np.random.default_rng(2)
    box = np.asarray(box)
    dim = len(box)
    spec = GridSpec(dim=dim, n_grid=n_grid, n_species=2, widths=(0.5, 0.44))
    x, types = _config(rng, box, 40)
    h = box / n_grid
    base = to_grid(spec, box, x, types, dtype=np.float64)
    moved = to_grid(spec, box, x + np.asarray(shift) * h, types, dtype=np.float64)
    expected = np.roll(base, shift, axis=tuple(range(1, dim + 1)))
    np.testing.assert_allclose(moved, expected, rtol=1e-6, atol=1e-6 * base.max())
    assert not np.allclose(moved, base, atol=1e-6 * base.max())  # the roll is not trivial


def test_batch_gridding_matches_one_by_one_with_per_sample_boxes():
    rng = np.random.default_rng(3)
    boxes = np.array([[6.0, 7.0], [6.5, 6.0], [7.0, 5.5]])
    xs = np.stack([rng.random((30, 2)) * b for b in boxes])
    types = rng.integers(0, 2, (3, 30))
    spec = GridSpec(dim=2, n_grid=24, n_species=2, widths=(0.5, 0.44))
    batch = to_grid_batch(spec, boxes, xs, types, dtype=np.float64)
    for i in range(3):
        np.testing.assert_allclose(batch[i], to_grid(spec, boxes[i], xs[i], types[i],
                                                     dtype=np.float64), rtol=1e-12, atol=0)
    # one (N,) types array and one box shared by every sample
    shared = to_grid_batch(spec, boxes[0], xs, types[0])
    assert shared.dtype == np.float32
    np.testing.assert_allclose(shared[2], to_grid(spec, boxes[0], xs[2], types[0]), rtol=1e-6)


def test_for_system_defaults():
    kam = GridSpec.for_system(get_system("KAM"))
    assert (kam.dim, kam.n_grid, kam.n_species) == (2, 128, 2)
    assert kam.widths == pytest.approx((0.5, 0.44))
    ka3d = GridSpec.for_system(get_system("KA3D"), width_factor=0.4)
    assert (ka3d.dim, ka3d.n_grid) == (3, 48)
    assert ka3d.widths == pytest.approx((0.4, 0.352))
    assert ka3d.shape == (2, 48, 48, 48)


# -- M^-1 -----------------------------------------------------------------------------------
def _smooth(x, box):
    return np.cos(2 * np.pi * x[..., 0] / box[0]) * np.sin(2 * np.pi * x[..., 1] / box[1])


def test_from_grid_smooth_field_within_bilinear_bound_and_second_order():
    rng = np.random.default_rng(4)
    box = np.array([7.0, 4.0])
    x = rng.random((500, 2)) * box
    errors = []
    for n in (16, 32, 64):
        h = box / n
        k = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1) * h
        vals = from_grid(box, _smooth(k, box), x)
        err = np.abs(vals - _smooth(x, box)).max()
        # bilinear error <= h_x^2/8 max|f_xx| + h_y^2/8 max|f_yy|
        bound = (h[0] ** 2 / 8) * (2 * np.pi / box[0]) ** 2 \
            + (h[1] ** 2 / 8) * (2 * np.pi / box[1]) ** 2
        assert err <= bound
        errors.append(err)
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.3) & (ratios < 4.7)), ratios


@pytest.mark.parametrize("box", [(9.0, 6.5), (5.0, 6.0, 4.5)])
def test_from_grid_matches_scipy_on_the_periodically_extended_grid(box):
    rng = np.random.default_rng(5)
    box = np.asarray(box)
    dim = len(box)
    grid = (6, 5, 7)[:dim]
    field = rng.normal(size=(2,) + grid)
    x = rng.random((200, dim)) * box
    vals = from_grid(box, field, x)
    assert vals.shape == (2, 200)
    for c in range(2):
        ext = np.pad(field[c], [(0, 1)] * dim, mode="wrap")  # point n = point 0
        axes = [np.arange(g + 1) * box[a] / g for a, g in enumerate(grid)]
        ref = RegularGridInterpolator(axes, ext, method="linear")(x)
        np.testing.assert_allclose(vals[c], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_from_grid_of_a_constant_is_the_constant(dim):
    rng = np.random.default_rng(6)
    box = np.array([3.0, 5.0, 4.0])[:dim]
    x = rng.random((100, dim)) * box * 3 - box  # also far outside the box
    vals = from_grid(box, np.full((12,) * dim, 2.75), x)
    np.testing.assert_allclose(vals, 2.75, rtol=1e-14)


def test_from_grid_on_grid_points_and_across_the_periodic_edge():
    box = np.array([8.0, 5.0])
    n = (16, 10)
    h = box / n
    field = np.arange(np.prod(n), dtype=float).reshape(n) ** 1.5
    # exactly on grid points: the stored value (point k at k * h)
    pts = np.array([[0, 0], [3, 4], [15, 9]]) * h
    np.testing.assert_allclose(from_grid(box, field, pts),
                               [field[0, 0], field[3, 4], field[15, 9]], rtol=1e-13)
    # x = L - h/4 on axis 0: between the last point (weight 1/4) and point 0 (3/4)
    eps = h[0] / 4
    val = from_grid(box, field, [[box[0] - eps, 2 * h[1]]])[0]
    assert val == pytest.approx(0.25 * field[15, 2] + 0.75 * field[0, 2], rel=1e-13)
    # ... and its periodic image at -eps gives the same
    assert from_grid(box, field, [[-eps, 2 * h[1]]])[0] == pytest.approx(val, rel=1e-13)


def test_from_grid_batch_matches_one_by_one():
    rng = np.random.default_rng(7)
    boxes = np.array([[6.0, 7.0], [6.5, 6.0]])
    fields = rng.normal(size=(2, 3, 8, 9))
    xs = np.stack([rng.random((25, 2)) * b for b in boxes])
    vals = from_grid_batch(boxes, fields, xs)
    assert vals.shape == (2, 3, 25)
    for i in range(2):
        np.testing.assert_allclose(vals[i], from_grid(boxes[i], fields[i], xs[i]), rtol=1e-13)
    vals1 = from_grid_batch(boxes[0], fields[:, 0], xs)
    assert vals1.shape == (2, 25)
    np.testing.assert_allclose(vals1[1], from_grid(boxes[0], fields[1, 0], xs[1]), rtol=1e-13)


# -- bad input ------------------------------------------------------------------------------
_SPEC = GridSpec(dim=2, n_grid=16, n_species=2, widths=(0.5, 0.44))
_BOX = np.array([6.0, 6.0])
_X = np.random.default_rng(8).random((10, 2)) * 6.0
_T = np.array([0, 1] * 5)


@pytest.mark.parametrize("call,match", [
    (lambda: to_grid(_SPEC, [6.0, 6.0, 6.0], _X, _T), "box has 3 edges"),
    (lambda: to_grid(_SPEC, [6.0, -1.0], _X, _T), "box edges must be finite and > 0"),
    (lambda: to_grid(_SPEC, _BOX, _X[:, :1], _T), r"positions must have shape \(N, 2\)"),
    (lambda: to_grid(_SPEC, _BOX, np.where(_X > 5, np.nan, _X), _T),
     "positions contains .* non-finite"),
    (lambda: to_grid(_SPEC, _BOX, _X, _T + 1), r"types must lie in \[0, 2\)"),
    (lambda: to_grid(_SPEC, _BOX, _X, _T[:-1]), "types must have shape"),
    (lambda: to_grid(_SPEC, _BOX, _X, _T + 0.5), "types must be integer"),
    (lambda: to_grid_batch(_SPEC, _BOX, _X, _T), r"positions must have shape \(B, N, 2\)"),
    (lambda: to_grid(GridSpec(2, 4, 2, (0.1, 0.1)), _BOX, _X, _T), "grid too coarse"),
    (lambda: from_grid(_BOX, np.zeros(16), _X), "field must have shape"),
    (lambda: from_grid(_BOX, np.full((4, 4), np.inf), _X), "field contains"),
    (lambda: from_grid(_BOX, np.zeros((4, 4)), _X[:, :1]), "positions must have shape"),
    (lambda: from_grid_batch(_BOX, np.zeros((3, 4, 4)), np.stack([_X, _X])),
     "fields has 3 samples"),
    (lambda: GridSpec(4, 16, 2, (0.5, 0.5)), "dim must be 2 or 3"),
    (lambda: GridSpec(2, 16, 2, (0.5,)), "one width per species"),
    (lambda: GridSpec(2, 1, 1, (0.5,)), "n_grid must be an integer >= 2"),
    (lambda: GridSpec(2, 16, 1, (0.5,), cutoff=0), "cutoff must be finite and > 0"),
])
def test_bad_input_raises_a_clear_valueerror(call, match):
    with pytest.raises(ValueError, match=match):
        call()
