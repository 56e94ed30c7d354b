"""The glass/liquid CNN (glasscam_mpi.learn.model): periodic translation covariance of the
feature maps, shapes, parameter count, spec validation and JSON round-trip."""

from __future__ import annotations

import json

import pytest
import torch

from glasscam_mpi.learn.grid import GridSpec
from glasscam_mpi.learn.model import GLASS, LIQUID, GlassCNN, ModelSpec, build_model
from glasscam_mpi.systems import get_system

torch.set_num_threads(1)


def _tiny(dim: int, n_grid: int = 16, **kw) -> GlassCNN:
    torch.manual_seed(0)
    spec = ModelSpec(dim=dim, in_channels=2, n_grid=n_grid, channels=(3, 4, 5), hidden=8,
                     **kw)
    return build_model(spec).double().eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_feature_maps_roll_with_periodic_translations(dim):
    model = _tiny(dim)
    s_total = model.spec.total_stride
    assert s_total == 8
    x = torch.rand((2, 2) + (16,) * dim, dtype=torch.float64)
    axes = tuple(range(2, 2 + dim))
    shifts = (1, -1, 1)[:dim]  # in last-layer feature cells
    with torch.no_grad():
        base = model.features(x)
        moved = model.features(torch.roll(x, [s_total * m for m in shifts], dims=axes))
    cumulative = (2, 4, 8)
    for layer in range(3):
        step = s_total // cumulative[layer]  # feature cells of this layer per shift unit
        expected = torch.roll(base[layer], [step * m for m in shifts], dims=axes)
        torch.testing.assert_close(moved[layer], expected, rtol=1e-12, atol=1e-12)
    # the last layer really changed (the test would pass trivially on a constant map)
    assert not torch.allclose(moved[-1], base[-1])


def test_shapes_no_pooling_and_analytic_flat_size():
    model = _tiny(2, n_grid=32)
    spec = model.spec
    x = torch.rand(4, 2, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        feats = model.features(x)
        out = model(x)
    assert [tuple(f.shape) for f in feats] == [(4, 3, 16, 16), (4, 4, 8, 8), (4, 5, 4, 4)]
    assert [spec.feature_shape(i) for i in range(3)] == [tuple(f.shape[1:]) for f in feats]
    assert feats[-1].flatten(1).shape[1] == spec.flat_size == 5 * 4 * 4
    assert out.shape == (4, 2)
    torch.testing.assert_close(out, model.head(feats[-1]))
    assert all(f.min() >= 0 for f in feats)  # post-ReLU


@pytest.mark.parametrize("dim", [2, 3])
def test_parameter_count(dim):
    spec = ModelSpec(dim=dim, in_channels=2, n_grid=16, channels=(3, 4, 5), kernels=(5, 3, 3),
                     hidden=8)
    model = build_model(spec)
    k = [5**dim, 3**dim, 3**dim]
    conv = (3 * (2 * k[0] + 1)) + (4 * (3 * k[1] + 1)) + (5 * (4 * k[2] + 1))
    flat = 5 * 2**dim  # 16 / 8 = 2 points per axis
    fc = 8 * (flat + 1) + 2 * (8 + 1)
    assert sum(p.numel() for p in model.parameters()) == conv + fc


def test_default_spec_for_kam_and_ka3d():
    kam = ModelSpec.for_grid(GridSpec.for_system(get_system("KAM")))
    assert (kam.dim, kam.in_channels, kam.n_grid) == (2, 2, 128)
    assert kam.flat_size == 64 * 16 * 16
    ka3d = ModelSpec.for_grid(GridSpec.for_system(get_system("KA3D")))
    assert ka3d.flat_size == 64 * 6**3
    assert (LIQUID, GLASS) == (0, 1)


def test_dropout_acts_in_train_mode_only():
    torch.manual_seed(1)
    model = build_model(ModelSpec(dim=2, in_channels=1, n_grid=16, channels=(2, 2, 2),
                                  hidden=64, dropout=0.5)).double()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_spec_round_trip_through_json():
    spec = ModelSpec(dim=3, in_channels=2, n_grid=48, channels=(8, 16, 32), kernels=(3, 3, 3),
                     strides=(2, 2, 1), hidden=64, dropout=0.25)
    text = json.dumps(spec.to_dict())
    again = ModelSpec.from_dict(json.loads(text))
    assert again == spec
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert isinstance(again.channels, tuple)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dim=2, in_channels=2, n_grid=100), "not divisible by the total stride 8"),
    (dict(dim=2, in_channels=2, n_grid=16, kernels=(4, 3, 3)), "kernels must be odd"),
    (dict(dim=4, in_channels=2, n_grid=16), "dim must be 2 or 3"),
    (dict(dim=2, in_channels=0, n_grid=16), "in_channels must be an integer >= 1"),
    (dict(dim=2, in_channels=2, n_grid=16, dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(dim=2, in_channels=2, n_grid=16, channels=(4, 8)), "channels must be three"),
    (dict(dim=2, in_channels=2, n_grid=16, strides=(2, 2, 2.5)), "strides must be three"),
    (dict(dim=2, in_channels=2, n_grid=8, kernels=(3, 3, 7)), "kernels.2. = 7 needs circular"),
])
def test_bad_spec_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelSpec(**kwargs)


def test_from_dict_rejects_unknown_keys_and_model_rejects_wrong_input():
    with pytest.raises(ValueError, match="unknown key"):
        ModelSpec.from_dict({"dim": 2, "in_channels": 2, "n_grid": 16, "pooling": True})
    with pytest.raises(ValueError, match="missing key"):
        ModelSpec.from_dict({"dim": 2, "n_grid": 16})
    model = _tiny(2)
    with pytest.raises(ValueError, match=r"input must have shape \(B, 2, 16, 16\)"):
        model(torch.rand(1, 2, 32, 32, dtype=torch.float64))
