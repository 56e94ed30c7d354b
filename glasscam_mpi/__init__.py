"""glasscam-mpi: Grad-CAM analysis of glass configurations at HPC scale.

Implements Oyama, Koyama & Kawasaki, Front. Phys. 10:1007861 (2023): LAMMPS cooling runs
farmed over MPI ranks, a CNN that tells glass from liquid, Grad-CAM per particle, and the
structural and dynamical indicators it is compared with.
"""

__version__ = "0.1.0"
