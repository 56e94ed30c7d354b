"""Batched Grad-CAM on the periodic grid and per-particle scores (METHOD.md section 4).

For a batch of gridded configurations x and a :class:`~glasscam_mpi.learn.model.GlassCNN`:

* y^C = the pre-softmax logit of class C (default :data:`GLASS`, index 1);
* A^m = feature map m of the chosen convolution (default the last), after its ReLU;
* alpha_m = mean over the feature grid of dy^C / dA^m, per sample (paper Eq. 3);
* L = ReLU(sum_m alpha_m A^m) (paper Eq. 4), on the feature grid of n / S_l points;
* L is upsampled to the input grid by periodic multilinear interpolation, and
  Gamma_i = M^-1(L) at each particle (:func:`particle_scores`).

Upsampling convention: feature point j of a layer with cumulative stride S_l sits at input
grid point j * S_l (see :mod:`glasscam_mpi.learn.model`), i.e. at coordinate j * S_l * h,
so the feature grid is a coarser grid of the same periodic box with "point j at j * H",
H = S_l h. Input point k is read at k / S_l feature cells, interpolating between feature
points floor(k / S_l) and floor(k / S_l) + 1 (mod n / S_l) -- exactly what
:func:`glasscam_mpi.learn.grid.from_grid` does for the feature grid, so a constant stays
constant and rolling L by one feature cell rolls the upsampled map by S_l input cells.

One backward pass serves the whole batch: in eval mode (no dropout) sample b's logits
depend only on sample b, so the gradient of sum_b y^C_b with respect to A gives every
sample's own dy^C_b / dA_b. :func:`gradcam` therefore always runs the model in eval mode
(and restores the mode it found). Gradients are taken with respect to the feature maps
only; no parameter gradients are computed or accumulated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from glasscam_mpi.learn.grid import GridSpec, from_grid_batch, to_grid_batch
from glasscam_mpi.learn.model import GLASS, GlassCNN


class GradCAM(NamedTuple):
    """Result of :func:`gradcam` (torch tensors, detached, on the model's device)."""

    cam: torch.Tensor      # (B, n_grid, ..., n_grid) class activation map L, >= 0
    logits: torch.Tensor   # (B, 2) pre-softmax logits, [liquid, glass]
    p_glass: torch.Tensor  # (B,) softmax probability of class GLASS


def periodic_upsample(field: torch.Tensor, size: int | tuple[int, ...]) -> torch.Tensor:
    """Periodic bilinear (2D) / trilinear (3D) upsampling of (B, f_1, ..., f_d) maps.

    Output point k along an axis is read at k * f / n input points, wrapping around (the
    grid convention "point k at k h" on both grids). Implemented by circular padding with
    one point at the high end (point f = point 0) and ``align_corners=True``
    interpolation onto n + 1 points, of which the last (= point 0 again) is dropped.

    Args:
        field: (B, f_1, ..., f_d) real tensor, d = 2 or 3.
        size: Output points per axis n (an int for all axes, or one per axis).

    Returns:
        (B, n_1, ..., n_d) tensor of the same dtype and device.
    """
    d = field.dim() - 1
    if d not in (2, 3):
        raise ValueError(f"field must be (B, f_1, f_2) or (B, f_1, f_2, f_3); got shape "
                         f"{tuple(field.shape)}")
    size = (size,) * d if isinstance(size, int) else tuple(size)
    if len(size) != d or min(size) < 1:
        raise ValueError(f"size must be a positive int or {d} positive ints; got {size}")
    padded = F.pad(field.unsqueeze(1), (0, 1) * d, mode="circular")
    mode = "bilinear" if d == 2 else "trilinear"
    out = F.interpolate(padded, size=tuple(n + 1 for n in size), mode=mode,
                        align_corners=True)
    return out[(slice(None), 0) + (slice(0, -1),) * d]


def gradcam(model: GlassCNN, x, layer: int = -1, target: int = GLASS) -> GradCAM:
    """Grad-CAM maps of a batch, with one backward pass.

    Args:
        model: A :class:`GlassCNN` (anything with ``n_layers``, ``block``, ``head``,
            ``check_input`` and ``spec.n_grid``). Run in eval mode here; its mode is
            restored afterwards.
        x: (B, in_channels, n_grid, ..., n_grid) gridded configurations (tensor or
            array; arrays are converted to the model's dtype and device).
        layer: Which convolution's post-ReLU feature maps are A (0, 1, 2; or -1 = last).
        target: Class C whose logit is explained: GLASS (1, default) or LIQUID (0).

    Returns:
        :class:`GradCAM` (cam (B, n_grid, ...), logits (B, 2), p_glass (B,)).
    """
    cams, logits, p_glass = gradcam_layers(model, x, (layer,), target)
    return GradCAM(cams[0], logits, p_glass)


def gradcam_layers(model: GlassCNN, x, layers=None, target: int = GLASS):
    """Grad-CAM maps of several layers of a batch from one forward and one backward pass.

    The first requested layer's feature maps are the leaf of the graph; one
    ``autograd.grad`` of sum_b y^C_b gives dy^C/dA for every requested layer at once (a
    deeper layer's gradient is an intermediate of the shallower one's). Each map equals
    what :func:`gradcam` gives for that layer alone.

    Args:
        model, x, target: As in :func:`gradcam`.
        layers: Layer indices (default: every convolution, in order).

    Returns:
        (cams, logits, p_glass): a list of (B, n_grid, ...) maps in the order of
        ``layers``, the (B, 2) logits and the (B,) glass probabilities.
    """
    if layers is None:
        layers = range(model.n_layers)
    try:
        layers = [range(model.n_layers)[layer] for layer in layers]
    except (IndexError, TypeError):
        raise ValueError(f"layer must be an integer in [-{model.n_layers}, "
                         f"{model.n_layers}); got {list(layers)!r}") from None
    if not layers:
        raise ValueError("layers must name at least one convolution")
    if target not in (0, 1):
        raise ValueError(f"target must be a class index, 0 (liquid) or 1 (glass); "
                         f"got {target!r}")
    if torch.is_inference_mode_enabled():
        raise RuntimeError("gradcam needs autograd; call it outside torch.inference_mode()")
    param = next(model.parameters())
    x = torch.as_tensor(x, dtype=param.dtype, device=param.device)
    model.check_input(x)
    first = min(layers)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a = model.normalize(x)
            for i in range(first + 1):
                a = model.block(i, a)
        a.requires_grad_(True)
        feats = {first: a}
        with torch.enable_grad():
            z = a
            for i in range(first + 1, model.n_layers):
                z = model.block(i, z)
                feats[i] = z
            logits = model.head(z)
            wanted = sorted(set(layers))
            grads = torch.autograd.grad(logits[:, target].sum(), [feats[i] for i in wanted])
    finally:
        model.train(was_training)
    cam_of = {}
    for i, grad in zip(wanted, grads):
        a = feats[i].detach()
        alpha = grad.mean(dim=tuple(range(2, a.dim())), keepdim=True)  # (B, M, 1, ...)
        cam_of[i] = periodic_upsample(torch.relu((alpha * a).sum(dim=1)), model.spec.n_grid)
    logits = logits.detach()
    return [cam_of[i] for i in layers], logits, torch.softmax(logits, dim=1)[:, GLASS]


def particle_scores(cam, box, positions) -> np.ndarray:
    """Gamma_i = M^-1(L): the (upsampled) map read at each particle.

    Args:
        cam: (B, n_grid, ..., n_grid) maps on the input grid (tensor or array).
        box: (d,) box edges, or (B, d).
        positions: (B, N, d) positions.

    Returns:
        (B, N) float64 scores (>= 0 for Grad-CAM maps).
    """
    if isinstance(cam, torch.Tensor):
        cam = cam.detach().cpu().numpy()
    return from_grid_batch(box, cam, positions)


def gradcam_particles(model: GlassCNN, spec: GridSpec, box, positions, types,
                      layer: int = -1, target: int = GLASS,
                      gridding: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """End to end for a batch of configurations: M, Grad-CAM, M^-1.

    Args:
        model: The trained :class:`GlassCNN` (its spec must match ``spec``).
        spec: The :class:`GridSpec` the model was trained with.
        box: (d,) box edges, or (B, d).
        positions: (B, N, d) positions.
        types: (B, N) or (N,) species indices.
        layer, target: As in :func:`gradcam`.
        gridding: As in :func:`gradcam_particles_layers`.

    Returns:
        (scores (B, N) float64 Gamma_i, p_glass (B,) float64).
    """
    scores, p_glass = gradcam_particles_layers(model, spec, box, positions, types,
                                               layers=(layer,), target=target,
                                               gridding=gridding)
    return scores[:, 0], p_glass


def gradcam_particles_layers(model: GlassCNN, spec: GridSpec, box, positions, types,
                             layers=None, target: int = GLASS,
                             gridding: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """:func:`gradcam_particles` for several layers at once: one gridding, one forward and
    one backward pass, one M^-1 of every layer's map, one copy to the host.

    Args:
        gridding: Where M and M^-1 run: ``"torch"`` (batched, on the model's device:
            :mod:`glasscam_mpi.learn.torchgrid`), ``"numpy"`` (the reference, on the host),
            or ``"auto"``: torch when the model is on a GPU, numpy on the CPU (where the
            numpy path measured as fast; ``benchmarks/gradcam_throughput.py`` shows both).
        Others as in :func:`gradcam_particles` and :func:`gradcam_layers`.

    Returns:
        (scores (B, L, N) float64 per requested layer, p_glass (B,) float64).
    """
    from glasscam_mpi.learn.torchgrid import from_grid_torch, to_grid_torch

    if gridding not in ("auto", "torch", "numpy"):
        raise ValueError(f"gridding must be 'auto', 'torch' or 'numpy'; got {gridding!r}")
    param = next(model.parameters())
    use_torch = gridding == "torch" or (gridding == "auto" and param.device.type != "cpu")
    if use_torch:
        x_dev = torch.as_tensor(np.asarray(positions), dtype=param.dtype, device=param.device)
        t_dev = torch.as_tensor(np.asarray(types), device=param.device)
        x = to_grid_torch(spec, box, x_dev, t_dev)
        cams, _, p_glass = gradcam_layers(model, x, layers, target)
        scores = from_grid_torch(box, torch.stack(cams, dim=1), x_dev)
        return (scores.double().cpu().numpy(), p_glass.double().cpu().numpy())
    dtype = np.float64 if param.dtype == torch.float64 else np.float32
    x = to_grid_batch(spec, box, positions, types, dtype=dtype)
    cams, _, p_glass = gradcam_layers(model, torch.from_numpy(x).to(param.device), layers,
                                      target)
    scores = particle_scores(torch.stack(cams, dim=1), box, positions)
    return scores, p_glass.cpu().numpy().astype(np.float64)
