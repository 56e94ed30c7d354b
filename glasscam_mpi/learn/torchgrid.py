"""M and M^-1 in torch, batched, on any device (CUDA or CPU): the device path of
:mod:`glasscam_mpi.learn.grid`.

Same conventions as the numpy reference (grid point k at k h, channel s = species s,
periodic Gaussians of width w_s truncated at ``cutoff * w_s`` per axis and normalised per
axis, number density per channel, periodic multilinear M^-1), so the two agree to float
rounding; the tests hold this path, run on the CPU device, to the numpy one at 1e-6.

How M is computed here. The kernel is separable: particle i's weight at grid point
(k_0, ..., k_{d-1}) is prod_a g_a[i, k_a], with g_a[i, :] the normalised, truncated 1D
Gaussian along axis a evaluated at every grid point of that axis (dense: n values per
particle and axis, nearly all zero). Then, with one-hot species c[i, s],

    2D:  field[s, k0, k1]     = sum_i (c[i, s] g_0[i, k0]) g_1[i, k1]
    3D:  field[s, k0, k1, k2] = sum_i (c[i, s] g_0[i, k0]) (g_1[i, k1] g_2[i, k2])

-- one batched matrix product of (S n) x N by N x n^(d-1). On a GPU this is a dense
GEMM of a few GFLOP per batch and far faster than a scatter of W^d stencil points per
particle; it is also deterministic (no atomics), so a batch grids to the same bits every
time. The displacement of grid point k from particle i is the minimum image of
k h - x_i, which is the numpy stencil's displacement as long as the truncated Gaussian is
shorter than half the box (checked: ``cutoff * w_s < L / 2``).

Matrix products run in the input's dtype; float32 on CUDA uses full-precision float32
(TF32 matmul is torch's default-off ``torch.backends.cuda.matmul.allow_tf32``).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from glasscam_mpi.learn.grid import GridSpec

# elements of the (B, chunk, n^2) outer products of one 3D matrix product: 16 MiB of
# float32 on the CPU, 512 MiB on a GPU (fewer, larger GEMMs)
_CHUNK_3D = {"cpu": 1 << 22, "cuda": 1 << 27}


def _boxes(box, b: int, d: int, dtype, device) -> torch.Tensor:
    t = torch.as_tensor(box, dtype=dtype, device=device)
    if t.dim() == 1:
        t = t.expand(b, d)
    if t.shape != (b, d):
        raise ValueError(f"box must have shape ({d},) or ({b}, {d}); got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"box edges must be finite and > 0; got {t.tolist()}")
    return t


def _positions(positions, d: int | None, dtype, device) -> torch.Tensor:
    x = torch.as_tensor(positions, device=device)
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"positions must be a real numeric array; got dtype {x.dtype}")
    x = x.to(dtype)
    if x.dim() != 3 or (d is not None and x.shape[-1] != d) or x.shape[1] < 1:
        raise ValueError(f"positions must have shape (B, N, {d or 'd'}) with N >= 1; "
                         f"got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("positions contains non-finite values (NaN or inf)")
    return x


def axis_weights(spec: GridSpec, x: torch.Tensor, boxes: torch.Tensor,
                 widths: torch.Tensor) -> list[torch.Tensor]:
    """Per axis, the (B, N, n) normalised truncated Gaussian of each particle at each grid
    point (the separable factors of M). ``widths`` (B, N) is each particle's w_s."""
    n = spec.n_grid
    k = torch.arange(n, dtype=x.dtype, device=x.device)
    out = []
    lim = spec.cutoff * widths  # (B, N)
    for a in range(spec.dim):
        length = boxes[:, a].view(-1, 1, 1)
        h = length / n
        disp = k.view(1, 1, n) * h - x[..., a:a + 1]          # point - particle
        disp = disp - length * torch.round(disp / length)     # minimum image
        g = torch.exp(-0.5 * (disp / widths[..., None]) ** 2)
        g = torch.where(disp.abs() > lim[..., None], torch.zeros_like(g), g)
        out.append(g / g.sum(dim=-1, keepdim=True))
    return out


