"""Which coarse-graining lengths xi a box allows, and the xi of the pairwise correlations.

A Gaussian kernel cut at 2 xi is a full ball only while 2 xi <= min(L) / 2: beyond, the
periodic box clips it (each neighbour enters once, at its nearest image), and the
"coarse-grained" field is no longer the one METHOD.md section 7 defines. So:

* an xi of the scan with 2 xi > min(L) / 2 is left out, and said so (``skipped``, and a
  note the stage prints and keeps in analysis.h5); xi_best can never land there;
* an ``xi_pairs`` or ``xi_delta`` the user set beyond that is an error naming the field;
* ``xi_pairs = "auto"`` is the system's value (paper Fig. 6: KAM 4, ABM 3), or, where the
  box is too small for it, the largest xi of the scan the box allows (noted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class XiScan:
    """The resolved scan.

    Attributes:
        xis: Sorted distinct lengths used (the allowed ones of the scan, plus xi_pairs and
            a numeric xi_delta).
        skipped: Lengths of the scan left out (2 xi > min(L) / 2).
        xi_pairs: xi of the indicator-indicator correlations.
        limit: The largest allowed xi, min(L) / 4.
        notes: What was left out or chosen, one sentence each.
    """

    xis: tuple[float, ...]
    skipped: tuple[float, ...]
    xi_pairs: float
    limit: float
    notes: tuple[str, ...]


def fits(box, xi: float) -> bool:
    """Whether the kernel of width xi (cut at 2 xi) fits the box: 2 xi <= min(L) / 2."""
    return 2.0 * float(xi) <= float(np.min(box)) / 2.0


def resolve_xis(box, xis, xi_pairs, xi_delta, system_xi_pairs: float) -> XiScan:
    """The scan of ``[analyze]`` for one box.

    Args:
        box: (d,) box edges.
        xis: The configured scan (any order; 0 is the bare field).
        xi_pairs: A number, or "auto" (then ``system_xi_pairs``, or the largest allowed
            xi > 0 of the scan where that does not fit).
        xi_delta: A number or "auto" (then chosen later from the scan).
        system_xi_pairs: The system's xi of Fig. 6 (systems.py).

    Returns:
        The :class:`XiScan`.

    Raises:
        ValueError: If a configured xi_pairs or xi_delta does not fit the box, or no xi of
            the scan does (naming the field, the value and the largest allowed).
    """
    limit = float(np.min(box)) / 4.0
    half = 2.0 * limit
    notes = []
    scan = sorted({float(x) for x in xis})
    kept = [x for x in scan if fits(box, x)]
    skipped = tuple(x for x in scan if not fits(box, x))
    if skipped:
        notes.append(f"xi = {', '.join(f'{x:g}' for x in skipped)} left out of the scan: their "
                     f"kernel (cut at 2 xi) exceeds half the box edge, {half:.4g}, where the "
                     f"periodic box would clip it (largest allowed xi: {limit:.4g})")
    for name, value in (("xi_pairs", xi_pairs), ("xi_delta", xi_delta)):
        if value != "auto" and not fits(box, value):
            raise ValueError(f"[analyze].{name} = {float(value):g}: 2 xi = {2 * float(value):g} "
                             f"exceeds half the box edge ({half:.4g}); allowed: xi <= "
                             f"{limit:.4g} for this box (or \"auto\")")
    if xi_pairs == "auto":
        if fits(box, system_xi_pairs):
            pairs = float(system_xi_pairs)
        else:
            positive = [x for x in kept if x > 0]
            if not positive:
                raise ValueError(f"[analyze].xis = {list(scan)}: no xi > 0 fits this box "
                                 f"(allowed: xi <= {limit:.4g}); add one")
            pairs = max(positive)
            notes.append(f"xi_pairs = {pairs:g}, the largest xi of the scan the box allows: "
                         f"the system's {system_xi_pairs:g} does not fit (2 xi > {half:.4g})")
    else:
        pairs = float(xi_pairs)
    if not any(x > 0 for x in kept) and xi_delta == "auto":
        raise ValueError(f"[analyze].xis = {list(scan)}: no xi > 0 fits this box (allowed: "
                         f"xi <= {limit:.4g}); add one")
    used = set(kept) | {pairs} | ({float(xi_delta)} if xi_delta != "auto" else set())
    return XiScan(tuple(sorted(used)), skipped, pairs, limit, tuple(notes))
