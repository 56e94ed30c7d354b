"""The training stage's box-symmetry augmentation (``glasscam_mpi.learn.augment``), run
batched on the device as one gather (``augment_batch``).

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

from glasscam_mpi.learn import augment


def _augment(x: torch.Tensor, rng: np.random.Generator, dim: int) -> torch.Tensor:
    """One sample through the batched path (a batch of one)."""
    p = augment.draw(rng, 1, dim, x.shape[-1])
    return augment.augment_batch(x[None], p, vectorized=True)[0]


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


@pytest.mark.parametrize("vectorized", [True, False])
@pytest.mark.parametrize("dim, n, b", [(2, 8, 37), (3, 6, 20), (2, 128, 4)])
def test_batched_augmentation_equals_the_per_sample_reference(dim, n, b, vectorized):
    """Each sample of a batch gets its own transform, exactly what roll / flip / permute
    give for it alone (an index permutation: equal bits, not merely close)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn((b, 3) + (n,) * dim, generator=g)
    p = augment.draw(np.random.default_rng(dim * 100 + n), b, dim, n)
    got = augment.augment_batch(x, p, vectorized=vectorized)
    ref = torch.stack([augment.augment_one(x[i], p.shifts[i], p.flips[i], p.perms[i])
                       for i in range(b)])
    assert torch.equal(got, ref)
    # the draws really differ between samples, so the test covers mixed transforms
    assert len({tuple(r) for r in p.perms}) == math.factorial(dim) or b < 6
    assert p.flips.any() and not p.flips.all()
    assert len(np.unique(p.shifts)) > 1


def test_batched_augmentation_refuses_a_mismatch():
    x = torch.zeros((2, 1, 4, 4))
    with pytest.raises(ValueError, match="2 samples"):
        augment.augment_batch(x, augment.draw(np.random.default_rng(0), 3, 2, 4))
    with pytest.raises(ValueError, match="cubic"):
        augment.augment_batch(torch.zeros((1, 1, 4, 6)),
                              augment.draw(np.random.default_rng(0), 1, 2, 4))


def test_grid_on_the_fly_auto_follows_the_memory_that_is_free():
    from glasscam_mpi.learn.feed import FIT_FRACTION, available_bytes, choose_on_the_fly

    cpu = torch.device("cpu")
    free = available_bytes(cpu)
    assert 0 < free < 1 << 62  # read from /proc/meminfo
    assert choose_on_the_fly(True, 1, cpu)[0] is True
    assert choose_on_the_fly(False, 1 << 62, cpu)[0] is False
    fly, why = choose_on_the_fly("auto", 1 << 20, cpu)
    assert fly is False and "fits in" in why
    fly, why = choose_on_the_fly("auto", int(free * FIT_FRACTION * 1.2), cpu)
    assert fly is True and "would not fit" in why
    # private copies per rank count against the node: 4 copies of a third of the room
    third = int(free * FIT_FRACTION / 3)
    assert choose_on_the_fly("auto", third, cpu, copies_per_node=1)[0] is False
    assert choose_on_the_fly("auto", third, cpu, copies_per_node=4)[0] is True


def _espec(rank: int, size: int, augment_on: bool = True):
    from glasscam_mpi.learn.loop import EpochSpec
    from glasscam_mpi.parallel import task_rng

    return EpochSpec(lambda *keys: task_rng(7, "train", *keys), batch_size=8, rank=rank,
                     size=size, hidden=5, dropout=0.5, augment=augment_on, dim=2, n_grid=6)


@pytest.mark.parametrize("size", [2, 4])
def test_epoch_draws_split_one_global_batch_between_the_ranks(size):
    """The ranks' dropout masks and augmentations of an epoch, stacked in rank order, are
    exactly the one-rank draws: the optimisation sees the same batches whatever the rank
    count (learn/loop.py's contract), and every rank has the same sample order."""
    from glasscam_mpi.learn.loop import epoch_draws

    dev = torch.device("cpu")
    perm1, masks1, augs1 = epoch_draws(_espec(0, 1), 3, 40, 5, dev)
    parts = [epoch_draws(_espec(r, size), 3, 40, 5, dev) for r in range(size)]
    for perm, _, _ in parts:
        assert torch.equal(perm, perm1)
    assert sorted(perm1.tolist()) == list(range(40))
    assert torch.equal(torch.cat([m for _, m, _ in parts], dim=1), masks1)
    for k in range(3):
        assert torch.equal(torch.cat([a[k] for _, _, a in parts], dim=1), augs1[k])
    # another epoch draws another order and other masks
    perm2, masks2, _ = epoch_draws(_espec(0, 1), 4, 40, 5, dev)
    assert not torch.equal(perm2, perm1) and not torch.equal(masks2, masks1)
    # a dropout of 0.5 keeps about half the units; no augmentation, no draws
    assert 0.3 < masks1.float().mean().item() < 0.7
    assert epoch_draws(_espec(0, 1, augment_on=False), 3, 40, 5, dev)[2] is None


def test_samples_per_second_counts_the_steps_of_this_jobs_epochs_only():
    from glasscam_mpi.learn.loop import samples_per_second

    h = {"train_seconds": [100.0, 2.0, 2.0]}   # epoch 0 ran in an earlier (slower) job
    assert samples_per_second(h, 64, first_epoch=1) == pytest.approx(64 * 2 / 4.0)
    assert math.isnan(samples_per_second(h, 64, first_epoch=3))
