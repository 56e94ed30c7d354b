"""Tong-Tanaka order parameter Theta_o (METHOD.md section 5; Tong & Tanaka, PRX 2018).

For particle o and each triangle o-i-j of Voronoi neighbours i, j of o that are also
neighbours of each other, theta1 is the actual angle i-o-j and theta2 the angle at o of
the ideal triangle of touching discs, sides R_o+R_i, R_o+R_j, R_i+R_j (law of cosines):

    cos(theta2) = ((R_o+R_i)^2 + (R_o+R_j)^2 - (R_i+R_j)^2) / (2 (R_o+R_i) (R_o+R_j))

Theta_o = mean over o's triangles of |theta1 - theta2| (radians). R are the additive
radii ``System.radii()``. A perfect triangular lattice of equal discs has Theta = 0.

Two ways to enumerate the triangles:

* ``"delaunay"`` (2D only): the Delaunay triangles incident on o, i.e. the pairs of
  angularly consecutive Voronoi neighbours (Tong & Tanaka's 2D construction: o has as
  many triangles as neighbours).
* ``"neighbors"`` (2D and 3D): every pair (i, j) of o's Voronoi neighbours that are
  Voronoi neighbours of each other through the matching periodic images, from freud's
  tessellation. In 2D this is the same set except for Delaunay triangles enclosing
  other particles (separating triangles; essentially absent in dense liquids); in 3D it
  is the literal definition of METHOD.md and may include triples i, j, o whose three
  Voronoi faces meet although the triangle is not a Delaunay face.

``"auto"`` picks ``"delaunay"`` in 2D and ``"neighbors"`` in 3D. Everything is vectorised;
the only Python loop runs over neighbour slots (< ~30) in the ``"neighbors"`` method.
"""

from __future__ import annotations

import numpy as np

from glasscam_mpi.analysis.checks import as_box, as_positions, as_radii, as_types, wrap
from glasscam_mpi.analysis.delaunay import periodic_delaunay
from glasscam_mpi.analysis.voronoi import voronoi_tessellation

METHODS = ("auto", "delaunay", "neighbors")


def _angle(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """(M,) angle in [0, pi] between (M, d) vectors, robust near 0 and pi."""
    dot = np.einsum("ij,ij->i", v1, v2)
    if v1.shape[1] == 2:
        cross = np.abs(v1[:, 0] * v2[:, 1] - v1[:, 1] * v2[:, 0])
    else:
        c = np.cross(v1, v2)
        cross = np.sqrt(np.einsum("ij,ij->i", c, c))
    return np.arctan2(cross, dot)


def ideal_angle(r_o: np.ndarray, r_i: np.ndarray, r_j: np.ndarray) -> np.ndarray:
    """Angle at o (radians) of the triangle of touching discs with radii r_o, r_i, r_j."""
    a, b, c = r_o + r_i, r_o + r_j, r_i + r_j
    return np.arccos(np.clip((a * a + b * b - c * c) / (2.0 * a * b), -1.0, 1.0))


def _delaunay_triangles(box, x):
    """(apex, v1, v2, i, j) of every Delaunay triangle corner at an original particle."""
    dt = periodic_delaunay(box, x)
    apex, left, right = dt.corners()
    pts = dt.points
    return apex, pts[left] - pts[apex], pts[right] - pts[apex], \
        dt.origin[left], dt.origin[right]


def _neighbor_triangles(box, x):
    """Like :func:`_delaunay_triangles` from mutually-neighbouring Voronoi bonds (freud)."""
    tess = voronoi_tessellation(box, x, backend="freud")
    n, d = x.shape
    bi, bj, vec = tess.bond_i, tess.bond_j, tess.bond_vectors
    image = np.rint((x[bi] + vec - x[bj]) / box).astype(np.int64)  # image of j seen from i
    reach = int(np.abs(image).max(initial=0))
    base, off = 4 * reach + 3, 2 * reach + 1  # room for differences of two images
    if float(n) * n * float(base) ** d > 2.0 ** 62:
        raise ValueError(f"box {box.tolist()} is too small for N = {n}: periodic images "
                         f"up to {reach} boxes away cannot be encoded")
    weights = base ** np.arange(d, dtype=np.int64)

    def key(a, b, img):
        return (a * n + b) * base ** d + (img + off) @ weights

    bond_keys = np.sort(key(bi, bj, image))
    counts = np.bincount(bi, minlength=n)
    apex, k1s, k2s = [], [], []
    for t in range(1, int(counts.max(initial=0))):
        k1 = np.arange(len(bi) - t)
        k1 = k1[bi[k1] == bi[k1 + t]]
        k2 = k1 + t
        want = key(bj[k1], bj[k2], image[k2] - image[k1])
        pos = np.minimum(np.searchsorted(bond_keys, want), len(bond_keys) - 1)
        hit = bond_keys[pos] == want
        apex.append(bi[k1[hit]])
        k1s.append(k1[hit])
        k2s.append(k2[hit])
    apex = np.concatenate(apex) if apex else np.zeros(0, np.int64)
    k1 = np.concatenate(k1s) if k1s else np.zeros(0, np.int64)
    k2 = np.concatenate(k2s) if k2s else np.zeros(0, np.int64)
    return apex, vec[k1], vec[k2], bj[k1], bj[k2]


def tong_tanaka(box, positions, types, radii, method: str = "auto") -> np.ndarray:
    """Tong-Tanaka order parameter Theta_o of every particle.

    Args:
        box: (d,) box edges (periodic box [0, L_1) x ... x [0, L_d)), length units.
        positions: (N, d) positions, any periodic image.
        types: (N,) int species index of each particle.
        radii: (S,) additive radius of each species, e.g. ``get_system("KAM").radii()``.
        method: ``"auto"``, ``"delaunay"`` (2D only) or ``"neighbors"``; see module doc.

    Returns:
        (N,) float64 Theta_o in radians; NaN for a particle with no triangle (only in
        degenerate or tiny configurations).

    Raises:
        ValueError: On malformed inputs or an unknown/unsupported method.
    """
    box = as_box(box)
    x = wrap(as_positions(positions, box), box)
    radii = as_radii(radii)
    types = as_types(types, x.shape[0], radii.shape[0])
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if method == "auto":
        method = "delaunay" if box.shape[0] == 2 else "neighbors"
    if method == "delaunay" and box.shape[0] != 2:
        raise ValueError("method 'delaunay' is 2D only; use 'neighbors' or 'auto' in 3D")
    find = _delaunay_triangles if method == "delaunay" else _neighbor_triangles
    apex, v1, v2, i, j = find(box, x)
    r = radii[types]
    dev = np.abs(_angle(v1, v2) - ideal_angle(r[apex], r[i], r[j]))
    n = x.shape[0]
    count = np.bincount(apex, minlength=n)
    total = np.bincount(apex, weights=dev, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count
