"""Gridding M and its inverse M^-1 (METHOD.md section 3), 2D and 3D, periodic.

Conventions (shared by every function here and by :mod:`glasscam_mpi.learn.gradcam`):

* The periodic box is [0, L_0) x ... x [0, L_{d-1}), with per-axis edges ``box``.
* A grid has n_a points along axis a, spacing h_a = L_a / n_a, and **grid point k sits at
  coordinate k * h_a** (k = 0 .. n_a - 1; point n_a is point 0 again). Array axis a of a
  field is spatial axis a ("ij" indexing): ``field[..., k_0, k_1]`` is the value at
  (k_0 h_0, k_1 h_1).
* Gridded configurations have one channel per species, **channel s = species index s**:
  shape (n_species, n_grid, ..., n_grid).

M (``to_grid``): particle i of species s adds a periodic Gaussian of standard deviation
w_s, exp(-|r - r_i|^2 / (2 w_s^2)), truncated at |r_a - r_i,a| <= cutoff * w_s along each
axis, to channel s. The kernel is separable: per axis, the 1D Gaussian is evaluated at the
grid points (at their true periodic-image displacement from the particle) and normalised
so that it sums to 1; the particle's weights are the product over axes and so sum to
exactly 1. The field is a *number density*: weights / cell_volume, so that

    sum(field[s]) * cell_volume == number of particles of species s

(to rounding), i.e. each channel *integrates* to its species count. Because the weight of
a grid point depends only on its displacement from the particle, translating every
particle by whole grid cells rolls the field exactly.

M^-1 (``from_grid``): a grid field is read at particle positions by periodic multilinear
interpolation (bilinear in 2D, trilinear in 3D) between the 2^d grid points around the
particle, with the same "point k at k h" convention, so a particle at x = L - eps
interpolates between the last grid point and point 0.

Positions outside the box are wrapped into it (they are periodic images).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from glasscam_mpi.analysis.checks import as_species_indices, wrap

if TYPE_CHECKING:  # pragma: no cover
    from glasscam_mpi.systems import System

# Default grid points per axis (METHOD.md section 3).
DEFAULT_N_GRID = {2: 128, 3: 48}
# Stencil entries (particles x points) per bincount: temporaries stay cache-sized (2 MB
# each); 2^18 measured ~1.5x faster than 2^21 for 2D N = 2000, batch 32.
_CHUNK_ENTRIES = 1 << 18


@dataclass(frozen=True)
class GridSpec:
    """How configurations are gridded (the map M).

    Attributes:
        dim: Spatial dimension, 2 or 3.
        n_grid: Grid points per axis (the same on every axis, also for non-square boxes).
        n_species: Number of species = number of channels (channel s = species s).
        widths: (n_species,) Gaussian standard deviations w_s, length units.
        cutoff: Truncation of the Gaussian along each axis, in units of w_s.
    """

    dim: int
    n_grid: int
    n_species: int
    widths: tuple[float, ...]
    cutoff: float = 3.0

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"GridSpec.dim must be 2 or 3; got {self.dim!r}")
        if not isinstance(self.n_grid, (int, np.integer)) or self.n_grid < 2:
            raise ValueError(f"GridSpec.n_grid must be an integer >= 2; got {self.n_grid!r}")
        if not isinstance(self.n_species, (int, np.integer)) or self.n_species < 1:
            raise ValueError(f"GridSpec.n_species must be an integer >= 1; "
                             f"got {self.n_species!r}")
        widths = tuple(float(w) for w in np.atleast_1d(np.asarray(self.widths, dtype=float)))
        if len(widths) != self.n_species:
            raise ValueError(f"GridSpec.widths must give one width per species "
                             f"({self.n_species}); got {len(widths)}: {list(widths)}")
        if not all(np.isfinite(w) and w > 0 for w in widths):
            raise ValueError(f"GridSpec.widths must be finite and > 0; got {list(widths)}")
        cutoff = float(self.cutoff)
        if not np.isfinite(cutoff) or cutoff <= 0:
            raise ValueError(f"GridSpec.cutoff must be finite and > 0 (in widths); "
                             f"got {self.cutoff!r}")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "cutoff", cutoff)
        object.__setattr__(self, "n_grid", int(self.n_grid))
        object.__setattr__(self, "n_species", int(self.n_species))

    @classmethod
    def for_system(cls, system: System, n_grid: int | None = None,
                   width_factor: float = 0.5, cutoff: float = 3.0) -> GridSpec:
        """The spec of METHOD.md section 3 for ``system``: w_s = width_factor * sigma_ss.

        ``n_grid`` defaults to 128 in 2D and 48 in 3D.
        """
        if n_grid is None:
            n_grid = DEFAULT_N_GRID[system.dim]
        widths = tuple(width_factor * system.sigma_ab(s, s) for s in range(system.n_species))
        return cls(dim=system.dim, n_grid=n_grid, n_species=system.n_species,
                   widths=widths, cutoff=cutoff)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one gridded configuration: (n_species, n_grid, ..., n_grid)."""
        return (self.n_species,) + (self.n_grid,) * self.dim

    def spacing(self, box) -> np.ndarray:
        """(d,) grid spacings h_a = L_a / n_grid."""
        return _as_box(box, self.dim) / self.n_grid


