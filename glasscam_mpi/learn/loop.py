"""The training loop's numerics on one rank: an epoch of optimisation steps, evaluation of a
feed, the input statistics and the training rate (stage ``train`` drives them; its
checkpoints, backends and files, the curves' figure included, stay there).

Determinism (the stage's contract, kept here): the global mini-batch of ``batch_size``
samples is a permutation drawn from the network's streams for (epoch); each rank takes an
equal part of it; the dropout mask and the augmentation are drawn per global batch from
the streams of (epoch, batch) on the host, so the optimisation sees the same batches
whatever the rank count. ``EpochSpec.streams(*keys)`` names those streams: the stage gives
``task_rng(seed, "train", *keys)``, and nothing here knows the stage's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class EpochSpec:
    """What one rank's epoch needs besides the model and the data."""
    streams: Callable[..., np.random.Generator]   # streams("epoch", e), ("dropout", e, b) ...
    batch_size: int          # the global mini-batch
    rank: int
    size: int
    hidden: int              # width of the dropout layer
    dropout: float
    augment: bool
    dim: int
    n_grid: int
    amp: bool = False        # bfloat16 autocast (CUDA only)

    @property
    def local(self) -> int:
        """This rank's rows of every global batch."""
        return self.batch_size // self.size


def epoch_draws(spec: EpochSpec, epoch: int, n_train: int, n_batches: int, device):
    """The epoch's sample order (all ranks' batches), this rank's dropout masks
    (n_batches, local, hidden) and augmentations (or None), on ``device``."""
    import torch

    from glasscam_mpi.learn import augment

    perm = torch.from_numpy(spec.streams("epoch", epoch).permutation(n_train)).to(device)
    mine = slice(spec.rank * spec.local, (spec.rank + 1) * spec.local)
    masks = torch.from_numpy(np.stack([
        spec.streams("dropout", epoch, b).random((spec.batch_size, spec.hidden))[mine]
        >= spec.dropout for b in range(n_batches)])).to(device)
    augs = None
    if spec.augment:
        drawn = [augment.draw(spec.streams("augment", epoch, b), spec.batch_size, spec.dim,
                              spec.n_grid) for b in range(n_batches)]
        augs = augment.Params(*(torch.from_numpy(np.stack([a[k][mine] for a in drawn]))
                                .to(device) for k in range(3)))
    return perm, masks, augs


def run_epoch(spec: EpochSpec, net, opt, feed, y, n_train: int, n_batches: int, epoch: int,
              device, after_step: Callable[[int], None] | None = None) -> np.ndarray:
    """One epoch's optimisation steps on this rank: (loss * n, correct, n) summed here.
    ``after_step(b)`` runs after step b (the stage's synchronisation checks)."""
    import torch
    import torch.nn.functional as F

    from glasscam_mpi.learn import augment

    perm, masks, augs = epoch_draws(spec, epoch, n_train, n_batches, device)
    bs, lo, hi = spec.batch_size, spec.rank * spec.local, (spec.rank + 1) * spec.local
    net.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    for b in range(n_batches):
        mine = perm[b * bs + lo:b * bs + hi]
        xb = feed.batch(mine)
        if augs is not None:
            xb = augment.augment_batch(xb, augment.Params(*(v[b] for v in augs)))
        yb = y.index_select(0, mine)
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp):
            logits = net(xb, dropout_mask=masks[b])
            loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        opt.step()
        with torch.no_grad():  # on the device: no host sync per step
            sums[0] += loss.detach().double() * spec.local
            sums[1] += (logits.argmax(1) == yb).sum()
        if after_step is not None:
            after_step(b)
    sums[2] = n_batches * spec.local
    return sums.cpu().numpy()  # the epoch's one host sync


def evaluate(model, feed, y, device, amp: bool):
    """(loss * n, correct, n) and the predictions of a feed's samples, in eval mode; summed
    on the device, one host copy at the end."""
    import torch
    import torch.nn.functional as F

    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    preds = []
    with torch.no_grad():
        for lo in range(0, feed.n, feed.chunk):
            index = torch.arange(lo, min(lo + feed.chunk, feed.n), device=device)
            xb, yb = feed.batch(index), y[lo:lo + feed.chunk]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb).float()
            p = logits.argmax(1)
            sums += torch.stack([F.cross_entropy(logits, yb, reduction="sum").double(),
                                 (p == yb).sum().double()])
            preds.append(p)
    pred = (torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64))
    loss, correct = sums.cpu().numpy()
    return np.array([loss, correct, feed.n], dtype=np.float64), pred


def channel_mean_std(feed):
    """Per-channel mean and standard deviation of the feed's (n, C, *grid) samples, summed
    in float64 chunk by chunk (no float64 copy of the whole set)."""
    import torch

    s1 = s2 = None
    count = 0
    for lo in range(0, feed.n, feed.chunk):
        index = torch.arange(lo, min(lo + feed.chunk, feed.n), device=feed.device)
        x = feed.batch(index).double()
        axes = (0,) + tuple(range(2, x.dim()))
        s1 = x.sum(dim=axes) if s1 is None else s1 + x.sum(dim=axes)
        s2 = (x * x).sum(dim=axes) if s2 is None else s2 + (x * x).sum(dim=axes)
        count += x.numel() // x.shape[1]
    mean = (s1 / count).cpu()
    return mean, torch.sqrt(torch.clamp((s2 / count).cpu() - mean * mean, min=0.0))


def samples_per_second(history: dict, per_epoch: int, first_epoch: int) -> float:
    """Training samples per second of the optimisation steps (the epochs from
    ``first_epoch`` on)."""
    secs = history["train_seconds"][first_epoch:]
    return per_epoch * len(secs) / sum(secs) if secs and sum(secs) > 0 else float("nan")
