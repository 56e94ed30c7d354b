"""Stage ``gradcam``: Grad-CAM score Gamma_i of every particle of every test sample
(paper section 3.2, METHOD.md section 4), farmed over ranks.

One task per ok test run (its liquid and its glass sample in one batch). Each rank loads
the model once (``[gradcam].model``, default this run directory's ``train/best.pt``);
a model trained on another system, dimension or grid is refused. Class = the glass
logit before softmax; layer = ``[gradcam].layer`` (default the last convolution).

Output ``RUN_DIR/gradcam.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs      stage, classes = "liquid,glass", layer, model (path), model_spec (JSON)
    runs       (n,) int64       run index in prepare.h5 of each row (= indicators.h5 rows)
    gamma      (n, 2, N) f4     Gamma_i = M^-1(L) >= 0; [:, 0] liquid, [:, 1] glass
    p_glass    (n, 2) f4        softmax probability of glass
    predicted  (n, 2) i1        predicted class (0 liquid, 1 glass)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.parallel import Outcome, Progress, TaskFarm, bcast_from_root, injected
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import RowSpec, write_stage_file

STAGE = "gradcam"
CLASSES = ("liquid", "glass")
HELP = "Grad-CAM score of every particle of every test sample"
DESCRIPTION = ("Apply Grad-CAM (paper section 3.2) with the trained CNN to every ok test "
               "sample, liquid and glass, farmed over MPI ranks; map the class-activation map "
               "back to the particles (M^-1). Writes gradcam.h5 with Gamma, the predicted "
               "class and the glass probability of each sample.")


def model_path(cfg: Config, rd: RunDir) -> Path:
    return Path(cfg.gradcam.model) if cfg.gradcam.model else rd.path / "train" / "best.pt"


def load_model(path: Path, data_meta: dict, device):
    """The CNN of a checkpoint (``weights_only=True``), checked against the dataset."""
    from glasscam_mpi.learn.data import check_compatible
    from glasscam_mpi.learn.model import ModelSpec, build_model
    from glasscam_mpi.stages.train import load_checkpoint

    ck = load_checkpoint(path)
    check_compatible(ck["data_meta"], data_meta, path)
    spec = ModelSpec.from_dict(ck["model_spec"])
    model = build_model(spec)
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), spec


def run(comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
        progress_every: float = 5.0) -> dict:
    rd = RunDir(run_dir)
    rank = comm.Get_rank()
    t0 = time.time()

    def setup():
        import h5py

        from glasscam_mpi.learn.data import dataset_meta

        rd.lock("glasscam gradcam")
        cfg = rd.resolve_config(requested)
        runs = rd.ok_test_runs()
        if len(runs) == 0:
            raise ConfigError("prepare.h5 has no ok test runs: nothing to explain")
        with h5py.File(rd.stage_file("prepare"), "r") as fh:
            box = fh["box"][:]
        path = model_path(cfg, rd)
        load_model(path, dataset_meta(cfg, box), "cpu")  # refuse a wrong model here, once
        todo = rd.pending(STAGE, len(runs), retry_failed)
        return cfg, runs, box, str(path), todo, rd.stage_file(STAGE).exists() and not todo

    try:
        cfg, runs, box, path, todo, complete = bcast_from_root(comm, setup)
        if complete:
            if rank == 0:
                print(f"gradcam: {rd.stage_file(STAGE)} is already complete")
            return {"complete": True}
        import h5py

        from glasscam_mpi.learn.data import dataset_meta, grid_spec_of
        from glasscam_mpi.learn.distributed import pick_device
        from glasscam_mpi.learn.gradcam import gradcam_particles

        device = pick_device(cfg.gradcam.device, comm)
        model, spec = load_model(Path(path), dataset_meta(cfg, box), device)
        gspec = grid_spec_of(cfg)
        layer = cfg.gradcam.layer
        prep = h5py.File(rd.stage_file("prepare"), "r")
        crashes = injected("GLASSCAM_INJECT_CRASH", STAGE)

        def task(i: int) -> Outcome:
            if i in crashes:
                raise RuntimeError(f"injected crash in gradcam task {i}")
            r = int(runs[i])
            pos = np.stack([prep[c][r] for c in CLASSES])
            types = prep["types"][r]
            gamma, p_glass = gradcam_particles(model, gspec, box, pos, types, layer=layer)
            rd.shards(STAGE).write(i, {"gamma": gamma.astype(np.float32),
                                       "p_glass": p_glass.astype(np.float32),
                                       "predicted": (p_glass > 0.5).astype(np.int8)})
            return Outcome(i, True)

        progress = None
        if rank == 0:
            print(f"gradcam: {len(todo)} of {len(runs)} test runs (x 2 classes) to do on "
                  f"{comm.Get_size()} rank(s), {device.type}; model {path}, layer {layer}",
                  flush=True)
            progress = Progress(f"gradcam {cfg.system.name}", len(todo), "runs", progress_every)
        try:
            TaskFarm(comm, todo, progress).run(task)
        finally:
            prep.close()
        status = bcast_from_root(comm, rd.shards(STAGE).scan)
        N = cfg.system.n_particles
        write_stage_file(
            rd.stage_file(STAGE), comm, n_tasks=len(runs),
            attrs={"stage": STAGE, "system": cfg.system.name, "dim": cfg.sys.dim,
                   "n_particles": N, "classes": ",".join(CLASSES), "layer": layer,
                   "model": path, "model_spec": json.dumps(spec.to_dict()),
                   "config": cfg.to_toml()},
            rows={"gamma": RowSpec((2, N), "f4"), "p_glass": RowSpec((2,), "f4"),
                  "predicted": RowSpec((2,), "i1", -1)},
            row_data=lambda i: (True, "", rd.shards(STAGE).read(i, status[i])),
            globals_={"runs": runs.astype(np.int64)})
        if rank == 0:
            rd.finish(STAGE, f"{len(runs)} runs x 2 classes", time.time() - t0,
                      comm.Get_size(), device=device.type, tasks_run=len(todo))
        return {"complete": True}
    finally:
        if rank == 0:
            rd.unlock()


def summarize(rd: RunDir, cfg: Config) -> dict:
    out = rd.task_summary(STAGE)
    if not out["complete"]:
        return out
    import h5py

    with h5py.File(rd.stage_file(STAGE), "r") as fh:
        gamma, pred = fh["gamma"][:], fh["predicted"][:]
        n = len(fh["runs"])
    out["tasks"] = {"total": n, "done": n, "failed": 0, "missing": 0}
    out["headline"] = {c: {"gamma_mean": round(float(gamma[:, j].mean()), 5),
                           "gamma_max": round(float(gamma[:, j].max()), 5),
                           "predicted_glass_fraction": round(float((pred[:, j] == 1).mean()), 4)}
                       for j, c in enumerate(CLASSES)}
    return out