# -- input checks ---------------------------------------------------------------------------
def _as_box(box, dim: int | None = None, batch: int | None = None) -> np.ndarray:
    """(d,) or, where ``batch`` is given, (d,) or (B, d) finite positive float64 edges."""
    arr = np.asarray(box, dtype=float)
    want = "(d,)" if batch is None else f"(d,) or ({batch}, d)"
    ok = arr.ndim == 1 or (batch is not None and arr.ndim == 2 and arr.shape[0] == batch)
    if not ok or arr.shape[-1] not in (2, 3):
        raise ValueError(f"box must have shape {want} with d = 2 or 3 edge lengths; "
                         f"got shape {arr.shape}")
    if dim is not None and arr.shape[-1] != dim:
        raise ValueError(f"box has {arr.shape[-1]} edges but the grid is {dim}D")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"box edges must be finite and > 0; got {arr.tolist()}")
    return arr


def _as_positions(positions, dim: int, batched: bool) -> np.ndarray:
    arr = np.asarray(positions)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"positions must be a real numeric array; got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float)
    want_ndim = 3 if batched else 2
    if arr.ndim != want_ndim or arr.shape[-1] != dim or arr.shape[-2] < 1:
        want = f"(B, N, {dim})" if batched else f"(N, {dim})"
        raise ValueError(f"positions must have shape {want} with N >= 1 for a {dim}D box; "
                         f"got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"positions contains {int(bad.sum())} non-finite value(s) "
                         f"(NaN or inf)")
    return arr


def _as_types(types, shape: tuple[int, int], n_species: int) -> np.ndarray:
    """(B, N) int64 species indices in [0, n_species); a (N,) array is shared by all B."""
    arr = np.asarray(types)
    b, n = shape
    if arr.shape == (n,):
        arr = np.broadcast_to(arr, (b, n))
    if arr.shape != (b, n):
        raise ValueError(f"types must have shape ({n},) or ({b}, {n}) (one species index "
                         f"per particle); got shape {arr.shape}")
    arr = as_species_indices(arr)
    if arr.min() < 0 or arr.max() >= n_species:
        raise ValueError(f"types must lie in [0, {n_species}) for {n_species} species "
                         f"(GridSpec.n_species); got range [{arr.min()}, {arr.max()}]")
    return arr


