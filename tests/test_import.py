"""``glasscam import``: a glass the package made, written out by LAMMPS (``write_data``,
``write_dump``), by the ``gsd`` package and by ASE (extxyz), imported again, gives what the
package's own run gives on that glass.

"Identical" here means bit for bit (``np.array_equal``) in every dataset compared: the
positions, box and species the importer stores, the Voronoi volume and Tong-Tanaka Theta
of indicators.h5, the replicas' cage-relative displacements, the propensity and delta(t)
of propensity.h5, and Gamma (all layers), p_glass and the class of gradcam.h5. It holds
where the format keeps a float64 exactly:

    format (writer)                              positions        indicators  propensity  gradcam
    lammps-data (LAMMPS write_data, %.16e)       bit-identical    equal       equal       equal
    lammps-dump (LAMMPS write_dump custom, %.17g) bit-identical   equal       equal       -
    extxyz (ASE, %16.8f)                         |dx| <= 5e-9     within 1e-7 not equal   -
    gsd (gsd.hoomd, float32 position and box)    |dx| <= 2.5e-7   within 5e-6 not equal   -

Where a format rounds the positions (extxyz: 8 decimals; GSD: float32, box included), the
indicators move by about the rounding: a Voronoi cell's area and Theta are Lipschitz in the
positions with a constant of a few (cell perimeter, 1/sigma), so they are compared within
20 times the format's rounding (observed 6e-9 and 1.8e-7). The propensity then differs
entirely, by design and not by chaos: LAMMPS's ``velocity ... loop geom`` (md/replica.py)
seeds each atom's velocity from the atom's coordinates, so a last-digit change of a
position draws other velocities: another, equally valid, draw of the isoconfigurational
ensemble. The test asserts that difference too, so the table stays true.

Seeds: the replicas of imported row i are seeded as those of run i of a prepared run with
the same [run].seed; the tiny run's first ok test run is run 0, and the glasses of runs 0
and 1 (both test runs) are imported as rows 0 and 1.
"""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest
from conftest import (TINY_TOML, TINY_TRAIN_TOML, copy_prepared, glasscam)

from glasscam_mpi.config import ConfigError
from glasscam_mpi.importer import run_import
from glasscam_mpi.systems import get_system

# one configuration, one temperature, two replicas, two rounds: seconds
PROPENSITY_TOML = """
[propensity]
n_configs = 1
temperatures = [0.45]
temperature_unit = "absolute"
n_replicas = 2
t_max = 10.0
n_times = 8
rounds = 2
delta_targets = [0.05, 0.08]
stop_factor = 0.0
"""
RUNS = [0, 1]  # the glasses imported: runs 0 and 1 of tiny_prepared (its test runs)
ROUNDING = {"extxyz": 5e-9, "gsd": 2.5e-7}   # |dx| bound of the format (see the docstring)


# -- writers: the glass leaves the package through other programs ---------------------------
def lammps_write(box, glasses, types, out):
    """LAMMPS writes each glass: write_data per glass, and all of them into one dump."""
    from glasscam_mpi.md.engine import commands, open_lammps
    from glasscam_mpi.md.replica import load_configuration_lines

    n, N, d = glasses.shape
    paths = []
    for r in range(n):
        with open_lammps(style="plain") as lmp:
            commands(lmp, load_configuration_lines(get_system("KAM"), box))
            x3 = np.zeros((N, 3))
            x3[:, :d] = glasses[r]
            lmp.create_atoms(N, list(range(1, N + 1)), [int(t) + 1 for t in types[r]],
                             x3.ravel().tolist())
            commands(lmp, [f"write_data {out}/glass{r}.data",
                           f"write_dump all custom {out}/glasses.dump id type x y z modify "
                           "sort id format float %.17g append yes"])
        paths.append(out / f"glass{r}.data")
    return paths, out / "glasses.dump"


