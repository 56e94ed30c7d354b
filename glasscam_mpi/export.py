"""``glasscam export``: every test sample of a run directory as a file OVITO opens.

One frame per test sample (each ok test run of prepare.h5: its liquid, then its glass
configuration), all frames in one file, every frame with the same columns (per particle):

    type                     species name (A, B)
    position                 x, y, z as prepare.h5 holds them: wrapped into the periodic
                             box [0, L) (prepare.h5 keeps no image flags, so no unwrapped
                             positions exist to write); z = 0 in 2D
    radius                   the species' additive radius sigma_ss / 2 (OVITO's display size)
    gamma                    Grad-CAM score Gamma of the explained layer (gradcam.h5 gamma)
    gamma_layer<l>           Gamma of convolution layer l = 0, 1, ... (gamma_layers)
    upsilon, theta           Voronoi volume Upsilon and Tong-Tanaka Theta (indicators.h5)
    <field>_xi<x>            each of the above coarse-grained at xi = x
                             (glasscam_mpi.analysis.coarse.coarse_grain), e.g. gamma_xi2
    delta_at<d>_temp<T>      propensity Delta where delta(t) reaches the target d, at the
                             replica temperature T (propensity.h5 propensity_at_delta), and
                             coarse-grained, delta_at<d>_temp<T>_xi<x>
    delta_at<d>_temp<T>_rep<s>   (``--replicas``) replica s's cage-relative displacement
                             at that time (the same interpolation in delta as Delta's)

Numbers in names are written with ``p`` for the point (xi = 1.5: ``_xi1p5``), since OVITO
turns dots into underscores. A value a sample does not have is NaN: Delta outside the
propensity configurations (glass samples of propensity.h5 ``configs``) and in liquid
samples, Delta at a target the ensemble never reached, a failed replica, a stage that was
not run (its columns are then left out altogether and the metadata says so).

Formats, each through a maintained writer:

* ``extxyz``: ASE's ``ase.io.write``. Each frame's comment line holds the periodic cell
  (``Lattice``, ``pbc``), ``units=lj``, the frame's run, sample class and propensity
  configuration, the stage files' versions and the run's config.toml, percent-encoded
  (``urllib.parse.unquote`` gives it back; the line may hold no quote or newline). ASE
  prints reals with 8 decimals (``%16.8f``): a Gamma of 1e-7 keeps one digit; the other
  two formats keep every digit.
* ``lammps-dump``: LAMMPS's own ``write_dump ... custom`` (ASE reads LAMMPS dumps but
  writes none). The file carries the box (``ITEM: BOX BOUNDS pp pp pp``), units
  (``ITEM: UNITS lj``) and the frame index (``ITEM: TIMESTEP``); the format has no place
  for anything else, so the provenance and the frame list go to ``PATH.json`` beside it.
* ``gsd``: the ``gsd`` package (HOOMD schema): box and dimensions in ``configuration``,
  positions (float32 by the schema; centred on the box, HOOMD's convention) and types in
  ``particles``, the columns as ``log/particles/<name>`` (OVITO reads them as particle
  properties), the provenance as ``log/glasscam/...`` strings.

The provenance (every format): glasscam version, units, the run directory's config.toml,
and each stage file read with its ``glasscam_version`` and ``schema_version``.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glasscam_mpi.config import ConfigError
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.rundir import RunDir

FORMATS = ("extxyz", "lammps-dump", "gsd")
SUFFIX = {"extxyz": ".extxyz", "lammps-dump": ".dump", "gsd": ".gsd"}
CLASSES = ("liquid", "glass")
UNITS = "lj"


def num(x: float) -> str:
    """A number for a column name: 1.5 -> '1p5', 0.05 -> '0p05', 2.0 -> '2'."""
    return f"{float(x):g}".replace(".", "p").replace("-", "m")


@dataclass
class Frame:
    run: int                      # run index in prepare.h5
    sample: str                   # "liquid" or "glass"
    config: int                   # propensity configuration c, or -1
    types: np.ndarray             # (N,) int species index
    positions: np.ndarray         # (N, d) float64 in [0, L)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) float


@dataclass
class Export:
    box: np.ndarray               # (d,) float
    species: tuple[str, ...]
    xis: tuple[float, ...]
    names: list[str]              # the column names, in order, same for every frame
    frames: list[Frame]
    provenance: dict              # glasscam version, units, config, stage files, notes


def _check_xis(xis, box, default: float) -> tuple[float, ...]:
    from glasscam_mpi.analysis.xiscan import fits

    limit = float(np.min(box)) / 4.0
    if not xis:
        return (float(default),)
    out = []
    for x in xis:
        if not (np.isfinite(x) and x > 0):
            raise ConfigError(f"--xi {x:g}: allowed: a length > 0 (the bare fields are always "
                              "written)")
        if not fits(box, x):
            raise ConfigError(f"--xi {x:g}: 2 xi = {2 * x:g} exceeds half the box edge "
                              f"({2 * limit:.4g}), where the periodic box would clip the "
                              f"kernel; allowed: 0 < xi <= {limit:.4g} for this run")
        out.append(float(x))
    return tuple(dict.fromkeys(out))


def _stage_info(fh) -> dict:
    return {"glasscam_version": str(fh.attrs.get("glasscam_version", "?")),
            "schema_version": int(fh.attrs.get("schema_version", 1))}


def ok_test_runs(rd: RunDir) -> np.ndarray:
    """(n,) int64 indices in prepare.h5 of the test runs that succeeded."""
    import h5py

    with h5py.File(rd.require("prepare"), "r") as fh:
        return np.flatnonzero((fh["status"][:] == 1) & (fh["split"][:] == 2)).astype(np.int64)


def collect(run_dir, xis=(), replicas: bool = False, runs=None) -> Export:
    """Read the run directory's stage files into frames (rank 0 only); ``runs``: only
    these test runs (prepare.h5 indices; default every ok test run)."""
    import h5py

    from glasscam_mpi.analysis.coarse import coarse_grain
    from glasscam_mpi.analysis.xiscan import resolve_xis
    from glasscam_mpi import __version__

    rd = RunDir(run_dir)
    if not rd.config_path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.toml)")
    cfg = rd.saved_config()
    ok_runs = ok_test_runs(rd)
    runs = ok_runs if runs is None else [r for r in ok_runs if r in set(runs)]
    if len(runs) == 0:
        raise ConfigError(f"{rd.stage_file('prepare')} has no ok test runs: nothing to export")
    stages: dict = {}
    notes: list[str] = []
    with h5py.File(rd.require("prepare"), "r") as prep:
        box = prep["box"][:].astype(np.float64)
        types = prep["types"][:]
        pos = {c: prep[c] for c in CLASSES}
        stages["prepare"] = _stage_info(prep)
        T_of = {"liquid": float(prep.attrs.get("T_liquid", np.nan)),
                "glass": float(prep.attrs.get("T_glass", np.nan))}
        a = cfg.analyze
        default_xi = resolve_xis(box, a.xis, a.xi_pairs, "auto", cfg.sys.xi_pairs).xi_pairs
        xis = _check_xis(list(xis), box, default_xi)
        frames = [Frame(int(r), c, -1, types[r].astype(np.int64), pos[c][r].astype(np.float64))
                  for r in runs for c in CLASSES]
    index = {(f.run, f.sample): f for f in frames}
    names: list[str] = []

    def add(name: str, per_frame: dict) -> None:
        names.append(name)
        for f in frames:
            got = per_frame.get((f.run, f.sample))
            f.columns[name] = (np.full(len(f.types), np.nan) if got is None
                               else np.asarray(got, dtype=np.float64))

    radii = cfg.sys.radii()
    add("radius", {(f.run, f.sample): radii[f.types] for f in frames})
    bare: list[str] = []
    for stage in ("gradcam", "indicators"):
        path = rd.stage_file(stage)
        if not path.exists():
            notes.append(f"no {path.name}: its columns are left out (run 'glasscam {stage}')")
            continue
        with h5py.File(rd.require(stage), "r") as fh:
            stages[stage] = _stage_info(fh)
            rows = {int(r): k for k, r in enumerate(fh["runs"][:])}
            ok = fh["status"][:] == 1
            sets = ([("gamma", fh["gamma"][:], None)]
                    + [(f"gamma_layer{l}", fh["gamma_layers"][:], l)
                       for l in range(fh["gamma_layers"].shape[2])]) if stage == "gradcam" \
                else [("upsilon", fh["volume"][:], None), ("theta", fh["theta"][:], None)]
            for name, data, layer in sets:
                per = {}
                for (r, c), f in index.items():
                    k = rows.get(r)
                    if k is not None and ok[k]:
                        row = data[k, CLASSES.index(c)]
                        per[(r, c)] = row if layer is None else row[layer]
                add(name, per)
                bare.append(name)
    n_d = 0
    if rd.stage_file("propensity").exists():
        with h5py.File(rd.require("propensity"), "r") as fh:
            stages["propensity"] = _stage_info(fh)
            configs = fh["configs"][:]
            temps, targets = fh["temperatures"][:], fh["delta_targets"][:]
            at = fh["propensity_at_delta"][:]                      # (n_c, n_T, n_d, N)
            n_d = len(targets)
            for c, r in enumerate(configs):
                if (int(r), "glass") in index:
                    index[(int(r), "glass")].config = c
            for k, T in enumerate(temps):
                for j, d in enumerate(targets):
                    name = f"delta_at{num(d)}_temp{num(T)}"
                    add(name, {(int(r), "glass"): at[c, k, j] for c, r in enumerate(configs)})
                    bare.append(name)
            if replicas:
                S = len(fh["task_replica"]) // (len(configs) * len(temps))
                t = fh["time"][:]
                status = fh["status"][:].reshape(len(configs), len(temps), -1)
                disp = fh["cage_displacement"]
                for k, T in enumerate(temps):
                    per_rep = {}
                    for c, r in enumerate(configs):
                        lo = (c * len(temps) + k) * S
                        per_rep[c] = _replicas_at(t, disp[lo:lo + S], status[c, k] == 1, targets)
                    for j, d in enumerate(targets):
                        for s in range(S):
                            add(f"delta_at{num(d)}_temp{num(T)}_rep{s}",
                                {(int(r), "glass"): per_rep[c][s, j]
                                 for c, r in enumerate(configs)})
    else:
        notes.append("no propensity.h5: no Delta columns (run 'glasscam propensity')")
    for xi in xis:
        for name in list(bare):
            names.append(f"{name}_xi{num(xi)}")
        for f in frames:
            fields = np.stack([f.columns[n] for n in bare], axis=1) if bare else None
            out = np.full((len(f.types), len(bare)), np.nan)
            if fields is not None:
                good = np.all(np.isfinite(fields), axis=0)
                if good.any():
                    out[:, good] = coarse_grain(box, f.positions, fields[:, good], xi)
            for k, n in enumerate(bare):
                f.columns[f"{n}_xi{num(xi)}"] = np.ascontiguousarray(out[:, k])
    provenance = {"glasscam_version": __version__, "units": UNITS,
                  "positions": "wrapped into [0, L) (prepare.h5 keeps no image flags)",
                  "run_dir": str(rd.path.resolve()), "stages": stages,
                  "temperatures": T_of, "xis": list(xis), "delta_targets": n_d,
                  "config": rd.config_path.read_text(), "notes": notes,
                  "software": _software()}
    return Export(box, tuple(cfg.sys.species), xis, names, frames, provenance)


def _replicas_at(t, disp, ok, targets) -> np.ndarray:
    """(S, n_d, N) replica displacements at each target of the ensemble's delta(t)."""
    from glasscam_mpi.analysis.crossing import at_targets

    disp = np.asarray(disp, dtype=np.float64)                 # (S, n_t, N)
    out = np.full((disp.shape[0], len(targets), disp.shape[2]), np.nan)
    if not ok.any():
        return out
    n_t = disp.shape[1]
    mean = disp[ok].mean(axis=0)                               # Delta(t) of the stage
    delta = mean.mean(axis=1)
    # the weight of each record in Delta at a target: at_targets applied to unit fields
    # e_k (one per record) riding along with the real ones. Their particle mean must not
    # change delta(t): each unit column comes with one of value 2 delta(t) - e_k
    eye = np.eye(n_t)
    probe = np.concatenate([mean, eye, 2.0 * delta[:, None] - eye], axis=1)
    fields, _ = at_targets(np.asarray(t), probe, np.asarray(targets))
    w = fields[:, mean.shape[1]:mean.shape[1] + n_t].astype(np.float64)   # (n_d, n_t)
    for j in range(len(targets)):
        if np.all(np.isfinite(w[j])):
            used = np.flatnonzero(w[j])      # records after an early stop are NaN, weight 0
            out[ok, j] = np.einsum("k,skn->sn", w[j, used], disp[ok][:, used])
    return out


