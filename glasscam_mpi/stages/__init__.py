"""The pipeline's stages: the one list of them. Each module declares its stage (``stage``):
a :class:`~glasscam_mpi.stages.engine.FarmStage` for the task farms, a
:class:`~glasscam_mpi.stages.engine.Stage` otherwise, with what it needs, runs on, opens
and costs (:mod:`glasscam_mpi.stages.declare`). ``STAGES`` holds them in workflow order
(topological from their ``needs``); the command line, ``glasscam run``, ``info``,
``status``, ``submit`` and ``plan`` all read these declarations, and no other module
names a stage.

``COMMANDS`` declares the commands that have a job script without being a stage of the
afterok chain (``glasscam sweep``: it submits itself, with its own arguments); ``JOBS``
says what the job of each stage and command runs on.
"""

from glasscam_mpi.stages import (analyze, gradcam, indicators, prepare, propensity, report,
                                 train)
from glasscam_mpi.stages.declare import Command, Runs, order

STAGES = {s.name: s for s in order(m.stage for m in (prepare, train, gradcam, indicators,
                                                       propensity, analyze, report))}

# Commands with a job script that are not stages: the sweep (CNN variants: training and
# Grad-CAM on the GPUs, one sub-run per rank; resumed by resubmitting, not continued)
COMMANDS = {"sweep": Command(Runs("gpu"), files=("variants",), optional=("seeds",),
                             usage="glasscam sweep --run-dir DIR --variants FILE --submit "
                                   "PROFILE")}
# What the job of every command with a job script runs on
JOBS = {**{name: s.flow.runs for name, s in STAGES.items()},
        **{name: c.runs for name, c in COMMANDS.items()}}
