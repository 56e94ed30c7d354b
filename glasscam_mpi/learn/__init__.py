"""Learning: gridding configurations, the glass/liquid CNN, and Grad-CAM (METHOD.md 3-4).

Conventions: grid point k at coordinate k * h, h = L / n_grid per axis; channel s = species
s; class index 0 = liquid, 1 = glass.
"""

from glasscam_mpi.learn.gradcam import (GradCAM, gradcam, gradcam_layers, gradcam_particles,
                                        gradcam_particles_layers, particle_scores,
                                        periodic_upsample)
from glasscam_mpi.learn.grid import (GridSpec, from_grid, from_grid_batch, to_grid,
                                     to_grid_batch)
from glasscam_mpi.learn.model import (CLASS_NAMES, GLASS, LIQUID, GlassCNN, ModelSpec,
                                      build_model)
from glasscam_mpi.learn.torchgrid import from_grid_torch, to_grid_torch

__all__ = [
    "CLASS_NAMES", "GLASS", "GlassCNN", "GradCAM", "GridSpec", "LIQUID", "ModelSpec",
    "build_model", "from_grid", "from_grid_batch", "from_grid_torch", "gradcam",
    "gradcam_layers", "gradcam_particles", "gradcam_particles_layers", "particle_scores",
    "periodic_upsample", "to_grid", "to_grid_batch", "to_grid_torch",
]
