"""Named axes of the stage files (issue 21, item 4): HDF5 dimension scales, xarray, open_run.

The run directory is conftest's ``tiny_full_run`` (every stage of a tiny run, written by
the real stages under ``mpiexec -n 2``, one failed replica); the old-schema files are
written here with h5py as schema version 2 wrote them (no dimension scales).
"""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest

from glasscam_mpi import open_run
from glasscam_mpi.config import ConfigError, load_saved_config
from glasscam_mpi.dims import DIMENSIONS, label_file
from glasscam_mpi.store import SCHEMA_VERSION, label

pytestmark = pytest.mark.mpi

FILES = ("prepare.h5", "train.h5", "gradcam.h5", "indicators.h5", "propensity.h5",
         "analysis.h5")


def _datasets(fh) -> dict[str, h5py.Dataset]:
    out = {}
    fh.visititems(lambda name, obj: out.__setitem__(name, obj)
                  if isinstance(obj, h5py.Dataset) else None)
    return out


def test_every_axis_of_every_stage_file_is_named_and_has_its_scale(tiny_full_run):
    checked = 0
    for name in FILES:
        with h5py.File(tiny_full_run / name, "r") as fh:
            assert fh.attrs["schema_version"] == SCHEMA_VERSION == 3
            datasets = _datasets(fh)
            assert len(datasets) > 5, name
            for path, ds in datasets.items():
                for i in range(ds.ndim):
                    dim = ds.dims[i].label
                    assert dim in DIMENSIONS, f"{name}:{path} axis {i} is unnamed ({dim!r})"
                    if ds.is_scale:  # a coordinate: its own axis is itself
                        assert path.split("/")[-1] == dim, f"{name}:{path}"
                        continue
                    scales = list(ds.dims[i].values())
                    assert len(scales) == 1, f"{name}:{path} axis {i}: {len(scales)} scales"
                    assert scales[0].name.split("/")[-1] == dim
                    assert scales[0].shape == (ds.shape[i],), f"{name}:{path} axis {i}"
                    checked += 1
    assert checked > 150  # every dataset of six files, not a few


def test_scales_hold_the_coordinates_of_the_run(tiny_full_run):
    cfg = load_saved_config(tiny_full_run / "config.toml")
    with h5py.File(tiny_full_run / "analysis.h5", "r") as fh, \
            h5py.File(tiny_full_run / "propensity.h5", "r") as prop:
        xi = fh["xi"][:]
        np.testing.assert_array_equal(xi, fh["xis"][:])
        np.testing.assert_array_equal(fh["xi_delta"][:], xi)
        # the analyze config's xis that fit the tiny box (the rest are left out, noted)
        assert set(xi) <= set(cfg.analyze.xis) and 0.0 in xi and len(xi) >= 2
        assert fh["xi"].attrs["units"] == "sigma" and fh["r"].attrs["units"] == "sigma"
        np.testing.assert_array_equal(fh["time"][:], prop["time"][:])
        assert fh["time"].attrs["units"] == "tau"
        np.testing.assert_array_equal(fh["temperature"][:], prop["temperatures"][:])
        np.testing.assert_array_equal(fh["delta_target"][:], cfg.propensity.delta_targets)
        np.testing.assert_array_equal(fh["config"][:], prop["configs"][:])
        assert [s.decode() for s in fh["indicator"][:]] == ["gamma", "volume", "theta"]
        assert [s.decode() for s in fh["class"][:]] == ["liquid", "glass"]
        np.testing.assert_array_equal(fh["particle"][:], np.arange(cfg.system.n_particles))
        corr = fh["dynamics/corr"]
        assert [corr.dims[i].label for i in range(6)] == \
            ["config", "temperature", "time", "indicator", "xi", "xi_delta"]
        assert corr.shape == (cfg.propensity.n_configs, len(cfg.propensity.temperatures),
                              cfg.propensity.n_times, 3, len(xi), len(xi))
        assert fh["runs"].is_scale  # the existing dataset is the coordinate, unchanged
    with h5py.File(tiny_full_run / "train.h5", "r") as fh:
        assert [s.decode() for s in fh["class_reported"][:]] == ["glass", "liquid"]
        assert fh["epoch"].shape == (fh["train_loss"].shape[0],) and fh["epoch"].is_scale
    with h5py.File(tiny_full_run / "prepare.h5", "r") as fh:
        assert fh["liquid"].attrs["units"] == "sigma"
        assert [fh["liquid"].dims[i].label for i in range(3)] == ["run", "particle", "axis"]
        np.testing.assert_array_equal(fh["step"][:], fh["T_target"].dims[0][0][:])


