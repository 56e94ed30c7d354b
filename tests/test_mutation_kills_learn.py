"""Tests written to kill surviving mutants of ``learn/grid`` and ``learn/gradcam``
(tests/tools/mutation.py).

Each test checks a numerical quantity against an independent reference (a per-particle
loop, an analytic field) or an invariant; the docstring of each names the mutants it kills.
"""

import numpy as np
import pytest

import glasscam_mpi.learn.grid as grid_mod
from glasscam_mpi.learn.grid import GridSpec, to_grid, to_grid_batch


def _reference_grid(spec, box, x, types):
    """M by definition: per particle and axis, the Gaussian at the minimum-image distance of
    every grid point, zero beyond cutoff * w, normalised; the product over axes / cell."""
    n, dim = spec.n_grid, spec.dim
    ref = np.zeros(spec.shape)
    for xi, ti in zip(x, types):
        w = spec.widths[ti]
        weight = np.ones((n,) * dim)
        for a in range(dim):
            d = np.arange(n) * box[a] / n - xi[a]
            d -= box[a] * np.round(d / box[a])
            g = np.where(np.abs(d) <= spec.cutoff * w, np.exp(-d**2 / (2 * w**2)), 0.0)
            shape = [1] * dim
            shape[a] = n
            weight = weight * (g / g.sum()).reshape(shape)
        ref[ti] += weight / np.prod(box / n)
    return ref


@pytest.mark.parametrize("box", [(9.0, 6.5), (5.0, 6.0, 4.5)])
def test_grid_matches_the_definition_for_particles_at_every_sub_cell_offset(box):
    """Kills ``floor -> ceil`` of the stencil's anchor cell in grid._stencil: the stencil
    must reach every grid point within cutoff * w whatever the particle's offset inside
    its cell (one point is lost for offsets below reach - floor(reach) otherwise), so the
    positions here cover the offsets of a cell evenly."""
    box = np.asarray(box)
    dim = len(box)
    spec = GridSpec(dim=dim, n_grid=12, n_species=2, widths=(0.5, 0.4), cutoff=2.5)
    h = box / spec.n_grid
    frac = (np.arange(40)[:, None] + 0.5) / 40 * np.ones(dim)   # offsets 0.0125 .. 0.9875
    rng = np.random.default_rng(4)
    x = (rng.integers(0, spec.n_grid, (40, dim)) + frac) * h
    types = rng.integers(0, 2, 40)
    got = to_grid(spec, box, x, types, dtype=np.float64)
    ref = _reference_grid(spec, box, x, types)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * ref.max())


@pytest.mark.parametrize("chunk_particles", [1, 3, 5])
def test_batch_gridding_is_independent_of_the_chunking(monkeypatch, chunk_particles):
    """Kills the chunk bookkeeping mutants of grid._grid (``sample[hi - 1] -> hi - 2``,
    ``sample - s_lo -> + s_lo``, ``s_hi - s_lo -> +``, the slice ``s_hi + 1 -> + 2``): the
    stencils are accumulated in chunks of particles that may start and end anywhere inside
    a sample; the result must equal the definition for every chunk size."""
    spec = GridSpec(dim=2, n_grid=16, n_species=2, widths=(0.5, 0.44))
    box = np.array([6.0, 5.0])
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (4, 7, 2)) * box
    types = rng.integers(0, 2, (4, 7))
    r = int(np.floor((spec.cutoff * max(spec.widths) / (box / spec.n_grid)).max()))
    per_particle = (2 * r + 2) ** 2
    monkeypatch.setattr(grid_mod, "_CHUNK_ENTRIES", per_particle * chunk_particles)
    got = to_grid_batch(spec, box, x, types, dtype=np.float64)
    for b in range(4):
        ref = _reference_grid(spec, box, x[b], types[b])
        np.testing.assert_allclose(got[b], ref, rtol=1e-12, atol=1e-12 * ref.max())


def test_grid_spacing_is_the_box_over_the_points_per_axis():
    """Kills the mutants of GridSpec.spacing (run by no test): h_a = L_a / n_grid."""
    spec = GridSpec(dim=3, n_grid=16, n_species=1, widths=(0.5,))
    np.testing.assert_allclose(spec.spacing([8.0, 4.0, 2.0]), [0.5, 0.25, 0.125], rtol=1e-15)
