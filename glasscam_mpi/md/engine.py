"""The one place that opens LAMMPS.

Each MD task gets its own serial LAMMPS instance on ``MPI.COMM_SELF`` (the task farm puts
one per rank), silenced (no log file, no screen), and closed when the task ends. Any LAMMPS
error, and any non-finite energy or temperature, becomes :class:`MDError` carrying
LAMMPS's own message, so the task is recorded as failed and never written as data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np


class MDError(RuntimeError):
    """An MD task failed (LAMMPS error, lost atoms, non-finite energy)."""


def _lammps_class():
    try:
        from lammps import lammps
    except ImportError as exc:  # pragma: no cover - environment problem
        raise MDError(f"the LAMMPS Python module is missing ({exc}); run hpc/bootstrap.sh") from exc
    return lammps


@contextlib.contextmanager
def open_lammps(extra_args: Sequence[str] = ()) -> Iterator[object]:
    """A serial, silent LAMMPS instance on ``MPI.COMM_SELF``; closed on exit."""
    from mpi4py import MPI

    lammps = _lammps_class()
    args = ["-log", "none", "-screen", "none", "-nocite", *extra_args]
    try:
        lmp = lammps(cmdargs=args, comm=MPI.COMM_SELF)
    except OSError as exc:
        raise MDError(
            f"cannot load liblammps ({exc}). It needs libmpi.so.12 from the same MPI as "
            "mpi4py; hpc/bootstrap.sh links it into site-packages/lammps.libs."
        ) from exc
    try:
        yield lmp
    finally:
        lmp.close()


def commands(lmp, lines: Sequence[str]) -> None:
    """Run LAMMPS input lines; a LAMMPS error becomes :class:`MDError` with its message."""
    for line in lines:
        try:
            lmp.command(line)
        except Exception as exc:  # LAMMPS raises plain Exception subclasses
            raise MDError(f"LAMMPS: {str(exc).strip()} (in command: {line!r})") from exc


def thermo(lmp, *keys: str) -> tuple[float, ...]:
    """Current thermo values; :class:`MDError` if any is not finite."""
    values = tuple(float(lmp.get_thermo(k)) for k in keys)
    bad = [f"{k} = {v}" for k, v in zip(keys, values) if not math.isfinite(v)]
    if bad:
        step = int(lmp.get_thermo("step"))
        raise MDError(f"non-finite {', '.join(bad)} at step {step}")
    return values


def snapshot(lmp, dim: int) -> dict[str, np.ndarray]:
    """Positions wrapped into [0, L), image flags, types (0-based) and box, sorted by atom id.

    Returns:
        dict with ``positions`` (N, dim) float64, ``images`` (N, dim) int32,
        ``types`` (N,) int8 species index, ``box`` (dim,) float64 edge lengths.
    """
    n = lmp.extract_global("nlocal")
    if n != lmp.get_natoms():
        raise MDError(f"{lmp.get_natoms()} atoms in the system but {n} local: not a serial run")
    ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=np.int64)
    order = np.argsort(ids)
    x = np.array(lmp.numpy.extract_atom("x")[:n, :dim], dtype=np.float64)[order]
    image = lmp.numpy.extract_atom("image")[:n]
    img = np.stack([((image >> shift) & 1023) - 512 for shift in (0, 10, 20)[:dim]], axis=1)
    typ = np.array(lmp.numpy.extract_atom("type")[:n], dtype=np.int8)[order] - 1
    boxlo, boxhi = lmp.extract_box()[:2]
    lo = np.array(boxlo[:dim])
    L = np.array(boxhi[:dim]) - lo
    if not np.all(np.isfinite(x)):
        raise MDError("non-finite atom coordinates")
    shifted = x - lo
    wraps = np.floor(shifted / L).astype(np.int32)
    pos = shifted - wraps * L
    pos[pos >= L] -= L[np.nonzero(pos >= L)[1]]  # a rounding case: x - L*floor(x/L) == L
    return {"positions": pos, "images": (img.astype(np.int32)[order] + wraps),
            "types": typ, "box": L}


def lammps_info() -> str:
    """LAMMPS version and the MPI library it is linked against, for ``check_stack``."""
    with open_lammps() as lmp:
        version = lmp.version()
        mpi = "MPI" if lmp.has_mpi_support else "serial (no MPI)"
        styles = "lj/smooth/linear ok" if lmp.has_style("pair", "lj/smooth/linear") else \
            "MISSING pair lj/smooth/linear"
    return f"{version} ({mpi}; {styles})"
