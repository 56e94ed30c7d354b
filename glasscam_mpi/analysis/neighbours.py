"""One periodic pair search per configuration, reused for coarse-graining, C(r) and g(r).

:class:`PairList` finds every unordered pair i < j with minimum-image distance
r_ij <= r_max once, with the periodic ``scipy.spatial.cKDTree`` (``boxsize``), as
:mod:`~glasscam_mpi.analysis.coarse` does, and keeps it for any number of fields, lengths
and functions. Results equal :func:`~glasscam_mpi.analysis.coarse.coarse_grain` and
:func:`~glasscam_mpi.analysis.correlation.spatial_correlation` to ~1e-13 (tested).

Numbering. Inside the list particles are renumbered in the k-d tree's (spatially
coherent) order, so particles close in space are close in memory; inputs and outputs use
the caller's numbering.

Order: distance *bands*, then particle i, then partner j (CSR rows). The pairs are split
into bands of width h, the power of two with r_max / h in [16, 32): band b holds the
pairs with b h < r_ij <= (b + 1) h (r / h is exact). Within a band, each pair is stored
once, in the row of its lower (internal) index i, and rows follow i: a band is a CSR
matrix W_b (N x N, upper triangle). Everything runs band by band and, inside a band,
over blocks of consecutive rows, so each pass streams the rows i of an (N, k) array and
touches only the rows j of i's neighbours, which are nearby in memory: the cost per pair
hardly grows with N (at most 1.3x from N = 2000 to 1e5, below). The previous order,
4096 thin distance shells swept one after the other, revisited all N rows in every
shell, from main memory once N rows no longer fit the caches: 5x dearer per pair at
N = 1e5 than at 2000 for 40 fields. The order is built by
scipy's COO -> CSR conversion with rows (band, i), a counting sort in C (O(M)), which
also sorts j within each row.

Exactness. Each band's smallest and largest distance are stored. For a cutoff r (2 xi,
or r in :meth:`PairList.count` and :meth:`PairList.pairs`), bands entirely within r are
taken whole, bands entirely beyond are skipped, and only a band that r cuts is masked
pair by pair (r_ij <= r). A cutoff on a multiple of h cuts no band (r_max = 16: h = 1,
so every xi that is a multiple of 1/2, the analyze stage's defaults included).

Storage, per pair: an int32 partner index j and a float64 distance, 12 bytes (int64
indices only if N >= 2^31), plus 8 bytes per (band, particle) of row offsets (about 0.3
bytes per pair for a dense liquid at r_max = 16). float64 because float32 distances
(error ~6e-8 r) shift the kernel exp(-(r/xi)^2) by up to ~5e-7 relative and move pairs
across a cutoff, which would break the 1e-12 agreement with the definitions.

Arithmetic. Coarse-graining computes, per block of rows, r^2 once and the weights of
every xi whose cutoff reaches the band from it, then adds (W + W^T) G for the fields G
(with a column of ones for the kernel sums) with scipy's own in-place CSR and CSC
kernels (``scipy.sparse._sparsetools.csr_matvecs`` / ``csc_matvecs``, the loops behind
``csr_array @ dense``; with a scipy that lacks them, the public products, over whole
bands). C(r) of more than four fields uses the CSR kernel per distance bin of a block
(sum_i dX_i . (W_bin dX)_i), of up to four a weighted ``np.bincount`` per field.

Cost (2D, density 1.2, r_max = 16, xi = 0, 1, 2, 3, 4, 5, 6, 8, C(r) to 16 in 64 bins; one
core, CPU time in us per particle; benchmarks/neighbours.py, the previous order in
brackets, same run):

    N      pairs   kept     build peak        build     scan 3      scan 40    C(r) 3    C(r) 40
    2000   9.6e5   11 MB    27 MB, +41 MB     15 (46)   7.3 (20)    26 (54)    8.9 (15)  21 (35)
    2e4    9.7e6   113 MB   260 MB, +410 MB   32 (88)   7.4 (13)    29 (93)    8.7 (16)  21 (65)
    1e5    4.8e7   565 MB   1.3 GB, +2.0 GB   46 (93)   7.5 (17)    32 (278)   8.8 (19)  23 (122)

(the build peak: numpy's peak, then the process's RSS increase, which holds scipy's own
pair buffer from ``query_pairs``; previously 1.6 GB and +2.4 GB at N = 1e5, 16 bytes
kept per pair. The 3-field scan with :func:`~glasscam_mpi.analysis.coarse.coarse_grain`,
one pair search per xi: 53 us per particle at N = 2000. Per pair and field, the 40-field
scan costs 0.55 ns at N = 2000 and 0.69 ns at 1e5, counting the pairs within each 2 xi.)
The build's cost per particle still grows with N (tree search, first touches of fresh
memory, the counting sort's scatter), as it did before.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

from glasscam_mpi.analysis.checks import (as_box, as_field, as_positions, as_positive,
                                           as_species_indices, check_half_box, wrap)

_BANDS = 16         # distance bands of the pair order: between _BANDS and 2 _BANDS
_BLOCK = 1 << 16    # pairs per block of arithmetic (a block's temporaries stay in cache)
_CHUNK = 1 << 16    # pairs per chunk while building (its temporaries stay in cache)


def _private_kernels():
    """scipy's in-place kernels behind CSR and CSC @ dense (Y += A X, one C loop each), or
    (None, None) where this scipy lacks them or they do not compute that (then the public
    products are used)."""
    try:
        from scipy.sparse._sparsetools import csc_matvecs, csr_matvecs

        ptr, j, w = np.array([0, 1, 2], np.int32), np.array([1, 0], np.int32), np.array([2., 3.])
        G, W = np.arange(6.0).reshape(2, 3), np.array([[0.0, 2.0], [3.0, 0.0]])
        Y, Z = np.ones((2, 3)), np.ones((2, 3))
        csr_matvecs(2, 2, 3, ptr, j, w, G.reshape(-1), Y.reshape(-1))
        csc_matvecs(2, 2, 3, ptr, j, w, G.reshape(-1), Z.reshape(-1))
        if np.array_equal(Y, 1 + W @ G) and np.array_equal(Z, 1 + W.T @ G):
            return csr_matvecs, csc_matvecs
    except Exception:  # pragma: no cover - any change of scipy's internals
        pass
    return None, None  # pragma: no cover


_csr_matvecs, _csc_matvecs = _private_kernels()


def _add_product(Y: np.ndarray, w: np.ndarray, j: np.ndarray, ptr: np.ndarray,
                 G: np.ndarray) -> None:
    """Y += W G for the CSR rows W = (w, j, ptr) over all N columns; Y and G C-contiguous."""
    rows, (n, k) = len(ptr) - 1, G.shape
    if _csr_matvecs is not None:
        _csr_matvecs(rows, n, k, ptr, j, w, G.reshape(-1), Y.reshape(-1))
    else:
        Y += scipy.sparse.csr_array((w, j, ptr), shape=(rows, n)) @ G


def _add_symmetric(acc: np.ndarray, G: np.ndarray, i0: int, ptr: np.ndarray,
                   j: np.ndarray, w: np.ndarray) -> None:
    """acc[i0:i1] += W G and acc += W^T G[i0:i1] for the CSR block W = (w, j, ptr) of rows
    i0..i1 (all N columns); acc and G are C-contiguous (N, K) float64."""
    rows = len(ptr) - 1
    n, k = G.shape
    _add_product(acc[i0:i0 + rows], w, j, ptr, G)
    if _csc_matvecs is not None:  # W^T as CSC: the same arrays
        _csc_matvecs(n, rows, k, ptr, j, w, G[i0:i0 + rows].reshape(-1), acc.reshape(-1))
    else:  # an (N, K) result per call: callers use big blocks then
        acc += scipy.sparse.csr_array((w, j, ptr), shape=(rows, n)).T @ G[i0:i0 + rows]


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
            (beyond half the box edge this is no longer a full shell; :meth:`correlation`,
            :meth:`rdf` and, unless asked with ``beyond_half_box``, :meth:`coarse_grain`
            refuse such distances).

    Raises:
        ValueError: On malformed box, positions or r_max.
    """

    def __init__(self, box, positions, r_max: float):
        self._box = as_box(box)
        x = wrap(as_positions(positions, self._box), self._box)
        self._n, self._d = x.shape
        self._r_max = as_positive(r_max, "r_max")
        n = self._n
        tree = cKDTree(x, boxsize=self._box)
        self._perm = np.asarray(tree.indices, dtype=np.int64)  # internal q -> particle
        inv = np.empty(n, dtype=np.int64)
        inv[self._perm] = np.arange(n)
        found = tree.query_pairs(self._r_max, output_type="ndarray")  # (M, 2), i < j
        del tree
        m = len(found)
        # bands of width h, a power of two: band b holds b h < r_ij <= (b + 1) h exactly
        self._h = float(2.0 ** np.floor(np.log2(self._r_max / _BANDS)))
        self._nb = nb = max(1, int(np.ceil(self._r_max / self._h)))
        ktype = np.int32 if max(nb * n, m) < 2**31 else np.int64
        cols = [np.ascontiguousarray(x[:, axis]) for axis in range(self._d)]
        row, col, dist = np.empty(m, ktype), np.empty(m, ktype), np.empty(m)
        for s in range(0, m, _CHUNK):  # chunks: no pair-sized float temporaries
            i, j = found[s:s + _CHUNK, 0], found[s:s + _CHUNK, 1]
            part = slice(s, s + len(i))
            dist[part] = np.sqrt(self._min_image_r2(cols, i, j))
            a, b = inv[i], inv[j]
            row[part] = self._band(dist[part]) * n + np.minimum(a, b)
            col[part] = np.maximum(a, b)
        del found
        # (band, i) rows, j columns: scipy's COO -> CSR conversion is a counting sort in C
        # (O(M)), then the columns are sorted within each (short) row
        csr = scipy.sparse.coo_array((dist, (row, col)), shape=(nb * n, n)).tocsr()
        del row, col, dist
        csr.sort_indices()  # (tocsr leaves them sorted; this only checks)
        self._ptr = csr.indptr.astype(np.int64)  # band b, row i: [ptr[b n + i], ptr[b n + i + 1])
        self._j = csr.indices.astype(np.int32 if n < 2**31 else np.int64, copy=False)
        self._r = csr.data
        del csr
        # each band's distance range: a cutoff inside a band masks that band only
        self._band_lo, self._band_hi = np.full(nb, np.inf), np.full(nb, -np.inf)
        for band in range(nb):
            s, e = self._ptr[band * n], self._ptr[(band + 1) * n]
            if e > s:
                self._band_lo[band], self._band_hi[band] = self._r[s:e].min(), self._r[s:e].max()
        for arr in (self._j, self._r, self._perm, self._ptr, self._band_lo, self._band_hi):
            arr.flags.writeable = False

    def _min_image_r2(self, cols: list, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared minimum-image distances, computed exactly as in coarse.iter_pairs."""
        r2 = np.zeros(len(i))
        for c, length in zip(cols, self._box):
            dx = c[j] - c[i]
            dx -= length * np.rint(dx * (1.0 / length))
            r2 += dx * dx
        return r2

    def _band(self, r: np.ndarray) -> np.ndarray:
        """Band of each distance: b with b h < r <= (b + 1) h (r / h is exact, h being a
        power of two; exactness of the results rests on each band's stored range anyway)."""
        b = np.ceil(r * (1.0 / self._h)) - 1.0
        return np.clip(b, 0, self._nb - 1).astype(np.int64)

    def _bands(self, r: float):
        """(band, start, end, masked) of each band holding pairs with r_ij <= r: its pairs
        are [start, end); masked when some of them have r_ij > r."""
        for band in range(self._nb):
            if self._band_lo[band] <= r:
                yield (band, int(self._ptr[band * self._n]), int(self._ptr[(band + 1) * self._n]),
                       bool(self._band_hi[band] > r))

    def _row_blocks(self, band: int, size: int):
        """(i0, i1, ptr) of consecutive rows of ``band`` holding about ``size`` pairs each
        (whole rows), ptr the rows' offsets from the block's first pair."""
        base = self._ptr[band * self._n:(band + 1) * self._n + 1]
        total = int(base[-1] - base[0])
        if total <= size:
            edges = np.array([0, self._n])
        else:
            cut = np.searchsorted(base, base[0] + np.arange(size, total, size), side="right") - 1
            edges = np.unique(np.concatenate([[0], cut, [self._n]]))
        for i0, i1 in zip(edges[:-1].tolist(), edges[1:].tolist()):
            if base[i1] > base[i0]:
                yield i0, i1, base[i0:i1 + 1] - base[i0]

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
        """Bytes held by the pair list (partners, distances, row offsets, permutation)."""
        return sum(a.nbytes for a in (self._j, self._r, self._ptr, self._perm,
                                      self._band_lo, self._band_hi))

    def count(self, r: float) -> int:
        """Number of unordered pairs with r_ij <= r (r <= r_max)."""
        r = as_positive(r, "r")
        self._check_cutoff(r, "r")
        total = 0
        for _, start, end, masked in self._bands(r):
            total += int(np.count_nonzero(self._r[start:end] <= r)) if masked else end - start
        return total

    def pairs(self, r: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs with r_ij <= r (default r_max), each once.

        Returns:
            (i, j, r_ij): (M,) int64 particle indices with i < j (caller's numbering) and
            (M,) float64 minimum-image distances, in the list's order (by distance band,
            then by particle; not sorted by distance).
        """
        r = self._r_max if r is None else as_positive(r, "r")
        self._check_cutoff(r, "r")
        out_i, out_j, out_r = [], [], []
        for i, j, rij in self._blocks(r):
            keep = rij <= r
            a, b = self._perm[i[keep]], self._perm[j[keep]]
            out_i.append(np.minimum(a, b))
            out_j.append(np.maximum(a, b))
            out_r.append(rij[keep])
        if not out_r:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_r)

    def _blocks(self, r: float, size: int | None = None):
        """(i, j, r_ij) arrays over blocks of about ``size`` pairs that contain every pair
        with r_ij <= r (and some beyond, in a band that r cuts), i < j in the internal
        (k-d tree) numbering, by band and then by i (default size 4 _BLOCK)."""
        size = 4 * _BLOCK if size is None else size
        for band, _, _, _ in self._bands(r):
            for i0, i1, ptr in self._row_blocks(band, size):
                s = int(self._ptr[band * self._n + i0])
                e = s + int(ptr[-1])
                i = np.repeat(np.arange(i0, i1, dtype=self._j.dtype), np.diff(ptr))
                yield i, self._j[s:e], self._r[s:e]

    # -- coarse-graining ---------------------------------------------------------------
    def coarse_grain(self, values, xi: float, *, beyond_half_box: bool = False) -> np.ndarray:
        """Gaussian coarse-graining X_i(xi) of METHOD.md section 7.

        X_i = sum_j X_j P(r_ij) / sum_j P(r_ij), P(r) = exp(-(r/xi)^2), j over the
        particles with r_ij <= 2 xi, i included; equals
        :func:`~glasscam_mpi.analysis.coarse.coarse_grain`.

        Args:
            values: (N,) field or (N, k) fields.
            xi: Kernel width (length units), > 0, with 2 xi <= r_max.
            beyond_half_box: See :meth:`coarse_grain_scan`.

        Returns:
            float64 array shaped like ``values``. A constant field is returned exactly.

        Raises:
            ValueError: On malformed values, xi <= 0, 2 xi > r_max, or 2 xi > min(L) / 2
                without ``beyond_half_box``.
        """
        xi = as_positive(xi, "xi")
        return self.coarse_grain_scan(values, [xi], beyond_half_box=beyond_half_box)[0]

    def coarse_grain_scan(self, values, xis, *, beyond_half_box: bool = False) -> np.ndarray:
        """Coarse-grain field(s) at several lengths in one pass over the pairs.

        Args:
            values: (N,) field or (N, k) fields.
            xis: (m,) kernel widths, each 0 (the bare field, returned unchanged as
                float64) or > 0 with 2 xi <= r_max; any order, repeats allowed.
            beyond_half_box: Allow a kernel cutoff 2 xi beyond half the shortest box
                edge. There the sum no longer runs over a full ball: each j enters once,
                at its nearest image, so the kernel is clipped by the box. Off by default:
                such an xi is refused rather than silently clipped.

        Returns:
            (m, N) or (m, N, k) float64: entry a is the field(s) coarse-grained at xis[a].

        Raises:
            ValueError: On malformed values or xis, some 2 xi > r_max, or some
                2 xi > min(L) / 2 without ``beyond_half_box``.
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
        check_half_box(self._box, xis, beyond_half_box)
        n = self._n
        F = X.reshape(n, -1)
        ref = F[0].copy()
        k = F.shape[1]
        G = np.ones((n, k + 1))  # deviations from particle 0 (exact for constants),
        G[:, :k] = F[self._perm] - ref  # internal order, and a column of ones for sum P
        widths, which = np.unique(xis[xis > 0], return_inverse=True)
        acc = np.empty((len(widths), n, k + 1))
        acc[:] = G  # the j = i term, P(0) = 1
        if widths.size:
            self._accumulate(acc, G, widths)
        inv = np.empty(n, dtype=np.int64)
        inv[self._perm] = np.arange(n)
        for A in acc:  # X_i = ref + sum_j P (X_j - ref) / sum_j P, in place
            np.divide(A[:, :k], A[:, k:], out=A[:, :k])
            A[:, :k] += ref
        out = np.empty((len(xis), n, k))
        live = iter(which.tolist())
        for a, xi in enumerate(xis.tolist()):
            if xi > 0:
                np.take(acc[next(live)][:, :k], inv, axis=0, out=out[a])
            else:
                out[a] = F
        return out.reshape((len(xis),) + X.shape)

    def _accumulate(self, acc: np.ndarray, G: np.ndarray, xis: np.ndarray) -> None:
        """acc[a] += (W_a + W_a^T) G for the kernel matrices W_a of each xis[a].

        Band by band, rows in blocks of about _BLOCK pairs; each block's weights for every
        xi come from one r^2 array, and each xi's two products are scipy's CSR and CSC
        kernels, in place, streaming acc's rows i and touching only the rows j near them.
        """
        assert acc.flags.c_contiguous and G.flags.c_contiguous
        n, width = G.shape
        cuts = 2.0 * xis
        scales = -1.0 / (xis * xis)
        # without the in-place kernels each W^T product makes an (N, K) result: big blocks
        size = _BLOCK if _csc_matvecs is not None else max(_BLOCK, 2 * n * width)
        for band, _, _, _ in self._bands(float(cuts.max())):
            use = np.flatnonzero(cuts >= self._band_lo[band]).tolist()
            mask = (cuts < self._band_hi[band]).tolist()
            for i0, i1, ptr in self._row_blocks(band, size):
                s = int(self._ptr[band * n + i0])
                e = s + int(ptr[-1])
                ptr = ptr.astype(self._j.dtype)
                j, r = self._j[s:e], self._r[s:e]
                r2 = r * r
                for a in use:
                    w = np.exp(r2 * scales[a])
                    if mask[a]:
                        w[r > cuts[a]] = 0.0
                    _add_symmetric(acc[a], G, i0, ptr, j, w)

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
        n = self._n
        X = as_field(values, n)
        dX = X.reshape(n, -1) - X.reshape(n, -1).mean(axis=0)
        var = np.mean(dX * dX, axis=0)
        D = np.ascontiguousarray(dX[self._perm])
        k = D.shape[1]
        counts = np.zeros(bins + 1)
        sums = np.zeros((bins + 1, k))
        for band, _, _, _ in self._bands(r_max):
            for i0, i1, ptr in self._row_blocks(band, _BLOCK):
                s = int(self._ptr[band * n + i0])
                j, r = self._j[s:s + int(ptr[-1])], self._r[s:s + int(ptr[-1])]
                b = self._bin_index(r, r_max, bins)
                counts += np.bincount(b, minlength=bins + 1)
                if k <= 4:  # few fields: sum_pairs dX_i dX_j per bin, a bincount per field
                    i = np.repeat(np.arange(i0, i1), np.diff(ptr))
                    for c in range(k):
                        sums[:, c] += np.bincount(b, weights=D[i, c] * D[j, c],
                                                  minlength=bins + 1)
                    continue
                # many fields: per bin beta of this band, sum_i dX_i . (W_beta dX)_i with
                # W_beta the block's pairs in that bin (one CSR kernel call per bin)
                ptr = ptr.astype(self._j.dtype)
                Y = np.empty((i1 - i0, k))
                for beta in range(int(b.min()), min(int(b.max()), bins - 1) + 1):
                    Y.fill(0.0)
                    _add_product(Y, (b == beta).astype(float), j, ptr, D)
                    sums[beta] += np.einsum("ik,ik->k", D[i0:i1], Y)
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
