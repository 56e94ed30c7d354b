"""One periodic pair search per configuration, reused for coarse-graining, C(r) and g(r).

:class:`PairList` finds every unordered pair i < j with minimum-image distance
r_ij <= r_max once, with the periodic ``scipy.spatial.cKDTree`` (``boxsize``), as
:mod:`~glasscam_mpi.analysis.coarse` does, and keeps it for any number of fields, lengths
and functions. Results equal :func:`~glasscam_mpi.analysis.coarse.coarse_grain` and
:func:`~glasscam_mpi.analysis.correlation.spatial_correlation` to ~1e-13 (tested).

Storage, per pair: two int32 indices and a float64 distance, 16 bytes (int64 indices only
if N >= 2^31). float64 because float32 distances (error ~6e-8 r) shift the kernel
exp(-(r/xi)^2) by up to ~5e-7 relative and move pairs across a cutoff, which would break
the 1e-12 agreement with the definitions; int32 halves the indices at no cost.

Order. The pairs are sorted by distance *shell*: 4096 shells of equal volume (equal
width in (r / r_max)^d, so equal pair counts for a uniform density), by a stable radix
sort of 16-bit shell keys, ~5x cheaper than an exact float64 argsort (the largest part
of the construction otherwise). The pairs within any r <= r_max are therefore a prefix
of the list up to the two shells around r, in which a mask picks the pairs with
r_ij <= r; :meth:`PairList.count` and :meth:`PairList.pairs` give exactly those.
Inside the pair list particles are renumbered in the k-d tree's (spatially coherent)
order, so a pair's two rows of a field are close in memory; inputs and outputs use the
caller's numbering.

Cost (2D, density 1.2, r_max = 16, one core, CPU time; benchmarks/neighbours.py):

    N      pairs   stored   build peak   build   scan 3 fields x 7 xi   40 fields x 5 xi
    2000   9.6e5   15 MB    +83 MB RSS   65 ms   42 ms                  42 ms
    1e5    4.8e7   737 MB   +2.3 GB RSS  10.6 s  2.2 s                  13 s

(the same 3 x 7 scan with :func:`~glasscam_mpi.analysis.coarse.coarse_grain`, one pair
search per xi: 115 ms at N = 2000). The build peak holds scipy's own copy of the pair
list (16 bytes per pair) beside ours. Coarse-graining products run as scipy COO
sparse-dense products over blocks of pairs, with a column of ones appended for the
kernel sums: 7-10x faster than per-field ``np.bincount`` for 1 to 40 fields and far
faster than building CSR matrices per length.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

from glasscam_mpi.analysis._checks import (as_box, as_field, as_positions, as_positive,
                                           as_species_indices, wrap)

_SHELLS = 4096      # distance shells of the pair order (radix-sorted 16-bit keys)
_BLOCK = 1 << 20    # pairs per block of arithmetic (at least; more for many fields)
_CHUNK = 1 << 22    # pairs per chunk while building


class RDF(NamedTuple):
    """Radial distribution function from :meth:`PairList.rdf`.

    Attributes:
        r: (bins,) bin centres, length units.
        g: (bins,) total g(r).
        counts: (bins,) int64 unordered pairs per bin.
        partial: (S, S, bins) symmetric partial g_ab(r) for S species, or None without
            types; NaN for a species with fewer than two particles (g_aa) or none.
    """

    r: np.ndarray
    g: np.ndarray
    counts: np.ndarray
    partial: np.ndarray | None


class PairList:
    """All pairs within r_max of a periodic configuration, found once.

    Args:
        box: (d,) edges of the periodic box [0, L_1) x ... x [0, L_d), d = 2 or 3,
            length units.
        positions: (N, d) positions, any periodic image.
        r_max: Largest pair distance kept (length units), > 0. Any value is allowed:
            distances are minimum-image, each pair is found once at its nearest image
            (beyond half the box edge this is no longer a full shell; :meth:`correlation`
            and :meth:`rdf` refuse such distances, :meth:`coarse_grain` does not, like
            :func:`~glasscam_mpi.analysis.coarse.coarse_grain`).

    Raises:
        ValueError: On malformed box, positions or r_max.
    """

    def __init__(self, box, positions, r_max: float):
        self._box = as_box(box)
        x = wrap(as_positions(positions, self._box), self._box)
        self._n, self._d = x.shape
        self._r_max = as_positive(r_max, "r_max")
        tree = cKDTree(x, boxsize=self._box)
        self._perm = np.asarray(tree.indices, dtype=np.int64)  # internal q -> particle
        inv = np.empty(self._n, dtype=np.int64)
        inv[self._perm] = np.arange(self._n)
        found = tree.query_pairs(self._r_max, output_type="ndarray")  # (M, 2), i < j
        del tree
        m = len(found)
        itype = np.int32 if self._n < 2**31 else np.int64
        cols = [np.ascontiguousarray(x[:, axis]) for axis in range(self._d)]
        lo, hi = np.empty(m, itype), np.empty(m, itype)
        dist, key = np.empty(m), np.empty(m, np.uint16)
        for s in range(0, m, _CHUNK):  # chunks: no pair-sized float temporaries
            i, j = found[s:s + _CHUNK, 0], found[s:s + _CHUNK, 1]
            part = slice(s, s + len(i))
            dist[part] = np.sqrt(self._min_image_r2(cols, i, j))
            key[part] = self._shell(dist[part])
            a, b = inv[i], inv[j]
            lo[part], hi[part] = np.minimum(a, b), np.maximum(a, b)
        del found
        order = np.argsort(key, kind="stable")  # radix sort of 16-bit keys: O(M)
        self._offsets = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=_SHELLS))])
        del key
        self._i = lo[order]
        del lo
        self._j = hi[order]
        del hi
        self._r = dist[order]
        del dist, order
        for arr in (self._i, self._j, self._r, self._perm, self._offsets):
            arr.flags.writeable = False

    def _min_image_r2(self, cols: list, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared minimum-image distances, computed exactly as in coarse.iter_pairs."""
        r2 = np.zeros(len(i))
        for c, length in zip(cols, self._box):
            dx = c[j] - c[i]
            dx -= length * np.rint(dx * (1.0 / length))
            r2 += dx * dx
        return r2

    def _shell(self, r: np.ndarray) -> np.ndarray:
        s = np.floor(_SHELLS * (r / self._r_max) ** self._d)
        return np.clip(s, 0, _SHELLS - 1).astype(np.uint16)

    def _span(self, r: float) -> tuple[int, int]:
        """(start, end): pairs before start have r_ij < r, pairs from end on r_ij > r.

        A shell's bounds are computed in floating point, so the shells on both sides of
        r's shell are masked too: a whole shell of margin on either side.
        """
        if r >= self._r_max:
            return len(self._r), len(self._r)
        shell = int(self._shell(np.array([r]))[0])
        return (int(self._offsets[max(shell - 1, 0)]),
                int(self._offsets[min(shell + 2, _SHELLS)]))

    def _check_cutoff(self, r: float, what: str) -> None:
        if r > self._r_max:
            raise ValueError(f"{what} = {r:g} exceeds this PairList's r_max = {self._r_max:g}; "
                             f"build the PairList with r_max >= {r:g}")

    # -- read-only results -------------------------------------------------------------
    @property
    def box(self) -> np.ndarray:
        """(d,) box edges."""
        return self._box.copy()

    @property
    def n_particles(self) -> int:
        """N."""
        return self._n

    @property
    def r_max(self) -> float:
        """Largest pair distance kept."""
        return self._r_max

    @property
    def n_pairs(self) -> int:
        """Number of unordered pairs with r_ij <= r_max."""
        return len(self._r)

    @property
    def nbytes(self) -> int:
        """Bytes held by the pair list (indices, distances, permutation, shell offsets)."""
        return sum(a.nbytes for a in (self._i, self._j, self._r, self._perm, self._offsets))

    def count(self, r: float) -> int:
        """Number of unordered pairs with r_ij <= r (r <= r_max)."""
        r = as_positive(r, "r")
        self._check_cutoff(r, "r")
        start, end = self._span(r)
        return start + int(np.count_nonzero(self._r[start:end] <= r))

    def pairs(self, r: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs with r_ij <= r (default r_max), each once.

        Returns:
            (i, j, r_ij): (M,) int64 particle indices with i < j (caller's numbering) and
            (M,) float64 minimum-image distances, in shell order (not exactly sorted).
        """
        r = self._r_max if r is None else as_positive(r, "r")
        self._check_cutoff(r, "r")
        keep = np.flatnonzero(self._r[:self._span(r)[1]] <= r)
        a, b = self._perm[self._i[keep]], self._perm[self._j[keep]]
        return np.minimum(a, b), np.maximum(a, b), self._r[keep].copy()

    def _blocks(self, r: float, width: int = 1):
        """(i, j, r_ij) views over blocks that contain every pair with r_ij <= r."""
        end = self._span(r)[1]
        step = max(_BLOCK, 2 * self._n * width)
        for s in range(0, end, step):
            e = min(s + step, end)
            yield self._i[s:e], self._j[s:e], self._r[s:e]

    # -- coarse-graining ---------------------------------------------------------------
    def coarse_grain(self, values, xi: float) -> np.ndarray:
        """Gaussian coarse-graining X_i(xi) of METHOD.md section 7.

        X_i = sum_j X_j P(r_ij) / sum_j P(r_ij), P(r) = exp(-(r/xi)^2), j over the
        particles with r_ij <= 2 xi, i included; equals
        :func:`~glasscam_mpi.analysis.coarse.coarse_grain`.

        Args:
            values: (N,) field or (N, k) fields.
            xi: Kernel width (length units), > 0, with 2 xi <= r_max.

        Returns:
            float64 array shaped like ``values``. A constant field is returned exactly.

        Raises:
            ValueError: On malformed values, xi <= 0, or 2 xi > r_max.
        """
        xi = as_positive(xi, "xi")
        return self.coarse_grain_scan(values, [xi])[0]

    def coarse_grain_scan(self, values, xis) -> np.ndarray:
        """Coarse-grain field(s) at several lengths in one pass over the pairs.

        Args:
            values: (N,) field or (N, k) fields.
            xis: (m,) kernel widths, each 0 (the bare field, returned unchanged as
                float64) or > 0 with 2 xi <= r_max; any order, repeats allowed.

        Returns:
            (m, N) or (m, N, k) float64: entry a is the field(s) coarse-grained at xis[a].

        Raises:
            ValueError: On malformed values or xis, or some 2 xi > r_max.
        """
        X = as_field(values, self._n)
        xis = np.asarray(xis, dtype=float)
        if xis.ndim != 1 or xis.size < 1 or not np.all(np.isfinite(xis)) or np.any(xis < 0):
            raise ValueError(f"xis must be a non-empty 1D sequence of finite lengths >= 0; "
                             f"got {xis!r}")
        if 2.0 * xis.max() > self._r_max:
            raise ValueError(f"2 xi = {2.0 * xis.max():g} (xi = {xis.max():g}) exceeds this "
                             f"PairList's r_max = {self._r_max:g}; the kernel's cutoff must "
                             f"lie within it (build with r_max >= {2.0 * xis.max():g})")
        F = X.reshape(self._n, -1)
        ref = F[0].copy()
        k = F.shape[1]
        G = np.ones((self._n, k + 1))  # deviations from particle 0 (exact for constants),
        G[:, :k] = F[self._perm] - ref  # internal order, and a column of ones for sum P
        live = np.flatnonzero(xis > 0)
        acc = np.zeros((len(live), self._n, k + 1))
        acc += G  # the j = i term, P(0) = 1
        if live.size:
            self._accumulate(acc, G, xis[live])
        out = np.empty((len(xis), self._n, k))
        out[:] = F
        smooth = ref + acc[..., :k] / acc[..., k:]
        out[live[:, None], self._perm[None, :]] = smooth
        return out.reshape((len(xis),) + X.shape)

    def _accumulate(self, acc: np.ndarray, G: np.ndarray, xis: np.ndarray) -> None:
        """acc[a] += (W_a + W_a^T) G for the kernel matrices W_a of each xis[a]."""
        shape = (self._n, self._n)
        cuts = 2.0 * xis
        for i, j, r in self._blocks(float(cuts.max()), G.shape[1]):
            r2 = r * r
            lo, hi = r.min(), r.max()
            for a, (xi, cut) in enumerate(zip(xis, cuts)):
                if lo > cut:
                    continue
                w = np.exp(r2 * (-1.0 / (xi * xi)))
                if hi > cut:
                    w[r > cut] = 0.0
                W = scipy.sparse.coo_array((w, (i, j)), shape=shape)
                acc[a] += W @ G
                acc[a] += W.T @ G

    # -- correlation function and g(r) ---------------------------------------------------
    def _binned(self, r_max, bins) -> tuple[float, int]:
        r_max = as_positive(r_max, "r_max")
        self._check_cutoff(r_max, "r_max")
        if r_max > self._box.min() / 2:
            raise ValueError(f"r_max = {r_max:g} exceeds half the shortest box edge "
                             f"({self._box.min() / 2:g}); minimum-image shells are "
                             f"incomplete there")
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins must be a positive integer; got {bins!r}")
        return r_max, int(bins)

    def _bin_index(self, r: np.ndarray, r_max: float, bins: int) -> np.ndarray:
        """Bin of each distance, ``bins`` (a dump bin) beyond r_max."""
        b = np.minimum((r / (r_max / bins)).astype(np.int64), bins - 1)
        b[r > r_max] = bins
        return b

    def correlation(self, values, r_max: float, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Normalised spatial correlation function C_X(r), as
        :func:`~glasscam_mpi.analysis.correlation.spatial_correlation`.

        Args:
            values: (N,) field or (N, k) fields (one curve per column).
            r_max: Largest distance, 0 < r_max <= min(this r_max, min(L) / 2).
            bins: Number of equal distance bins (>= 1).

        Returns:
            (r, C): r (bins + 1,) = [0, bin centres]; C (bins + 1,) or (bins + 1, k) with
            C[0] = 1, NaN for empty bins, all NaN for a constant field.

        Raises:
            ValueError: On malformed values, r_max beyond this list or half the box, bins < 1.
        """
        r_max, bins = self._binned(r_max, bins)
        X = as_field(values, self._n)
        dX = X.reshape(self._n, -1) - X.reshape(self._n, -1).mean(axis=0)
        var = np.mean(dX * dX, axis=0)
        D = np.ascontiguousarray(dX[self._perm])
        k = D.shape[1]
        counts = np.zeros(bins + 1)
        sums = np.zeros((bins + 1, k))
        for i, j, r in self._blocks(r_max):
            b = self._bin_index(r, r_max, bins)
            counts += np.bincount(b, minlength=bins + 1)
            for s in range(0, len(b), max(1, _BLOCK // k)):
                bb, ii, jj = b[s:s + _BLOCK // k], i[s:s + _BLOCK // k], j[s:s + _BLOCK // k]
                if k == 1:
                    sums[:, 0] += np.bincount(bb, weights=D[ii, 0] * D[jj, 0],
                                              minlength=bins + 1)
                    continue
                H = scipy.sparse.coo_array((np.ones(len(bb)), (bb, np.arange(len(bb)))),
                                           shape=(bins + 1, len(bb)))
                sums += H @ (D[ii] * D[jj])
        C = np.ones((bins + 1, k))
        with np.errstate(invalid="ignore", divide="ignore"):
            C[1:] = sums[:bins] / counts[:bins, None] / var
        C[:, var == 0] = np.nan
        r = np.concatenate([[0.0], (np.arange(bins) + 0.5) * (r_max / bins)])
        return r, (C[:, 0] if X.ndim == 1 else C)

    def rdf(self, types=None, bins: int = 100, r_max: float | None = None,
            n_species: int | None = None) -> RDF:
        """Radial distribution function g(r), total and (with ``types``) partial.

        g(r) = (pairs in the bin) / (expected pairs of an ideal gas of the same N in the
        box): N (N - 1) / 2 * v_bin / V for the total, N_a N_b v_bin / V for a != b and
        N_a (N_a - 1) / 2 * v_bin / V for a = b, with v_bin the bin's shell area (2D) or
        volume (3D). So g -> 1 for uniform random points at every N.

        Args:
            types: Optional (N,) integer species indices >= 0.
            bins: Number of equal bins in [0, r_max].
            r_max: Largest distance; default min(this r_max, min(L) / 2).
            n_species: S, the size of ``partial`` (default max(types) + 1; give it so a
                sample without the last species still yields an (S, S, bins) array).

        Returns:
            The :class:`RDF`.

        Raises:
            ValueError: On malformed types, r_max beyond this list or half the box, bins < 1.
        """
        r_max = min(self._r_max, self._box.min() / 2) if r_max is None else r_max
        r_max, bins = self._binned(r_max, bins)
        t = None
        if types is not None:
            arr = np.asarray(types)
            if arr.ndim != 1 or arr.shape[0] != self._n:
                raise ValueError(f"types must have shape ({self._n},); got shape {arr.shape}")
            t = as_species_indices(arr)
            if t.size and t.min() < 0:
                raise ValueError(f"types must be species indices >= 0; got min {t.min()}")
        if t is None:
            n_species = 1
        elif n_species is None:
            n_species = int(t.max()) + 1
        elif isinstance(n_species, bool) or not isinstance(n_species, (int, np.integer)) \
                or n_species <= t.max():
            raise ValueError(f"n_species must be an integer > max(types) = {t.max()}; "
                             f"got {n_species!r}")
        t_int = t[self._perm] if t is not None else np.zeros(self._n, np.int64)
        hist = np.zeros(n_species * n_species * (bins + 1), np.int64)
        for i, j, r in self._blocks(r_max):
            b = self._bin_index(r, r_max, bins)
            key = (t_int[i] * n_species + t_int[j]) * (bins + 1) + b
            hist += np.bincount(key, minlength=hist.size)
        hist = hist.reshape(n_species, n_species, bins + 1)[..., :bins]
        counts = hist.sum(axis=(0, 1))
        edges = np.linspace(0.0, r_max, bins + 1)
        unit = np.pi if self._d == 2 else 4.0 * np.pi / 3.0
        shell = unit * np.diff(edges ** self._d) / float(np.prod(self._box))  # v_bin / V
        with np.errstate(invalid="ignore", divide="ignore"):
            g = counts / (0.5 * self._n * (self._n - 1) * shell)
            partial = None
            if t is not None:
                pairs = hist + np.swapaxes(hist, 0, 1)  # unordered: (a, b) and (b, a)
                diag = np.arange(n_species)
                pairs[diag, diag] = hist[diag, diag]
                n_a = np.bincount(t, minlength=n_species).astype(float)
                expect = np.outer(n_a, n_a)
                expect[diag, diag] = 0.5 * n_a * (n_a - 1)
                expect[expect == 0] = np.nan
                partial = pairs / (expect[..., None] * shell)
        r = 0.5 * (edges[1:] + edges[:-1])
        return RDF(r=r, g=g, counts=counts.astype(np.int64), partial=partial)

    def __repr__(self) -> str:
        return (f"PairList(N={self._n}, d={self._d}, r_max={self._r_max:g}, "
                f"pairs={self.n_pairs}, {self.nbytes / 2**20:.1f} MiB)")
