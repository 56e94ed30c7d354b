"""Where the mean propensity delta(t) first reaches a target (METHOD.md section 6).

delta(t) = mean_i Delta_i(t) grows with t. The propensity field at a delta target is the
field interpolated between the two records around the first crossing, linearly in delta:
with b the first record where delta >= target and a = b - 1,

    w = (target - delta_a) / (delta_b - delta_a),   X(target) = (1 - w) X_a + w X_b,

and the time of the crossing linearly in log t, t_a^(1-w) t_b^w (exact where delta grows
like log t, as it does between the cage plateau and diffusion). One function for every
such interpolation: the propensity stage's fields and times at the delta targets, and the
sub-ensemble fields of the ensemble study (analysis/subensembles.py), so both describe
the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crossing:
    """The first crossing of a target by delta(t), between records ``a`` and ``b``.

    Attributes:
        a, b: Record indices, a = b - 1; a == b == 0 where delta equals the target at the
            first record exactly (the field there, no interpolation).
        w: Weight of record b. Kept as the NumPy scalar the division gave (float64), never
            a Python float: under NumPy's promotion rules a Python float would let a
            float32 field be interpolated in float32.
    """

    a: int
    b: int
    w: np.floating

    def field(self, records: np.ndarray) -> np.ndarray:
        """(n_times, ...) records -> (...) the field at the crossing."""
        if self.a == self.b:
            return records[self.b]
        return (1 - self.w) * records[self.a] + self.w * records[self.b]

    def time(self, t: np.ndarray):
        """(n_times,) recording times > 0 -> the time of the crossing (linear in log t)."""
        if self.a == self.b:
            return t[self.b]
        return np.exp((1 - self.w) * np.log(t[self.a]) + self.w * np.log(t[self.b]))


def delta_crossing(delta: np.ndarray, target, at_first: bool = True) -> Crossing | None:
    """The first crossing of ``target`` by ``delta``.

    Args:
        delta: (n_times,) delta(t) at the recorded times (NaN records, an ensemble that
            stopped early, never count as reaching the target). Its dtype is kept: the
            weight is computed in the promotion of ``delta`` and ``target``.
        target: The delta target.
        at_first: Whether a target equal to delta at the first record counts as reached
            there. The propensity stage's fields at the targets say yes; the ensemble
            study's sub-ensemble fields have always said no (they need two records).

    Returns:
        The :class:`Crossing`, or None where delta never reaches the target, or is past
        it (or, without ``at_first``, at it) at the first record already.
    """
    above = np.flatnonzero(np.isfinite(delta) & (delta >= target))
    if len(above) == 0:
        return None
    b = int(above[0])
    if b == 0:
        return Crossing(0, 0, np.float64(1.0)) if at_first and delta[0] == target else None
    a = b - 1
    return Crossing(a, b, (target - delta[a]) / (delta[b] - delta[a]))


def at_targets(t: np.ndarray, prop: np.ndarray, targets: np.ndarray):
    """Propensity field where delta(t) = mean_i prop first reaches each target.

    ``t`` (n_times,) recorded times > 0 (log-spaced), ``prop`` (n_times, N), ``targets``
    (k,). With b the first record where delta >= target and a = b - 1, the weight
    w = (target - delta[a]) / (delta[b] - delta[a]) interpolates the field linearly in delta
    and the time linearly in log t (t_a^(1-w) t_b^w: exact where delta grows like log t,
    as it does between the cage plateau and diffusion). A target equal to delta at the
    first record is reached there; NaN (field and time) where delta never reaches the
    target, or is already past it at the first record. A frame with any NaN (an ensemble
    stopped early; such frames only end a record) never counts as reaching a target.
    """
    delta = prop.mean(axis=1)
    fields = np.full((len(targets), prop.shape[1]), np.nan, dtype=np.float32)
    times = np.full(len(targets), np.nan)
    for j, target in enumerate(targets):
        crossing = delta_crossing(delta, target)
        if crossing is not None:
            fields[j], times[j] = crossing.field(prop), crossing.time(t)
    return fields, times
