"""Periodic Voronoi tessellation: cell volumes Upsilon_i and neighbours (METHOD.md s. 5).

Two backends give the same tessellation:

* ``"delaunay"`` (2D only): the dual of :func:`~glasscam_mpi.analysis.delaunay.
  periodic_delaunay`, in float64. A cell's area is the sum over its faces of
  (1/2) (r_ij / 2) * face_length, its faces being the Delaunay edges with the length
  between the two adjacent circumcentres. 3-5x faster than freud in 2D (N = 2000:
  ~11 ms against ~30-50 ms on one core).
* ``"freud"`` (2D and 3D): ``freud.locality.Voronoi`` (voro++). freud stores points in
  float32, so its volumes carry errors of order 1e-6 of a cell's volume; the bond vectors
  returned here are nevertheless exact float64 (freud's image shift is kept, the vector
  itself is recomputed from the float64 positions).

``"auto"`` picks ``"delaunay"`` in 2D and ``"freud"`` in 3D. Faces shorter (2D) or
smaller (3D) than 1e-9 of the mean spacing (to the power d - 1) are treated as absent,
so in degenerate lattices (e.g. square, where four cells meet at a point) only cells
sharing a face of nonzero size are neighbours.

As for the triangulation, the last freud tessellation is memoised (one entry, keyed on
the exact bytes of box and wrapped positions), so volumes and Theta of one 3D
configuration run voro++ once. Returned arrays of the freud backend are read-only.

voro++ and LAMMPS in one process (issue 12): freud's voro++ and the one bundled in
``liblammps.so`` clash when LAMMPS is loaded ``RTLD_GLOBAL`` first;
:func:`freud_conflict` (from :mod:`glasscam_mpi._native`, which explains the linking)
detects it, and the freud backend then raises ``RuntimeError`` saying so, instead of
crashing the process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glasscam_mpi._native import freud_conflict
from glasscam_mpi.analysis.checks import as_box, as_positions, wrap
from glasscam_mpi.analysis.delaunay import circumcentres, periodic_delaunay

BACKENDS = ("auto", "delaunay", "freud")
_FACE_TOL = 1e-9
_last_freud: dict = {}  # {key: Tessellation} of the most recent freud call only


@dataclass(frozen=True)
class Tessellation:
    """A periodic Voronoi tessellation of N particles in d dimensions.

    Attributes:
        volumes: (N,) float64 cell volumes (areas in 2D); they sum to the box volume.
        bond_i: (B,) int64 particle whose cell has the face, sorted ascending.
        bond_j: (B,) int64 particle on the other side of the face. A pair (i, j) appears
            once per face, so twice (i->j and j->i) in a normal box, and more often only
            if i touches several periodic images of j (tiny boxes); bond_j == bond_i
            where a cell touches its own image.
        bond_vectors: (B, d) float64 vector from particle i to the image of j across the
            face (equal to the minimum-image vector in boxes larger than a few spacings).
        face_sizes: (B,) float64 face length (2D) or area (3D).
    """

    volumes: np.ndarray
    bond_i: np.ndarray
    bond_j: np.ndarray
    bond_vectors: np.ndarray
    face_sizes: np.ndarray

    def neighbors(self) -> tuple[np.ndarray, np.ndarray]:
        """Unique Voronoi neighbour pairs, without self-pairs.

        Returns:
            (i, j), each (M,) int64, sorted by i then j; every neighbour pair appears in
            both directions (i, j) and (j, i), never twice, and i != j.
        """
        n = self.volumes.shape[0]
        other = self.bond_i != self.bond_j
        a, b = self.bond_i[other], self.bond_j[other]
        # the union of both directions: in 3D voro++ (float32) reports a few tiny faces
        # (areas ~1e-4 sigma^2, ~1 in 25000 bonds) from one side only
        keys = np.unique(np.concatenate([a * n + b, b * n + a]))
        return keys // n, keys % n


def _delaunay_tessellation(box: np.ndarray, x: np.ndarray, faces: bool = True) -> Tessellation:
    """The dual of the periodic Delaunay triangulation; bonds left empty if not ``faces``."""
    dt = periodic_delaunay(box, x)
    n, pts = dt.n, dt.points
    apex, left, right = dt.corners()
    u = circumcentres(pts[apex], pts[left], pts[right])  # relative to the apex
    # Each corner holds two half-faces: the circumcentre's signed distance from the
    # apex-left edge (towards the triangle's interior) and from the apex-right edge.
    own = np.concatenate([apex, apex])
    other = np.concatenate([left, right])
    vec = pts[other] - pts[own]
    dist = np.sqrt(np.einsum("ij,ij->i", vec, vec))
    normal = np.concatenate([vec[: len(apex)] @ np.array([[0.0, 1.0], [-1.0, 0.0]]),
                             vec[len(apex):] @ np.array([[0.0, -1.0], [1.0, 0.0]])])
    half = np.einsum("ij,ij->i", np.concatenate([u, u]), normal) / dist
    volumes = np.bincount(own, weights=dist * half / 4.0, minlength=n)
    if not faces:
        empty = np.zeros(0, np.int64)
        return Tessellation(volumes, empty, empty, np.zeros((0, 2)), np.zeros(0))
    keys, first, inverse = np.unique(own * len(pts) + other, return_index=True,
                                     return_inverse=True)
    sizes = np.bincount(inverse.ravel(), weights=half, minlength=len(keys))
    i, j = own[first], dt.origin[other[first]]
    return _finish(box, volumes, i, j, vec[first], sizes)


def _freud_tessellation(box: np.ndarray, x: np.ndarray) -> Tessellation:
    """freud's tessellation; the last one is memoised like the periodic Delaunay's.

    Raises:
        RuntimeError: If freud's voro++ is bound to another library's (see module doc).
    """
    key = (box.tobytes(), x.tobytes())
    if key in _last_freud:
        return _last_freud[key]
    conflict = freud_conflict()
    if conflict is not None:
        raise RuntimeError(conflict)
    import freud
    d = box.shape[0]
    fbox = freud.box.Box(box[0], box[1], is2D=True) if d == 2 else freud.box.Box(*box)
    pts = np.zeros((x.shape[0], 3))
    pts[:, :d] = x - box / 2.0  # freud's box is [-L/2, L/2)
    vor = freud.locality.Voronoi().compute((fbox, pts))
    nl = vor.nlist
    i = np.asarray(nl.query_point_indices, dtype=np.int64)
    j = np.asarray(nl.point_indices, dtype=np.int64)
    raw = x[j] - x[i]
    vec = raw + box * np.rint((np.asarray(nl.vectors, dtype=float)[:, :d] - raw) / box)
    tess = _finish(box, np.array(vor.volumes, dtype=float), i, j, vec,
                   np.asarray(nl.weights, dtype=float))
    for arr in (tess.volumes, tess.bond_i, tess.bond_j, tess.bond_vectors, tess.face_sizes):
        arr.flags.writeable = False
    _last_freud.clear()
    _last_freud[key] = tess
    return tess


def _finish(box, volumes, i, j, vec, faces) -> Tessellation:
    d = box.shape[0]
    spacing = (box.prod() / volumes.shape[0]) ** (1.0 / d)
    keep = faces > _FACE_TOL * spacing ** (d - 1)
    order = np.argsort(i[keep], kind="stable")
    return Tessellation(volumes=volumes, bond_i=i[keep][order], bond_j=j[keep][order],
                        bond_vectors=vec[keep][order], face_sizes=faces[keep][order])


def voronoi_tessellation(box, positions, backend: str = "auto") -> Tessellation:
    """The periodic Voronoi tessellation of particles in the box [0, L_1) x ... x [0, L_d).

    Args:
        box: (d,) box edges, d = 2 or 3, in length units (orthorhombic box).
        positions: (N, d) positions in length units; any periodic image (wrapped here).
        backend: ``"auto"``, ``"delaunay"`` (2D only) or ``"freud"``; see module doc.

    Returns:
        The :class:`Tessellation`.

    Raises:
        ValueError: On malformed inputs, an unknown backend, or ``"delaunay"`` in 3D.
        RuntimeError: With the freud backend, if freud's voro++ would resolve into
            another library's (see :func:`freud_conflict`); a crash otherwise.
    """
    return _tessellate(box, positions, backend, faces=True)


def _tessellate(box, positions, backend: str, faces: bool) -> Tessellation:
    box = as_box(box)
    x = wrap(as_positions(positions, box), box)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto":
        backend = "delaunay" if box.shape[0] == 2 else "freud"
    if backend == "delaunay":
        if box.shape[0] != 2:
            raise ValueError("backend 'delaunay' is 2D only; use 'freud' or 'auto' in 3D")
        return _delaunay_tessellation(box, x, faces)
    return _freud_tessellation(box, x)


def voronoi_volumes(box, positions, backend: str = "auto") -> np.ndarray:
    """(N,) Voronoi cell volumes Upsilon_i (areas in 2D), in length^d; see :func:`voronoi_tessellation`."""
    return _tessellate(box, positions, backend, faces=False).volumes.copy()


def voronoi_neighbors(box, positions, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Voronoi neighbour pairs (i, j), both directions, unique, no self-pairs.

    Returns:
        (i, j), each (M,) int64 sorted by i then j. The CSR offsets of particle i's
        neighbours are ``np.searchsorted(i, np.arange(N + 1))``.
    """
    return voronoi_tessellation(box, positions, backend).neighbors()
