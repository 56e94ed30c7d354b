"""``glasscam train`` (Horovod, DDP, single) and ``glasscam gradcam`` under real mpiexec on
the tiny prepared run directory: parameters checked identical on every rank after every
step, resume reproduces the uninterrupted loss curve, Grad-CAM output equals a direct
computation, and wrong models or splits are refused."""

import json

import h5py
import numpy as np
import pytest
import torch

from conftest import copy_prepared as _copy_prepared
from conftest import TINY_TOML, glasscam

pytestmark = pytest.mark.mpi

TRAIN_TOML = """
[train]
backend = "{backend}"
epochs = {epochs}
batch_size = 4
n_grid = 32
channels = [4, 8, 8]
hidden = 16
check_sync = true
"""


def _config(path, backend="horovod", epochs=3, extra=""):
    path.write_text(TINY_TOML + TRAIN_TOML.format(backend=backend, epochs=epochs) + extra)
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    rd = _copy_prepared(tiny_prepared, base / "hvd")
    res = glasscam(["train", "--run-dir", str(rd), *_config(base / "c.toml")], n=2)
    return rd, res


@pytest.mark.parametrize("backend", ["horovod", "ddp"])
def test_backends_train_with_identical_parameters_on_every_rank(backend, trained, tiny_prepared,
                                                                tmp_path):
    if backend == "horovod":
        rd, res = trained
    else:
        rd = _copy_prepared(tiny_prepared, tmp_path / backend)
        res = glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml", backend)],
                       n=2)
    assert f"backend {backend} on 2 rank(s)" in res.stdout
    assert "shared by the 2 rank(s) of each node" in res.stdout  # MPI shared-memory grids
    # 6 runs: 3 train runs = 6 samples -> 1 step of 4 per epoch, 3 epochs
    assert "parameters identical on all 2 ranks after each of 3 steps (checked)" in res.stdout
    with h5py.File(rd / "train.h5", "r") as fh:
        assert fh.attrs["backend"] == backend and fh.attrs["ranks"] == 2
        assert len(fh["train_loss"]) == 3 and np.isfinite(fh["train_loss"][:]).all()
        acc = fh["test_accuracy"][:]
        assert acc.shape == (2,) and ((0 <= acc) & (acc <= 1)).all()
        with h5py.File(rd / "prepare.h5", "r") as prep:
            n_test = int(((prep["split"][:] == 2) & (prep["status"][:] == 1)).sum())
        assert fh["test_confusion"][:].sum() == 2 * n_test  # liquid + glass of each test run
    assert (rd / "train" / "curves.png").stat().st_size > 1000
    ck = torch.load(rd / "train" / "best.pt", weights_only=True)
    assert ck["data_meta"]["system"] == "KAM" and ck["data_meta"]["n_grid"] == 32
    # the input standardisation is the training set's per-channel mean and std (computed
    # here independently, in numpy) and travels with the model
    from glasscam_mpi.config import load_config
    from glasscam_mpi.learn import GridSpec
    from glasscam_mpi.learn.data import grid_split, load_split

    cfg = load_config(path=rd / "config.toml")
    grids = grid_split(load_split(rd / "prepare.h5", "train"),
                       GridSpec.for_system(cfg.sys, 32, width_factor=0.5)).astype(np.float64)
    axes = (0, 2, 3)
    np.testing.assert_allclose(ck["model"]["input_mean"].numpy(), grids.mean(axis=axes), rtol=1e-6)
    np.testing.assert_allclose(ck["model"]["input_scale"].numpy(), grids.std(axis=axes), rtol=1e-5)
    if backend == "ddp":  # same batches, augmentation, dropout and sums: the same training
        with h5py.File(trained[0] / "train.h5", "r") as hvd, h5py.File(rd / "train.h5", "r") as fh:
            for key in ("train_loss", "val_loss"):
                np.testing.assert_array_equal(fh[key][:], hvd[key][:], err_msg=key)


