"""The sample-preparation protocol of the paper (section 2.2, METHOD.md section 2) in LAMMPS.

One cooling run: random non-overlapping start, energy minimisation, NVT Nose-Hoover
equilibration at T_high, then a linear thermostat ramp T_high -> T_G at a constant rate.
The liquid sample is the configuration when the target temperature passes T_L, the glass
sample the one at T_G. The potential energy and temperature are recorded along the ramp.

The input is produced as plain LAMMPS lines (:func:`setup_lines`, :func:`ramp_lines`) so
the very same input can be run by the bare ``lmp`` executable (benchmarks/md_throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glasscam_mpi.md.engine import (DEFAULT_STYLE, MDError, commands, open_lammps, snapshot,
                                    thermo)
from glasscam_mpi.systems import System


@dataclass(frozen=True)
class CoolingPlan:
    """Step counts of one run and the steps where the energy is sampled."""

    n_equilibrate: int
    n_liquid: int          # ramp step where the target temperature passes T_L
    n_total: int           # ramp steps T_high -> T_G
    sample_steps: tuple[int, ...]  # ramp steps where (T, U) are recorded; include n_liquid, n_total
    snapshot_steps: tuple[int, ...] = ()  # ramp steps of the extra snapshots (in sample_steps)

    @classmethod
    def make(cls, *, timestep: float, t_equilibrate: float, T_high: float, T_liquid: float,
             T_glass: float, cooling_rate: float, energy_samples: int,
             extra_snapshots: tuple[float, ...] = ()) -> "CoolingPlan":
        per_unit = 1.0 / (cooling_rate * timestep)  # steps per unit of temperature

        def step_at(T: float) -> int:  # where the target temperature passes T
            return min(n_total - 1, max(1, int(round((T_high - T) * per_unit))))

        n_total = max(2, int(round((T_high - T_glass) * per_unit)))
        n_liquid = step_at(T_liquid)
        snaps = tuple(step_at(T) for T in extra_snapshots)
        grid = np.unique(np.round(np.linspace(0, n_total, energy_samples)).astype(int))
        samples = tuple(int(s) for s in np.union1d(grid, [n_liquid, n_total, *snaps]))
        return cls(int(round(t_equilibrate / timestep)), n_liquid, n_total, samples, snaps)

    def target_temperature(self, T_high: float, T_glass: float) -> np.ndarray:
        """Thermostat target at each sample step (LAMMPS ramps linearly in steps)."""
        s = np.asarray(self.sample_steps, dtype=float)
        return T_high + (T_glass - T_high) * s / self.n_total


def pair_lines(system: System) -> list[str]:
    """Eq. 1 in LAMMPS: lj/smooth/linear with the per-pair cutoff r_c,ab in pair_coeff."""
    lines = [f"pair_style lj/smooth/linear {system.max_cutoff!r}"]
    for a in range(system.n_species):
        for b in range(a, system.n_species):
            lines.append(f"pair_coeff {a + 1} {b + 1} {system.epsilon_ab(a, b)!r} "
                         f"{system.sigma_ab(a, b)!r} {system.cutoff(a, b)!r}")
    return lines + ["neighbor 0.3 bin", "neigh_modify every 1 delay 0 check yes"]


def setup_lines(system: System, n_particles: int, *, seeds: tuple[int, int, int],
                min_distance: float, timestep: float, T_high: float, tdamp_steps: float,
                n_equilibrate: int) -> list[str]:
    """Build the box, place particles at random, minimise, and equilibrate at T_high."""
    d = system.dim
    L = system.box_length(n_particles)
    counts = system.counts(n_particles)
    zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, L)
    overlap = min_distance * system.sigma_ab(0, 0)
    lines = [
        "units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
        "atom_modify map array",
        f"region box block 0 {L!r} 0 {L!r} {zlo!r} {zhi!r}",
        f"create_box {system.n_species} box",
    ]
    for s, count in enumerate(counts):
        lines.append(f"mass {s + 1} {system.masses[s]!r}")
    for s, count in enumerate(counts):
        if count:
            # species 0 and 1 take the task's seeds; a third and later species (custom
            # mixtures) one derived from them, so no two species draw the same positions
            seed = seeds[s] if s < 2 else (seeds[s % 2] + 7919 * s) % 899_999_999 + 1
            lines.append(f"create_atoms {s + 1} random {count} {seed} NULL "
                         f"overlap {overlap!r} maxtry 10000")
    lines += pair_lines(system)
    if d == 2:
        lines.append("fix twod all enforce2d")
    lines += [
        "thermo_style custom step temp pe",
        "thermo_modify norm yes",
        "minimize 1.0e-4 1.0e-6 1000 10000",
        "reset_timestep 0",
        f"timestep {timestep!r}",
        f"velocity all create {T_high!r} {seeds[2]} mom yes rot no dist gaussian",
        f"fix thermostat all nvt temp {T_high!r} {T_high!r} {tdamp_steps * timestep!r}",
    ]
    if n_equilibrate:
        lines.append(f"run {n_equilibrate}")
    return lines


def ramp_lines(*, T_high: float, T_glass: float, timestep: float, tdamp_steps: float) -> list[str]:
    """Replace the thermostat by the linear ramp T_high -> T_G; steps counted from 0."""
    return [
        "unfix thermostat",
        "reset_timestep 0",
        f"fix thermostat all nvt temp {T_high!r} {T_glass!r} {tdamp_steps * timestep!r}",
    ]


def ramp_chunks(plan: CoolingPlan) -> list[tuple[int, str]]:
    """(ramp step reached, LAMMPS line) for each chunk of the ramp, the set-up ``run 0`` first.

    ``run N start 0 stop n_total`` keeps one continuous thermostat ramp across chunks, so
    the energy can be sampled between them without disturbing the protocol.
    """
    chunks = [(0, f"run 0 start 0 stop {plan.n_total} post no")]
    done = 0
    for step in plan.sample_steps:
        if step > done:
            chunks.append((step, f"run {step - done} start 0 stop {plan.n_total} pre no post no"))
            done = step
    return chunks


def input_script(system: System, n_particles: int, plan: CoolingPlan, **kw) -> str:
    """The whole cooling run as one LAMMPS input file (for the bare ``lmp`` executable)."""
    lines = setup_lines(system, n_particles, n_equilibrate=plan.n_equilibrate,
                        seeds=kw["seeds"], min_distance=kw["min_distance"],
                        timestep=kw["timestep"], T_high=kw["T_high"], tdamp_steps=kw["tdamp_steps"])
    lines += ramp_lines(T_high=kw["T_high"], T_glass=kw["T_glass"], timestep=kw["timestep"],
                        tdamp_steps=kw["tdamp_steps"])
    return "\n".join(lines + [line for _, line in ramp_chunks(plan)]) + "\n"


@dataclass
class CoolingResult:
    """Arrays of one run (sorted by atom id)."""

    box: np.ndarray            # (d,)
    types: np.ndarray          # (N,) int8
    liquid: np.ndarray         # (N, d) positions at T_L
    glass: np.ndarray          # (N, d) positions at T_G
    T: np.ndarray              # (n_samples,) instantaneous temperature
    pe: np.ndarray             # (n_samples,) potential energy per particle
    snapshots: np.ndarray | None = None  # (S, N, d) at the plan's snapshot_steps (S > 0)


def run_cooling(system: System, n_particles: int, plan: CoolingPlan, *,
                seeds: tuple[int, int, int], min_distance: float, timestep: float,
                T_high: float, T_glass: float, tdamp_steps: float,
                inject_fault: bool = False, comm=None,
                style: str = DEFAULT_STYLE) -> CoolingResult:
    """One full cooling run. Raises :class:`MDError` on any failure.

    ``comm``: the ranks that run it together (default: this rank alone); each of them
    calls this function and gets the same result.

    ``style``: the LAMMPS styles, ``"omp"`` or ``"plain"``
    (:func:`~glasscam_mpi.md.engine.open_lammps`).

    ``inject_fault`` puts two atoms on top of each other mid-ramp (a real LAMMPS failure,
    used by the tests of the failure path).
    """
    with open_lammps(comm=comm, style=style) as lmp:
        commands(lmp, setup_lines(system, n_particles, seeds=seeds, min_distance=min_distance,
                                  timestep=timestep, T_high=T_high, tdamp_steps=tdamp_steps,
                                  n_equilibrate=plan.n_equilibrate))
        if lmp.get_natoms() != n_particles:
            raise MDError(f"random start placed {lmp.get_natoms()} of {n_particles} particles; "
                          "lower [prepare].min_distance")
        commands(lmp, ramp_lines(T_high=T_high, T_glass=T_glass, timestep=timestep,
                                 tdamp_steps=tdamp_steps))
        samples = {step: k for k, step in enumerate(plan.sample_steps)}
        T = np.empty(len(samples))
        pe = np.empty(len(samples))
        liquid = None
        snaps: dict[int, np.ndarray] = {}
        for step, line in ramp_chunks(plan):
            commands(lmp, [line])
            if step not in samples:
                continue
            pe[samples[step]], T[samples[step]] = thermo(lmp, "pe", "temp")
            if step in plan.snapshot_steps:
                snaps[step] = snapshot(lmp, system.dim)["positions"]
            if step == plan.n_liquid:
                liquid = snapshot(lmp, system.dim)["positions"]
                if inject_fault:
                    commands(lmp, ["set atom 2 x 0.5 y 0.5 z 0.0", "set atom 1 x 0.5 y 0.5 z 0.0"])
        final = snapshot(lmp, system.dim)
    assert liquid is not None  # n_liquid is always among the sample steps
    return CoolingResult(box=final["box"], types=final["types"], liquid=liquid,
                         glass=final["positions"], T=T, pe=pe,
                         snapshots=(np.stack([snaps[s] for s in plan.snapshot_steps])
                                    if plan.snapshot_steps else None))
