"""T*, the glass-transition temperature of the cooling protocol (METHOD.md section 6).

The potential energy per particle U(T) along the cooling ramp has a kink where the liquid
falls out of equilibrium. T* is where a line fitted to the glass branch meets a line
fitted to the liquid branch. Fitting the two lines independently is ill-conditioned when
their slopes are close (their intersection can land far outside the data), so the lines
are fitted jointly as a continuous hinge, U = a + b T + c max(0, T - T_c), and the kink
T_c minimising the squared residual is T*: by construction the two lines meet there.
Input is the run-averaged (measured T, U) of the prepare stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TStar:
    T_star: float
    split: float                       # T_c separating the two branches (= T_star)
    glass_fit: tuple[float, float]     # (slope, intercept) of U = a T + b below T_c
    liquid_fit: tuple[float, float]    # (slope, intercept) above T_c
    rms_residual: float


def estimate_t_star(T: np.ndarray, U: np.ndarray, T_max: float | None = None,
                    min_points: int = 4) -> TStar:
    """Kink of U(T): where the glass-branch and liquid-branch lines of a hinge fit meet.

    Args:
        T: (n,) temperatures (thermostat targets along the ramp).
        U: (n,) potential energy per particle, averaged over runs.
        T_max: only points with T <= T_max enter (default: all); keep it near T_L so the
            curved high-temperature liquid does not bend the liquid line.
        min_points: fewest points on either branch.
    """
    T, U = np.asarray(T, float), np.asarray(U, float)
    if T.shape != U.shape or T.ndim != 1:
        raise ValueError(f"T and U must be 1D of one length, got {T.shape} and {U.shape}")
    keep = np.isfinite(T) & np.isfinite(U) & (T <= (T_max if T_max is not None else np.inf))
    T, U = T[keep], U[keep]
    order = np.argsort(T)
    T, U = T[order], U[order]
    if len(T) < 2 * min_points:
        raise ValueError(f"need at least {2 * min_points} finite points below T_max, got {len(T)}")
    candidates = np.linspace(T[min_points - 1], T[-min_points], 400)
    best = None
    for t_c in candidates:
        A = np.stack([np.ones_like(T), T, np.maximum(0.0, T - t_c)], axis=1)
        coef, *_ = np.linalg.lstsq(A, U, rcond=None)
        sse = float(np.sum((A @ coef - U) ** 2))
        if best is None or sse < best[0]:
            best = (sse, t_c, coef)
    sse, t_c, (a, b, c) = best
    return TStar(float(t_c), float(t_c), (float(b), float(a)), (float(b + c), float(a - c * t_c)),
                 float(np.sqrt(sse / len(T))))
