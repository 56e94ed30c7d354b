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

A seed ensemble (``[train].ensemble = k`` > 1; :mod:`glasscam_mpi.learn.ensemble`): every
member's Gamma is computed, and ``gamma`` / ``gamma_layers`` are the ensemble's (each
member's map normalised to [0, 1] per sample, then averaged; so every reader downstream is
unchanged), ``p_glass`` the members' mean probability and ``predicted`` its class. Added:

    attrs          ensemble (k), members (JSON list of the k checkpoints)
    gamma_members  (n, 2, k, N) f4  each member's Gamma of the explained layer (not
                                    normalised)

With k = 1 the file is what it always was (no ``gamma_members``, Gamma not normalised).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Block, Cost, Flow, Input, Output, Runs, Tasks
from glasscam_mpi.stages.engine import FarmStage
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
    from glasscam_mpi.learn.checkpoint import load_checkpoint

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
    model: str         # checkpoint path (member 0's)
    spec: dict         # its model spec
    members: tuple = ()  # every member's checkpoint path (k > 1: a seed ensemble)

    @property
    def n_tasks(self) -> int:
        return len(self.runs)


def _plan(rd: RunDir, cfg: Config, inputs) -> Plan:
    from glasscam_mpi.learn.data import dataset_meta

    runs = inputs.ok_test_runs
    box = inputs.files["prepare"]["box"][:]
    paths = member_paths(cfg, rd)
    specs = [load_model(p, dataset_meta(cfg, box), "cpu")[1].to_dict() for p in paths]  # once
    if any(sp != specs[0] for sp in specs[1:]):
        raise ConfigError(f"the ensemble's members {[str(p) for p in paths]} are not the same "
                          "CNN (an ensemble differs only in its seeds); rerun 'glasscam train "
                          "--restart'")
    return Plan(runs, box, str(paths[0]), specs[0],
                tuple(str(p) for p in paths) if len(paths) > 1 else ())


def member_paths(cfg: Config, rd: RunDir) -> list[Path]:
    """The checkpoints Grad-CAM explains with: ``[gradcam].model``, or this run
    directory's ensemble (``train/best.pt``, ``train/member-<m>/best.pt``)."""
    if cfg.gradcam.model:
        if cfg.train.ensemble > 1:
            raise ConfigError(f"[gradcam].model = {cfg.gradcam.model!r} names one network, but "
                              f"[train].ensemble = {cfg.train.ensemble}: leave [gradcam].model "
                              "empty to explain with the run's ensemble, or set ensemble = 1")
        return [Path(cfg.gradcam.model)]
    return rd.model_paths(cfg.train.ensemble)


def _context(cfg: Config, plan: Plan, files, comm):
    from glasscam_mpi.learn.data import dataset_meta, grid_spec_of
    from glasscam_mpi.learn.distributed import pick_device

    device = pick_device(cfg.gradcam.device, comm)
    models = [load_model(Path(p), dataset_meta(cfg, plan.box), device)[0]
              for p in (plan.members or (plan.model,))]
    return cfg, plan, files["prepare"], models, grid_spec_of(cfg)


def _task(ctx, i: int) -> dict:
    return _task_block(ctx, [i])[0]


def _task_block(ctx, idx: list[int]) -> list[dict]:
    """The tasks ``idx`` (test runs plan.runs[i]) as one batch: both samples of every run,
    every layer's map from one gridding and one forward + backward pass (on a GPU:
    gridding and M^-1 there too, one copy back)."""
    from glasscam_mpi.learn.model import GLASS, LIQUID

    cfg, plan, prep, models, gspec = ctx
    runs = [int(plan.runs[i]) for i in idx]  # increasing, as h5py reads them
    pos = np.stack([prep[c][runs] for c in CLASSES], axis=1)   # (k, 2, N, d)
    types = np.repeat(prep["types"][runs], 2, axis=0)         # (2k, N)
    k, _, n, d = pos.shape
    pos = pos.reshape(2 * k, n, d)                            # liquid, glass of run 0, ...
    targets = [GLASS if t == "glass" else LIQUID for t in _targets(cfg)]
    members = []  # each member's (per_layer (2k, L, N) f4, p_glass (2k,))
    for model in models:
        if targets[0] == targets[1]:  # one batch for both classes
            per_layer, p_glass = _explain(model, gspec, plan.box, pos, types, targets[0])
        else:
            per_layer = np.empty((2 * k, model.n_layers, n))
            p_glass = np.empty(2 * k)
            for j in range(2):
                per_layer[j::2], p_glass[j::2] = _explain(
                    model, gspec, plan.box, pos[j::2], types[j::2], targets[j])
        members.append((per_layer.astype(np.float32), p_glass))
    layer = range(models[0].n_layers)[cfg.gradcam.layer]
    return [ensemble_row(np.stack([m[0][2 * j:2 * j + 2] for m in members]),
                         np.stack([m[1][2 * j:2 * j + 2] for m in members]), layer)
            for j in range(k)]