def gsd_write(path, box, glasses, types, names=("A", "B"), lengths=None):
    import gsd.hoomd

    n, N, d = glasses.shape
    L = np.ones(3)
    L[:d] = box if lengths is None else lengths
    with gsd.hoomd.open(path, "w") as f:
        for r in range(n):
            fr = gsd.hoomd.Frame()
            fr.configuration.dimensions = d
            fr.configuration.box = [*L, 0, 0, 0]
            fr.particles.N = N
            fr.particles.types = list(names)
            fr.particles.typeid = np.asarray(types[r], dtype=np.uint32)
            x = np.zeros((N, 3))
            x[:, :d] = glasses[r] - L[:d] / 2   # HOOMD's box is centred on 0
            fr.particles.position = x
            f.append(fr)
    return path


def extxyz_write(path, box, glasses, types, pbc=(True, True, False)):
    import ase
    import ase.io

    n, N, d = glasses.shape
    images = []
    for r in range(n):
        cell = np.eye(3)
        cell[:d, :d] = np.diag(box)
        x = np.zeros((N, 3))
        x[:, :d] = glasses[r]
        atoms = ase.Atoms(numbers=np.ones(N, int), positions=x, cell=cell, pbc=list(pbc))
        atoms.new_array("type", np.asarray(types[r], dtype=int) + 1)  # LAMMPS-like 1, 2
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")
    return path


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glass(tiny_prepared):
    with h5py.File(tiny_prepared / "prepare.h5", "r") as fh:
        ok_test = np.flatnonzero((fh["status"][:] == 1) & (fh["split"][:] == 2))
        assert list(ok_test[:2]) == RUNS, ("the tiny run's first two ok test runs moved "
                                           f"({ok_test}): pick the imported runs again")
        return fh["box"][:], fh["glass"][RUNS], fh["types"][RUNS]


@pytest.fixture(scope="module")
def files(glass, tmp_path_factory):
    box, g, t = glass
    out = tmp_path_factory.mktemp("files")
    data, dump = lammps_write(box, g, t, out)
    return {"lammps-data": data, "lammps-dump": [dump],
            "gsd": [gsd_write(out / "glasses.gsd", box, g, t)],
            "extxyz": [extxyz_write(out / "glasses.extxyz", box, g, t)]}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "import.toml"
    path.write_text(TINY_TOML + PROPENSITY_TOML + TINY_TRAIN_TOML)
    return path


@pytest.fixture(scope="module")
def reference(tiny_prepared, tmp_path_factory, config):
    """The package's own indicators and propensity on the tiny run's glasses."""
    run = copy_prepared(tiny_prepared, tmp_path_factory.mktemp("ref") / "run")
    glasscam(["indicators", "--run-dir", str(run)], n=2)
    glasscam(["propensity", "--run-dir", str(run), "--config", str(config)], n=2)
    return run


@pytest.fixture(scope="module")
def imported(files, config, tmp_path_factory):
    """Each format imported into its own run directory, with indicators and propensity."""
    base = tmp_path_factory.mktemp("imported")
    out = {}
    for fmt, paths in files.items():
        run = base / fmt
        glasscam(["import", "--run-dir", str(run), "--config", str(config),
                  *map(str, paths)])
        glasscam(["indicators", "--run-dir", str(run)], n=2)
        glasscam(["propensity", "--run-dir", str(run)], n=2)
        out[fmt] = run
    return out


def _read(run, stage, *names):
    with h5py.File(run / f"{stage}.h5", "r") as fh:
        return [fh[n][()] for n in names]


