"""One module per pipeline stage: read inputs, fan out over ranks, write outputs.

Each stage module has ``run(comm, run_dir, requested_config, ...)`` (every rank calls it)
and ``summarize(run_dir, config)`` (used by ``glasscam info``).
"""

from glasscam_mpi.stages import gradcam, indicators, prepare, propensity, train

STAGES = {"prepare": prepare, "train": train, "gradcam": gradcam, "indicators": indicators,
          "propensity": propensity}