def test_one_rank_follows_the_two_rank_loss_curve(trained, tiny_prepared, tmp_path):
    """Batches, augmentation and dropout masks are drawn per global batch, so one rank
    trains like two up to the order of floating-point sums."""
    rd = _copy_prepared(tiny_prepared, tmp_path / "one")
    glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml", "single")], n=1)
    with h5py.File(trained[0] / "train.h5", "r") as two, h5py.File(rd / "train.h5", "r") as one:
        assert one.attrs["ranks"] == 1 and two.attrs["ranks"] == 2
        for key in ("train_loss", "val_loss"):
            np.testing.assert_allclose(one[key][:], two[key][:], rtol=1e-5, err_msg=key)


def test_single_backend_refuses_several_ranks(tiny_prepared, tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "single")
    res = glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml", "single")],
                   n=2, check=False)
    assert res.returncode != 0 and "backend 'single' runs in one process" in res.stderr


@pytest.mark.parametrize("backend", ["ddp", "horovod"])
def test_resume_continues_the_same_loss_curve(tiny_prepared, tmp_path, backend):
    ref = _copy_prepared(tiny_prepared, tmp_path / "ref")
    conf = _config(tmp_path / "c.toml", backend, epochs=4)
    glasscam(["train", "--run-dir", str(ref), *conf], n=2)
    rd = _copy_prepared(tiny_prepared, tmp_path / "cut")
    res = glasscam(["train", "--run-dir", str(rd), *conf], n=2, check=False,
                   env={"GLASSCAM_INJECT_CRASH": "train:2"})
    assert res.returncode != 0 and "injected crash in train epoch 2" in res.stderr
    res = glasscam(["train", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2 and "rerun with --resume" in res.stderr
    res = glasscam(["train", "--run-dir", str(rd), "--resume"], n=2)
    assert "epochs 3..4" in res.stdout
    with h5py.File(ref / "train.h5", "r") as a, h5py.File(rd / "train.h5", "r") as b:
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)


@pytest.fixture(scope="module")
def explained(trained):
    rd, _ = trained
    glasscam(["gradcam", "--run-dir", str(rd)], n=2)
    return rd


def test_gradcam_equals_direct_computation(explained):
    from glasscam_mpi.config import load_config
    from glasscam_mpi.learn import GridSpec, build_model, gradcam_particles
    from glasscam_mpi.learn.model import ModelSpec

    rd = explained
    cfg = load_config(path=rd / "config.toml")
    ck = torch.load(rd / "train" / "best.pt", weights_only=True)
    model = build_model(ModelSpec.from_dict(ck["model_spec"]))
    model.load_state_dict(ck["model"])
    spec = GridSpec.for_system(cfg.sys, 32, width_factor=0.5)
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "gradcam.h5", "r") as out:
        runs = out["runs"][:]
        np.testing.assert_array_equal(
            runs, np.flatnonzero((prep["split"][:] == 2) & (prep["status"][:] == 1)))
        gamma = out["gamma"][:]
        assert gamma.shape == (len(runs), 2, 64) and (gamma >= 0).all()
        for row, r in enumerate(runs):
            pos = np.stack([prep["liquid"][r], prep["glass"][r]])
            want, p = gradcam_particles(model, spec, prep["box"][:], pos, prep["types"][r])
            np.testing.assert_allclose(gamma[row], want, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(out["p_glass"][row], p, rtol=1e-5)
            np.testing.assert_array_equal(out["predicted"][row], (p > 0.5).astype(np.int8))


def test_info_shows_table2_and_gradcam(explained):
    info = json.loads(glasscam(["info", str(explained)]).stdout)
    tr = info["stages"]["train"]
    assert tr["complete"] and tr["backend"] == "horovod"
    assert set(tr["test_accuracy"]) == {"glass", "liquid"}
    assert tr["test_accuracy_paper"] == {"glass": 1.0, "liquid": 0.998}
    assert info["stages"]["gradcam"]["tasks"]["done"] == info["stages"]["prepare"][
        "split_ok_runs"]["test"]


def test_model_of_another_grid_is_refused(explained, tiny_prepared, tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "other")
    model = explained / "train" / "best.pt"
    conf = _config(tmp_path / "c.toml", extra=f'\n[gradcam]\nmodel = "{model}"\n')
    (tmp_path / "c.toml").write_text((tmp_path / "c.toml").read_text().replace("n_grid = 32",
                                                                               "n_grid = 64"))
    res = glasscam(["gradcam", "--run-dir", str(rd), *conf], n=2, check=False)
    assert res.returncode == 2
    assert "does not fit this dataset" in res.stderr
    assert "n_grid: model 32 vs dataset 64" in res.stderr


def test_batch_not_divisible_by_ranks_is_refused(tiny_prepared, tmp_path):
    rd = _copy_prepared(tiny_prepared, tmp_path / "odd")
    res = glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml")], n=3,
                   check=False)
    assert res.returncode == 2 and "batch_size = 4 must be divisible by the 3 ranks" in res.stderr


