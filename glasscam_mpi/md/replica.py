"""One member of an isoconfigurational ensemble (paper section 3.5, METHOD.md section 6).

Start from a stored configuration (the glass sample), draw fresh Maxwell-Boltzmann
velocities at T with zero total momentum, run NVT (default) or NVE, and record the
*unwrapped* positions at log-spaced times. The run may stop early once this replica's
mean cage-relative displacement has passed a target (``stop``), which saves most of the
cost at the paper's largest delta.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glasscam_mpi.md.cooling import pair_lines
from glasscam_mpi.md.engine import (DEFAULT_STYLE, MDError, commands, gather_by_id,
                                    open_lammps, snapshot, thermo)
from glasscam_mpi.systems import System


def log_times(dt: float, t_max: float, n_times: int, t_min: float | None = None) -> np.ndarray:
    """(n_times,) distinct timestep counts, log-spaced from ``t_min`` (default 10 dt) to t_max."""
    lo = max(1.0, (t_min if t_min is not None else 10 * dt) / dt)
    hi = max(lo, t_max / dt)
    steps = np.unique(np.round(np.geomspace(lo, hi, n_times)).astype(np.int64))
    return steps


@dataclass
class ReplicaResult:
    steps: np.ndarray        # (n_times,) timesteps reached (a prefix if stopped early)
    positions: np.ndarray    # (n_times, N, d) unwrapped positions
    T0: float                # temperature right after the velocities were drawn
    momentum0: np.ndarray    # (d,) total momentum right after the velocities were drawn
    velocities0: np.ndarray  # (N, d) the drawn velocities, by atom id


def load_configuration_lines(system: System, box: np.ndarray) -> list[str]:
    """An empty periodic box [0, L)^d of the system, ready for ``lmp.create_atoms``."""
    d = system.dim
    zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, float(box[2]))
    lines = ["units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
             "atom_modify map array",
             f"region box block 0 {float(box[0])!r} 0 {float(box[1])!r} {zlo!r} {zhi!r}",
             f"create_box {system.n_species} box"]
    lines += [f"mass {s + 1} {system.masses[s]!r}" for s in range(system.n_species)]
    return lines + pair_lines(system) + (["fix twod all enforce2d"] if d == 2 else [])


def dynamics_lines(*, T: float, seed: int, timestep: float, ensemble: str,
                   tdamp_steps: float) -> list[str]:
    """Fresh Maxwell-Boltzmann velocities at T (zero total momentum), then NVT or NVE."""
    if ensemble not in ("nvt", "nve"):
        raise ValueError(f"ensemble = {ensemble!r}; allowed: 'nvt', 'nve'")
    fix = (f"fix md all nvt temp {T!r} {T!r} {tdamp_steps * timestep!r}" if ensemble == "nvt"
           else "fix md all nve")
    return ["thermo_style custom step temp pe", "thermo_modify norm yes", f"timestep {timestep!r}",
            f"velocity all create {T!r} {seed} mom yes rot no dist gaussian loop geom", fix]


def write_data_file(path, box: np.ndarray, positions: np.ndarray, types: np.ndarray,
                    n_species: int) -> None:
    """A LAMMPS data file of one configuration (for the bare ``lmp`` executable)."""
    n, d = positions.shape
    zlo, zhi = (-0.5, 0.5) if d == 2 else (0.0, float(box[2]))
    lines = ["glasscam configuration", "", f"{n} atoms", f"{n_species} atom types", "",
             f"0 {float(box[0])!r} xlo xhi", f"0 {float(box[1])!r} ylo yhi", f"{zlo!r} {zhi!r} zlo zhi",
             "", "Atoms # atomic", ""]
    for i in range(n):
        x, y = float(positions[i, 0]), float(positions[i, 1])
        z = float(positions[i, 2]) if d == 3 else 0.0
        lines.append(f"{i + 1} {int(types[i]) + 1} {x!r} {y!r} {z!r}")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def input_script(system: System, data_file: str, *, T: float, seed: int, timestep: float,
                 steps: np.ndarray, ensemble: str = "nvt", tdamp_steps: float = 100.0,
                 dump: str | None = None) -> str:
    """One replica as a LAMMPS input file: the same commands as :func:`run_replica`, with
    unwrapped positions dumped at ``steps`` (for the bare ``lmp`` executable)."""
    d = system.dim
    lines = ["units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
             "atom_modify map array", f"read_data {data_file}"]
    lines += [f"mass {s + 1} {system.masses[s]!r}" for s in range(system.n_species)]
    lines += pair_lines(system) + (["fix twod all enforce2d"] if d == 2 else [])
    lines += dynamics_lines(T=T, seed=seed, timestep=timestep, ensemble=ensemble,
                            tdamp_steps=tdamp_steps) + ["run 0 post no"]
    done = 0
    for step in steps:
        lines.append(f"run {int(step - done)} pre no post no")
        done = int(step)
        if dump:
            lines.append(f"write_dump all custom {dump} id xu yu{' zu' if d == 3 else ''} "
                         "modify sort id append yes")
    return "\n".join(lines) + "\n"


def run_replica(system: System, positions: np.ndarray, types: np.ndarray, box: np.ndarray, *,
                T: float, seed: int, timestep: float, steps: np.ndarray, ensemble: str = "nvt",
                tdamp_steps: float = 100.0,
                stop: Callable[[np.ndarray], bool] | None = None,
                restart_from: str | os.PathLike | None = None,
                restart_to: str | os.PathLike | None = None,
                inject_fault: bool = False, comm=None,
                style: str = DEFAULT_STYLE) -> ReplicaResult:
    """Run one replica and record unwrapped positions at ``steps``.

    ``comm``: the ranks that run it together (default: this rank alone); each of them
    calls this function and gets the same result, and the restart file is written once.

    A replica may run in segments: ``restart_to`` writes LAMMPS's binary restart file
    (positions, image flags, velocities, the thermostat's state, the step count) after the
    last record, and a later call with ``restart_from`` continues from it (``positions``
    and ``types`` are then ignored, and ``steps`` must lie beyond the saved step). A
    continued run is deterministic, but it is not bit-identical to an unbroken one (the
    neighbour lists are rebuilt, so forces are summed in another order and the chaotic
    dynamics amplify the last-bit difference): keep the segment boundaries fixed.

    Args:
        positions: (N, d) start configuration in [0, L)^d.
        types: (N,) species index.
        box: (d,) box edges.
        T: temperature of the Maxwell-Boltzmann velocities (and of the thermostat for NVT).
        seed: LAMMPS velocity seed (from the task's stream).
        steps: increasing timestep counts at which positions are recorded.
        ensemble: ``"nvt"`` (Nose-Hoover at T) or ``"nve"``.
        stop: called with the positions recorded so far, (k, N, d); True ends the run early.
        restart_from: a restart file written by an earlier segment of this replica.
        restart_to: where to write the restart file after the last record (written under a
            temporary name and renamed, so it exists only when complete).
        style: the LAMMPS styles, ``"omp"`` or ``"plain"``
            (:func:`~glasscam_mpi.md.engine.open_lammps`); a continued segment may use
            another style than the segment it continues (the restart file names the pair
            style without its suffix; either style reads it).
        inject_fault: put two atoms on one spot after the first record, a real LAMMPS
            failure (the tests of the failure path use it).

    Returns:
        The records; in a continued segment ``T0``, ``momentum0`` and ``velocities0`` are NaN
        (they belong to the first segment).
    """
    n, d = positions.shape
    dynamics = dynamics_lines(T=T, seed=seed, timestep=timestep, ensemble=ensemble,
                              tdamp_steps=tdamp_steps)
    group = comm.Get_size() if comm is not None else 1
    with open_lammps(comm=comm, style=style) as lmp:
        if restart_from is None:
            x3 = np.zeros((n, 3))
            x3[:, :d] = positions
            commands(lmp, load_configuration_lines(system, box))
            lmp.create_atoms(n, list(range(1, n + 1)), [int(t) + 1 for t in types],
                             x3.ravel().tolist())
            if lmp.get_natoms() != n:
                raise MDError(f"loaded {lmp.get_natoms()} of {n} particles")
            commands(lmp, dynamics + ["run 0 post no"])
            T0 = thermo(lmp, "temp")[0]
            v = gather_by_id(lmp, "v", d) if group > 1 else \
                _by_id(lmp, np.array(lmp.numpy.extract_atom("v")[:n, :d]))
            momentum0 = v.sum(axis=0)  # masses are 1 in every system here
        else:
            # the pair style and its coefficients, velocities, image flags and the
            # Nose-Hoover state come from the file; fixes are declared again with their IDs
            fixes = [line for line in dynamics if not line.startswith("velocity")]
            commands(lmp, [f"read_restart {os.fspath(restart_from)}",
                           *(["fix twod all enforce2d"] if d == 2 else []), *fixes,
                           "run 0 post no"])
            T0, v = float("nan"), np.full((n, d), np.nan)
            momentum0 = np.full(d, np.nan)
        done = int(lmp.extract_global("ntimestep"))
        out, recorded = [], []
        for step in steps:
            if step < done:
                raise ValueError(f"record step {int(step)} lies before the restart's step {done}")
            if step > done:
                commands(lmp, [f"run {int(step - done)} pre no post no"])
                done = int(step)
            thermo(lmp, "pe")
            out.append(_unwrapped(lmp, d))
            recorded.append(int(step))
            if inject_fault and len(out) == 1:
                commands(lmp, ["set atom 2 x 0.5 y 0.5 z 0.0", "set atom 1 x 0.5 y 0.5 z 0.0"])
            if stop is not None and stop(np.asarray(out)):
                break
        if restart_to is not None:
            # one name for the whole group (LAMMPS writes the file from its rank 0)
            pid = comm.bcast(os.getpid(), root=0) if group > 1 else os.getpid()
            tmp = f"{os.fspath(restart_to)}.tmp.{pid}"
            commands(lmp, [f"write_restart {tmp}"])
            if group == 1 or comm.Get_rank() == 0:
                os.replace(tmp, restart_to)
            if group > 1:
                comm.Barrier()
    return ReplicaResult(np.array(recorded, dtype=np.int64), np.asarray(out), T0, momentum0, v)


def _by_id(lmp, per_atom: np.ndarray) -> np.ndarray:
    ids = np.array(lmp.numpy.extract_atom("id")[:len(per_atom)])
    out = np.empty_like(per_atom)
    out[ids - 1] = per_atom
    return out


def _unwrapped(lmp, d: int) -> np.ndarray:
    snap = snapshot(lmp, d)
    return snap["positions"] + snap["images"] * snap["box"]
