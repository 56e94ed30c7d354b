"""Seed ensembles of the CNN: which seed each network gets, and how the members' Grad-CAM
fields are combined (issue 18, item 0).

Networks that differ only in their seed are told apart by a *network index* j: network
j of a run is trained from the random streams of :func:`network_seed` ``(run seed, j)``.
Index 0 is the run seed itself, so a run with one network trains exactly what it trained
before ensembles existed. A run with ``[train].ensemble = k`` and ``[train].seed = s``
trains the networks s, s + 1, ..., s + k - 1; ``glasscam sweep``'s seed-s sub-run trains
network s alone, so a sweep's seeds 0..k-1 are the same networks as an ensemble of k.

The ensemble's Grad-CAM field: each member's Gamma normalised to [0, 1] per sample
(:func:`glasscam_mpi.analysis.coarse.normalize01`, min 0, max 1; a constant field maps to
0), then averaged over the members. An ensemble of one is its member's field unchanged
(not normalised), so k = 1 gives today's numbers bit for bit.
"""

from __future__ import annotations

import numpy as np

from glasscam_mpi.analysis.coarse import normalize01


def network_seed(run_seed: int, index: int) -> int:
    """The seed of network ``index`` of a run: the run seed for index 0, else a seed drawn
    from the run seed and the index (never from a rank)."""
    if index < 0:
        raise ValueError(f"network index must be >= 0; got {index}")
    if index == 0:
        return int(run_seed)
    state = np.random.SeedSequence([int(run_seed), 0x5EED, int(index)]).generate_state(1, np.uint64)
    return int(state[0]) % (2**63 - 1)


def ensemble_gamma(members) -> np.ndarray:
    """The ensemble's Gamma from its members' fields.

    Args:
        members: (k, ..., N) the members' Gamma: member first, particles last (any leading
            sample / class / layer axes between).

    Returns:
        (..., N) float64: the mean over members of each member's field normalised to
        [0, 1] over its N particles; for k = 1 the member's field itself.
    """
    arr = np.asarray(members, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.shape[-1] < 1:
        raise ValueError(f"members must have shape (k, ..., N) with k, N >= 1; got {arr.shape}")
    if arr.shape[0] == 1:
        return arr[0].copy()
    n = arr.shape[-1]
    flat = arr.reshape(-1, n)                       # every (member, sample) field a row
    norm = normalize01(flat.T).T                    # each row onto [0, 1]
    return norm.reshape(arr.shape).mean(axis=0)


SPREAD = ("mean", "std", "min", "max")


def spread(values) -> dict[str, float]:
    """Mean, (population) standard deviation, min and max over the finite ``values``
    (NaN for all four when none is finite)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {k: float("nan") for k in SPREAD}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}