def to_grid_torch(spec: GridSpec, box, positions, types, dtype=None,
                  device=None) -> torch.Tensor:
    """M for B configurations at once, in torch (see :func:`glasscam_mpi.learn.grid.to_grid_batch`).

    Args:
        spec: The :class:`GridSpec`.
        box: (d,) edges shared by all samples, or (B, d).
        positions: (B, N, d) positions (tensor or array); wrapped implicitly (periodic).
        types: (B, N) or (N,) species indices in [0, spec.n_species).
        dtype: Computation and output dtype (default: float32, or the positions' float dtype
            when they are a floating tensor).
        device: Where to compute (default: the positions' device when a tensor, else CPU).

    Returns:
        (B, n_species, n_grid, ..., n_grid) number densities on ``device``.
    """
    if device is None:
        device = positions.device if isinstance(positions, torch.Tensor) else "cpu"
    if dtype is None:
        dtype = (positions.dtype if isinstance(positions, torch.Tensor)
                 and positions.is_floating_point() else torch.float32)
    d, n, n_sp = spec.dim, spec.n_grid, spec.n_species
    x = _positions(positions, d, dtype, device)
    b, n_part = x.shape[:2]
    boxes = _boxes(box, b, d, dtype, device)
    t = torch.as_tensor(types, device=device)
    if t.dim() == 1:
        t = t.expand(b, -1)
    if t.shape != (b, n_part):
        raise ValueError(f"types must have shape ({n_part},) or ({b}, {n_part}); "
                         f"got {tuple(t.shape)}")
    t = t.long()
    if bool((t < 0).any()) or bool((t >= n_sp).any()):
        raise ValueError(f"types must lie in [0, {n_sp}) for {n_sp} species")
    widths_s = torch.tensor(spec.widths, dtype=dtype, device=device)
    h = boxes / n
    reach = spec.cutoff * widths_s.view(-1, 1, 1) / h.unsqueeze(0)  # (S, B, d) cells
    if float(reach.min()) < 1.0:
        raise ValueError(f"grid too coarse for the Gaussians: cutoff * width = "
                         f"{spec.cutoff * min(spec.widths):g} is less than one grid spacing "
                         f"{float(h.max()):g}; raise n_grid or the width")
    if spec.cutoff * max(spec.widths) >= 0.5 * float(boxes.min()):
        raise ValueError(f"box too small for the Gaussians: cutoff * width = "
                         f"{spec.cutoff * max(spec.widths):g} must be below half the "
                         f"smallest box edge {float(boxes.min()):g}")
    return grid_checked(spec, boxes, x, t)


def grid_checked(spec: GridSpec, boxes: torch.Tensor, x: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """M on inputs already checked by :func:`to_grid_torch`: boxes (B, d), x (B, N, d) and
    t (B, N) long, all on one device, x and boxes in the computation dtype. No host sync:
    the training loop calls it once per mini-batch."""
    d, n, n_sp = spec.dim, spec.n_grid, spec.n_species
    b, n_part = x.shape[:2]
    dtype, device = x.dtype, x.device
    widths_s = torch.tensor(spec.widths, dtype=dtype, device=device)
    gs = axis_weights(spec, x, boxes, widths_s[t])
    onehot = torch.nn.functional.one_hot(t, n_sp).to(dtype)           # (B, N, S)
    left = (onehot.unsqueeze(-1) * gs[0].unsqueeze(2)).reshape(b, n_part, n_sp * n)
    if d == 2:
        field = torch.bmm(left.transpose(1, 2), gs[1])                 # (B, S n, n)
    else:
        field = torch.zeros((b, n_sp * n, n * n), dtype=dtype, device=device)
        step = max(1, _CHUNK_3D.get(device.type, 1 << 22) // max(1, b * n * n))
        for lo in range(0, n_part, step):
            hi = min(lo + step, n_part)
            rest = (gs[1][:, lo:hi, :, None] * gs[2][:, lo:hi, None, :]).reshape(b, hi - lo, n * n)
            field += torch.bmm(left[:, lo:hi].transpose(1, 2), rest)
    field = field.reshape((b, n_sp) + (n,) * d)
    cell = torch.prod(boxes / n, dim=1).view((b,) + (1,) * (d + 1))
    return field / cell


def from_grid_torch(box, fields: torch.Tensor, positions) -> torch.Tensor:
    """M^-1 for B samples in torch: periodic multilinear interpolation of
    (B, ..., n_0, ..., n_{d-1}) fields at (B, N, d) positions -> (B, ..., N), on the
    fields' device and in their dtype (see :func:`glasscam_mpi.learn.grid.from_grid_batch`)."""
    f = torch.as_tensor(fields)
    x = _positions(positions, None, f.dtype, f.device)
    b, n_part, d = x.shape
    if f.dim() < d + 1 or f.shape[0] != b:
        raise ValueError(f"fields must have shape ({b}, ..., n_0, ..., n_{d - 1}); "
                         f"got {tuple(f.shape)}")
    boxes = _boxes(box, b, d, f.dtype, f.device)
    grid = f.shape[f.dim() - d:]
    lead = f.shape[1:f.dim() - d]
    n = torch.tensor(grid, dtype=f.dtype, device=f.device)
    ni = torch.tensor(grid, dtype=torch.long, device=f.device)
    u = torch.remainder(x, boxes[:, None, :]) * (n / boxes[:, None, :])  # grid units
    i0f = torch.floor(u)
    frac = u - i0f
    i0 = i0f.long() % ni
    i1 = (i0 + 1) % ni
    idx, wts = [], []
    for corner in itertools.product((0, 1), repeat=d):
        flat = torch.zeros((b, n_part), dtype=torch.long, device=f.device)
        w = torch.ones((b, n_part), dtype=f.dtype, device=f.device)
        for a, c in enumerate(corner):
            flat = flat * int(grid[a]) + (i1[..., a] if c else i0[..., a])
            w = w * (frac[..., a] if c else 1.0 - frac[..., a])
        idx.append(flat)
        wts.append(w)
    idx = torch.stack(idx, dim=-1).reshape(b, 1, -1)        # (B, 1, N 2^d)
    w = torch.stack(wts, dim=-1)                            # (B, N, 2^d)
    flat = f.reshape(b, -1, int(np.prod(grid)))             # (B, L, G)
    vals = torch.gather(flat, 2, idx.expand(-1, flat.shape[1], -1))
    vals = (vals.view(b, flat.shape[1], n_part, -1) * w.unsqueeze(1)).sum(-1)
    return vals.reshape((b,) + tuple(lead) + (n_part,))