def _explain(model, gspec, box, pos: np.ndarray, types: np.ndarray, target: int):
    """gradcam_particles_layers of the samples that exist; a sample of NaN positions (the
    liquid of an imported glass, glasscam_mpi.importer) gets NaN maps and p_glass. It is
    computed on a stand-in (an existing sample of the batch) and then blanked, so the batch
    keeps its shape: torch's float32 kernels depend on it, and an imported glass then gets
    the very bits the same glass gets in a prepared run."""
    from glasscam_mpi.learn.gradcam import gradcam_particles_layers

    there = np.isfinite(pos).all(axis=(1, 2))
    if not there.any():
        return (np.full((len(pos), model.n_layers, pos.shape[1]), np.nan),
                np.full(len(pos), np.nan))
    if not there.all():
        stand_in = np.flatnonzero(there)[0]
        pos, types = pos.copy(), types.copy()
        pos[~there], types[~there] = pos[stand_in], types[stand_in]
    per_layer, p_glass = gradcam_particles_layers(model, gspec, box, pos, types, target=target)
    per_layer[~there], p_glass[~there] = np.nan, np.nan
    return per_layer, p_glass


def ensemble_row(layers: np.ndarray, p_glass: np.ndarray, layer: int) -> dict:
    """One test run's gradcam.h5 row from its members' maps.

    Args:
        layers: (K, 2, L, N) each member's Gamma of every layer, [liquid, glass].
        p_glass: (K, 2) each member's glass probability.
        layer: The explained layer (an index into L).

    Returns:
        The row: the ensemble's gamma / gamma_layers (normalised member maps averaged:
        :func:`~glasscam_mpi.learn.ensemble.ensemble_gamma`; K = 1: the member's own),
        zero, the mean p_glass, predicted, and gamma_members (2, K, N) when K > 1.
    """
    from glasscam_mpi.learn.ensemble import ensemble_gamma

    K = layers.shape[0]
    g = layers[0] if K == 1 else ensemble_gamma(layers).astype(np.float32)
    p = p_glass[0] if K == 1 else p_glass.mean(axis=0)
    gamma = g[:, layer]
    row = {"gamma": gamma, "gamma_layers": g,
           "zero": (gamma == 0).all(axis=1).astype(np.int8),
           "p_glass": p.astype(np.float32),
           "predicted": np.where(np.isnan(p), -1, p > 0.5).astype(np.int8)}  # -1: no sample
    if K > 1:
        row["gamma_members"] = layers[:, :, layer].transpose(1, 0, 2).astype(np.float32)
    return row


def write_ensemble_file(path: Path, member_files: list[Path], cfg: Config) -> Path:
    """A gradcam.h5 of the seed ensemble of the networks whose gradcam.h5 files are
    ``member_files`` (``glasscam sweep``'s seeds of a variant): the layout and numbers a
    ``[train].ensemble = K`` run writes for the same members. Written on this rank alone
    (a ``*.partial`` file renamed when whole). ``path``'s directory must hold prepare.h5."""
    import h5py
    from mpi4py import MPI

    from glasscam_mpi.store import write_stage_file

    path = Path(path)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(h5py.File(p, "r")) for p in member_files]
        first = files[0]
        for p, fh in zip(member_files[1:], files[1:]):
            for what, a, b in (("test runs", first["runs"][:], fh["runs"][:]),
                               ("model_spec", first.attrs["model_spec"], fh.attrs["model_spec"]),
                               ("layer", first.attrs["layer"], fh.attrs["layer"]),
                               ("targets", first.attrs["targets"], fh.attrs["targets"])):
                if not np.array_equal(a, b):
                    raise ConfigError(f"{p} differs from {member_files[0]} in its {what}: "
                                      "the members of an ensemble differ only in their seed")
        with h5py.File(path.with_name("prepare.h5"), "r") as prep:
            box = prep["box"][:]
        plan = Plan(first["runs"][:], box, str(first.attrs["model"]),
                    json.loads(first.attrs["model_spec"]),
                    tuple(str(fh.attrs["model"]) for fh in files))
        n_layers = first["gamma_layers"].shape[2]
        layer = range(n_layers)[int(first.attrs["layer"])]

        def row(i: int):
            bad = [m for m, fh in enumerate(files) if fh["status"][i] != 1]
            if bad:
                return False, f"member(s) {bad} failed on this test run", {}
            return True, "", ensemble_row(np.stack([fh["gamma_layers"][i] for fh in files]),
                                          np.stack([fh["p_glass"][i] for fh in files]), layer)

        attrs = {"stage": STAGE, "system": cfg.system.name, "dim": cfg.sys.dim,
                 "n_particles": cfg.system.n_particles, **_attrs(cfg, plan),
                 "config": cfg.to_toml()}
        return write_stage_file(path, MPI.COMM_SELF, n_tasks=plan.n_tasks, attrs=attrs,
                                rows=rows(cfg, plan), row_data=row,
                                globals_={"runs": plan.runs.astype(np.int64)})