def _as_field(field, dim: int, lead_min: int = 0) -> np.ndarray:
    arr = np.asarray(field)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"field must be a real numeric array; got dtype {arr.dtype}")
    if arr.ndim < dim + lead_min or any(s < 1 for s in arr.shape[arr.ndim - dim:]):
        want = "(B, ..., " if lead_min else "(..., "
        raise ValueError(f"field must have shape {want}n_0, ..., n_{dim - 1}) with its last "
                         f"{dim} axes the {dim}D grid; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"field contains {int(bad.sum())} non-finite value(s)")
    return arr


# -- M: particles -> grid -------------------------------------------------------------------
def to_grid(spec: GridSpec, box, positions, types, dtype=np.float32) -> np.ndarray:
    """Grid one configuration (the map M).

    Args:
        spec: The :class:`GridSpec`.
        box: (d,) box edges L_a.
        positions: (N, d) positions (wrapped into the box here).
        types: (N,) species indices in [0, spec.n_species).
        dtype: Output dtype.

    Returns:
        (n_species, n_grid, ..., n_grid) number-density field; channel s integrates to the
        number of particles of species s: ``field[s].sum() * prod(box / n_grid)``.
    """
    x = _as_positions(positions, spec.dim, batched=False)
    t = _as_types(types, (1, x.shape[0]), spec.n_species)
    return _grid(spec, _as_box(box, spec.dim), x[None], t, dtype)[0]


def to_grid_batch(spec: GridSpec, box, positions, types, dtype=np.float32) -> np.ndarray:
    """Grid B configurations of N particles each at once (see :func:`to_grid`).

    Args:
        spec: The :class:`GridSpec`.
        box: (d,) edges shared by all samples, or (B, d) one box per sample.
        positions: (B, N, d) positions.
        types: (B, N) species indices, or (N,) shared by all samples.
        dtype: Output dtype.

    Returns:
        (B, n_species, n_grid, ..., n_grid) number-density fields.
    """
    x = _as_positions(positions, spec.dim, batched=True)
    box = _as_box(box, spec.dim, batch=x.shape[0])
    t = _as_types(types, x.shape[:2], spec.n_species)
    return _grid(spec, box, x, t, dtype)


def _grid(spec: GridSpec, box: np.ndarray, x: np.ndarray, t: np.ndarray,
          dtype) -> np.ndarray:
    """M on checked inputs: box (d,) or (B, d), x (B, N, d), t (B, N) int64."""
    d, n, n_sp = spec.dim, spec.n_grid, spec.n_species
    b, n_part = x.shape[:2]
    boxes = np.broadcast_to(box, (b, d))
    h = boxes / n  # (B, d)
    widths = np.asarray(spec.widths)
    reach = spec.cutoff * widths[:, None, None] / h[None]  # (S, B, d), in cells
    if reach.min() < 1.0:
        s, i, a = np.unravel_index(np.argmin(reach), reach.shape)
        raise ValueError(
            f"grid too coarse for the Gaussian of species {s}: cutoff * width = "
            f"{spec.cutoff * widths[s]:g} is less than one grid spacing h = "
            f"{h[i, a]:g} along axis {a}; raise n_grid or the width")
    r = int(np.floor(reach.max()))
    offsets = np.arange(-r, r + 2, dtype=float)  # covers every point within reach
    n_cells = n ** d
    out = np.zeros((b * n_sp * n_cells,), dtype=np.float64)
    per_particle = len(offsets) ** d
    chunk = max(1, _CHUNK_ENTRIES // per_particle)
    xf = x.reshape(-1, d)
    tf = t.reshape(-1)
    sample = np.repeat(np.arange(b), n_part)
    for lo in range(0, b * n_part, chunk):
        hi = min(lo + chunk, b * n_part)
        s_lo, s_hi = sample[lo], sample[hi - 1]
        base = ((sample[lo:hi] - s_lo) * n_sp + tf[lo:hi]) * n_cells  # (P,)
        idx, wts = _stencil(xf[lo:hi], boxes[sample[lo:hi]], h[sample[lo:hi]],
                            widths[tf[lo:hi]], spec.cutoff, n, offsets)
        flat = base.reshape((-1,) + (1,) * d) + idx
        acc = np.bincount(flat.ravel(), weights=wts.ravel(),
                          minlength=(s_hi - s_lo + 1) * n_sp * n_cells)
        out[s_lo * n_sp * n_cells:(s_hi + 1) * n_sp * n_cells] += acc
    out = out.reshape((b, n_sp) + (n,) * d)
    out /= np.prod(h, axis=1).reshape((b,) + (1,) * (d + 1))  # weights -> number density
    return out.astype(dtype, copy=False)


def _stencil(x, box, h, w, cutoff, n, offsets):
    """Flat grid indices and weights of each particle's separable, normalised stencil.

    Returns (P, W, ..., W) int64 indices into an n^d grid and float64 weights that sum to
    1 per particle (W = len(offsets) points per axis).
    """
    p, d = x.shape
    u = wrap(x, box) / h  # in grid units, [0, n]
    k0 = np.floor(u)
    frac = u - k0
    k0 = k0.astype(np.int64)
    idx = np.zeros((p,) + (1,) * d, dtype=np.int64)
    wts = np.ones((p,) + (1,) * d)
    lim = cutoff * w  # (P,)
    for a in range(d):
        disp = (offsets[None, :] - frac[:, a:a + 1]) * h[:, a:a + 1]  # point - particle
        g = np.exp(-0.5 * (disp / w[:, None]) ** 2)
        g[np.abs(disp) > lim[:, None]] = 0.0
        g /= g.sum(axis=1, keepdims=True)
        ia = (k0[:, a:a + 1] + offsets[None, :].astype(np.int64)) % n
        shape = [p] + [1] * d
        shape[a + 1] = len(offsets)
        idx = idx * n + ia.reshape(shape)
        wts = wts * g.reshape(shape)
    return idx, wts


# -- M^-1: grid -> particles ----------------------------------------------------------------
def _corners(x: np.ndarray, box: np.ndarray, grid: tuple[int, ...]):
    """Flat indices and weights of the 2^d grid points around each position.

    Args:
        x: (..., N, d) positions; box: (d,) or broadcastable (..., 1, d) edges.

    Returns:
        (..., N, 2^d) int64 flat indices into the grid and float64 multilinear weights.
    """
    n = np.asarray(grid)
    u = wrap(x, box) * (n / box)  # grid units in [0, n]
    i0 = np.floor(u)
    t = u - i0
    i0 = i0.astype(np.int64) % n
    i1 = (i0 + 1) % n
    idx, wts = [], []
    for corner in itertools.product((0, 1), repeat=len(grid)):
        flat = np.zeros(x.shape[:-1], dtype=np.int64)
        w = np.ones(x.shape[:-1])
        for a, c in enumerate(corner):
            flat = flat * n[a] + (i1[..., a] if c else i0[..., a])
            w = w * (t[..., a] if c else 1.0 - t[..., a])
        idx.append(flat)
        wts.append(w)
    return np.stack(idx, axis=-1), np.stack(wts, axis=-1)


def from_grid(box, field, positions) -> np.ndarray:
    """Read a periodic grid field at particle positions (the map M^-1).

    Args:
        box: (d,) box edges.
        field: (..., n_0, ..., n_{d-1}) field whose last d axes are the grid (point k at
            k * L_a / n_a); leading axes (e.g. channels) are kept.
        positions: (N, d) positions (wrapped into the box here).

    Returns:
        (..., N) float64 values, periodic bilinear (2D) / trilinear (3D) interpolation.
    """
    box = _as_box(box)
    d = box.shape[0]
    f = _as_field(field, d)
    x = _as_positions(positions, d, batched=False)
    grid = f.shape[f.ndim - d:]
    lead = f.shape[:f.ndim - d]
    idx, wts = _corners(x, box, grid)  # (N, 2^d)
    flat = f.reshape((-1, int(np.prod(grid))))
    vals = np.einsum("lnc,nc->ln", flat[:, idx], wts)
    return vals.reshape(lead + (x.shape[0],))


def from_grid_batch(box, fields, positions) -> np.ndarray:
    """:func:`from_grid` for B samples at once.

    Args:
        box: (d,) edges shared by all samples, or (B, d).
        fields: (B, ..., n_0, ..., n_{d-1}) one field (or stack of fields) per sample.
        positions: (B, N, d) positions.

    Returns:
        (B, ..., N) float64 values.
    """
    arr = np.asarray(positions)
    d = arr.shape[-1] if arr.ndim == 3 else np.asarray(box).shape[-1]
    x = _as_positions(arr, d, batched=True)
    b, n_part = x.shape[:2]
    box = _as_box(box, d, batch=b)
    f = _as_field(fields, d, lead_min=1)
    if f.shape[0] != b:
        raise ValueError(f"fields has {f.shape[0]} samples on axis 0 but positions has {b}")
    grid = f.shape[f.ndim - d:]
    lead = f.shape[1:f.ndim - d]
    boxes = np.broadcast_to(box, (b, d))[:, None, :]
    idx, wts = _corners(x, boxes, grid)  # (B, N, 2^d)
    flat = f.reshape((b, -1, int(np.prod(grid))))
    gathered = np.take_along_axis(flat, idx.reshape(b, 1, -1), axis=2)
    gathered = gathered.reshape(flat.shape[:2] + idx.shape[1:])  # (B, L, N, 2^d)
    vals = np.einsum("blnc,bnc->bln", gathered, wts)
    return vals.reshape((b,) + lead + (n_part,))
