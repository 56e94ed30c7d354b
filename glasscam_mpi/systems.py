"""The glass-forming mixtures (paper Table 1, METHOD.md section 1).

A :class:`System` is pure data: species, masses, the Lennard-Jones sigma/epsilon matrices,
the per-pair cutoff, number density, dimension, the additive radii used by the Tong-Tanaka
order parameter, and the temperatures of the paper's protocol. It also carries the
reference potential of Eq. 1 so tests can check LAMMPS against it independently.

All quantities are in the system's reduced units (Table 1: sigma*, epsilon*, m*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class System:
    """A binary Lennard-Jones mixture with linear force smoothing (paper Eq. 1-2).

    Attributes:
        name: Short name (``KAM``, ``ABM``, ``KA3D``).
        dim: Spatial dimension, 2 or 3.
        species: Species labels, e.g. ``("A", "B")``; type index s is ``species[s]``.
        fractions: Number fraction of each species (sums to 1).
        masses: (S,) masses.
        sigma: (S, S) symmetric LJ diameters sigma_ab.
        epsilon: (S, S) symmetric LJ energies epsilon_ab.
        rc_factor: Cutoff r_c,ab = rc_factor * sigma_ab.
        density: Number density N / L^d.
        T_liquid: T_L, where the liquid sample is saved.
        T_glass: T_G, where the glass sample is saved.
        T_star_paper: The paper's T* (None where the paper gives none).
        xi_pairs: xi of the indicator-indicator correlations (paper Fig. 6: KAM 4, ABM 3;
            ``[analyze].xi_pairs = "auto"``).
        rc: (S, S) per-pair cutoffs r_c,ab given directly (a ``[system] name = "custom"``
            mixture, mixture.py); None = ``rc_factor * sigma_ab``.
        tt_radii: (S,) additive radii of the Tong-Tanaka order parameter given directly;
            None = ``sigma_ss / 2``.
        unit_pair: The two species whose sigma and epsilon are the reduced length and
            energy units (paper Table 1: KAM AA, ABM AB); None = the pair with sigma =
            epsilon = 1.
    """

    name: str
    dim: int
    species: tuple[str, ...]
    fractions: tuple[float, ...]
    masses: tuple[float, ...]
    sigma: tuple[tuple[float, ...], ...]
    epsilon: tuple[tuple[float, ...], ...]
    rc_factor: float
    density: float
    T_liquid: float
    T_glass: float = 0.05
    T_star_paper: float | None = None
    xi_pairs: float = 4.0
    rc: tuple[tuple[float, ...], ...] | None = None
    tt_radii: tuple[float, ...] | None = None
    unit_pair: tuple[str, str] | None = None

    @property
    def n_species(self) -> int:
        return len(self.species)

    def sigma_ab(self, a: int, b: int) -> float:
        return float(self.sigma[a][b])

    def epsilon_ab(self, a: int, b: int) -> float:
        return float(self.epsilon[a][b])

    def cutoff(self, a: int, b: int) -> float:
        """Per-pair cutoff r_c,ab: ``rc[a][b]`` where given, else rc_factor * sigma_ab."""
        if self.rc is not None:
            return float(self.rc[a][b])
        return self.rc_factor * self.sigma_ab(a, b)

    @property
    def max_cutoff(self) -> float:
        return max(self.cutoff(a, b) for a in range(self.n_species) for b in range(self.n_species))

    def radii(self) -> np.ndarray:
        """(S,) radii R_s = sigma_ss / 2, the *additive* convention of METHOD.md section 5
        (or the radii a custom mixture gives)."""
        if self.tt_radii is not None:
            return np.array(self.tt_radii, dtype=float)
        return np.array([self.sigma[s][s] / 2.0 for s in range(self.n_species)])

    def counts(self, n_particles: int) -> tuple[int, ...]:
        """Particles per species for a total of ``n_particles`` (largest-remainder rounding)."""
        raw = np.asarray(self.fractions) * n_particles
        counts = np.floor(raw).astype(int)
        short = n_particles - int(counts.sum())
        for s in np.argsort(-(raw - counts), kind="stable")[:short]:
            counts[s] += 1
        return tuple(int(c) for c in counts)

    def box_length(self, n_particles: int) -> float:
        """Edge of the cubic (square) periodic box, L = (N / rho)^(1/d)."""
        return float((n_particles / self.density) ** (1.0 / self.dim))

    # -- the reference potential (Eq. 1), used by tests to check LAMMPS ------------------
    def pair_energy(self, r: np.ndarray, a: int, b: int) -> np.ndarray:
        """phi_ab(r) of Eq. 1: LJ minus its value and slope at r_c; zero beyond r_c."""
        r = np.asarray(r, dtype=float)
        s, e, rc = self.sigma_ab(a, b), self.epsilon_ab(a, b), self.cutoff(a, b)
        phi = lambda x: 4 * e * ((s / x) ** 12 - (s / x) ** 6)  # noqa: E731
        dphi = lambda x: 4 * e * (-12 * s**12 / x**13 + 6 * s**6 / x**7)  # noqa: E731
        out = phi(r) - phi(rc) - (r - rc) * dphi(rc)
        return np.where(r < rc, out, 0.0)

    def pair_force(self, r: np.ndarray, a: int, b: int) -> np.ndarray:
        """Magnitude F = -dphi/dr of Eq. 1 (positive = repulsive); zero beyond r_c."""
        r = np.asarray(r, dtype=float)
        s, e, rc = self.sigma_ab(a, b), self.epsilon_ab(a, b), self.cutoff(a, b)
        dphi = lambda x: 4 * e * (-12 * s**12 / x**13 + 6 * s**6 / x**7)  # noqa: E731
        return np.where(r < rc, -(dphi(r) - dphi(rc)), 0.0)


_KA_SIGMA = ((1.0, 0.8), (0.8, 0.88))
_KA_EPS = ((1.0, 1.5), (1.5, 0.5))

SYSTEMS: dict[str, System] = {
    "KAM": System(
        name="KAM", dim=2, species=("A", "B"), fractions=(0.65, 0.35), masses=(1.0, 1.0),
        sigma=_KA_SIGMA, epsilon=_KA_EPS, rc_factor=2.5, density=1.2,
        T_liquid=0.8, T_star_paper=0.37, xi_pairs=4.0,
    ),
    "ABM": System(
        name="ABM", dim=2, species=("A", "B"), fractions=(0.5, 0.5), masses=(1.0, 1.0),
        sigma=((5 / 6, 1.0), (1.0, 7 / 6)), epsilon=((1.0, 1.0), (1.0, 1.0)),
        rc_factor=3.0, density=1.09, T_liquid=2.0, T_star_paper=1.0, xi_pairs=3.0,
    ),
    # The ABM as the authors' published MD code runs it: rho = 1.2 and r_c = 2.5 sigma_ij,
    # where the paper's Table 1 says rho = 1.09 and 3.0 sigma_ij ("ABM" follows Table 1).
    # Offered so that a user can compare both; T_L and T* as for ABM.
    "ABM-code": System(
        name="ABM-code", dim=2, species=("A", "B"), fractions=(0.5, 0.5), masses=(1.0, 1.0),
        sigma=((5 / 6, 1.0), (1.0, 7 / 6)), epsilon=((1.0, 1.0), (1.0, 1.0)),
        rc_factor=2.5, density=1.2, T_liquid=2.0, T_star_paper=1.0, xi_pairs=3.0,
    ),
    # The standard 3D Kob-Andersen mixture (METHOD.md section 1 extension). T_L = 0.8 sits
    # in its supercooled regime (T_MCT ~ 0.435), as for KAM. xi_pairs = 4, as KAM's: the
    # paper has no 3D value; the same sigma, epsilon and density give nearly the same mean
    # spacing (rho^(-1/d) = 0.94 in 3D, 0.91 in 2D), so the same length in sigma_AA spans
    # the same number of neighbour shells; and at the ka3d preset's N = 16000 its kernel
    # (2 xi = 8) fits within L/2 = 11.9.
    "KA3D": System(
        name="KA3D", dim=3, species=("A", "B"), fractions=(0.8, 0.2), masses=(1.0, 1.0),
        sigma=_KA_SIGMA, epsilon=_KA_EPS, rc_factor=2.5, density=1.2,
        T_liquid=0.8, T_star_paper=None, xi_pairs=4.0,
    ),
}


def get_system(name: str) -> System:
    """The :class:`System` called ``name``; a clear error listing the known ones otherwise."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ValueError(
            f"unknown system {name!r}; allowed: {', '.join(sorted(SYSTEMS))}"
        ) from None
