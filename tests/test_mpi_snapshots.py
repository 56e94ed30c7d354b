"""Extra snapshots along the cooling ramp (``[prepare].extra_snapshots``) and the liquid
class chosen among them (``[train].liquid_snapshot``), under real mpiexec and LAMMPS."""

import h5py
import numpy as np
import pytest
import torch

from conftest import TINY_TOML, TINY_TRAIN_TOML, glasscam
from glasscam_mpi.config import ConfigError, load_config

pytestmark = pytest.mark.mpi

SNAP_TOML = TINY_TOML + "extra_snapshots = [1.5, 0.8]\n"   # 0.8 = KAM's T_liquid


@pytest.fixture(scope="module")
def snapped(tmp_path_factory):
    base = tmp_path_factory.mktemp("snap")
    cfg = base / "c.toml"
    cfg.write_text(SNAP_TOML + TINY_TRAIN_TOML)
    rd = base / "run"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(rd)], n=2)
    return rd


def test_prepare_keeps_snapshots_at_the_named_temperatures(snapped, tiny_prepared):
    with h5py.File(snapped / "prepare.h5", "r") as fh, \
            h5py.File(tiny_prepared / "prepare.h5", "r") as ref:
        snaps = fh["snapshots"][:]
        assert snaps.shape == (6, 2, 64, 2)
        np.testing.assert_array_equal(fh["snapshot_T"][:], [1.5, 0.8])
        steps = fh["snapshot_step"][:]
        assert set(steps) <= set(fh["step"][:])
        # the target temperature at each snapshot's step is its temperature
        T_target = fh["T_target"][:][np.searchsorted(fh["step"][:], steps)]
        np.testing.assert_allclose(T_target, [1.5, 0.8], atol=1e-3)
        # the snapshot at T_liquid is the liquid sample; taking snapshots changes no trajectory
        np.testing.assert_array_equal(snaps[:, 1], fh["liquid"][:])
        for key in ("liquid", "glass"):
            np.testing.assert_array_equal(fh[key][:], ref[key][:])
        assert not np.allclose(snaps[:, 0], fh["liquid"][:])
        assert "snapshots" not in ref and "snapshot_T" not in ref


def test_training_learns_the_chosen_liquid_snapshot(snapped, tmp_path):
    from glasscam_mpi.learn import GridSpec
    from glasscam_mpi.learn.data import grid_split, load_split

    glasscam(["train", "--run-dir", str(snapped), "--set", "train.liquid_snapshot=1.5"], n=1)
    cfg = load_config(path=snapped / "config.toml")
    assert cfg.train.liquid_snapshot == 1.5
    ck = torch.load(snapped / "train" / "best.pt", weights_only=True)
    spec = GridSpec.for_system(cfg.sys, cfg.n_grid, width_factor=cfg.train.width_factor)
    stds = {}
    for T in (1.5, 0.0):
        split = load_split(snapped / "prepare.h5", "train", liquid_T=T)
        stds[T] = grid_split(split, spec).astype(np.float64).std(axis=(0, 2, 3))
    # the input standardisation is the training set's (its density mean is the same for
    # any configuration, its spread is not): the liquid class is the 1.5 snapshot
    np.testing.assert_allclose(ck["model"]["input_scale"].numpy(), stds[1.5], rtol=1e-5)
    assert not np.allclose(stds[1.5], stds[0.0], rtol=1e-3)
    with h5py.File(snapped / "prepare.h5", "r") as fh:
        split = load_split(snapped / "prepare.h5", "train", liquid_T=1.5)
        n = len(split) // 2
        np.testing.assert_array_equal(split.positions[:n], fh["snapshots"][split.runs[:n], 0])


def test_a_missing_snapshot_is_refused(tiny_prepared, tmp_path):
    from glasscam_mpi.learn.data import load_split

    with pytest.raises(ConfigError, match=r"keeps no snapshot at that temperature"):
        load_split(tiny_prepared / "prepare.h5", "train", positions=False, liquid_T=1.5)
    path = tmp_path / "c.toml"
    path.write_text(TINY_TOML)
    with pytest.raises(ConfigError, match=r"\[train\].liquid_snapshot = 1.5: allowed: 0"):
        load_config(path=path, overrides=["train.liquid_snapshot=1.5"])
    with pytest.raises(ConfigError, match=r"extra_snapshots = \[5.0\]: allowed: distinct"):
        load_config(path=path, overrides=["prepare.extra_snapshots=[5.0]"])
    with pytest.raises(ConfigError, match=r"extra_snapshots = \[1.0, 1.0\]"):
        load_config(path=path, overrides=["prepare.extra_snapshots=[1.0, 1.0]"])
    assert load_config(path=path).prepare.extra_snapshots == ()
