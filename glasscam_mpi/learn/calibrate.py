"""Calibration for ``glasscam plan``: the configured CNN timed with torch on this machine.

A few real optimisation steps of the configured CNN on batches of the configured grid
(with augmentation when it is on), the forward pass of validation, the gridding of one
batch, and Grad-CAM of one batch through
:func:`~glasscam_mpi.learn.gradcam.gradcam_particles_layers`, on CUDA when present, else
on one CPU core (:func:`measure_learning`); or the rates of an earlier run
(:func:`rates_from_log`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class LearnRates:
    device: str
    train_samples_per_s: float     # one optimisation step: forward, backward, Adam (+augment)
    eval_samples_per_s: float      # forward only (validation)
    grid_samples_per_s: float      # gridding configurations (M)
    gradcam_samples_per_s: float   # Grad-CAM end to end (M, forward, backward, M^-1)
    source: str

    def to_dict(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def seconds_per_call(fn, min_seconds: float, max_reps: int = 50) -> float:
    """Seconds per call of fn (one warm-up call, then until min_seconds or max_reps)."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or (time.perf_counter() - t0 < min_seconds and reps < max_reps):
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps


def measure_learning(cfg, glass: dict, seconds: float = 0.5) -> LearnRates:
    """Rates of the configured CNN on this machine (CUDA if present, else one CPU core)."""
    import torch

    from glasscam_mpi.learn import augment
    from glasscam_mpi.learn.data import grid_spec_of
    from glasscam_mpi.learn.gradcam import gradcam_particles_layers
    from glasscam_mpi.learn.grid import to_grid_batch
    from glasscam_mpi.learn.model import ModelSpec, build_model

    t = cfg.train
    device = torch.device("cuda" if torch.cuda.is_available() and t.device != "cpu" else "cpu")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gspec = grid_spec_of(cfg)
    mspec = ModelSpec.for_grid(gspec, channels=t.channels, kernels=t.kernels, strides=t.strides,
                               hidden=t.hidden, dropout=t.dropout)
    torch.manual_seed(0)
    model = build_model(mspec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    B = t.batch_size if device.type == "cuda" else min(t.batch_size, 8)
    x = torch.rand(B, *gspec.shape, device=device)
    y = torch.randint(0, 2, (B,), device=device)
    rng = np.random.default_rng(0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        xb = augment.augment_batch(x, augment.draw(rng, B, gspec.dim, gspec.n_grid)) \
            if t.augment else x
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()
        sync()

    def forward():
        with torch.no_grad():
            model(x)
        sync()

    model.train()
    train_rate = B / seconds_per_call(step, seconds)
    model.eval()
    eval_rate = B / seconds_per_call(forward, seconds)
    Bg = min(cfg.gradcam.batch_size, B)
    box, pos, typ = glass["box"], glass["positions"], glass["types"]
    positions = np.broadcast_to(pos, (Bg, *pos.shape)).copy()
    types = np.broadcast_to(typ, (Bg, *typ.shape)).copy()
    grid_rate = Bg / seconds_per_call(lambda: to_grid_batch(gspec, box, positions, types), seconds)
    cam_rate = Bg / seconds_per_call(lambda: (gradcam_particles_layers(model, gspec, box, positions,
                                                             types), sync()), seconds)
    return LearnRates(device.type, train_rate, eval_rate, grid_rate, cam_rate,
                      f"measured here on {device.type} (batch {B}, random grids)")


def rates_from_log(log: dict, measured: LearnRates) -> LearnRates:
    """The training rate of an earlier run, per rank; validation and Grad-CAM scaled by
    the same factor against this machine's measurement."""
    rate, ranks = log["samples_per_s"], log["ranks"]
    scale = rate / ranks / measured.train_samples_per_s
    return LearnRates(log["device"], rate / ranks, measured.eval_samples_per_s * scale,
                      measured.grid_samples_per_s, measured.gradcam_samples_per_s * scale,
                      f"training rate from {log['path']} ({rate:.0f} samples/s on {ranks} "
                      f"rank(s), {log['device']}); validation and Grad-CAM scaled by the same "
                      "factor")


def model_bytes(cfg) -> int:
    """Bytes of the configured CNN's parameters (float32)."""
    from glasscam_mpi.learn.data import grid_spec_of
    from glasscam_mpi.learn.model import ModelSpec, build_model

    t = cfg.train
    mspec = ModelSpec.for_grid(grid_spec_of(cfg), channels=t.channels, kernels=t.kernels,
                               strides=t.strides, hidden=t.hidden, dropout=t.dropout)
    return sum(p.numel() for p in build_model(mspec).parameters()) * 4
