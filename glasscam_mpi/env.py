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


def h5py_has_mpi() -> bool:
    """True when h5py was built with ``HDF5_MPI=ON`` (``driver="mpio"`` available)."""
    import h5py

    return bool(h5py.get_config().mpi)


_WARNED_SERIAL_HDF5 = False


def warn_serial_hdf5_once() -> None:
    """Say once per process that writes go through rank 0 because h5py lacks MPI."""
    global _WARNED_SERIAL_HDF5
    if not _WARNED_SERIAL_HDF5:
        _WARNED_SERIAL_HDF5 = True
        warnings.warn(
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
    )

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
