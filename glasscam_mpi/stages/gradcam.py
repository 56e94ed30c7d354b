"""Stage ``gradcam``: Grad-CAM score Gamma_i of every particle of every test sample
(paper section 3.2, METHOD.md section 4), farmed over ranks.

One task per ok test run (its liquid and its glass sample). Each rank loads the model once
(``[gradcam].model``, default this run directory's ``train/best.pt``); a model trained on
another system, dimension, grid or box (another N: another grid spacing) is refused.
The explained class is the pre-softmax logit of ``[gradcam].target_glass`` on glass samples
and ``target_liquid`` on liquid samples (both "glass" by default: the paper explains the
glass class); the layer is ``[gradcam].layer`` (default the last convolution). Every
layer's map is also kept (``gamma_layers``), so the analysis can show how the length
scale of Gamma depends on the layer's resolution: the default strides make the last
layer's cells 2-4 sigma wide, comparable to the paper's r_Gamma ~ 3-4.

Output ``RUN_DIR/gradcam.h5`` (besides the common datasets of glasscam_mpi.store):

    attrs        stage, classes = "liquid,glass", layer, targets ("liquid:C,glass:C": the
                 class explained on each sample class), model (path), model_spec (JSON),
                 cell_size (edge of a feature cell of each layer, length units)
    runs         (n,) int64         run index in prepare.h5 of each row (= indicators.h5 rows)
    gamma        (n, 2, N) f4       Gamma_i = M^-1(L) >= 0; [:, 0] liquid, [:, 1] glass
    gamma_layers (n, 2, L, N) f4    the same for every convolution layer (L layers)
    zero         (n, 2) i1          1 where Gamma is identically 0 (ReLU cut everything)
    p_glass      (n, 2) f4          softmax probability of glass
    predicted    (n, 2) i1          predicted class (0 liquid, 1 glass)
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.engine import FarmStage, require_tasks
from glasscam_mpi.store import RowSpec

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


@dataclass(frozen=True)
class Plan:
    runs: np.ndarray   # (n,) ok test runs in prepare.h5
    box: np.ndarray    # (d,)
    model: str         # checkpoint path
    spec: dict         # its model spec

    @property
    def n_tasks(self) -> int:
        return len(self.runs)


def _plan(rd: RunDir, cfg: Config) -> Plan:
    import h5py

    from glasscam_mpi.learn.data import dataset_meta

    runs = rd.ok_test_runs()
    require_tasks(len(runs), "prepare.h5 has no ok test runs: nothing to explain")
    with h5py.File(rd.stage_file("prepare"), "r") as fh:
        box = fh["box"][:]
    path = model_path(cfg, rd)
    _, spec = load_model(path, dataset_meta(cfg, box), "cpu")  # refuse a wrong model here, once
    return Plan(runs, box, str(path), spec.to_dict())


@contextlib.contextmanager
def _open(rd: RunDir, cfg: Config, plan: Plan, comm):
    import h5py

    from glasscam_mpi.learn.data import dataset_meta, grid_spec_of
    from glasscam_mpi.learn.distributed import pick_device

    device = pick_device(cfg.gradcam.device, comm)
    model, _ = load_model(Path(plan.model), dataset_meta(cfg, plan.box), device)
    with h5py.File(rd.stage_file("prepare"), "r") as prep:
        yield cfg, plan, prep, model, grid_spec_of(cfg)


def _task(ctx, i: int) -> dict:
    from glasscam_mpi.learn.gradcam import gradcam_particles_layers
    from glasscam_mpi.learn.model import GLASS, LIQUID

    cfg, plan, prep, model, gspec = ctx
    r = int(plan.runs[i])
    pos = np.stack([prep[c][r] for c in CLASSES])
    types = prep["types"][r]
    targets = [GLASS if t == "glass" else LIQUID for t in _targets(cfg)]
    # every layer's map from one gridding and one forward + backward pass (on the GPU:
    # gridding and M^-1 there too, one copy back)
    if targets[0] == targets[1]:  # one batch for both samples
        per_layer, p_glass = gradcam_particles_layers(model, gspec, plan.box, pos, types,
                                                      target=targets[0])
    else:
        per_layer, p_glass = (np.concatenate(v) for v in zip(*(
            gradcam_particles_layers(model, gspec, plan.box, pos[j:j + 1], types,
                                     target=targets[j]) for j in range(2))))
    per_layer = per_layer.astype(np.float32)
    gamma = per_layer[:, range(model.n_layers)[cfg.gradcam.layer]]
    return {"gamma": gamma, "gamma_layers": per_layer, "zero": (gamma == 0).all(axis=1)
            .astype(np.int8), "p_glass": p_glass.astype(np.float32),
            "predicted": (p_glass > 0.5).astype(np.int8)}


def _targets(cfg: Config) -> tuple[str, str]:
    """The class explained on (liquid, glass) samples."""
    return cfg.gradcam.target_liquid, cfg.gradcam.target_glass


def _cell_sizes(plan: Plan) -> list[float]:
    from glasscam_mpi.learn.model import ModelSpec

    spec = ModelSpec.from_dict(plan.spec)
    L = float(plan.box[0])
    return [L / spec.feature_size(layer) for layer in range(len(spec.channels))]


def _banner(cfg: Config, plan: Plan, n_todo: int, size: int) -> str:
    import torch

    device = "cuda" if cfg.gradcam.device != "cpu" and torch.cuda.is_available() else "cpu"
    return (f"gradcam: {n_todo} of {plan.n_tasks} test runs (x 2 classes) to do on {size} "
            f"rank(s), {device}; model {plan.model}, layer "
            f"{cfg.gradcam.layer}")


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    gamma, pred = fh["gamma"][:], fh["predicted"][:]
    zero = fh["zero"][:] if "zero" in fh else (gamma == 0).all(axis=-1)
    return {"headline": {c: {"gamma_mean": round(float(gamma[:, j].mean()), 5),
                             "gamma_max": round(float(gamma[:, j].max()), 5),
                             "gamma_zero_fraction": round(float(zero[:, j].mean()), 4),
                             "predicted_glass_fraction": round(float((pred[:, j] == 1).mean()), 4)}
                         for j, c in enumerate(CLASSES)},
            "targets": str(fh.attrs.get("targets", "liquid:glass,glass:glass"))}


stage = FarmStage(
    name=STAGE, help=HELP, description=DESCRIPTION, unit="runs", plan=_plan, task=_task,
    open=_open, banner=_banner, headline=_headline,
    rows=lambda cfg, plan: {
        "gamma": RowSpec((2, cfg.system.n_particles), "f4"),
        "gamma_layers": RowSpec((2, len(plan.spec["channels"]), cfg.system.n_particles), "f4"),
        "zero": RowSpec((2,), "i1", -1), "p_glass": RowSpec((2,), "f4"),
        "predicted": RowSpec((2,), "i1", -1)},
    attrs=lambda cfg, plan: {"classes": ",".join(CLASSES), "layer": cfg.gradcam.layer,
                             "targets": ",".join(f"{c}:{t}" for c, t in zip(CLASSES,
                                                                           _targets(cfg))),
                             "cell_size": _cell_sizes(plan),
                             "model": plan.model, "model_spec": json.dumps(plan.spec)},
    globals_=lambda cfg, plan: {"runs": plan.runs.astype(np.int64)})
