"""Per-particle analysis of configurations: structure, dynamics, fields and correlations.

Pure array-in, array-out physics (no MPI): periodic Voronoi cells and neighbours, the
Tong-Tanaka order parameter, cage-relative displacements and propensity, Gaussian
coarse-graining, spatial correlation functions and field-field correlations.
"""

from glasscam_mpi.analysis.cage import cage_relative_displacement, propensity
from glasscam_mpi.analysis.coarse import coarse_grain, normalize01
from glasscam_mpi.analysis.correlation import (first_crossing, pearson, spatial_correlation,
                                               spearman)
from glasscam_mpi.analysis.delaunay import PeriodicDelaunay, periodic_delaunay
from glasscam_mpi.analysis.tongtanaka import tong_tanaka
from glasscam_mpi.analysis.voronoi import (Tessellation, voronoi_neighbors,
                                           voronoi_tessellation, voronoi_volumes)

__all__ = [
    "PeriodicDelaunay", "Tessellation", "cage_relative_displacement", "coarse_grain",
    "first_crossing", "normalize01", "pearson", "periodic_delaunay", "propensity",
    "spatial_correlation", "spearman", "tong_tanaka", "voronoi_neighbors",
    "voronoi_tessellation", "voronoi_volumes",
]
