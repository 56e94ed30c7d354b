"""Label-preserving augmentation of gridded configurations, batched on the device.

The symmetries of a periodic cubic (square) box that map the grid onto itself: a periodic
shift by whole grid cells, a flip of any axis, and any permutation of the axes. For sample
b, with shift s, flips f and permutation p (each per spatial axis), the augmented field is

    y = permute(flip(roll(x, s), axes with f), p)

exactly as :func:`augment_one` writes it with torch's roll / flip / permute (the per-sample
reference). :func:`augment_batch` applies B different transforms at once as a single
gather with precomputed indices (no Python loop over samples), so it runs at the device's
pace; both give identical values (an index permutation copies numbers, it rounds nothing).

The parameters are drawn on the host from a numpy Generator (:func:`draw`) -- the trainer
draws them from ``task_rng(seed, "train", "augment", epoch, batch)`` for the whole global
mini-batch -- so a run is reproducible, and the augmentation does not depend on the device,
the rank count or how the batch is split over ranks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Params(NamedTuple):
    """Augmentation of B samples in d dimensions (int64 / bool arrays or tensors)."""

    shifts: np.ndarray  # (B, d) cells, in [0, n)
    flips: np.ndarray   # (B, d) bool
    perms: np.ndarray   # (B, d) a permutation of range(d) per sample


def draw(rng: np.random.Generator, n_samples: int, dim: int, n_grid: int) -> Params:
    """Parameters of ``n_samples`` random augmentations (uniform over shifts, flips and
    axis permutations)."""
    shifts = rng.integers(0, n_grid, size=(n_samples, dim))
    flips = rng.random((n_samples, dim)) < 0.5
    perms = np.argsort(rng.random((n_samples, dim)), axis=1)
    return Params(shifts.astype(np.int64), flips, perms.astype(np.int64))


def augment_one(x: torch.Tensor, shift, flip, perm) -> torch.Tensor:
    """The reference: one sample (C, n, ..., n) by roll, flip and permute."""
    dim = x.dim() - 1
    axes = tuple(range(1, dim + 1))
    x = torch.roll(x, shifts=tuple(int(s) for s in shift), dims=axes)
    flip_axes = [a for a, f in zip(axes, flip) if f]
    if flip_axes:
        x = torch.flip(x, dims=flip_axes)
    return x.permute(0, *(1 + int(p) for p in perm))


def source_index(params: Params, dim: int, n: int, device) -> torch.Tensor:
    """(B, n^d) flat input index of every output grid point of every sample."""
    shifts = torch.as_tensor(params.shifts, device=device, dtype=torch.long)
    flips = torch.as_tensor(params.flips, device=device, dtype=torch.bool)
    perms = torch.as_tensor(params.perms, device=device, dtype=torch.long)
    # output coordinates k_a of every flat output point, (d, n^d)
    k = torch.stack(torch.meshgrid(*(torch.arange(n, device=device),) * dim,
                                   indexing="ij")).reshape(dim, -1)
    # input axis m takes output axis a with perm[a] = m: j_m = k_{inv[m]}
    inv = torch.argsort(perms, dim=1)                              # (B, d)
    j = k[inv]                                                     # (B, d, n^d)
    j = torch.where(flips[..., None], n - 1 - j, j)                # undo the flip
    src = torch.remainder(j - shifts[..., None], n)                # undo the roll
    weights = n ** torch.arange(dim - 1, -1, -1, device=device)
    return (src * weights.view(1, dim, 1)).sum(dim=1)


def augment_batch(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Apply B different augmentations to (B, C, n, ..., n) fields in one gather."""
    b, c = x.shape[:2]
    dim = x.dim() - 2
    n = x.shape[-1]
    if any(s != n for s in x.shape[2:]):
        raise ValueError(f"augmentation needs a cubic grid; got {tuple(x.shape[2:])}")
    if len(params.shifts) != b:
        raise ValueError(f"{len(params.shifts)} augmentations for {b} samples")
    idx = source_index(params, dim, n, x.device)
    flat = x.reshape(b, c, -1)
    return torch.gather(flat, 2, idx[:, None, :].expand(b, c, -1)).reshape(x.shape)
