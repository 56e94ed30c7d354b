"""Batched Grad-CAM (glasscam_mpi.learn.gradcam) against a per-sample reference built from
the model's own forward with a hook, explicit loops and an explicit periodic bilinear
upsampling; periodic upsampling properties; eval mode; per-particle scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glasscam_mpi.learn.gradcam import (gradcam, gradcam_particles, particle_scores,
                                        periodic_upsample)
from glasscam_mpi.learn.grid import GridSpec, from_grid, to_grid
from glasscam_mpi.learn.model import GLASS, LIQUID, ModelSpec, build_model

torch.set_num_threads(1)


def _tiny_model(dim: int = 2, dropout: float = 0.5):
    torch.manual_seed(3)
    spec = ModelSpec(dim=dim, in_channels=2, n_grid=16, channels=(2, 3, 4), hidden=6,
                     dropout=dropout)
    model = build_model(spec).double().eval()
    # a larger hidden bias keeps the fc ReLUs active so the gradients are not all zero
    with torch.no_grad():
        model.fc1.bias.add_(0.5)
    return model


def _reference_cam(model, x_b: torch.Tensor, layer: int, target: int) -> np.ndarray:
    """Grad-CAM of one sample: hook the input of the module after ``layer``, loops."""
    spec = model.spec
    after = model.convs[layer + 1] if layer + 1 < 3 else model.fc1
    store = {}

    def swap_in_leaf(module, args):
        leaf = args[0].detach().clone().requires_grad_(True)
        store["A"] = leaf
        return (leaf,)

    handle = after.register_forward_pre_hook(swap_in_leaf)
    try:
        y = model(x_b[None])[0, target]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(y, store["A"])
    shape = spec.feature_shape(layer)
    a = store["A"].detach().reshape(shape).numpy()
    g = grad.reshape(shape).numpy()
    lmap = np.zeros(shape[1:])
    for m in range(shape[0]):
        alpha_m = g[m].sum() / g[m].size
        lmap += alpha_m * a[m]
    lmap = np.maximum(lmap, 0.0)
    # explicit periodic bilinear upsampling: input point k read at k / S feature cells
    s = spec.n_grid // shape[1]
    f = shape[1]
    out = np.zeros((spec.n_grid, spec.n_grid))
    for k0 in range(spec.n_grid):
        for k1 in range(spec.n_grid):
            j0, t0 = divmod(k0, s)
            j1, t1 = divmod(k1, s)
            t0, t1 = t0 / s, t1 / s
            out[k0, k1] = ((1 - t0) * (1 - t1) * lmap[j0, j1]
                           + t0 * (1 - t1) * lmap[(j0 + 1) % f, j1]
                           + (1 - t0) * t1 * lmap[j0, (j1 + 1) % f]
                           + t0 * t1 * lmap[(j0 + 1) % f, (j1 + 1) % f])
    return out


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("target", [GLASS, LIQUID])
def test_batched_gradcam_matches_per_sample_reference(layer, target):
    model = _tiny_model()
    # signed inputs: with this seed most maps survive the final ReLU for every case
    x = torch.randn(4, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    res = gradcam(model, x, layer=layer, target=target)
    assert res.cam.shape == (4, 16, 16)
    assert res.cam.dtype == torch.float64
    for b in range(4):
        ref = _reference_cam(model, x[b], layer, target)
        np.testing.assert_allclose(res.cam[b].numpy(), ref, rtol=0, atol=1e-6 * max(1, ref.max()))
    # the comparison has teeth: most maps are not identically zero
    assert int((res.cam.flatten(1).amax(1) > 0).sum()) >= 3
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(res.logits, logits)
    torch.testing.assert_close(res.p_glass, torch.softmax(logits, 1)[:, 1])


@pytest.mark.parametrize("layer", [0, 2])
def test_gradcam_applies_the_input_standardisation_like_forward(layer):
    """A model that standardises its input, fed x, gives the Grad-CAM and logits of the same
    model without standardisation fed (x - mean) / scale."""
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    mean, scale = torch.tensor([0.4, 0.6]), torch.tensor([0.25, 0.5])
    plain, normed = _tiny_model(), _tiny_model()
    normed.set_input_normalization(mean, scale)
    shape = (1, 2, 1, 1)
    ref = gradcam(plain, (x - mean.double().view(shape)) / scale.double().view(shape), layer=layer)
    res = gradcam(normed, x, layer=layer)
    torch.testing.assert_close(res.cam, ref.cam)
    torch.testing.assert_close(res.logits, ref.logits)
    assert float(ref.cam.max()) > 0
    with torch.no_grad():
        torch.testing.assert_close(normed(x), res.logits)
    # and the standardisation really changes what the network sees
    assert not torch.allclose(gradcam(plain, x, layer=layer).logits, res.logits)
    with pytest.raises(ValueError, match="scale > 0"):
        normed.set_input_normalization(mean, torch.tensor([1.0, 0.0]))


def test_layer_minus_one_is_the_last_layer_and_layers_differ():
    model = _tiny_model()
    x = torch.rand(2, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    last = gradcam(model, x, layer=-1).cam
    torch.testing.assert_close(last, gradcam(model, x, layer=2).cam)
    assert not torch.allclose(last, gradcam(model, x, layer=0).cam)
    with pytest.raises(ValueError, match="layer must be an integer"):
        gradcam(model, x, layer=3)
    with pytest.raises(ValueError, match="target must be a class index"):
        gradcam(model, x, target=2)


def test_eval_mode_is_enforced_and_restored_and_no_parameter_grads():
    model = _tiny_model(dropout=0.5)
    x = torch.rand(2, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout is live in train mode
    model.zero_grad(set_to_none=True)
    first = gradcam(model, x)
    second = gradcam(model, x)
    assert model.training  # mode restored
    torch.testing.assert_close(first.cam, second.cam, rtol=0, atol=0)
    torch.testing.assert_close(first.logits, second.logits, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("dim", [2, 3])
def test_periodic_upsample_constant_roll_and_grid_convention(dim):
    gen = torch.Generator().manual_seed(7)
    f, s = 4, 4
    n = f * s
    const = periodic_upsample(torch.full((2,) + (f,) * dim, 1.75, dtype=torch.float64), n)
    torch.testing.assert_close(const, torch.full((2,) + (n,) * dim, 1.75, dtype=torch.float64))
    lmap = torch.rand((2,) + (f,) * dim, dtype=torch.float64, generator=gen)
    up = periodic_upsample(lmap, n)
    axes = tuple(range(1, dim + 1))
    rolled = periodic_upsample(torch.roll(lmap, (1,) * dim, dims=axes), n)
    torch.testing.assert_close(rolled, torch.roll(up, (s,) * dim, dims=axes))
    # same convention as grid.from_grid: input point k (at k h) is the coarse field at k h
    box = np.array([3.0, 5.0, 4.0])[:dim]
    pts = np.stack(np.meshgrid(*[np.arange(n) * box[a] / n for a in range(dim)],
                               indexing="ij"), -1).reshape(-1, dim)
    ref = from_grid(box, lmap[1].numpy(), pts).reshape((n,) * dim)
    np.testing.assert_allclose(up[1].numpy(), ref, rtol=1e-12, atol=1e-12)
    # on coarse points it reproduces the coarse values
    torch.testing.assert_close(up[(slice(None),) + (slice(None, None, s),) * dim], lmap)


def test_particle_scores_end_to_end_3d_and_2d():
    rng = np.random.default_rng(8)
    for dim in (2, 3):
        model = _tiny_model(dim)
        box = np.array([6.0, 7.0, 6.5])[:dim]
        gspec = GridSpec(dim=dim, n_grid=16, n_species=2, widths=(0.5, 0.44))
        pos = rng.random((2, 30, dim)) * box
        types = rng.integers(0, 2, 30)
        scores, p_glass = gradcam_particles(model, gspec, box, pos, types)
        assert scores.shape == (2, 30) and p_glass.shape == (2,)
        assert scores.min() >= 0.0 and np.all((p_glass > 0) & (p_glass < 1))
        # the same as doing the steps by hand
        x = np.stack([to_grid(gspec, box, pos[b], types, dtype=np.float64) for b in range(2)])
        res = gradcam(model, x)
        np.testing.assert_allclose(scores, particle_scores(res.cam, box, pos), rtol=1e-12)
        for b in range(2):
            np.testing.assert_allclose(scores[b], from_grid(box, res.cam[b].numpy(), pos[b]),
                                       rtol=1e-12)
