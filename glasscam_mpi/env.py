"""What the software stack under this process is, in one place.

``check_stack()`` is what ``hpc/bootstrap.sh`` prints at its end and what ``glasscam
env`` shows: the MPI library, whether h5py has MPI (parallel HDF5), the LAMMPS build and
the MPI it runs on, torch, and Horovod. Nothing here touches ``MPI.COMM_WORLD``.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings


def serial_hdf5_requested() -> bool:
    """True when ``GLASSCAM_SERIAL_HDF5`` is set (to anything but empty or ``0``)."""
    return os.environ.get("GLASSCAM_SERIAL_HDF5", "") not in ("", "0")


def h5py_has_mpi() -> bool:
    """True when h5py was built with ``HDF5_MPI=ON`` (``driver="mpio"`` available) and the
    serial path was not asked for.

    ``GLASSCAM_SERIAL_HDF5=1`` in the environment makes this False even where h5py has MPI:
    stage files are then gathered and written by rank 0, exactly as on a stack without
    parallel HDF5. The tests use it to check that fallback against the parallel path; on a
    cluster it sidesteps a file system whose MPI-IO misbehaves. (Every rank of a job must
    see the same value; mpiexec and srun pass the environment on.)
    """
    import h5py

    return bool(h5py.get_config().mpi) and not serial_hdf5_requested()


_WARNED_SERIAL_HDF5 = False


def warn_serial_hdf5_once() -> None:
    """Say once per process that writes go through rank 0 (h5py lacks MPI, or
    ``GLASSCAM_SERIAL_HDF5`` is set)."""
    global _WARNED_SERIAL_HDF5
    if not _WARNED_SERIAL_HDF5:
        _WARNED_SERIAL_HDF5 = True
        warnings.warn(
            "GLASSCAM_SERIAL_HDF5 is set: HDF5 output is gathered and written by rank 0"
            if serial_hdf5_requested() else
            "h5py has no MPI support: HDF5 output is gathered and written by rank 0 "
            "(correct, but slower at scale). Build parallel h5py with hpc/bootstrap.sh.",
            RuntimeWarning,
            stacklevel=2,
        )


def check_stack() -> dict[str, str]:
    """Import every layer of the stack and describe it; raise with advice if one is broken."""
    report: dict[str, str] = {"python": sys.version.split()[0]}

    from mpi4py import MPI

    report["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    report["mpi4py"] = importlib.import_module("mpi4py").__version__

    import h5py

    report["h5py"] = f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version}, " + (
        "parallel)" if h5py_has_mpi() else "serial: writes go through rank 0)"
    ) + (" [GLASSCAM_SERIAL_HDF5 set]" if serial_hdf5_requested() else "")

    from glasscam_mpi.md.engine import lammps_info

    report["lammps"] = lammps_info()

    import torch

    report["torch"] = f"{torch.__version__} (cuda: {torch.cuda.is_available()})"
    try:
        import horovod.torch as hvd  # noqa: F401

        report["horovod"] = importlib.import_module("horovod").__version__ + (
            " (mpi)" if hvd.mpi_built() else " (no mpi)"
        )
    except ImportError as exc:
        report["horovod"] = f"not available ({exc}); use train backend 'ddp'"
    import freud

    report["freud"] = freud.__version__
    report["threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
    return report
