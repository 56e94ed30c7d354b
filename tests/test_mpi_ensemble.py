"""Seed ensembles (``[train].ensemble``) under real mpiexec: member 0 is the one network of
a k = 1 run, the other members differ only in their seed, Grad-CAM keeps every member's
Gamma and the ensemble's normalised average, analyze gives C^max per member and for the
ensemble with the spread, and ``glasscam info`` shows them."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from conftest import TINY_PROPENSITY_TOML, TINY_TOML, TINY_TRAIN_TOML, glasscam

pytestmark = pytest.mark.mpi

EXTRA = TINY_TRAIN_TOML + TINY_PROPENSITY_TOML + """
[analyze]
xis = [0.0, 1.0, 1.5]
xi_pairs = 1.0
bins = 12
"""


@pytest.fixture(scope="module")
def runs(tiny_prepared, tmp_path_factory):
    """The same prepared run with one network and with an ensemble of 3 (2 ranks)."""
    base = tmp_path_factory.mktemp("ensemble")
    one = base / "k1"
    one.mkdir()
    for name in ("prepare.h5", "config.toml"):
        shutil.copy(tiny_prepared / name, one / name)
    cfg = base / "c.toml"
    cfg.write_text(TINY_TOML + EXTRA)
    glasscam(["indicators", "--run-dir", str(one), "--config", str(cfg)], n=2)
    glasscam(["propensity", "--run-dir", str(one)], n=2)
    three = base / "k3"
    shutil.copytree(one, three, ignore=shutil.ignore_patterns(".lock"))
    for rd, sets in ((one, []), (three, ["--set", "train.ensemble=3"])):
        glasscam(["train", "--run-dir", str(rd), *sets], n=2)
        glasscam(["gradcam", "--run-dir", str(rd)], n=2)
        glasscam(["analyze", "--run-dir", str(rd)], n=2)
    return one, three


def _state(path):
    return torch.load(path, weights_only=True)["model"]


def test_member_zero_is_the_single_network_and_the_others_differ_in_their_seed(runs):
    one, three = runs
    assert not (one / "train" / "member-1").exists()
    a, b = _state(one / "train" / "best.pt"), _state(three / "train" / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for m in (1, 2):
        c = _state(three / "train" / f"member-{m}" / "best.pt")
        assert c.keys() == a.keys()
        # the same data standardisation, other initial weights and batches
        assert torch.equal(c["input_mean"], a["input_mean"])
        assert not torch.equal(c["convs.0.weight"], a["convs.0.weight"])
    with h5py.File(one / "train.h5", "r") as f1, h5py.File(three / "train.h5", "r") as f3:
        assert "test_accuracy_members" not in f1 and "ensemble" not in f1.attrs
        assert int(f3.attrs["ensemble"]) == 3
        seeds = list(f3.attrs["network_seeds"])
        assert seeds[0] == 7 and len(set(seeds)) == 3       # network 0 = [run].seed
        np.testing.assert_array_equal(f3["test_accuracy"][:], f1["test_accuracy"][:])
        np.testing.assert_array_equal(f3["test_accuracy_members"][0], f1["test_accuracy"][:])
        for m in range(3):
            np.testing.assert_array_equal(f3[f"members/{m}/test_accuracy"][:],
                                          f3["test_accuracy_members"][m])
        np.testing.assert_array_equal(f3["members/0/train_loss"][:], f1["train_loss"][:])
        assert not np.array_equal(f3["members/1/train_loss"][:], f1["train_loss"][:])


def test_gradcam_keeps_every_member_and_the_normalised_average(runs):
    one, three = runs
    with h5py.File(one / "gradcam.h5", "r") as f1, h5py.File(three / "gradcam.h5", "r") as f3:
        assert "gamma_members" not in f1 and "ensemble" not in f1.attrs
        members = f3["gamma_members"][:].astype(np.float64)           # (n, 2, k, N)
        assert members.shape[2] == 3 and int(f3.attrs["ensemble"]) == 3
        assert len(json.loads(f3.attrs["members"])) == 3
        np.testing.assert_array_equal(f3["gamma_members"][:, :, 0], f1["gamma"][:])
        assert not np.array_equal(members[:, :, 1], members[:, :, 0])
        lo, hi = members.min(-1, keepdims=True), members.max(-1, keepdims=True)
        norm = np.where(hi > lo, (members - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
        np.testing.assert_allclose(f3["gamma"][:], norm.mean(axis=2), atol=1e-6)
        layer = range(f3["gamma_layers"].shape[2])[int(f3.attrs["layer"])]
        np.testing.assert_array_equal(f3["gamma"][:], f3["gamma_layers"][:, :, layer])


def test_analyze_gives_cmax_per_member_and_for_the_ensemble_with_the_spread(runs):
    one, three = runs
    with h5py.File(one / "analysis.h5", "r") as f1, h5py.File(three / "analysis.h5", "r") as f3:
        assert "summary/members" not in f1 and "dynamics/corr_members" not in f1
        t5 = f3["summary/members/table5"][:]                 # (k + 1, n_T + 1, 3)
        assert t5.shape[0] == 4
        # member 0 is the one-network run's Gamma; the last row is the ensemble's Gamma
        np.testing.assert_allclose(t5[0], f1["summary/table5"][0], atol=1e-12)
        np.testing.assert_allclose(t5[3], f3["summary/table5"][0], atol=1e-12)
        np.testing.assert_allclose(f3["dynamics/corr_members"][:, :, :, 0],
                                   f1["dynamics/corr"][:, :, :, 0], atol=1e-12)
        pooled = t5[:3, -1, 0]
        np.testing.assert_allclose(f3["summary/members/spread"][0],
                                   [pooled.mean(), pooled.std(), pooled.min(), pooled.max()])
    info = json.loads(glasscam(["info", str(three)]).stdout)
    head = info["stages"]["analyze"]["headline"]["gamma_members"]
    assert head["members"] == 3 and head["C_max"] == [round(float(v), 4) for v in pooled]
    assert head["ensemble"]["C_max"] == round(float(t5[3, -1, 0]), 4)
    assert set(head["spread"]["C_max"]) == {"mean", "std", "min", "max"}
    assert info["stages"]["train"]["ensemble"]["members"] == 3
    assert info["stages"]["gradcam"]["ensemble"] == 3


def test_an_explicit_model_with_an_ensemble_is_refused(runs):
    from glasscam_mpi.config import ConfigError, load_config
    from glasscam_mpi.rundir import RunDir
    from glasscam_mpi.stages.gradcam import member_paths

    one, three = runs
    cfg = load_config(path=three / "config.toml",
                      overrides=[f"gradcam.model=\"{one / 'train' / 'best.pt'}\""])
    with pytest.raises(ConfigError, match=r"\[train\].ensemble = 3"):
        member_paths(cfg, RunDir(three))
    paths = member_paths(load_config(path=three / "config.toml"), RunDir(three))
    assert [p.relative_to(three).as_posix() for p in paths] == [
        "train/best.pt", "train/member-1/best.pt", "train/member-2/best.pt"]
