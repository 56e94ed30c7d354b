"""Tong-Tanaka Theta: perfect lattices, hand-computed cases, an explicit loop reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from glasscam_mpi.analysis import tong_tanaka, voronoi_neighbors
from glasscam_mpi.systems import get_system

R_A, R_B = get_system("KAM").radii()
METHODS_2D = ["delaunay", "neighbors"]


def triangular_lattice(nx: int, ny: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = np.stack([(ix + 0.5 * (iy % 2)) * a, iy * a * np.sqrt(3) / 2], -1).reshape(-1, 2)
    return x + 0.1 * a, np.array([nx * a, ny * a * np.sqrt(3) / 2])


def fcc_lattice(m: int, nn: float) -> tuple[np.ndarray, np.ndarray]:
    a = nn * np.sqrt(2)
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((cells + base).reshape(-1, 3) + 0.25) * a, np.full(3, m * a)


def angle_at_o(side_o_i, side_o_j, side_i_j):
    """Law of cosines, written out independently of the module."""
    return np.arccos((side_o_i**2 + side_o_j**2 - side_i_j**2) / (2 * side_o_i * side_o_j))


@pytest.mark.parametrize("method", METHODS_2D)
def test_zero_on_touching_triangular_lattice_and_positive_when_perturbed(method):
    x, box = triangular_lattice(8, 10, 2 * R_A)
    types = np.zeros(len(x), int)
    theta = tong_tanaka(box, x, types, [R_A], method=method)
    assert np.max(np.abs(theta)) < 1e-10
    jitter = np.random.default_rng(1).normal(0, 0.03, x.shape)
    theta = tong_tanaka(box, x + jitter, types, [R_A], method=method)
    assert np.all(theta > 1e-4)


@pytest.mark.parametrize("method", METHODS_2D)
def test_one_small_particle_in_a_triangular_lattice_by_hand(method):
    x, box = triangular_lattice(8, 8, 2 * R_A)
    types = np.zeros(len(x), int)
    o = 27
    types[o] = 1
    theta = tong_tanaka(box, x, types, [R_A, R_B], method=method)
    # o: six triangles B-A-A, actual angle 60 deg, ideal from sides R_B+R_A, R_B+R_A, 2R_A.
    expect_o = abs(np.pi / 3 - angle_at_o(R_A + R_B, R_A + R_B, 2 * R_A))
    # An A neighbour of o: two of its six triangles contain o; ideal angle from sides
    # R_A+R_B (to o), 2R_A (to the common A neighbour), opposite side R_B+R_A.
    expect_nb = abs(np.pi / 3 - angle_at_o(R_A + R_B, 2 * R_A, R_A + R_B)) * 2 / 6
    i, j = voronoi_neighbors(box, x)
    nbrs = j[i == o]
    assert len(nbrs) == 6 and expect_o > 0.01 and expect_nb > 0.01
    assert theta[o] == pytest.approx(expect_o, abs=1e-12)
    np.testing.assert_allclose(theta[nbrs], expect_nb, atol=1e-12)
    rest = np.setdiff1d(np.arange(len(x)), np.append(nbrs, o))
    assert np.max(np.abs(theta[rest])) < 1e-10


def test_fcc_zero_and_one_small_particle_by_hand_3d():
    x, box = fcc_lattice(4, 2 * R_A)
    types = np.zeros(len(x), int)
    assert np.max(np.abs(tong_tanaka(box, x, types, [R_A, R_B]))) < 1e-10
    o = 21
    types[o] = 1
    theta = tong_tanaka(box, x, types, [R_A, R_B])
    # In fcc each neighbour pair shares 4 common neighbours: o has 12 * 4 / 2 = 24
    # triangles (all B-A-A); an A neighbour of o has 24, of which 4 contain o.
    expect_o = abs(np.pi / 3 - angle_at_o(R_A + R_B, R_A + R_B, 2 * R_A))
    expect_nb = abs(np.pi / 3 - angle_at_o(R_A + R_B, 2 * R_A, R_A + R_B)) * 4 / 24
    i, j = voronoi_neighbors(box, x)
    nbrs = j[i == o]
    assert len(nbrs) == 12
    assert theta[o] == pytest.approx(expect_o, abs=1e-12)
    np.testing.assert_allclose(theta[nbrs], expect_nb, atol=1e-12)


def loop_reference(box, x, types, radii):
    """Theta from the definition, one particle and one pair at a time (slow, obvious)."""
    i, j = voronoi_neighbors(box, x, backend="freud")
    nbrs = [set(j[i == o].tolist()) for o in range(len(x))]
    out = np.zeros(len(x))
    for o in range(len(x)):
        devs = []
        for a, b in itertools.combinations(sorted(nbrs[o]), 2):
            if b not in nbrs[a]:
                continue
            va, vb = [(x[k] - x[o]) - box * np.round((x[k] - x[o]) / box) for k in (a, b)]
            actual = np.arccos(np.dot(va, vb) / np.linalg.norm(va) / np.linalg.norm(vb))
            ro, ra, rb = radii[types[o]], radii[types[a]], radii[types[b]]
            devs.append(abs(actual - angle_at_o(ro + ra, ro + rb, ra + rb)))
        out[o] = np.mean(devs)
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_explicit_loop_reference_on_a_disordered_mixture(dim):
    rng = np.random.default_rng(2)
    if dim == 2:
        x, box = triangular_lattice(8, 8, 1.0)
    else:
        x, box = fcc_lattice(4, 1.0)  # large enough that minimum images are the faces' images
    x = x + rng.normal(0, 0.1, x.shape)
    types = rng.integers(0, 2, len(x))
    ref = loop_reference(box, x, types, [R_A, R_B])
    np.testing.assert_allclose(tong_tanaka(box, x, types, [R_A, R_B]), ref, atol=1e-9)
    if dim == 2:
        np.testing.assert_allclose(tong_tanaka(box, x, types, [R_A, R_B], "neighbors"),
                                   ref, atol=1e-9)


@pytest.mark.parametrize("dim", [2, 3])
def test_invariant_under_uniform_periodic_shift(dim):
    rng = np.random.default_rng(3)
    x, box = triangular_lattice(10, 10, 1.0) if dim == 2 else fcc_lattice(3, 1.0)
    x = x + rng.normal(0, 0.12, x.shape)
    types = rng.integers(0, 2, len(x))
    shift = rng.uniform(-20, 20, dim)
    np.testing.assert_allclose(tong_tanaka(box, x + shift, types, [R_A, R_B]),
                               tong_tanaka(box, x, types, [R_A, R_B]), atol=1e-9)


@pytest.mark.parametrize("types, radii, method, match", [
    (np.array([0, 1, 2, 0]), [0.5, 0.44], "auto", r"types must lie in \[0, 2\)"),
    (np.array([0, 1, 1]), [0.5, 0.44], "auto", r"types must have shape \(4,\)"),
    (np.array([0.5, 1, 1, 0]), [0.5, 0.44], "auto", "integer"),
    (np.array([0, 1, 1, 0]), [0.5, -0.44], "auto", "positive"),
    (np.array([0, 1, 1, 0]), [0.5, 0.44], "exact", "method must be"),
])
def test_bad_inputs_are_rejected(types, radii, method, match):
    x = np.array([[1.0, 1.0], [3.0, 1.5], [2.0, 3.0], [4.0, 4.0]])
    with pytest.raises(ValueError, match=match):
        tong_tanaka([5.0, 5.0], x, types, radii, method=method)


def test_delaunay_method_is_2d_only():
    x = np.random.default_rng(0).random((20, 3)) * 4
    with pytest.raises(ValueError, match="2D only"):
        tong_tanaka([4.0, 4.0, 4.0], x, np.zeros(20, int), [0.5], method="delaunay")
