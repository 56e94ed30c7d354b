"""The device path of M, M^-1 and Grad-CAM (glasscam_mpi.learn.torchgrid, gradcam_layers),
run on the CPU device against the numpy reference (glasscam_mpi.learn.grid) and against
per-layer Grad-CAM. Nothing here needs a GPU: the same torch code runs on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glasscam_mpi.learn import (GridSpec, ModelSpec, build_model, from_grid_batch,
                                from_grid_torch, gradcam, gradcam_layers,
                                gradcam_particles, gradcam_particles_layers, to_grid_batch,
                                to_grid_torch)
from glasscam_mpi.systems import get_system


def _batch(system: str, n: int, b: int, seed: int = 0):
    s = get_system(system)
    box = np.full(s.dim, s.box_length(n))
    rng = np.random.default_rng(seed)
    x = rng.random((b, n, s.dim)) * box
    x[0, 0] = 0.0                 # on the edges, and images outside the box
    x[0, 1] = box - 1e-12
    x[-1, 2] = -0.4 * box
    x[-1, 3] = 1.7 * box
    types = np.repeat(np.arange(s.n_species), s.counts(n))
    return s, box, x, types


@pytest.mark.parametrize("system, n, n_grid", [("KAM", 600, 64), ("ABM", 500, 48),
                                               ("KA3D", 700, 24)])
def test_torch_gridding_equals_numpy(system, n, n_grid):
    s, box, x, types = _batch(system, n, 3)
    spec = GridSpec.for_system(s, n_grid=n_grid)
    ref = to_grid_batch(spec, box, x, types, dtype=np.float64)
    got = to_grid_torch(spec, box, torch.from_numpy(x), types)  # float64 in, float64 out
    assert got.dtype == torch.float64 and tuple(got.shape) == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6 * ref.max())
    assert np.abs(got.numpy() - ref).max() < 1e-12 * ref.max()  # in fact to rounding
    # float32 (the training dtype): the same to float32 rounding
    got32 = to_grid_torch(spec, box, torch.from_numpy(x).float(), types)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, rtol=0, atol=2e-5 * ref.max())
    # each channel integrates to its species count (number density)
    cell = np.prod(box / n_grid)
    counts = got.numpy().reshape(3, s.n_species, -1).sum(-1) * cell
    np.testing.assert_allclose(counts, np.broadcast_to(s.counts(n), counts.shape), rtol=1e-12)


def test_torch_gridding_per_sample_boxes_and_types():
    s, box, x, types = _batch("KAM", 300, 2)
    spec = GridSpec.for_system(s, n_grid=32)
    boxes = np.stack([box, box * 1.1])
    per_types = np.stack([types, types[::-1]])
    ref = to_grid_batch(spec, boxes, x, per_types, dtype=np.float64)
    got = to_grid_torch(spec, boxes, torch.from_numpy(x), per_types).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())


@pytest.mark.parametrize("system, n_grid", [("KAM", 40), ("KA3D", 12)])
def test_torch_inverse_map_equals_numpy(system, n_grid):
    s, box, x, _ = _batch(system, 400, 3, seed=4)
    rng = np.random.default_rng(9)
    fields = rng.random((3, 5) + (n_grid,) * s.dim)
    ref = from_grid_batch(box, fields, x)
    got = from_grid_torch(box, torch.from_numpy(fields), torch.from_numpy(x))
    assert tuple(got.shape) == ref.shape == (3, 5, 400)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


def test_torch_gridding_refuses_bad_input():
    s, box, x, types = _batch("KAM", 100, 1)
    spec = GridSpec.for_system(s, n_grid=16)
    with pytest.raises(ValueError, match="types must lie in"):
        to_grid_torch(spec, box, x, types + 1)
    with pytest.raises(ValueError, match="positions must have shape"):
        to_grid_torch(spec, box, x[0], types)
    with pytest.raises(ValueError, match="non-finite"):
        to_grid_torch(spec, box, np.where(x > 1, np.nan, x), types)
    with pytest.raises(ValueError, match="box too small"):
        to_grid_torch(GridSpec(dim=2, n_grid=64, n_species=2, widths=(1.0, 1.0)),
                      (5.0, 5.0), x, types)
    with pytest.raises(ValueError, match="too coarse"):
        to_grid_torch(GridSpec.for_system(s, n_grid=4), box, x, types)


def test_one_backward_gives_every_layer_of_gradcam_exactly():
    torch.manual_seed(1)
    s, box, x, types = _batch("KAM", 500, 4)
    spec = GridSpec.for_system(s, n_grid=32)
    model = build_model(ModelSpec.for_grid(spec, channels=(4, 6, 8), hidden=16))
    model.train()  # gradcam_layers runs in eval mode and restores the mode
    grids = torch.from_numpy(to_grid_batch(spec, box, x, types))
    for target in (0, 1):
        cams, logits, p_glass = gradcam_layers(model, grids, target=target)
        for layer in range(3):
            one = gradcam(model, grids, layer=layer, target=target)
            assert torch.equal(one.cam, cams[layer])
            assert torch.equal(one.logits, logits) and torch.equal(one.p_glass, p_glass)
        assert model.training
        assert any(float(c.max()) > 0 for c in cams)  # not trivially zero maps
    part, _, _ = gradcam_layers(model, grids, layers=(2, 0))
    assert torch.equal(part[0], cams[2]) and torch.equal(part[1], cams[0])
    with pytest.raises(ValueError, match="layer must be"):
        gradcam_layers(model, grids, layers=(3,))


@pytest.mark.parametrize("system, n_grid", [("KAM", 32), ("KA3D", 16)])
def test_gradcam_particles_torch_path_equals_numpy_path(system, n_grid):
    torch.manual_seed(2)
    s, box, x, types = _batch(system, 400, 2, seed=3)
    spec = GridSpec.for_system(s, n_grid=n_grid)
    model = build_model(ModelSpec.for_grid(spec, channels=(4, 6, 8), hidden=16)).double()
    ref, p_ref = gradcam_particles_layers(model, spec, box, x, types, gridding="numpy")
    got, p_got = gradcam_particles_layers(model, spec, box, x, types, gridding="torch")
    assert ref.shape == got.shape == (2, 3, 400)
    assert ref.max() > 0
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * ref.max())
    np.testing.assert_allclose(p_got, p_ref, rtol=0, atol=1e-12)
    one, _ = gradcam_particles(model, spec, box, x, types, layer=1, gridding="torch")
    np.testing.assert_array_equal(one, got[:, 1])
    with pytest.raises(ValueError, match="gridding must be"):
        gradcam_particles(model, spec, box, x, types, gridding="gpu")
