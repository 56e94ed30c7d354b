"""Any Lennard-Jones mixture: ``[system] name = "custom"`` (README, "Your own
Lennard-Jones mixture").

The ``[system]`` section of a config describes the mixture field by field; this module
checks those fields and builds the :class:`~glasscam_mpi.systems.System` every stage uses,
the same object the built-in mixtures are (so ``KAM`` written out as a custom mixture *is*
the built-in KAM: equal dataclasses, equal LAMMPS input, equal results).

Fields (all in ``[system]``; they apply only to ``name = "custom"`` and must stay unset
for a built-in name):

=========== ========================= =====================================================
field       example                   meaning
=========== ========================= =====================================================
label       "Wahnstrom2D"             the mixture's name in reports and in the seed streams
                                      (task seeds derive from [run].seed, the label and the
                                      task); default "custom"
dim         2                         2 or 3
species     ["A", "B"]                names, 1 to 8; type s (LAMMPS type s + 1) = species[s]
masses      [1.0, 2.0]                one per species, > 0
fractions   [0.5, 0.5]                number fractions, > 0, summing to 1; each times
                                      n_particles must be a whole number
sigma       [[1.0, 1.1], [1.1, 1.2]]  sigma_ab, an S x S symmetric matrix (row a, column b)
epsilon     [[1.0, 1.0], [1.0, 1.0]]  epsilon_ab, likewise
rc_factor   2.5                       r_c,ab = rc_factor * sigma_ab (> 1), as paper Table 1
cutoff      [[2.5, 2.75], ...]        or r_c,ab directly, S x S symmetric, r_c,ab > sigma_ab
density     0.906                     number density N / L^d, > 0
radii       [0.5, 0.6]                additive radii of Theta (Tong-Tanaka), > 0;
                                      default sigma_ss / 2 (METHOD.md section 5)
T_liquid    1.0                       T_L, where the liquid sample is saved
T_glass     0.05                      T_G, where the glass sample is saved; 0 = 0.05
T_star      0.0                       a T* known from the literature (shown beside the
                                      estimate, used by the plan); 0 = none
xi_pairs    4.0                       xi of the indicator-indicator correlations
                                      ([analyze].xi_pairs = "auto"); 0 = 4
unit        ["A", "A"]                the pair whose sigma and epsilon are the length and
                                      energy units (paper Table 1); both must be 1 there;
                                      default: the first pair with sigma = epsilon = 1
=========== ========================= =====================================================

A pair is one unordered pair of species {a, b}: a matrix holds it twice, at [a][b] and
[b][a], and the two entries must be equal (a typo in one of them is refused, naming both).
Give exactly one of ``rc_factor`` and ``cutoff``.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from functools import lru_cache
from typing import Any

from glasscam_mpi.systems import System

CUSTOM = "custom"
MAX_SPECIES = 8
DEFAULT_T_GLASS = 0.05   # the paper's T_G, as the built-in systems
DEFAULT_XI_PAIRS = 4.0   # KAM's and KA3D's
CUSTOM_FIELDS = ("label", "dim", "species", "masses", "fractions", "sigma", "epsilon",
                 "rc_factor", "cutoff", "density", "radii", "T_liquid", "T_glass", "T_star",
                 "xi_pairs", "unit")
REQUIRED = ("dim", "species", "masses", "fractions", "sigma", "epsilon", "density", "T_liquid")
_SPECIES_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,32}$")


class MixtureError(ValueError):
    """A ``[system]`` field of a custom mixture is missing, malformed or out of range."""


def _where(key: str, value: Any) -> str:
    return f"[system].{key} = {_fmt(value)}"


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return repr(value)


def _defaults(section) -> dict[str, Any]:
    empty = type(section)()
    return {f.name: getattr(empty, f.name) for f in fields(section)}


def check_builtin_leaves_custom_fields_unset(section) -> None:
    """A built-in ``name`` with a custom-mixture field set is refused (the field would be
    silently ignored otherwise)."""
    default = _defaults(section)
    for key in CUSTOM_FIELDS:
        value = getattr(section, key)
        if value != default[key]:
            raise MixtureError(
                f"{_where(key, value)}: [system].name = {section.name!r} is a built-in "
                f"system, whose fields are fixed (systems.py); allowed: leave {key} unset, or "
                f"set name = \"custom\" to describe your own mixture")


def _positive_list(section, key: str, S: int, species: tuple[str, ...]) -> tuple[float, ...]:
    value = getattr(section, key)
    if len(value) != S:
        raise MixtureError(f"{_where(key, value)}: {len(value)} values for {S} species "
                           f"{_fmt(species)}; allowed: one value > 0 per species")
    for s, v in enumerate(value):
        if not v > 0:
            raise MixtureError(f"[system].{key}[{s}] = {v!r} (species {species[s]}): allowed: "
                               "a number > 0")
    return value


def _matrix(section, key: str, S: int, species: tuple[str, ...],
            above: tuple[tuple[float, ...], ...] | None = None) -> tuple[tuple[float, ...], ...]:
    """An S x S symmetric matrix of positive numbers (each > ``above[a][b]`` if given)."""
    m = getattr(section, key)
    if len(m) != S or any(len(row) != S for row in m):
        shape = f"{len(m)} rows of " + "/".join(str(len(r)) for r in m) if m else "no rows"
        raise MixtureError(f"{_where(key, m)}: {shape}; allowed: an {S} x {S} matrix (one row "
                           f"per species {_fmt(species)}, row a column b = pair a-b), e.g. "
                           + _fmt(tuple(tuple(1.0 for _ in range(S)) for _ in range(S))))
    for a in range(S):
        for b in range(S):
            v = m[a][b]
            pair = f"pair {species[a]}{species[b]}"
            if not v > 0:
                raise MixtureError(f"[system].{key}[{a}][{b}] = {v!r} ({pair}): allowed: a "
                                   "number > 0")
            if above is not None and not v > above[a][b]:
                raise MixtureError(f"[system].{key}[{a}][{b}] = {v!r} ({pair}): must exceed "
                                   f"[system].sigma[{a}][{b}] = {above[a][b]!r}; allowed: "
                                   "r_c > sigma for every pair")
            if b > a and m[b][a] != v:
                raise MixtureError(f"[system].{key}[{a}][{b}] = {v!r} but [system].{key}[{b}]"
                                   f"[{a}] = {m[b][a]!r} ({pair}): the matrix must be "
                                   "symmetric; allowed: the same value at [a][b] and [b][a]")
    return m


def _check_counts(fractions: tuple[float, ...], n: int, species: tuple[str, ...]) -> None:
    total = math.fsum(fractions)
    if abs(total - 1.0) > 1e-9:
        raise MixtureError(f"{_where('fractions', fractions)}: sum to {total!r}; allowed: "
                           "number fractions > 0 that sum to 1")
    raw = [f * n for f in fractions]
    if all(abs(x - round(x)) <= 1e-6 * max(1.0, x) for x in raw):
        return
    whole = lambda m: all(abs(f * m - round(f * m)) <= 1e-6 * max(1.0, f * m)  # noqa: E731
                          for f in fractions)
    fits = sorted({m for k in range(1, 10001) for m in (n - k, n + k) if m >= 16 and whole(m)},
                  key=lambda m: (abs(m - n), m))[:2]
    give = ", ".join(f"{x:g} {s}" for x, s in zip(raw, species))
    hint = f" (the nearest: n_particles = {' or '.join(map(str, fits))})" if fits else ""
    raise MixtureError(f"{_where('fractions', fractions)}: give {give} particles for "
                       f"[system].n_particles = {n}; allowed: fractions whose products with "
                       f"n_particles are whole numbers{hint}")


@lru_cache(maxsize=64)
def custom_system(section) -> System:
    """The :class:`System` a ``[system] name = "custom"`` section describes.

    Args:
        section: The config's ``SystemSection`` (frozen, hashable).

    Raises:
        MixtureError: Naming the field, its value and what is allowed.
    """
    default = _defaults(section)
    missing = [k for k in REQUIRED if getattr(section, k) == default[k]]
    if section.rc_factor == default["rc_factor"] and section.cutoff == default["cutoff"]:
        missing.append("rc_factor or cutoff")
    if missing:
        raise MixtureError(f"[system].name = \"custom\" needs [system].{', '.join(missing)}; "
                           "see README \"Your own Lennard-Jones mixture\" and "
                           "hpc/custom-wahnstrom.example.toml")
    label = section.label or CUSTOM
    if not _LABEL_RE.match(label):
        raise MixtureError(f"{_where('label', section.label)}: allowed: 1 to 32 letters, digits "
                           "or _ . + -")
    if section.dim not in (2, 3):
        raise MixtureError(f"{_where('dim', section.dim)}: allowed: 2 or 3")
    species = section.species
    S = len(species)
    if not 1 <= S <= MAX_SPECIES or len(set(species)) != S \
            or not all(_SPECIES_RE.match(s) for s in species):
        raise MixtureError(f"{_where('species', species)}: allowed: 1 to {MAX_SPECIES} distinct "
                           "names, each a letter then up to 7 letters or digits, e.g. "
                           "[\"A\", \"B\"]")
    masses = _positive_list(section, "masses", S, species)
    fractions = _positive_list(section, "fractions", S, species)
    _check_counts(fractions, section.n_particles, species)
    sigma = _matrix(section, "sigma", S, species)
    epsilon = _matrix(section, "epsilon", S, species)
    rc = None
    if section.rc_factor != default["rc_factor"] and section.cutoff != default["cutoff"]:
        raise MixtureError(f"[system].rc_factor = {section.rc_factor!r} and [system].cutoff = "
                           f"{_fmt(section.cutoff)} are both set; allowed: one of them")
    if section.cutoff != default["cutoff"]:
        rc = _matrix(section, "cutoff", S, species, above=sigma)
    elif not section.rc_factor > 1.0:
        raise MixtureError(f"{_where('rc_factor', section.rc_factor)}: allowed: a number > 1 "
                           "(r_c,ab = rc_factor * sigma_ab must exceed sigma_ab)")
    if not section.density > 0:
        raise MixtureError(f"{_where('density', section.density)}: allowed: a number > 0")
    radii = _positive_list(section, "radii", S, species) if section.radii else None
    T_glass = section.T_glass or DEFAULT_T_GLASS
    if not section.T_liquid > T_glass > 0:
        raise MixtureError(f"[system].T_liquid = {section.T_liquid!r}, T_glass = "
                           f"{section.T_glass!r}{' (0 = 0.05)' if not section.T_glass else ''}: "
                           "allowed: T_liquid > T_glass > 0")
    for key in ("T_star", "xi_pairs"):
        if getattr(section, key) < 0:
            raise MixtureError(f"{_where(key, getattr(section, key))}: allowed: a number >= 0 "
                               "(0 = " + ("none" if key == "T_star" else "4") + ")")
    unit = None
    if section.unit:
        u = section.unit
        if len(u) != 2 or any(s not in species for s in u):
            raise MixtureError(f"{_where('unit', u)}: allowed: two of the species "
                               f"{_fmt(species)}, e.g. [\"{species[0]}\", \"{species[0]}\"]")
        a, b = species.index(u[0]), species.index(u[1])
        if sigma[a][b] != 1.0 or epsilon[a][b] != 1.0:
            raise MixtureError(f"{_where('unit', u)}: sigma = {sigma[a][b]!r}, epsilon = "
                               f"{epsilon[a][b]!r} for that pair; allowed: the pair whose "
                               "sigma and epsilon are both 1 (they are the units)")
        unit = (u[0], u[1])
    return System(name=label, dim=section.dim, species=species, fractions=fractions,
                  masses=masses, sigma=sigma, epsilon=epsilon,
                  rc_factor=section.rc_factor if rc is None else 0.0,
                  density=section.density, T_liquid=section.T_liquid, T_glass=T_glass,
                  T_star_paper=section.T_star or None,
                  xi_pairs=section.xi_pairs or DEFAULT_XI_PAIRS,
                  rc=rc, tt_radii=radii, unit_pair=unit)