def test_private_grids_train_exactly_like_shared_ones(trained, tiny_prepared, tmp_path):
    """The node-shared training grids (each rank grids a block) hold the very values a
    rank gridding everything itself holds: the same training, bit for bit."""
    rd = _copy_prepared(tiny_prepared, tmp_path / "private")
    res = glasscam(["train", "--run-dir", str(rd),
                    *_config(tmp_path / "c.toml", extra="shared_grids = false\n")], n=2)
    assert "a copy on every rank" in res.stdout
    log = json.loads((rd / "logs" / "train.json").read_text())
    assert log["grids_shared"] is False and log["pss_mib_all_ranks"] > 0
    with h5py.File(trained[0] / "train.h5", "r") as a, h5py.File(rd / "train.h5", "r") as b:
        for key in ("train_loss", "val_loss"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)


def test_gradcam_stage_explains_the_glass_logit_of_the_last_convolution(explained):
    """METHOD.md section 4: y^C is the glass logit (class index 1) and A^m the maps of the
    last convolution. The reference here calls glasscam_mpi.learn.gradcam with target and
    layer given explicitly (no defaults); the liquid-class map differs from it, so a stage
    explaining the wrong class (or the wrong layer) fails this test."""
    from glasscam_mpi.config import load_config
    from glasscam_mpi.learn import GridSpec, build_model
    from glasscam_mpi.learn.gradcam import gradcam, particle_scores
    from glasscam_mpi.learn.grid import to_grid_batch
    from glasscam_mpi.learn.model import CLASS_NAMES, ModelSpec

    assert CLASS_NAMES[1] == "glass"  # the model's class index 1 is glass (model.py)
    rd = explained
    cfg = load_config(path=rd / "config.toml")
    ck = torch.load(rd / "train" / "best.pt", weights_only=True)
    model = build_model(ModelSpec.from_dict(ck["model_spec"]))
    model.load_state_dict(ck["model"])
    spec = GridSpec.for_system(cfg.sys, 32, width_factor=0.5)
    differs = []
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "gradcam.h5", "r") as out:
        assert out.attrs["classes"] == "liquid,glass" and int(out.attrs["layer"]) == -1
        box = prep["box"][:]
        for row, r in enumerate(out["runs"][:]):
            pos = np.stack([prep["liquid"][r], prep["glass"][r]])
            x = to_grid_batch(spec, box, pos, prep["types"][r])
            maps = {target: particle_scores(gradcam(model, x, layer=-1, target=target).cam,
                                            box, pos) for target in (1, 0)}
            np.testing.assert_allclose(out["gamma"][row], maps[1], rtol=1e-5, atol=1e-7)
            differs.append(np.abs(maps[1] - maps[0]).max() > 1e-3 * max(maps[1].max(), 1e-3))
            assert maps[1].max() > 0  # a map with something in it
    assert all(differs)  # the liquid-class map is another map: the comparison has teeth


