"""``glasscam export``: OVITO (its Python module, the real reader) opens every format, and
what it reads is what the stage files hold.

The run directory is conftest's ``tiny_full_run`` (every stage; one failed replica, so an
ensemble below min_replicas). Each format is exported once through the CLI with one xi and
the replicas, under ``mpiexec -n 2`` as a user would (the writers must not wait for the
other ranks in a collective), opened with ``ovito.io.import_file``, and every frame's
particle types, positions, box and columns are compared with prepare.h5, gradcam.h5,
indicators.h5 and propensity.h5, and the coarse-grained columns with the package's
coarse_grain.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import glasscam

pytestmark = pytest.mark.mpi

XI = 1.5
# ASE's extxyz writer prints reals as %16.8f: 8 decimals. The other two keep every digit
# (LAMMPS %.17g, read back by OVITO to within an ulp; gsd float64 log chunks), except gsd
# positions, float32 by the HOOMD schema.
RTOL = 1e-15
ATOL = {"extxyz": 5.01e-9, "lammps-dump": 0.0, "gsd": 0.0}
POS_ATOL = {"extxyz": 5.01e-9, "lammps-dump": 1e-14, "gsd": 2e-6}


def refuse(constant):
    raise AssertionError(f"not JSON: {constant}")


@pytest.fixture(scope="module")
def stage(tiny_full_run) -> dict:
    rd = tiny_full_run
    out = {}
    with h5py.File(rd / "prepare.h5", "r") as p, h5py.File(rd / "gradcam.h5", "r") as g, \
            h5py.File(rd / "indicators.h5", "r") as i, h5py.File(rd / "propensity.h5", "r") as q:
        out.update(box=p["box"][:], types=p["types"][:], liquid=p["liquid"][:],
                   glass=p["glass"][:], split=p["split"][:], status=p["status"][:])
        out.update(g_runs=g["runs"][:], gamma=g["gamma"][:], layers=g["gamma_layers"][:],
                   i_runs=i["runs"][:], volume=i["volume"][:], theta=i["theta"][:])
        out.update(configs=q["configs"][:], temps=q["temperatures"][:],
                   targets=q["delta_targets"][:], at=q["propensity_at_delta"][:],
                   q_status=q["status"][:])
    out["runs"] = np.flatnonzero((out["status"] == 1) & (out["split"] == 2))
    return out


@pytest.fixture(scope="module", params=["extxyz", "lammps-dump", "gsd"])
def exported(request, tiny_full_run, tmp_path_factory):
    fmt = request.param
    path = tmp_path_factory.mktemp("export") / f"samples.{fmt}"
    res = glasscam(["export", "--run-dir", str(tiny_full_run), "--format", fmt, "--xi", str(XI),
                    "--replicas", "--out", str(path)], n=2)   # rank 0 writes, rank 1 waits
    assert f"export: wrote {path}" in res.stdout
    return fmt, path


def num(x) -> str:
    return f"{float(x):g}".replace(".", "p")


def test_ovito_reads_every_frame_as_the_stage_files_hold_it(exported, stage, tiny_full_run):
    from ovito.io import import_file

    from glasscam_mpi.analysis.coarse import coarse_grain

    fmt, path = exported
    s = stage
    box, d = s["box"], len(s["box"])
    pipeline = import_file(str(path), multiple_frames=True)
    order = [(int(r), c) for r in s["runs"] for c in ("liquid", "glass")]
    assert pipeline.source.num_frames == len(order) == 2 * len(s["runs"]) >= 4
    sidecar = json.loads(Path(str(path) + ".json").read_text(), parse_constant=refuse) \
        if fmt == "lammps-dump" else None
    checked_delta = 0
    for n, (run, cls) in enumerate(order):
        data = pipeline.compute(n)
        P = data.particles
        # which sample the frame is, from the file's own metadata
        if fmt == "extxyz":
            meta = {k: data.attributes[k] for k in ("run", "sample")}
        elif fmt == "gsd":
            meta = json.loads(data.attributes["glasscam/frame"], parse_constant=refuse)
        else:
            meta = sidecar["frames"][n]
            assert data.attributes["Timestep"] == n
        assert (int(meta["run"]), meta["sample"]) == (run, cls)
        # box: the run's edges; positions in it as prepare.h5 has them
        cell = np.asarray(data.cell[...])
        np.testing.assert_allclose(np.diag(cell)[:d], box, rtol=1e-7 if fmt == "gsd" else 0)
        assert np.count_nonzero(cell[:3, :3] - np.diag(np.diag(cell[:3, :3]))) == 0
        assert all(data.cell.pbc[:d])
        x = np.asarray(P.positions)[:, :d] - cell[:d, 3]
        np.testing.assert_allclose(x, s[cls][run], rtol=0, atol=POS_ATOL[fmt])
        names = [t.name for t in P.particle_types.types]
        got_types = [P.particle_types.type_by_id(t).name for t in P.particle_types[...]]
        assert names and got_types == [("A", "B")[t] for t in s["types"][run]]
        # the columns: Gamma of every layer, Upsilon, Theta
        g, k = int(np.flatnonzero(s["g_runs"] == run)[0]), ("liquid", "glass").index(cls)
        i = int(np.flatnonzero(s["i_runs"] == run)[0])
        want = {"gamma": s["gamma"][g, k], "upsilon": s["volume"][i, k], "theta": s["theta"][i, k]}
        for layer in range(s["layers"].shape[2]):
            want[f"gamma_layer{layer}"] = s["layers"][g, k, layer]
        c = np.flatnonzero(s["configs"] == run)
        for kt, T in enumerate(s["temps"]):
            for j, dt in enumerate(s["targets"]):
                name = f"delta_at{num(dt)}_temp{num(T)}"
                want[name] = (s["at"][c[0], kt, j] if cls == "glass" and len(c)
                              else np.full(len(s["types"][run]), np.nan))
        for name, value in want.items():
            np.testing.assert_allclose(P[name][...], value, rtol=RTOL, atol=ATOL[fmt],
                                       err_msg=f"{fmt} frame {n} {name}")
            cg = P[f"{name}_xi{num(XI)}"][...]
            if np.all(np.isfinite(value)):
                ref = coarse_grain(box, s[cls][run], np.asarray(value, dtype=np.float64), XI)
                np.testing.assert_allclose(cg, ref, rtol=1e-12, atol=ATOL[fmt], err_msg=name)
            else:
                assert np.all(np.isnan(cg)), name
        # replicas: failed ones NaN; the mean of the ok ones is Delta at the target
        if cls == "glass" and len(c):
            n_s = len(s["q_status"]) // (len(s["configs"]) * len(s["temps"]))
            for kt, T in enumerate(s["temps"]):
                lo = (c[0] * len(s["temps"]) + kt) * n_s
                ok = s["q_status"][lo:lo + n_s] == 1
                for j, dt in enumerate(s["targets"]):
                    base = f"delta_at{num(dt)}_temp{num(T)}"
                    reps = np.stack([P[f"{base}_rep{r}"][...] for r in range(n_s)])
                    assert np.all(np.isnan(reps[~ok]))
                    if np.all(np.isfinite(want[base])):
                        np.testing.assert_allclose(reps[ok].mean(axis=0), want[base],
                                                   rtol=1e-5, atol=1e-6 + ATOL[fmt])
                        checked_delta += 1
    assert checked_delta >= 1  # at least one target reached: the replica check ran


def test_provenance_is_in_the_file(exported, tiny_full_run):
    """Box, units and the run's config in the file's own metadata (a LAMMPS dump has no
    place for the config: it is in PATH.json, strict JSON)."""
    from ovito.io import import_file

    fmt, path = exported
    config = (tiny_full_run / "config.toml").read_text()
    data = import_file(str(path), multiple_frames=True).compute(0)
    if fmt == "extxyz":
        a = data.attributes
        assert a["units"] == "lj"
        assert urllib.parse.unquote(a["config_toml_percent_encoded"]) == config
        assert "gradcam:" in a["stages"] and "propensity:" in a["stages"]
    elif fmt == "gsd":
        a = data.attributes
        assert a["glasscam/config"] == config and a["glasscam/units"] == "lj"
        prov = json.loads(a["glasscam/provenance"], parse_constant=refuse)
        assert set(prov["stages"]) == {"prepare", "gradcam", "indicators", "propensity"}
    else:
        head = path.read_text().split("ITEM: ATOMS")[0]
        assert "ITEM: UNITS\nlj\n" in head and "ITEM: BOX BOUNDS pp pp pp" in head
        prov = json.loads(Path(str(path) + ".json").read_text(), parse_constant=refuse)
        assert prov["config"] == config and prov["units"] == "lj"
        assert prov["stages"]["prepare"]["schema_version"] >= 1


def test_ovito_renders_a_glass_coloured_by_one_minus_gamma(tiny_full_run, tmp_path):
    """OVITO's software ray tracer, headless; the image shows particles in many colours."""
    import matplotlib.image

    from glasscam_mpi.report.ovito_view import render_glass

    png = tmp_path / "glass.png"
    got = render_glass(tiny_full_run, png, size=(160, 160))
    img = matplotlib.image.imread(png)[..., :3]
    assert img.shape[:2] == (160, 160)
    background = np.all(img > 0.97, axis=-1)
    assert 0.2 < 1 - background.mean() < 0.98          # particles cover much of it, not all
    colours = {tuple(v) for v in np.round(img[~background] * 8).astype(int)}
    assert len(colours) >= 12                          # a colour map, not one flat shade
    with h5py.File(tiny_full_run / "prepare.h5", "r") as fh:
        first = np.flatnonzero((fh["status"][:] == 1) & (fh["split"][:] == 2))[0]
    assert got["run"] == first


def test_bad_input_is_refused_with_the_option_and_value(tiny_full_run, tmp_path):
    res = glasscam(["export", "--run-dir", str(tiny_full_run), "--xi", "100"], check=False)
    assert res.returncode == 2
    assert "--xi 100" in res.stderr and "allowed: 0 < xi <=" in res.stderr
    res = glasscam(["export", "--run-dir", str(tiny_full_run), "--xi", "-1"], check=False)
    assert res.returncode == 2 and "--xi -1" in res.stderr and "> 0" in res.stderr
    res = glasscam(["export", "--run-dir", str(tiny_full_run), "--format", "pdb"], check=False)
    assert res.returncode == 2 and "pdb" in res.stderr and "extxyz" in res.stderr
    res = glasscam(["export", "--run-dir", str(tmp_path)], check=False)
    assert res.returncode == 2 and "not a run directory" in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_help_explains_it():
    out = glasscam(["export", "--help"]).stdout
    for word in ("--format", "extxyz", "lammps-dump", "gsd", "--xi", "--replicas", "--out",
                 "Gamma", "Upsilon", "Theta", "Delta", "provenance"):
        assert word in out, word
