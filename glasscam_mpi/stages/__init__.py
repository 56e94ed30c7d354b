"""The pipeline's stages, in order. Each module declares its stage (``stage``): a
:class:`~glasscam_mpi.stages.engine.FarmStage` for the task farms (their skeleton lives in
:mod:`glasscam_mpi.stages.engine`), a :class:`~glasscam_mpi.stages.engine.Stage` otherwise.
The command line, ``glasscam run`` and ``glasscam info`` all read these declarations.
"""

from glasscam_mpi.stages import (analyze, gradcam, indicators, prepare, propensity, report,
                                 train)

STAGES = {m.stage.name: m.stage for m in (prepare, train, gradcam, indicators, propensity,
                                              analyze, report)}