def test_xarray_opens_analysis_with_named_dimensions(tiny_full_run):
    xr = pytest.importorskip("xarray")
    path = tiny_full_run / "analysis.h5"
    dyn = xr.open_dataset(path, engine="h5netcdf", group="dynamics", decode_times=False)
    with h5py.File(path, "r") as fh:
        want = fh["dynamics/corr"][:]
        xi = fh["xis"][:]
    # a group alone has the names (its coordinates live in the root group)
    assert dyn["corr"].dims == ("config", "temperature", "time", "indicator", "xi", "xi_delta")
    np.testing.assert_array_equal(dyn["corr"].values, want)
    tree = xr.open_datatree(path, engine="h5netcdf", decode_times=False)
    corr = tree["dynamics"]["corr"]  # the tree's nodes inherit the root's coordinates
    picked = corr.sel(indicator="volume", xi=xi[1], xi_delta=xi[1])
    np.testing.assert_array_equal(picked.values, want[:, :, :, 1, 1, 1])
    assert tree["summary"]["cmax"].dims == ("indicator", "xi", "temperature_all")
    assert not any(d.startswith("phony_dim") for node in tree.subtree for d in node.dims)
    dyn.close()
    tree.close()


def test_open_run_gives_labelled_trees_of_every_stage(tiny_full_run):
    pytest.importorskip("xarray")
    with open_run(tiny_full_run) as run:
        assert sorted(run) == sorted(f.removesuffix(".h5") for f in FILES)
        assert run.notes == []
        s = run["analysis"]["summary"]
        # the README's example: C^max of each indicator against delta, pooled over T
        curves = s["curves"].sel(indicator="volume")         # (xi, temperature, delta_grid)
        assert curves.dims == ("xi", "temperature", "delta_grid")
        delta = s["curve_delta"]
        assert delta.dims == ("temperature", "delta_grid")
        with h5py.File(tiny_full_run / "analysis.h5", "r") as fh:
            np.testing.assert_array_equal(curves.values, fh["summary/curves"][1])
        prop = run["propensity"]
        assert prop["propensity"].dims == ("config", "temperature", "time", "particle")
        assert prop["time"].attrs["units"] == "tau"


def _old_indicators_file(run_dir, version=2):
    run_dir.mkdir()
    with h5py.File(run_dir / "indicators.h5", "w") as fh:
        fh.attrs.update(stage="indicators", schema_version=version)
        fh["runs"] = np.array([3, 5])
        fh["volume"] = np.ones((2, 2, 4))
        fh["status"] = np.ones(2, np.int8)


def test_old_schema_file_opens_with_a_note_and_newer_is_refused(tmp_path):
    pytest.importorskip("xarray")
    _old_indicators_file(tmp_path / "old")
    with open_run(tmp_path / "old") as run:
        assert list(run) == ["indicators"]
        (note,) = run.notes
        assert "indicators.h5 has schema version 2" in note
        assert f"glasscam indicators --run-dir {tmp_path / 'old'}" in note
        vol = run["indicators"]["volume"]
        assert all(d.startswith("phony_dim") for d in vol.dims)
        np.testing.assert_array_equal(vol.values, np.ones((2, 2, 4)))
    _old_indicators_file(tmp_path / "new", version=SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError, match="newer than this"):
        open_run(tmp_path / "new")
    with pytest.raises(FileNotFoundError, match="holds no stage file"):
        open_run(tmp_path)


def test_undeclared_dataset_is_reported_and_wrong_length_refused(tmp_path):
    _old_indicators_file(tmp_path / "a")
    path = tmp_path / "a" / "indicators.h5"
    with h5py.File(path, "a") as fh:
        fh["mystery"] = np.zeros((2, 3))
    with pytest.warns(UserWarning, match=r"mystery\[0\], mystery\[1\]"), \
            warnings.catch_warnings():
        warnings.simplefilter("always")  # pyproject makes this warning an error elsewhere
        label(path, "indicators")
    with h5py.File(path, "r") as fh:
        assert fh["volume"].dims[2].label == "particle" and fh["particle"].shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert label_file(path, "indicators") == ["mystery[0]", "mystery[1]"]  # idempotent
    bad = tmp_path / "b"
    shutil.copytree(tmp_path / "a", bad)
    with h5py.File(bad / "indicators.h5", "a") as fh:
        fh.attrs["stage"] = "prepare"
        fh["box"] = np.ones(4)  # a 4-D box: the 'axis' labels have three names at most
    with pytest.raises(ValueError, match="'axis' axis has 4 entries"):
        label_file(bad / "indicators.h5", "prepare")

