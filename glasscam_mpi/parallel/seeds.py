"""Seeds come from the task, never from the rank.

:func:`task_rng` keys a ``numpy.random.SeedSequence`` by (run seed, stage, system, task
index), so a result does not depend on how many ranks ran, nor in which order tasks
finished. LAMMPS seeds are drawn from that stream (:func:`lammps_seeds`).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_int(key: object) -> int:
    if isinstance(key, (int, np.integer)) and key >= 0:
        return int(key)
    return int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "little")


def task_rng(seed: int, *keys: object) -> np.random.Generator:
    """The random stream of one task, keyed by (seed, *keys); independent of ranks."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(_key_int, keys)]))


def lammps_seeds(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    """``n`` LAMMPS random seeds (positive, below LAMMPS's 900 million limit)."""
    return tuple(int(s) for s in rng.integers(1, 900_000_000, size=n))
