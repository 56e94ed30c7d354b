"""Input validation of boxes, positions, species and per-particle fields.

Every public function of :mod:`glasscam_mpi.analysis` coerces its inputs here, once, so
shape, dtype and finiteness errors name the argument, what was given and what is allowed.
Public: the gridding of :mod:`glasscam_mpi.learn.grid` validates its input with the same
functions.
"""

from __future__ import annotations

import numpy as np


def as_box(box) -> np.ndarray:
    """(d,) float64 box edges L of the periodic box [0, L_1) x ... x [0, L_d), d in {2, 3}."""
    arr = np.asarray(box, dtype=float)
    if arr.ndim != 1 or arr.shape[0] not in (2, 3):
        raise ValueError(f"box must be a (d,) array of edge lengths with d = 2 or 3; "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"box edges must be finite and positive; got {arr.tolist()}")
    return arr


def require_finite(arr: np.ndarray, name: str, hint: str = "") -> None:
    """Refuse an array with NaN or infinite entries, saying how many (and ``hint``: what
    to do about them)."""
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} non-finite "
                         f"value(s){hint}")


def as_positions(positions, box: np.ndarray, name: str = "positions") -> np.ndarray:
    """(N, d) float64 positions, finite, d matching ``box``, at least one particle."""
    arr = np.asarray(positions)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float)
    d = box.shape[0]
    if arr.ndim != 2 or arr.shape[1] != d or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, {d}) with N >= 1 to match the "
                         f"{d}D box; got shape {arr.shape}")
    require_finite(arr, name)
    return arr


def wrap(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Positions mapped into [0, L) per axis (a value equal to L after rounding goes to 0)."""
    out = positions - box * np.floor(positions / box)
    return np.where((out >= box) | (out < 0), 0.0, out)


def as_field(values, n: int, name: str = "values", allow_2d: bool = True) -> np.ndarray:
    """(N,) or (N, k) finite float64 per-particle field with N = ``n``."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float)
    ok_ndim = (1, 2) if allow_2d else (1,)
    if arr.ndim not in ok_ndim or arr.shape[0] != n:
        allowed = f"({n},) or ({n}, k)" if allow_2d else f"({n},)"
        raise ValueError(f"{name} must have shape {allowed} (one value per particle); "
                         f"got shape {arr.shape}")
    require_finite(arr, name)
    return arr


def as_species_indices(arr: np.ndarray) -> np.ndarray:
    """int64 copy of integer (or integral-valued float) species indices ``types``."""
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise ValueError(f"types must be integer species indices; got dtype {arr.dtype}")
    return arr.astype(np.int64)


def as_types(types, n: int, n_species: int) -> np.ndarray:
    """(N,) int64 species indices in [0, n_species)."""
    arr = np.asarray(types)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"types must have shape ({n},) (one species index per particle); "
                         f"got shape {arr.shape}")
    arr = as_species_indices(arr)
    if arr.size and (arr.min() < 0 or arr.max() >= n_species):
        raise ValueError(f"types must lie in [0, {n_species}) for {n_species} radii; got "
                         f"range [{arr.min()}, {arr.max()}]")
    return arr


def as_radii(radii) -> np.ndarray:
    """(S,) positive finite float64 radii."""
    arr = np.asarray(radii, dtype=float)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"radii must be a (S,) array with one radius per species; "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"radii must be finite and positive; got {arr.tolist()}")
    return arr


def as_positive(value, name: str) -> float:
    """A finite, strictly positive float."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {value!r}") from None
    if not np.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {value!r}")
    return out


def check_half_box(box: np.ndarray, xis, allowed: bool) -> None:
    """Refuse a coarse-graining cutoff 2 xi beyond half the shortest box edge (there the
    kernel's ball wraps onto itself and the nearest image clips it), unless ``allowed``."""
    if allowed:
        return
    xis = np.atleast_1d(np.asarray(xis, dtype=float))
    half = float(box.min()) / 2
    bad = xis[2.0 * xis > half]
    if bad.size:
        raise ValueError(f"xi = {', '.join(f'{v:g}' for v in np.unique(bad))}: the kernel cutoff "
                         f"2 xi exceeds half the shortest box edge ({half:g}), where the "
                         f"periodic box clips it; use xi <= {half / 2:g} (or pass "
                         "beyond_half_box=True to accept the nearest-image clipping)")