def test_check_sync_catches_ranks_whose_parameters_drift_apart(tiny_prepared, tmp_path):
    """GLASSCAM_INJECT_DESYNC=train:1 nudges rank 1's parameters after the first step of
    epoch 1: the per-step check must stop the job, naming the step."""
    rd = _copy_prepared(tiny_prepared, tmp_path / "desync")
    res = glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml")], n=2,
                   check=False, timeout=120, env={"GLASSCAM_INJECT_DESYNC": "train:1"})
    assert res.returncode != 0
    assert "parameters differ between ranks after epoch 1 step 0" in res.stderr, res.stderr
    assert "aborting all ranks" in res.stderr
    assert "train: epoch 1/3" in res.stdout and "train: epoch 2/3" not in res.stdout
    assert not (rd / "train.h5").exists()


@pytest.mark.parametrize("backend", ["horovod", "ddp"])
def test_the_initial_broadcast_makes_ranks_that_start_apart_equal(backend, trained,
                                                                 tiny_prepared, tmp_path):
    """GLASSCAM_INJECT_INIT=train:1 gives rank 1 other initial weights. The backend's
    broadcast from rank 0 must replace them: the digests differ before it and equal rank
    0's after it, every step then checks equal, and the training is the one rank 0 alone
    would have started (the same curves as without the injection)."""
    import re

    rd = _copy_prepared(tiny_prepared, tmp_path / backend)
    res = glasscam(["train", "--run-dir", str(rd), *_config(tmp_path / "c.toml", backend)],
                   n=2, check=False, timeout=180, env={"GLASSCAM_INJECT_INIT": "train:1"})
    assert res.returncode == 0, res.stderr
    digests = {when: re.search(rf"parameter digests {when}: (\w+) (\w+)", res.stdout)
               for when in ("before the broadcast", "after the broadcast")}
    assert all(digests.values()), res.stdout
    before, after = (digests[w].groups() for w in digests)
    assert before[0] != before[1]              # rank 1 really started elsewhere
    assert after[0] == after[1] == before[0]   # rank 0's weights on every rank
    assert "parameters identical on all 2 ranks after each of 3 steps (checked)" in res.stdout
    with h5py.File(trained[0] / "train.h5", "r") as ref, h5py.File(rd / "train.h5", "r") as fh:
        for key in ("train_loss", "val_loss", "test_accuracy"):
            np.testing.assert_array_equal(fh[key][:], ref[key][:], err_msg=key)


def test_gradcam_options_layer_targets_and_another_runs_model(explained, tiny_prepared, tmp_path):
    """A non-default [gradcam].layer, the liquid class explained on liquid samples, and a
    model from another run directory (same system, N and grid): the stage records them and
    equals a direct computation that names each of them."""
    from glasscam_mpi.learn import GridSpec, build_model, gradcam_particles
    from glasscam_mpi.learn.model import GLASS, LIQUID, ModelSpec
    from glasscam_mpi.systems import get_system

    rd = _copy_prepared(tiny_prepared, tmp_path / "options")
    model = explained / "train" / "best.pt"
    conf = _config(tmp_path / "c.toml", extra=f'\n[gradcam]\nlayer = 0\ntarget_liquid = "liquid"\n'
                                              f'model = "{model}"\n')
    res = glasscam(["gradcam", "--run-dir", str(rd), *conf], n=2)
    assert f"model {model}, layer 0" in res.stdout
    ck = torch.load(model, weights_only=True)
    net = build_model(ModelSpec.from_dict(ck["model_spec"]))
    net.load_state_dict(ck["model"])
    spec = GridSpec.for_system(get_system("KAM"), 32, width_factor=0.5)
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "gradcam.h5", "r") as out:
        assert out.attrs["layer"] == 0 and out.attrs["model"] == str(model)
        assert out.attrs["targets"] == "liquid:liquid,glass:glass"
        gamma, layers = out["gamma"][:], out["gamma_layers"][:]
        np.testing.assert_array_equal(gamma, layers[:, :, 0])
        for row, r in enumerate(out["runs"][:]):
            for cls, target in ((0, LIQUID), (1, GLASS)):
                pos = prep[("liquid", "glass")[cls]][r][None]
                want, _ = gradcam_particles(net, spec, prep["box"][:], pos, prep["types"][r],
                                            layer=0, target=target)
                np.testing.assert_allclose(gamma[row, cls], want[0], rtol=1e-5, atol=1e-7)
                for layer in (1, 2):
                    want, _ = gradcam_particles(net, spec, prep["box"][:], pos,
                                                prep["types"][r], layer=layer, target=target)
                    np.testing.assert_allclose(layers[row, cls, layer], want[0], rtol=1e-5,
                                               atol=1e-7)
            np.testing.assert_array_equal(out["zero"][row], (gamma[row] == 0).all(axis=1))
        # the liquid samples' map differs from the default (glass-class) one of the same model
        with h5py.File(explained / "gradcam.h5", "r") as ref:
            assert not np.allclose(ref["gamma_layers"][:, 0, 0], layers[:, 0, 0])
            np.testing.assert_allclose(ref["gamma_layers"][:, 1], layers[:, 1], rtol=1e-5,
                                       atol=1e-7)