# -- identity ------------------------------------------------------------------------------------
def test_prepare_file_holds_the_glasses_and_where_they_came_from(imported, files, glass):
    box, g, t = glass
    for fmt, run in imported.items():
        with h5py.File(run / "prepare.h5", "r") as fh:
            assert fh.attrs["stage"] == "prepare" and fh.attrs["origin"] == "import"
            assert list(fh["split"][:]) == [2, 2] and list(fh["status"][:]) == [1, 1]
            np.testing.assert_array_equal(fh["types"][:], t)
            assert np.isnan(fh["liquid"][:]).all()       # no liquid sample
            assert fh["T"].shape == (2, 0) and fh["step"].shape == (0,)
            paths = [p.decode() for p in fh["source_path"][:]]
            assert [f.decode() for f in fh["source_format"][:]] == [fmt, fmt]
            frames = list(fh["source_frame"][:])
            want = [str(p.resolve()) for p in files[fmt]]
            assert paths == (want if fmt == "lammps-data" else want * 2)
            assert frames == ([0, 0] if fmt == "lammps-data" else [0, 1])
            for p, digest in zip(paths, fh["source_sha256"][:]):
                with open(p, "rb") as src:
                    assert digest.decode() == hashlib.sha256(src.read()).hexdigest()
            x, L = fh["glass"][:], fh["box"][:]
        if fmt in ("lammps-data", "lammps-dump"):
            np.testing.assert_array_equal(x, g, err_msg=fmt)
            np.testing.assert_array_equal(L, box, err_msg=fmt)
        else:
            dx = np.abs((x - g + L / 2) % L - L / 2)
            assert 0 < dx.max() <= ROUNDING[fmt], (fmt, dx.max())
            assert np.abs(L - box).max() <= ROUNDING[fmt]


def test_indicators_and_propensity_identical_where_positions_round_trip(imported, reference):
    ref_ind = _read(reference, "indicators", "runs", "volume", "theta")
    ref_prop = _read(reference, "propensity", "configs", "cage_displacement", "propensity",
                     "delta", "T0")
    assert list(ref_ind[0]) == RUNS and list(ref_prop[0]) == [0]
    for fmt in ("lammps-data", "lammps-dump"):
        runs, volume, theta = _read(imported[fmt], "indicators", "runs", "volume", "theta")
        assert list(runs) == RUNS
        np.testing.assert_array_equal(volume[:, 1], ref_ind[1][:, 1], err_msg=fmt)
        np.testing.assert_array_equal(theta[:, 1], ref_ind[2][:, 1], err_msg=fmt)
        assert np.isnan(volume[:, 0]).all() and np.isnan(theta[:, 0]).all()  # no liquid
        prop = _read(imported[fmt], "propensity", "configs", "cage_displacement",
                     "propensity", "delta", "T0")
        for name, a, b in zip(("configs", "cage_displacement", "propensity", "delta", "T0"),
                              prop, ref_prop):
            np.testing.assert_array_equal(a, b, err_msg=f"{fmt}: {name}")
        assert np.nanmax(prop[2]) > 0.01  # the replicas moved: a real comparison


def test_rounded_formats_indicators_within_rounding_propensity_redrawn(imported, reference):
    _, ref_vol, ref_theta = _read(reference, "indicators", "runs", "volume", "theta")
    (ref_prop,) = _read(reference, "propensity", "propensity")
    for fmt, eps in ROUNDING.items():
        _, volume, theta = _read(imported[fmt], "indicators", "runs", "volume", "theta")
        assert np.abs(volume[:, 1] - ref_vol[:, 1]).max() <= 20 * eps, fmt
        assert np.abs(theta[:, 1] - ref_theta[:, 1]).max() <= 20 * eps, fmt
        (prop,) = _read(imported[fmt], "propensity", "propensity")
        assert np.isfinite(prop).all()
        # loop geom: other velocities from other last digits (module docstring)
        assert np.abs(prop - ref_prop).max() > 1e-3, fmt


def test_gradcam_with_a_model_of_the_same_system_and_box(imported, reference, config,
                                                         tmp_path):
    """[gradcam].model: a network trained by glasscam explains the imported glass exactly
    as it explains the same glass in its own run."""
    trained = shutil.copytree(reference, tmp_path / "trained")
    glasscam(["train", "--run-dir", str(trained), "--config", str(config)], n=2)
    glasscam(["gradcam", "--run-dir", str(trained)], n=2)
    run = shutil.copytree(imported["lammps-data"], tmp_path / "imported")
    glasscam(["gradcam", "--run-dir", str(run), "--set",
              f"gradcam.model=\"{trained / 'train' / 'best.pt'}\""], n=2)
    names = ("gamma", "gamma_layers", "p_glass", "predicted")
    ref = _read(trained, "gradcam", *names)
    got = _read(run, "gradcam", *names)
    for name, a, b in zip(names, got, ref):
        np.testing.assert_array_equal(a[:, 1], b[:, 1], err_msg=name)
    assert np.isnan(got[0][:, 0]).all() and (got[3][:, 0] == -1).all()  # no liquid sample


