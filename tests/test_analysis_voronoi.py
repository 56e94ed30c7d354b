"""Periodic Voronoi volumes and neighbours: invariants, lattices, independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from glasscam_mpi.analysis import voronoi_neighbors, voronoi_tessellation, voronoi_volumes


def triangular_lattice(nx: int, ny: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Perfect triangular lattice (ny even) filling its periodic box exactly."""
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = np.stack([(ix + 0.5 * (iy % 2)) * a, iy * a * np.sqrt(3) / 2], -1).reshape(-1, 2)
    return x + 0.1 * a, np.array([nx * a, ny * a * np.sqrt(3) / 2])


def random_system(n, box, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, len(box))) * np.asarray(box)


@pytest.mark.parametrize("backend", ["delaunay", "freud"])
def test_volumes_tile_the_2d_box(backend):
    box = np.array([17.0, 23.0])
    vol = voronoi_volumes(box, random_system(400, box, 1), backend=backend)
    assert vol.shape == (400,) and np.all(vol > 0)
    assert vol.sum() == pytest.approx(box.prod(), rel=1e-10)


def test_volumes_tile_the_3d_box():
    box = np.array([7.0, 8.0, 9.0])
    vol = voronoi_volumes(box, random_system(500, box, 2))
    assert np.all(vol > 0)
    assert vol.sum() == pytest.approx(box.prod(), rel=1e-10)


@pytest.mark.parametrize("backend", ["delaunay", "freud"])
def test_triangular_lattice_cells(backend):
    a = 1.3
    x, box = triangular_lattice(10, 12, a)
    tess = voronoi_tessellation(box, x, backend=backend)
    np.testing.assert_allclose(tess.volumes, np.sqrt(3) / 2 * a**2, rtol=1e-6)
    i, j = tess.neighbors()
    assert np.all(np.bincount(i, minlength=len(x)) == 6)
    d = x[j] - x[i]
    d -= box * np.round(d / box)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), a, rtol=1e-6)


def test_delaunay_backend_matches_freud():
    box = np.array([20.0, 15.0])
    x = random_system(300, box, 3)
    ours, ref = voronoi_tessellation(box, x, "delaunay"), voronoi_tessellation(box, x, "freud")
    # freud works on float32 points: expect absolute errors ~ 1e-6 L * cell perimeter.
    np.testing.assert_allclose(ours.volumes, ref.volumes, rtol=0, atol=1e-4)
    for a, b in zip(ours.neighbors(), ref.neighbors()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["delaunay", "freud"])
def test_square_lattice_has_four_neighbours_despite_degenerate_vertices(backend):
    # Four cells meet at each vertex: the diagonal "faces" have zero length and must not
    # count (qhull splits each square into two triangles either way).
    ix, iy = np.meshgrid(np.arange(7), np.arange(6), indexing="ij")
    x = np.stack([ix, iy], -1).reshape(-1, 2) * 1.5 + 0.2
    tess = voronoi_tessellation([10.5, 9.0], x, backend=backend)
    np.testing.assert_allclose(tess.volumes, 2.25, rtol=1e-6)
    assert np.all(np.bincount(tess.neighbors()[0], minlength=len(x)) == 4)


def test_large_voids_grow_the_image_skin_until_exact():
    # Particles in a band with a wide empty gap: Delaunay triangles across the gap have
    # circumcircles much larger than the default skin of three mean spacings.
    rng = np.random.default_rng(14)
    box = np.array([20.0, 20.0])
    x = np.column_stack([rng.uniform(0, 20, 100), rng.uniform(0, 2, 100)])
    ours, ref = voronoi_tessellation(box, x, "delaunay"), voronoi_tessellation(box, x, "freud")
    assert ours.volumes.sum() == pytest.approx(box.prod(), rel=1e-10)
    np.testing.assert_allclose(ours.volumes, ref.volumes, rtol=0, atol=1e-3)
    for a, b in zip(ours.neighbors(), ref.neighbors()):
        np.testing.assert_array_equal(a, b)


def test_volumes_match_monte_carlo_nearest_particle_areas():
    """Cell i = region closer to i than to any other particle (periodic); sample it."""
    box = np.array([6.0, 5.0])
    x = random_system(30, box, 4)
    samples = random_system(200_000, box, 5)
    _, owner = cKDTree(x, boxsize=box).query(samples)
    frac = np.bincount(owner, minlength=len(x)) / len(samples)
    vol = voronoi_volumes(box, x)
    sigma = np.sqrt(frac * (1 - frac) / len(samples)) * box.prod()
    assert np.all(np.abs(vol - frac * box.prod()) < 5 * sigma + 1e-9)