def test_model_of_another_box_is_refused(explained, tmp_path):
    """Same system and grid, another N: another box edge, so another grid spacing."""
    rd = tmp_path / "n80"
    conf = tmp_path / "c.toml"
    conf.write_text(TINY_TOML.replace("n_particles = 64", "n_particles = 80")
                    + TRAIN_TOML.format(backend="horovod", epochs=3)
                    + f'\n[gradcam]\nmodel = "{explained / "train" / "best.pt"}"\n')
    glasscam(["prepare", "--run-dir", str(rd), "--config", str(conf)], n=2)
    res = glasscam(["gradcam", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2 and "does not fit this dataset" in res.stderr
    assert "box: model" in res.stderr and "another N or density" in res.stderr


@pytest.mark.parametrize("torch_gridding", [False, True])
def test_on_the_fly_gridding_trains_like_the_pregridded_set(trained, tiny_prepared, tmp_path,
                                                           torch_gridding):
    """[train].grid_on_the_fly grids each mini-batch from positions instead of reading the
    set gridded once. On the CPU the feed grids with the same numpy M as the pre-gridded
    set: the very same training, bit for bit. With GLASSCAM_TORCH_GRIDDING=1 it runs the
    GPU's path (torch M, learn/torchgrid.py) on the CPU: the grids then differ by float32
    rounding only (<= 2e-5 of the largest density: tests/test_learn_torchgrid.py), and the
    same seeds give the same training up to that rounding carried through three epochs of
    Adam: losses agree to 1e-4 relative, accuracies and the test confusion exactly."""
    rd = _copy_prepared(tiny_prepared, tmp_path / "fly")
    res = glasscam(["train", "--run-dir", str(rd),
                    *_config(tmp_path / "c.toml", extra="grid_on_the_fly = true\n")], n=2,
                   env={"GLASSCAM_TORCH_GRIDDING": "1" if torch_gridding else "0"})
    assert "gridding on the fly" in res.stdout
    log = json.loads((rd / "logs" / "train.json").read_text())
    assert log["grid_on_the_fly"] is True and log["grid_mib"] == 0.0
    assert ("torch, on the device" if torch_gridding else "numpy, on the host") in log["feed"]
    assert log["peak_host_mib_per_rank"] > 0
    with h5py.File(trained[0] / "train.h5", "r") as a, h5py.File(rd / "train.h5", "r") as b:
        for key in ("train_loss", "val_loss"):
            if torch_gridding:
                np.testing.assert_allclose(b[key][:], a[key][:], rtol=1e-4, err_msg=key)
            else:
                np.testing.assert_array_equal(b[key][:], a[key][:], err_msg=key)
        if torch_gridding:  # ... and it really took the other path: not the same bits
            assert not np.array_equal(b["train_loss"][:], a["train_loss"][:])
        for key in ("train_accuracy", "val_accuracy", "test_confusion"):
            np.testing.assert_array_equal(b[key][:], a[key][:], err_msg=key)
