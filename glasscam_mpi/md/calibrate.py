"""Calibration for ``glasscam plan``: the configured system timed in LAMMPS on this machine.

One real LAMMPS instance through the package's own engine (:func:`~glasscam_mpi.md.engine.open_lammps`,
the system's potential, the configured N, dimension, timestep and thermostat) is set up
exactly as a cooling run is (random start, minimisation: timed as the per-run set-up),
then held at temperatures from T_high down to T_G and at the replica temperatures, a
short timed run at each. The cost of a step depends on temperature (neighbour-list
rebuilds), so seconds per step are interpolated linearly in T between the measured points
(:meth:`MDRates.per_step`, :meth:`MDRates.ramp_seconds`). Times are the CPU time of the
calling thread (LAMMPS runs there, serially), so a loaded machine does not inflate them;
on a cluster's dedicated cores, wall time is the same.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np


def _cpu() -> float:
    return time.thread_time()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return 0


@dataclass
class MDRates:
    """Seconds per MD step at measured temperatures, and the per-run set-up seconds."""

    temperatures: list[float]      # increasing
    seconds_per_step: list[float]
    steps_timed: list[int]
    setup_seconds: float           # open LAMMPS, random start, minimisation
    instance_seconds: float        # open LAMMPS and read a configuration (a replica segment)
    memory_bytes: int              # resident memory of this process with the instance open
    glass: dict                    # the quenched configuration (box, positions, types)
    style: str = "omp"             # the LAMMPS styles timed (md.engine.STYLES)

    def per_step(self, T) -> np.ndarray:
        return np.interp(T, self.temperatures, self.seconds_per_step)

    def ramp_seconds(self, T_high: float, T_low: float, n_steps: int) -> float:
        """Seconds of a linear ramp T_high -> T_low over n_steps: the mean seconds per step
        of the piecewise-linear interpolant over [T_low, T_high], times n_steps."""
        knots = np.unique(np.concatenate([[T_low, T_high],
                                          [t for t in self.temperatures if T_low < t < T_high]]))
        s = self.per_step(knots)
        mean = np.trapezoid(s, knots) / (T_high - T_low) if T_high > T_low else float(s[0])
        return float(mean * n_steps)

    def to_dict(self) -> dict:
        return {"temperatures": self.temperatures,
                "steps_per_s": [round(1.0 / s, 1) for s in self.seconds_per_step],
                "steps_timed": self.steps_timed, "setup_seconds": round(self.setup_seconds, 4),
                "segment_setup_seconds": round(self.instance_seconds, 4),
                "lammps_style": self.style}


def replica_temperatures(cfg) -> tuple[np.ndarray, str]:
    """The propensity replicas' absolute temperatures as far as they are known before
    prepare, and a note on the T* assumed (the paper's, else T_L / 2) when they are in
    units of an estimated T*."""
    q = cfg.propensity
    temps = np.array(q.temperatures, dtype=float)
    if q.temperature_unit != "T_star":
        return temps, ""
    if q.T_star not in ("estimate", 0.0):
        return temps * float(q.T_star), ""
    if cfg.sys.T_star_paper is not None:
        return (temps * cfg.sys.T_star_paper,
                f" (T* = {cfg.sys.T_star_paper}, the paper's, assumed)")
    guess = cfg.T_liquid / 2
    return temps * guess, f" (T* unknown before prepare; assumed T_L / 2 = {guess:g})"


def calibration_temperatures(cfg, replica_T: np.ndarray | None = None) -> list[float]:
    """T_high down to T_G in 5 points (the ramp), T_L, and the replica temperatures."""
    p = cfg.prepare
    temps = set(np.round(np.linspace(p.T_high, cfg.T_glass, 5), 6).tolist())
    temps.add(round(cfg.T_liquid, 6))
    if replica_T is not None:
        temps.update(np.round(replica_T, 6).tolist())
    return sorted(temps)


def measure_md(cfg, temperatures: list[float], seconds_per_point: float = 0.4,
               seed: int = 12345, style: str | None = None) -> MDRates:
    """Time the configured system in LAMMPS: set-up as in a cooling run, then a short run
    at each temperature (hot to cold, each after a warm-up at that temperature).

    ``style``: the LAMMPS styles timed (default ``[prepare].lammps_style``)."""
    from glasscam_mpi.md.cooling import setup_lines
    from glasscam_mpi.md.engine import MDError, commands, open_lammps, snapshot
    from glasscam_mpi.md.replica import load_configuration_lines

    p, system, N = cfg.prepare, cfg.sys, cfg.system.n_particles
    style = p.lammps_style if style is None else style
    tdamp = p.tdamp_steps * p.timestep
    with open_lammps(style=style):  # load the library once, as a job's first task has
        pass
    t0 = _cpu()
    per_T: dict[float, tuple[float, int]] = {}
    with open_lammps(style=style) as lmp:
        commands(lmp, setup_lines(system, N, seeds=(seed, seed + 1, seed + 2),
                                  min_distance=p.min_distance, timestep=p.timestep,
                                  T_high=p.T_high, tdamp_steps=p.tdamp_steps, n_equilibrate=0))
        if lmp.get_natoms() != N:
            raise MDError(f"calibration: random start placed {lmp.get_natoms()} of {N} "
                          "particles; lower [prepare].min_distance")
        setup = _cpu() - t0
        memory = _rss_bytes()
        for T in sorted(temperatures, reverse=True):
            commands(lmp, ["unfix thermostat",
                           f"fix thermostat all nvt temp {T!r} {T!r} {tdamp!r}"])
            t0 = _cpu()
            commands(lmp, ["run 20 post no"])
            probe = max(_cpu() - t0, 1e-6) / 20
            n = int(min(50000, max(100, seconds_per_point / probe)))
            commands(lmp, [f"run {max(100, n // 4)} post no"])  # settle at T
            t0 = _cpu()
            commands(lmp, [f"run {n} pre no post no"])
            per_T[T] = ((_cpu() - t0) / n, n)
        glass = snapshot(lmp, system.dim)
    t0 = _cpu()
    with open_lammps(style=style) as lmp:  # what each replica segment pays: a fresh instance
        commands(lmp, load_configuration_lines(system, glass["box"]))
        commands(lmp, ["run 0 post no"])
    instance = _cpu() - t0
    temps = sorted(per_T)
    return MDRates(temps, [per_T[T][0] for T in temps], [per_T[T][1] for T in temps],
                   setup, instance, memory, glass, style)