@pytest.mark.parametrize("backend", ["delaunay", "freud"])
def test_neighbours_are_unique_symmetric_and_never_self_in_tiny_boxes(backend):
    # Three particles in a 3x3 box: cells touch their own images and touch each other
    # through several images, which freud reports as self-bonds and duplicate bonds.
    x = np.array([[0.0, 0.0], [1.0, 0.2], [0.3, 1.1]])
    i, j = voronoi_neighbors([3.0, 3.0], x, backend=backend)
    assert np.all(i != j)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert len(pairs) == len(i)
    assert pairs == {(b, a) for a, b in pairs}
    assert voronoi_volumes([3.0, 3.0], x, backend=backend).sum() == pytest.approx(9.0)


def test_bond_vectors_are_minimum_image_vectors():
    box = np.array([12.0, 10.0])
    x = random_system(150, box, 6)
    tess = voronoi_tessellation(box, x)
    d = x[tess.bond_j] - x[tess.bond_i]
    d -= box * np.round(d / box)
    np.testing.assert_allclose(tess.bond_vectors, d, atol=1e-12)


@pytest.mark.parametrize("box", [np.array([11.0, 13.0]), np.array([6.0, 6.5, 7.0])])
def test_invariant_under_uniform_periodic_shift(box):
    x = random_system(200, box, 7)
    shift = np.random.default_rng(8).uniform(-30, 30, len(box))
    a, b = voronoi_tessellation(box, x), voronoi_tessellation(box, x + shift)
    np.testing.assert_allclose(a.volumes, b.volumes, rtol=1e-5)
    for u, v in zip(a.neighbors(), b.neighbors()):
        np.testing.assert_array_equal(u, v)


def test_unwrapped_images_give_the_same_tessellation():
    box = np.array([9.0, 9.0])
    x = random_system(80, box, 9)
    images = np.random.default_rng(10).integers(-3, 4, x.shape)
    np.testing.assert_allclose(voronoi_volumes(box, x + images * box),
                               voronoi_volumes(box, x), rtol=1e-9)


@pytest.mark.parametrize("box, pos, backend, match", [
    ([5.0], np.zeros((3, 1)), "auto", "box must be"),
    ([5.0, -1.0], np.zeros((3, 2)), "auto", "positive"),
    ([5.0, 5.0], np.zeros((3, 3)), "auto", r"shape \(N, 2\)"),
    ([5.0, 5.0], np.full((3, 2), np.nan), "auto", "non-finite"),
    ([5.0, 5.0], np.random.default_rng(0).random((5, 2)), "qhull", "backend must be"),
    ([5.0, 5.0, 5.0], np.random.default_rng(0).random((5, 3)), "delaunay", "2D only"),
])
def test_bad_inputs_are_rejected(box, pos, backend, match):
    with pytest.raises(ValueError, match=match):
        voronoi_tessellation(box, pos, backend=backend)


def test_coincident_particles_are_reported():
    x = np.array([[1.0, 1.0], [1.0, 1.0], [3.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="coincident"):
        voronoi_tessellation([5.0, 5.0], x)


def test_3d_freud_voronoi_runs_after_lammps_opened_in_this_process():
    """Issue 12: LAMMPS's bundled voro++ must not capture freud's (see test_load_order)."""
    from glasscam_mpi.analysis.voronoi import freud_conflict
    from glasscam_mpi.md.engine import commands, liblammps_is_global, open_lammps

    with open_lammps() as lmp:
        commands(lmp, ["units lj", "region b block 0 4 0 4 0 4", "create_box 1 b",
                       "mass 1 1.0", "run 0"])
    assert not liblammps_is_global() and freud_conflict() is None
    box = np.array([7.5, 8.0, 9.0])
    vol = voronoi_volumes(box, random_system(300, box, 11), backend="freud")
    assert np.all(vol > 0) and vol.sum() == pytest.approx(box.prod(), rel=1e-6)


def test_3d_neighbours_are_symmetric():
    """Voronoi neighbourhood is a symmetric relation; voro++ (float32) reports a few tiny
    faces from one side only, and neighbors() must still list every pair both ways."""
    rng = np.random.default_rng(5)
    box = np.array([8.0, 8.0, 8.0])
    x = rng.random((600, 3)) * box
    i, j = voronoi_neighbors(box, x, backend="freud")
    forward = set(zip(i.tolist(), j.tolist()))
    assert forward == {(b, a) for a, b in forward}
    assert len(forward) == len(i) and not np.any(i == j)