def _block(cfg: Config, plan) -> int:
    """Runs per farmed block: [gradcam].batch_size / 2 on a GPU, where one run's two
    samples alone leave it idle (390 samples/s per rank at batch 2 on an H100 against
    7,450 at 32: README); 1 on CPUs, where the batch barely matters and small test sets
    keep every rank busy. GLASSCAM_GRADCAM_BLOCKS=1 forces blocks on CPUs (tests)."""
    import os

    import torch

    gpu = cfg.gradcam.device != "cpu" and torch.cuda.is_available()
    if gpu or os.environ.get("GLASSCAM_GRADCAM_BLOCKS") == "1":
        return max(1, cfg.gradcam.batch_size // 2)
    return 1


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
    k = _block(cfg, plan)
    return (f"gradcam: {n_todo} of {plan.n_tasks} test runs (x 2 classes) to do on {size} "
            f"rank(s), {device}" + (f", in blocks of {k} runs" if k > 1 else "")
            + (f"; ensemble of {len(plan.members)} models ({plan.model}, ...)"
               if plan.members else f"; model {plan.model}") + f", layer {cfg.gradcam.layer}")


def _headline(fh, cfg: Config, rd: RunDir) -> dict:
    gamma, pred = fh["gamma"][:], fh["predicted"][:]
    zero = fh["zero"][:] if "zero" in fh else (gamma == 0).all(axis=-1)
    return {"headline": {c: {"gamma_mean": round(float(gamma[:, j].mean()), 5),
                             "gamma_max": round(float(gamma[:, j].max()), 5),
                             "gamma_zero_fraction": round(float(zero[:, j].mean()), 4),
                             "predicted_glass_fraction": round(float((pred[:, j] == 1).mean()), 4)}
                         for j, c in enumerate(CLASSES)},
            "targets": str(fh.attrs.get("targets", "liquid:glass,glass:glass")),
            **({"ensemble": int(fh.attrs["ensemble"])} if "ensemble" in fh.attrs else {})}


def rows(cfg: Config, plan=None) -> dict:
    """The row datasets of gradcam.h5 (``plan`` default: the config's CNN and ensemble,
    as ``glasscam plan`` prices them before any network exists)."""
    N = cfg.system.n_particles
    if plan is None:
        n_layers, k = len(cfg.train.channels), cfg.train.ensemble
    else:
        n_layers, k = len(plan.spec["channels"]), len(plan.members or ())
    out = {"gamma": RowSpec((2, N), "f4"),
            "gamma_layers": RowSpec((2, n_layers, N), "f4"),
            "zero": RowSpec((2,), "i1", -1), "p_glass": RowSpec((2,), "f4"),
            "predicted": RowSpec((2,), "i1", -1)}
    if k > 1:
        out["gamma_members"] = RowSpec((2, k, N), "f4")
    return out


def _attrs(cfg: Config, plan: Plan) -> dict:
    out = {"classes": ",".join(CLASSES), "layer": cfg.gradcam.layer,
           "targets": ",".join(f"{c}:{t}" for c, t in zip(CLASSES, _targets(cfg))),
           "cell_size": _cell_sizes(plan), "model": plan.model,
           "model_spec": dumps(plan.spec)}
    if plan.members:
        out.update(ensemble=len(plan.members), members=dumps(list(plan.members)))
    return out


def _cost(cfg: Config, cal, profile) -> Cost:
    """Every member explains both samples of every test run, at the measured Grad-CAM rate."""
    import numpy as np

    from glasscam_mpi.store import file_bytes

    learn, k, S, d = cal.learn, cfg.train.ensemble, cfg.sys.n_species, cfg.sys.dim
    n_test = cfg.split_counts()[2]
    seconds = k * 2 * n_test / learn.gradcam_samples_per_s
    return Cost(n_test, seconds / max(n_test, 1), file_bytes(rows(cfg), n_test),
                cal.md.memory_bytes + cfg.gradcam.batch_size
                * int(np.prod((S,) + (cfg.n_grid,) * d)) * 4 * 4,
                f"{learn.source}: {learn.gradcam_samples_per_s:.1f} samples/s"
                + (f" per member, x {k} members" if k > 1 else ""), seconds=seconds)


stage = FarmStage(
    STAGE, About(HELP, DESCRIPTION),
    Flow(needs=("prepare", "train"), runs=Runs("gpu", continues=True),
         inputs=(Input("prepare", ok_test_runs=True),), cost=_cost),
    Tasks("runs", _plan, _task, context=_context, banner=_banner,
          block=Block(_block, _task_block)),
    Output(rows, _attrs, lambda cfg, plan: {"runs": plan.runs.astype(np.int64)},
           headline=_headline))
