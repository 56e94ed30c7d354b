"""Loading a training checkpoint (``train/checkpoint.pt``, ``train/best.pt``).

A checkpoint is a plain dict of tensors and data (the model's state, its spec, the data
it was trained on, the optimiser, the epoch) written by the train stage; the train stage
(to resume) and the gradcam stage (to explain) read it here.
"""

from __future__ import annotations

from pathlib import Path

from glasscam_mpi.config import ConfigError


def load_checkpoint(path: Path | str) -> dict:
    """A checkpoint, loaded with ``weights_only=True`` (tensors and plain data only)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"no model at {path}: run 'glasscam train' first") from None