def test_prepare_on_an_imported_run_does_nothing(imported):
    run = imported["lammps-dump"]
    before = (run / "prepare.h5").read_bytes()
    res = glasscam(["prepare", "--run-dir", str(run)])
    assert "already complete" in res.stdout
    assert (run / "prepare.h5").read_bytes() == before


# -- errors that say what to do ------------------------------------------------------------------
def _import(tmp_path, *paths, **kw):
    kw.setdefault("system", "KAM")
    return run_import(str(tmp_path / "run"), [str(p) for p in paths], **kw)


def test_type_labels_that_do_not_map(tmp_path, glass):
    box, g, t = glass
    path = gsd_write(tmp_path / "c.gsd", box, g[:1], t[:1], names=("A", "C"))
    with pytest.raises(ConfigError, match=r"type label\(s\) 'C' \(22 particles\) do not map "
                                          r"onto KAM's species A, B.*--types"):
        _import(tmp_path, path)
    _import(tmp_path, path, types="A=A,C=B")   # mapped: imported
    with h5py.File(tmp_path / "run" / "prepare.h5", "r") as fh:
        np.testing.assert_array_equal(fh["types"][0], t[0])


def test_composition_and_density_off(tmp_path, glass):
    box, g, t = glass
    swapped = t[:1].copy()
    swapped[0, :10] = 1                           # 32 A, 32 B: 0.5 / 0.5
    with pytest.raises(ConfigError, match=r"composition A 0\.5000, B 0\.5000 does not match "
                                          r"KAM \(A 0\.6500, B 0\.3500\) within 0\.0156"):
        _import(tmp_path, gsd_write(tmp_path / "x.gsd", box, g[:1], swapped))
    scaled = extxyz_write(tmp_path / "s.extxyz", box * 1.01, g[:1] * 1.01, t[:1])
    with pytest.raises(ConfigError, match=r"number density 1\.176.* does not match KAM's 1\.2 "
                                          r"within a relative 0\.001; rescale"):
        _import(tmp_path, scaled)


def test_overlapping_particles(tmp_path, glass):
    box, g, t = glass
    x = g[:1].copy()
    x[0, 5] = (x[0, 3] + [0.3, 0.0]) % box
    with pytest.raises(ConfigError, match=r"particles 3 and 5 .* are 0\.3 apart, closer than "
                                          r"the allowed 0\.7 \(\[prepare\]\.min_distance = 0\.7 "
                                          r"x sigma_AA = 1\); minimise"):
        _import(tmp_path, extxyz_write(tmp_path / "o.extxyz", box, x, t[:1]))


def test_non_periodic_box_and_unparsable_file(tmp_path, glass):
    box, g, t = glass
    path = extxyz_write(tmp_path / "np.extxyz", box, g[:1], t[:1], pbc=(True, False, False))
    with pytest.raises(ConfigError, match=r"np\.extxyz frame 0: the box is not periodic along "
                                          r"every axis \(pbc = \[True, False, False\]\)"):
        _import(tmp_path, path)
    bad = tmp_path / "bad.data"
    bad.write_text("not a LAMMPS data file\n\n64 atoms\n")
    with pytest.raises(ConfigError, match=r"bad\.data: the lammps-data reader cannot parse it"):
        _import(tmp_path, bad)
    # the command line: the same message, once, exit status 2, nothing written
    res = glasscam(["import", "--run-dir", str(tmp_path / "cli"), "--system", "KAM",
                    str(path)], check=False)
    assert res.returncode == 2 and "is not periodic along every axis" in res.stderr
    assert not (tmp_path / "cli").exists()
