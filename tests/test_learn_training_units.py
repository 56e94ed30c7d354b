"""The training stage's box-symmetry augmentation (``glasscam_mpi.stages.train._augment``).

A training grid is (C, n, ..., n): one channel per species. The augmentation may shift
the periodic grid by whole cells, flip axes and permute axes -- symmetries of the periodic
cubic box, which keep the label -- and must never touch the channel (species) axis. Each
result is compared with the full list of such symmetries of the input, built here with
explicit torch.roll / torch.flip / permute over the spatial axes only.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from glasscam_mpi.stages.train import _augment


def _grid(dim: int, n: int, channels: int = 2) -> torch.Tensor:
    """(C, n, ..., n) float32 holding distinct integers (exact sums, and every symmetry of
    the grid gives a different array); channel c holds c n^d ... (c + 1) n^d - 1, so a
    channel mix-up shows."""
    g = torch.Generator().manual_seed(dim)
    return torch.stack([(torch.randperm(n**dim, generator=g) + c * n**dim).reshape((n,) * dim)
                        for c in range(channels)]).to(torch.float32)


def _spatial_symmetries(x: torch.Tensor, dim: int) -> dict[bytes, tuple]:
    """{array bytes: (perm, flips, shifts)} for every axis permutation, flip pattern and
    periodic shift of the spatial axes 1..dim of x (channel axis 0 untouched)."""
    n = x.shape[-1]
    axes = tuple(range(1, dim + 1))
    out = {}
    for perm in itertools.permutations(range(dim)):
        xp = x.permute(0, *(1 + p for p in perm))
        for flips in itertools.product((False, True), repeat=dim):
            fa = [a for a, f in zip(axes, flips) if f]
            xf = torch.flip(xp, dims=fa) if fa else xp
            for shifts in itertools.product(range(n), repeat=dim):
                y = torch.roll(xf, shifts=shifts, dims=axes).contiguous()
                out.setdefault(y.numpy().tobytes(), (perm, flips, shifts))
    return out


@pytest.mark.parametrize("dim, n", [(2, 6), (3, 4)])
def test_augment_is_a_symmetry_of_the_spatial_axes_only(dim, n):
    x = _grid(dim, n)
    allowed = _spatial_symmetries(x, dim)
    assert len(allowed) == (2**dim) * math.factorial(dim) * n**dim  # all distinct
    seen = set()
    for seed in range(60):
        y = _augment(x.clone(), np.random.default_rng(seed), dim)
        assert y.shape == x.shape and y.dtype == x.dtype
        # channel order and content kept: each channel holds its own values, same sums
        for c in range(x.shape[0]):
            torch.testing.assert_close(torch.sort(y[c].flatten()).values,
                                       torch.sort(x[c].flatten()).values, rtol=0, atol=0)
            assert float(y[c].sum()) == float(x[c].sum())
        key = y.contiguous().numpy().tobytes()
        assert key in allowed, f"seed {seed}: not a shift/flip/permutation of the grid axes"
        seen.add(allowed[key])
    # and it really augments: permutations, flips and shifts all occur
    assert len(seen) >= 40
    perms, flips, shifts = zip(*seen)
    assert len(set(perms)) == math.factorial(dim)
    assert any(any(f) for f in flips) and any(not any(f) for f in flips)
    assert len({s for sh in shifts for s in sh}) == n


def test_augment_draws_from_the_given_stream_only():
    x = _grid(2, 6)
    a = _augment(x.clone(), np.random.default_rng(11), 2)
    b = _augment(x.clone(), np.random.default_rng(11), 2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
