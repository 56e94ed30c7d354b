"""Cage-relative displacement and dynamic propensity (METHOD.md section 6).

    Delta_i^s(t) = | d_i^s(t) - mean_{j in cage(i)} d_j^s(t) |,   d = r(t) - r(0),

with cage(i) = i plus its Voronoi neighbours in the initial configuration (from
:func:`~glasscam_mpi.analysis.voronoi.voronoi_neighbors`) and d from *unwrapped*
positions. The propensity Delta_i(t) is the mean of Delta_i^s(t) over replicas s.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse


def cage_matrix(i, j, n: int) -> scipy.sparse.csr_matrix:
    """(n, n) sparse row-averaging matrix over cages: row i has 1/|cage(i)| on cage(i).

    Args:
        i, j: (M,) int neighbour pairs: j is in the cage of i. Self-pairs are ignored
            (i is always in its own cage) and repeated pairs count once.
        n: Number of particles N.
    """
    i, j = np.asarray(i), np.asarray(j)
    if i.ndim != 1 or i.shape != j.shape:
        raise ValueError(f"neighbour arrays i and j must be 1D of equal length; got shapes "
                         f"{i.shape} and {j.shape}")
    if i.size and (i.dtype.kind not in "iu" or j.dtype.kind not in "iu"):
        raise ValueError(f"neighbour arrays must be integer indices; got dtypes "
                         f"{i.dtype} and {j.dtype}")
    i, j = i.astype(np.int64), j.astype(np.int64)
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"neighbour indices must lie in [0, {n}) for {n} particles; got "
                         f"range [{min(i.min(), j.min())}, {max(i.max(), j.max())}]")
    other = i != j
    rows = np.concatenate([np.arange(n), i[other]])
    cols = np.concatenate([np.arange(n), j[other]])
    A = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    A.sum_duplicates()
    A.data[:] = 1.0
    size = np.diff(A.indptr)
    A.data /= np.repeat(size, size)
    return A


def cage_relative_displacement(disp, i, j) -> np.ndarray:
    """|d_i - mean over the cage of i of d_j|, over any leading axes.

    Args:
        disp: (..., N, d) displacements r(t) - r(0) of unwrapped positions, length units
            (leading axes e.g. replicas and times).
        i, j: (M,) int Voronoi neighbour pairs of the initial configuration, as returned
            by :func:`~glasscam_mpi.analysis.voronoi.voronoi_neighbors` (call as
            ``cage_relative_displacement(disp, *voronoi_neighbors(box, x0))``).

    Returns:
        (..., N) float64 cage-relative displacement magnitudes Delta_i.

    Raises:
        ValueError: On a malformed ``disp`` (fewer than 2 axes, non-finite) or neighbour
            arrays (wrong shapes, indices outside [0, N)).
    """
    disp = np.asarray(disp)
    if disp.ndim < 2 or disp.shape[-2] < 1 or disp.dtype.kind not in "fiu":
        raise ValueError(f"disp must be a real (..., N, d) array of displacements; got "
                         f"shape {disp.shape}, dtype {disp.dtype}")
    disp = disp.astype(float, copy=False)
    if not np.all(np.isfinite(disp)):
        raise ValueError(f"disp contains {int(np.sum(~np.isfinite(disp)))} non-finite "
                         f"value(s)")
    n, d = disp.shape[-2:]
    A = cage_matrix(i, j, n)
    flat = np.moveaxis(disp.reshape(-1, n, d), 1, 0).reshape(n, -1)  # (N, rest * d)
    mean = np.moveaxis((A @ flat).reshape(n, -1, d), 0, 1).reshape(disp.shape)
    return np.linalg.norm(disp - mean, axis=-1)


def propensity(cage_disp, replica_axis: int = 0) -> np.ndarray:
    """Dynamic propensity: the mean of cage-relative displacements over replicas.

    Args:
        cage_disp: (..., N) cage-relative displacements with a replica axis, e.g.
            (n_replicas, n_times, N).
        replica_axis: The replica axis (default 0).

    Returns:
        ``cage_disp`` averaged over ``replica_axis`` (that axis removed). NaN entries
        (e.g. times a replica never reached) propagate.
    """
    arr = np.asarray(cage_disp, dtype=float)
    if arr.ndim < 1:
        raise ValueError("cage_disp must have a replica axis; got a scalar")
    if not -arr.ndim <= replica_axis < arr.ndim:
        raise ValueError(f"replica_axis {replica_axis} out of range for shape {arr.shape}")
    return arr.mean(axis=replica_axis)
