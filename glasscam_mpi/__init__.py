"""glasscam-mpi: Grad-CAM analysis of glass configurations at HPC scale.

Implements Oyama, Koyama & Kawasaki, Front. Phys. 10:1007861 (2023): LAMMPS cooling runs
farmed over MPI ranks, a CNN that tells glass from liquid, Grad-CAM per particle, and the
structural and dynamical indicators it is compared with.
"""

__version__ = "0.1.0"



def __getattr__(name):
    """``glasscam_mpi.open_run`` (:func:`glasscam_mpi.runview.open_run`: a run directory's
    stage files as labelled ``xarray`` trees), imported on first use: ``import glasscam_mpi``
    stays light (no h5py, no xarray), and the package root imports nothing of its own
    modules, which import ``__version__`` from it."""
    if name == "open_run":
        import importlib

        return importlib.import_module("glasscam_mpi.runview").open_run
    raise AttributeError(f"module 'glasscam_mpi' has no attribute {name!r}")