def _software() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("numpy", "h5py", "lammps", "ase", "gsd"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# -- writers --------------------------------------------------------------------------------------
def _frame_meta(ex: Export, i: int, f: Frame) -> dict:
    return {"frame": i, "run": f.run, "sample": f.sample,
            "T": ex.provenance["temperatures"][f.sample],
            "propensity_config": f.config}


def _positions3(ex: Export, f: Frame) -> np.ndarray:
    x = np.zeros((len(f.types), 3))
    x[:, :f.positions.shape[1]] = f.positions
    return x


def _cell3(box) -> np.ndarray:
    return np.array([*box, *([1.0] * (3 - len(box)))])


def write_extxyz(ex: Export, path: Path) -> None:
    import ase
    import ase.io

    stages = ",".join(f"{s}:{v['glasscam_version']}/schema{v['schema_version']}"
                      for s, v in ex.provenance["stages"].items())
    config = urllib.parse.quote(ex.provenance["config"], safe="")
    images = []
    for i, f in enumerate(ex.frames):
        atoms = ase.Atoms(positions=_positions3(ex, f), cell=_cell3(ex.box),
                          pbc=[True] * len(ex.box) + [False] * (3 - len(ex.box)))
        atoms.arrays["type"] = np.array([ex.species[t] for t in f.types])
        for name in ex.names:
            atoms.arrays[name] = f.columns[name]
        atoms.info.update(_frame_meta(ex, i, f))
        atoms.info.update(units=UNITS, glasscam_version=ex.provenance["glasscam_version"],
                          stages=stages, xis=",".join(f"{x:g}" for x in ex.xis),
                          config_toml_percent_encoded=config)
        images.append(atoms)
    # parallel=False: with mpi4py loaded, ASE's default makes rank 0 broadcast the outcome
    # to every rank of COMM_WORLD, a collective the other ranks never join
    ase.io.write(path, images, format="extxyz", parallel=False,
                 columns=["type", "positions", *ex.names])


def write_lammps_dump(ex: Export, path: Path) -> None:
    from glasscam_mpi.md.engine import open_lammps

    d = len(ex.box)
    L = [repr(float(x)) for x in ex.box]
    z = "-0.5 0.5" if d == 2 else f"0 {L[2]}"
    setup = ["units lj", "atom_style atomic", f"dimension {d}", "boundary p p p",
             f"region box block 0 {L[0]} 0 {L[1]} {z}",
             f"create_box {len(ex.species)} box", "mass * 1.0"]
    props = [f"d_{n}" for n in ex.names]
    cols = " ".join(["id", "type", "element", "x", "y", "z", *props])
    rename = " ".join(f"colname {p} {n}" for p, n in zip(props, ex.names))
    modify = (f"modify sort id units yes element {' '.join(ex.species)} "
              f"format float %.17g {rename}")
    with open_lammps(style="plain") as lmp:
        for line in setup:
            lmp.command(line)
        if props:
            lmp.command(f"fix export all property/atom {' '.join(props)} ghost no")
        for i, f in enumerate(ex.frames):
            n = len(f.types)
            lmp.command("delete_atoms group all compress no")
            lmp.create_atoms(n, list(range(1, n + 1)), (f.types + 1).tolist(),
                             _positions3(ex, f).ravel().tolist())
            order = lmp.numpy.extract_atom("id")[:n] - 1            # local atom -> particle
            for p, name in zip(props, ex.names):
                lmp.numpy.extract_atom(p)[:n] = f.columns[name][order]
            lmp.command(f"reset_timestep {i}")
            lmp.command(f"write_dump all custom {path} {cols} {modify}"
                        + (" append yes" if i else ""))
    meta = {**ex.provenance, "format": "lammps-dump", "file": path.name,
            "frames": [_frame_meta(ex, i, f) for i, f in enumerate(ex.frames)],
            "columns": ex.names, "species": list(ex.species)}
    Path(str(path) + ".json").write_text(dumps(meta, indent=1) + "\n")


def write_gsd(ex: Export, path: Path) -> None:
    import gsd.hoomd

    d = len(ex.box)
    prov = {k: v for k, v in ex.provenance.items() if k != "config"}
    with gsd.hoomd.open(path, "w") as traj:
        for i, f in enumerate(ex.frames):
            fr = gsd.hoomd.Frame()
            fr.configuration.step = i
            fr.configuration.dimensions = d
            fr.configuration.box = [float(ex.box[0]), float(ex.box[1]),
                                    float(ex.box[2]) if d == 3 else 0.0, 0.0, 0.0, 0.0]
            fr.particles.N = len(f.types)
            fr.particles.types = list(ex.species)
            fr.particles.typeid = f.types.astype(np.uint32)
            half = np.zeros(3)
            half[:d] = ex.box / 2
            fr.particles.position = (_positions3(ex, f) - half).astype(np.float32)
            for name in ex.names:
                fr.log[f"particles/{name}"] = f.columns[name]
            fr.log["glasscam/frame"] = dumps(_frame_meta(ex, i, f))
            fr.log["glasscam/provenance"] = dumps(prov)
            fr.log["glasscam/config"] = ex.provenance["config"]
            fr.log["glasscam/units"] = UNITS
            traj.append(fr)


WRITERS = {"extxyz": write_extxyz, "lammps-dump": write_lammps_dump, "gsd": write_gsd}


def export(run_dir, fmt: str = "extxyz", xis=(), out=None, replicas: bool = False) -> Path:
    """Write the export file; returns its path. Written under a temporary name and renamed,
    so a file at ``out`` is always whole."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    ex = collect(run_dir, xis, replicas)
    path = Path(out) if out else Path(run_dir) / "export" / f"test-samples{SUFFIX[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}{SUFFIX[fmt]}")
    try:
        WRITERS[fmt](ex, tmp)
        if fmt == "lammps-dump":
            os.replace(str(tmp) + ".json", str(path) + ".json")
        os.replace(tmp, path)
    finally:
        for p in (tmp, Path(str(tmp) + ".json")):
            p.unlink(missing_ok=True)
    return path
