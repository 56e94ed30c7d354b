"""The per-replica maps of Fig. 4 (the ensemble study), the one thing the report computes.

analysis.h5 keeps Table 4's coefficients, not the sub-ensemble fields, so the maps are
rebuilt here from propensity.h5's ``cage_displacement`` with analyze's own
``subensemble_fields`` (:mod:`glasscam_mpi.analysis.subensembles`: disjoint sub-ensembles
and the full ensemble at the full ensemble's crossing of the delta target), coarse-grained
with ``PairList.coarse_grain`` at that target's xi_Delta, each normalised to [0, 1]
(:func:`~glasscam_mpi.analysis.coarse.normalize01`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.analysis.coarse import normalize01
from glasscam_mpi.report.data import RunData


@dataclass(frozen=True)
class EnsembleMaps:
    bare: np.ndarray        # (N, count + 1) normalised: sub-ensembles A, B, ..., then the full
    coarse: np.ndarray      # (N, count + 1) the same coarse-grained at xi
    labels: list[str]       # e30^A, ..., e100
    target: float
    xi: float
    temperature: float


def choose(d: RunData) -> tuple[int, int] | str:
    """(temperature index, target index) for Fig. 4, or why there is none: configuration 0
    at its lowest temperature with every replica ok, at the reached target closest to
    [analyze].delta_ref (in log delta) whose xi_Delta is known."""
    if d.study is None:
        why = [n for n in d.notes if "ensemble study" in n]
        return why[0] if why else "no ensemble study in analysis.h5"
    temps = [k for k in range(len(d.scale.temperatures))
             if d.reportable[0, k] and d.n_ok_replicas[0, k] == d.scale.n_replicas]
    if not temps:
        return "no ensemble of configuration 0 with every replica ok"
    targets = d.scale.delta_targets
    order = np.argsort(np.abs(np.log(targets / d.cfg.analyze.delta_ref)))
    for j in order:
        k = temps[0]
        if math.isfinite(d.S["xi_delta_used"][j]) and \
                d.delta_min[0, k] < targets[j] <= d.delta_max[0, k]:
            return k, int(j)
    return "no δ target crossed by configuration 0's ensemble with a known ξ_Δ"


def compute(d: RunData, k: int, j: int) -> EnsembleMaps:
    """The sub-ensemble and full-ensemble propensity of configuration 0, temperature k, at
    target j (see the module docstring)."""
    import h5py

    from glasscam_mpi.analysis.neighbours import PairList
    from glasscam_mpi.analysis.subensembles import subensemble_fields

    size, count = d.study
    n_s = d.scale.n_replicas
    lo = k * n_s                                        # configuration 0: (0 * n_T + k) * n_s
    with h5py.File(d.run_dir / "propensity.h5", "r") as prop:
        disp = prop["cage_displacement"][lo:lo + n_s].astype(np.float64)   # (n_s, d_t, N)
        target = float(prop["delta_targets"][j])
    fields = subensemble_fields(disp, target, size, count)
    if fields is None:
        raise ValueError(f"delta = {target:g} is not crossed by ensemble (0, {k})")
    xi = float(d.S["xi_delta_used"][j])
    pl = PairList(d.box, d.positions, 2 * xi)
    coarse = pl.coarse_grain(fields, xi)
    labels = [f"$e_{{{size}}}^{{{chr(65 + u)}}}$" for u in range(count)] + [f"$e_{{{n_s}}}$"]
    return EnsembleMaps(normalize01(fields), normalize01(coarse), labels, target, xi,
                        float(d.scale.temperatures[k]))
