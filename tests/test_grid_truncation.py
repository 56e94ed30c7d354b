"""The Gaussian of the gridding M is truncated at 3 widths per axis (issue 18, item 6).

METHOD.md section 3 says nothing about a truncation; the package's choice (README,
"Gridding") is: each particle's periodic Gaussian of width w_s is cut at |r_a - r_i,a| <= 3 w_s
along each axis and renormalised per axis. This test measures it, for the spec the stages
use (``grid_spec_of`` of a default config), in the numpy and the torch path: one particle,
a grid line through it, every grid point's weight against the analytic truncated Gaussian.
A change of the cutoff (or of its normalisation) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from glasscam_mpi.config import build_config
from glasscam_mpi.learn.data import grid_spec_of
from glasscam_mpi.learn.grid import to_grid

CUT = 3.0  # the documented truncation, in widths (README "Gridding")


def _line(field: np.ndarray, k1: int) -> np.ndarray:
    """The species-0 channel along axis 0 through grid column k1, normalised to sum 1."""
    f = np.asarray(field, dtype=float)[0, :, k1]
    return f / f.sum()


def _expected(spec, box, x0: float) -> tuple[np.ndarray, np.ndarray]:
    """(displacement of every grid point from x0, analytic truncated Gaussian weights)."""
    n, L = spec.n_grid, box[0]
    h = L / n
    d = np.arange(n) * h - x0
    d -= L * np.rint(d / L)                       # periodic: nearest image
    w = spec.widths[0]
    g = np.exp(-0.5 * (d / w) ** 2) * (np.abs(d) <= CUT * w)
    return d, g / g.sum()


def _setup():
    spec = grid_spec_of(build_config({}))          # what train and gradcam use (KAM, 2D)
    box = np.array([12.8, 12.8])                   # h = 0.1 at n_grid = 128
    h = box[0] / spec.n_grid
    # off the grid by 0.01 h (3 w = 15 h at w = 0.5): grid points at 2.998 w and 3.002 w,
    # so a cutoff moved by more than 0.002 w changes which points carry weight
    x = np.array([[40 * h + 0.01 * h, 64 * h]])
    return spec, box, x


def test_numpy_gridding_is_the_gaussian_cut_at_three_widths():
    spec, box, x = _setup()
    d, want = _expected(spec, box, x[0, 0])
    got = _line(to_grid(spec, box, x, np.array([0]), dtype=np.float64), 64)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    w = spec.widths[0]
    inside = np.abs(d) <= CUT * w
    assert (got[inside] > 0).all() and (got[~inside] == 0).all()
    # the nearest points beyond the cut on each side carry nothing; those just inside do
    assert np.abs(d[got > 0]).max() == pytest.approx(2.998 * w, abs=1e-9)
    assert np.abs(d[(got == 0)]).min() == pytest.approx(3.002 * w, abs=1e-9)
    # the tail left out per axis: 2 (1 - Phi(3)) = 0.27 % of the Gaussian (README)
    full = np.exp(-0.5 * (d / w) ** 2)
    assert 1 - full[inside].sum() / full.sum() == pytest.approx(0.0027, abs=2e-4)


def test_torch_gridding_cuts_at_the_same_place():
    torch = pytest.importorskip("torch")
    from glasscam_mpi.learn.torchgrid import to_grid_torch

    spec, box, x = _setup()
    d, want = _expected(spec, box, x[0, 0])
    field = to_grid_torch(spec, box, torch.tensor(x[None], dtype=torch.float64),
                          np.array([0]), dtype=torch.float64)[0].numpy()
    got = _line(field, 64)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert (got[np.abs(d) > CUT * spec.widths[0]] == 0).all()
