"""Per-particle analysis of configurations: structure, dynamics, fields and correlations.

Pure array-in, array-out physics (no MPI): periodic Voronoi cells and neighbours, the
Tong-Tanaka order parameter, cage-relative displacements and propensity, Gaussian
coarse-graining, spatial correlation functions and field-field correlations, one pair
search reused for all of them (PairList), correlation matrices and summaries, the
crystallisation checks (psi_6, energy jumps) and T*.
"""

from glasscam_mpi.analysis.cage import cage_relative_displacement, propensity
from glasscam_mpi.analysis.coarse import coarse_grain, normalize01
from glasscam_mpi.analysis.correlation import (first_crossing, pearson, spatial_correlation,
                                               spearman)
from glasscam_mpi.analysis.delaunay import PeriodicDelaunay, periodic_delaunay
from glasscam_mpi.analysis.neighbours import RDF, PairList
from glasscam_mpi.analysis.order import EnergyJumps, Hexatic, energy_jumps, hexatic
from glasscam_mpi.analysis.stats import (constant_columns, curve_max, describe, pearson_matrix,
                                         spearman_matrix, subensembles)
from glasscam_mpi.analysis.tongtanaka import tong_tanaka
from glasscam_mpi.analysis.tstar import TStar, estimate_t_star
from glasscam_mpi.analysis.voronoi import (Tessellation, voronoi_neighbors,
                                           voronoi_tessellation, voronoi_volumes)

__all__ = [
    "RDF", "EnergyJumps", "Hexatic", "PairList", "PeriodicDelaunay", "TStar", "Tessellation",
    "cage_relative_displacement", "coarse_grain", "constant_columns", "curve_max",
    "describe", "energy_jumps", "estimate_t_star", "first_crossing", "hexatic",
    "normalize01", "pearson", "pearson_matrix", "periodic_delaunay", "propensity",
    "spatial_correlation", "spearman", "spearman_matrix", "subensembles", "tong_tanaka",
    "voronoi_neighbors", "voronoi_tessellation", "voronoi_volumes",
]
