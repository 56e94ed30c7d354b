"""``glasscam import``: configurations made elsewhere become the test glasses of a run.

    glasscam import --run-dir DIR --system KAM  glass-*.data
    glasscam import --run-dir DIR --config my.toml --format gsd --frames -1 traj.gsd

Every frame read becomes one test run (``split`` = 2) of ``DIR/prepare.h5``, in the order
the files and their frames are given, written with the package's own store
(:func:`glasscam_mpi.store.write_stage_file`) in the layout the prepare stage writes, so
``indicators``, ``gradcam`` (with ``[gradcam].model``: a network trained by glasscam for
the same system, grid and box), ``propensity`` and ``analyze`` run on it unchanged.

Formats and their readers (well-kept ones, not parsers of our own):

    lammps-data   ase.io (``lammps-data``; atom ids sorted, image flags ignored)
    lammps-dump   ase.io (``lammps-dump-text``; every frame; a ``type`` column is needed)
    extxyz        ase.io (``extxyz``; species from a per-atom ``type`` column, else symbols)
    gsd           gsd.hoomd (every frame; species from the frame's type names)

What ``prepare.h5`` holds for an imported run, besides the prepare layout
(:mod:`glasscam_mpi.stages.prepare`):

    attrs    origin = "import", import_command, type_map (JSON: file label -> species)
    glass    (n, N, d) f8   the imported positions, wrapped into [0, L)
    liquid   (n, N, d) f8   NaN: there is no liquid sample (later stages leave it out)
    T, pe    (n, 0)         empty, as T_target and step (0,): no cooling curve, so no
                            T* estimate ([propensity].T_star must be a number, or
                            temperature_unit = "absolute")
    seeds    (n, 3) i8      0 (no cooling run)
    energy_jump (n,) -1, energy_jump_T (n,) NaN   (not checked: no U(T))
    source_path   (n,) S    the file each row came from (as given, resolved)
    source_format (n,) S    its format
    source_frame  (n,) i8   the frame's index in that file
    source_sha256 (n,) S64  sha256 of that file

Seeds: the propensity replicas of row i are seeded by ([run].seed, system, i, T, replica),
exactly as those of run i of a prepared run directory, so a glass imported as row i of a
run directory with the same [run].seed gets the very replicas the package gives run i.

Checks (each a :class:`~glasscam_mpi.config.ConfigError` naming the file, the frame, the
value, what is allowed and what to do): a file the reader cannot parse; a non-periodic or
triclinic box; a 3D frame for a 2D system (z not constant); type labels that do not map
onto the system's species (``--types``); a composition more than
:data:`COMPOSITION_TOL` (or 1/N) off the system's number fractions; a number density more
than :data:`DENSITY_RTOL` (relative) off the system's; two particles closer than
``[prepare].min_distance`` x sigma_AA (the prepare stage's start criterion).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError

FORMATS = ("lammps-data", "lammps-dump", "extxyz", "gsd")
SUFFIXES = {".data": "lammps-data", ".lmp": "lammps-data", ".dump": "lammps-dump",
            ".lammpstrj": "lammps-dump", ".extxyz": "extxyz", ".xyz": "extxyz",
            ".gsd": "gsd"}
DENSITY_RTOL = 1e-3       # |N/V - rho| / rho allowed
COMPOSITION_TOL = 0.01    # |n_s/N - x_s| allowed (or 1/N where that is larger)
ORIGIN = "import"


@dataclass(frozen=True)
class Frame:
    """One configuration read from a file, before it is checked against a system."""

    path: str
    format: str
    index: int              # frame index in the file
    box: np.ndarray         # (d,) box edges
    positions: np.ndarray   # (N, d) float64, wrapped into [0, L)
    labels: np.ndarray      # (N,) str type labels as the file names them


def format_of(path: str, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ConfigError(f"--format {given!r}: allowed: {', '.join(FORMATS)}")
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: cannot tell the format from the suffix {suffix!r} (known: "
                          f"{', '.join(f'{s} = {f}' for s, f in SUFFIXES.items())}); give "
                          f"--format, one of {', '.join(FORMATS)}")
    return SUFFIXES[suffix]


def frame_selection(spec: str, n: int, path: str) -> list[int]:
    """Frame indices of ``--frames`` (``:``, ``-1``, ``0,3``, ``2:10:2``) in a file of n."""
    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if ":" in part:
                bits = [int(b) if b.strip() else None for b in part.split(":")]
                out += list(range(n))[slice(*bits)]
            else:
                k = int(part)
                if not -n <= k < n:
                    raise IndexError(k)
                out.append(k % n)
    except (ValueError, TypeError, IndexError):
        raise ConfigError(f"--frames {spec!r}: {path} has {n} frame(s); allowed: indices in "
                          f"[-{n}, {n}), slices START:STOP:STEP, comma lists (e.g. ':', '-1', "
                          "'0,3', '::2')") from None
    if not out:
        raise ConfigError(f"--frames {spec!r} selects no frame of {path} ({n} frame(s))")
    return out


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- readers ---------------------------------------------------------------------------------
def read_frames(path: str, fmt: str, dim: int, frames: str = ":") -> list[Frame]:
    """Every selected frame of ``path`` (format ``fmt``) as :class:`Frame` of dimension dim."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    try:
        if fmt == "gsd":
            return _read_gsd(path, dim, frames)
        return _read_ase(path, fmt, dim, frames)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a file it cannot parse
        raise ConfigError(f"{path}: the {fmt} reader cannot parse it ({type(exc).__name__}: "
                          f"{exc}); check the file and --format (allowed: "
                          f"{', '.join(FORMATS)})") from None


def _read_ase(path: str, fmt: str, dim: int, frames: str) -> list[Frame]:
    import ase.io

    if fmt == "lammps-data":
        # image flags ignored: the stored positions are the wrapped ones, bit for bit
        images = [ase.io.read(path, format="lammps-data", units="metal", sort_by_id=True,
                              read_image_flags=False)]
    elif fmt == "lammps-dump":
        images = ase.io.read(path, format="lammps-dump-text", index=":", units="metal",
                             order=True)
    else:
        images = ase.io.read(path, format="extxyz", index=":")
    if not images:
        raise ConfigError(f"{path}: no frame found in this {fmt} file")
    out = []
    for k in frame_selection(frames, len(images), path):
        atoms = images[k]
        where = f"{path} frame {k}"
        if "type" in atoms.arrays:
            labels = np.array([str(int(t)) for t in atoms.arrays["type"]])
        elif fmt == "lammps-dump":
            raise ConfigError(f"{where}: the dump has no 'type' column; write it with "
                              "'dump ... custom ... id type x y z'")
        else:
            labels = np.array(atoms.get_chemical_symbols())
        cell = np.asarray(atoms.cell[:], dtype=float)
        origin = np.asarray(atoms.get_celldisp(), dtype=float).reshape(3)
        out.append(_frame(path, fmt, k, where, cell, origin, atoms.pbc,
                          np.asarray(atoms.positions, dtype=float), labels, dim))
    return out


def _read_gsd(path: str, dim: int, frames: str) -> list[Frame]:
    import gsd.hoomd

    out = []
    with gsd.hoomd.open(path, "r") as traj:
        for k in frame_selection(frames, len(traj), path):
            f = traj[k]
            where = f"{path} frame {k}"
            Lx, Ly, Lz, xy, xz, yz = (float(v) for v in f.configuration.box)
            if (xy, xz, yz) != (0.0, 0.0, 0.0):
                raise ConfigError(f"{where}: triclinic box (tilts xy, xz, yz = {xy:g}, {xz:g}, "
                                  f"{yz:g}); allowed: an orthogonal box")
            if int(f.configuration.dimensions) != dim:
                raise ConfigError(f"{where}: a {int(f.configuration.dimensions)}D frame; the "
                                  f"system is {dim}D: import it with a {dim}D system")
            L = np.array([Lx, Ly, Lz])
            names = [str(t) for t in f.particles.types]
            labels = np.array(names)[np.asarray(f.particles.typeid, dtype=int)]
            # HOOMD's box is centred on 0: positions in [-L/2, L/2)
            pos = np.asarray(f.particles.position, dtype=np.float64)
            out.append(_frame(path, "gsd", k, where, np.diag(L), -L / 2, (True, True, True),
                              pos, labels, dim))
    return out


def _frame(path, fmt, k, where, cell, origin, pbc, pos, labels, dim) -> Frame:
    off = cell - np.diag(np.diag(cell))
    L = np.diag(cell)[:dim].copy()
    if np.any(np.abs(off) > 1e-12 * np.abs(np.diag(cell)).max()):
        raise ConfigError(f"{where}: triclinic box (cell {cell.tolist()}); allowed: an "
                          "orthogonal box")
    if not all(bool(p) for p in list(pbc)[:dim]):
        raise ConfigError(f"{where}: the box is not periodic along every axis (pbc = "
                          f"{[bool(p) for p in pbc]}); allowed: periodic in all {dim} "
                          "dimensions; write the file from a periodic simulation box")
    if np.any(L <= 0) or not np.isfinite(pos).all():
        raise ConfigError(f"{where}: box edges {L.tolist()} or positions not finite/positive")
    if dim == 2 and pos.shape[1] == 3 and np.ptp(pos[:, 2]) > 0:
        raise ConfigError(f"{where}: z spans {np.ptp(pos[:, 2]):.4g}, but the system is 2D; "
                          "allowed: all z equal (a 2D configuration)")
    x = pos[:, :dim] - origin[:dim]
    # wrap into [0, L); a coordinate already inside keeps its bits
    x = np.where((x < 0) | (x >= L), np.mod(x, L), x)
    x[x >= L] = 0.0  # np.mod of a tiny negative number may round up to L
    return Frame(path, fmt, k, L, np.ascontiguousarray(x), labels)


# -- checks against the system ---------------------------------------------------------------
def parse_type_map(spec: str | None) -> dict[str, str]:
    if not spec:
        return {}
    out = {}
    for item in spec.split(","):
        label, sep, species = item.partition("=")
        if not sep or not label.strip() or not species.strip():
            raise ConfigError(f"--types {spec!r}: expected LABEL=SPECIES pairs, e.g. "
                              "'1=A,2=B' or 'Si=A,O=B'")
        out[label.strip()] = species.strip()
    return out


def type_map(cfg: Config, given: dict[str, str]) -> dict[str, int]:
    """File label -> species index: ``--types`` if given, else 1, 2, ... (LAMMPS types) and
    the species names themselves (A, B)."""
    species = cfg.sys.species
    if given:
        bad = {lab: sp for lab, sp in given.items() if sp not in species}
        if bad:
            raise ConfigError(f"--types: species {sorted(set(bad.values()))} are not species of "
                              f"{cfg.system.name}; allowed: {', '.join(species)}")
        return {lab: species.index(sp) for lab, sp in given.items()}
    out = {str(s + 1): s for s in range(len(species))}
    out.update({name: s for s, name in enumerate(species)})
    return out


def species_of(frame: Frame, mapping: dict[str, int], cfg: Config) -> np.ndarray:
    labels, counts = np.unique(frame.labels, return_counts=True)
    unknown = [f"'{lab}' ({c} particles)" for lab, c in zip(labels, counts) if lab not in mapping]
    if unknown:
        shown = ", ".join(f"{lab}->{cfg.sys.species[s]}" for lab, s in mapping.items())
        raise ConfigError(f"{frame.path} frame {frame.index}: type label(s) {', '.join(unknown)} "
                          f"do not map onto {cfg.system.name}'s species "
                          f"{', '.join(cfg.sys.species)} (the map in use: {shown}); give "
                          "--types LABEL=SPECIES,... e.g. --types 1=A,2=B")
    return np.array([mapping[lab] for lab in frame.labels], dtype=np.int8)


def check_frame(frame: Frame, types: np.ndarray, cfg: Config) -> None:
    """Composition, density and overlaps of one frame against the system of ``cfg``."""
    sys_ = cfg.sys
    N = len(types)
    where = f"{frame.path} frame {frame.index}"
    if len(frame.box) != sys_.dim:
        raise ConfigError(f"{where}: {len(frame.box)}D, but {sys_.name} is {sys_.dim}D")
    tol = max(COMPOSITION_TOL, 1.0 / N)
    frac = np.bincount(types, minlength=sys_.n_species) / N
    if np.any(np.abs(frac - np.asarray(sys_.fractions)) > tol):
        got = ", ".join(f"{s} {f:.4f}" for s, f in zip(sys_.species, frac))
        want = ", ".join(f"{s} {f:.4f}" for s, f in zip(sys_.species, sys_.fractions))
        raise ConfigError(f"{where}: composition {got} does not match {sys_.name} ({want}) "
                          f"within {tol:.4g} in number fraction; check --types (the label -> "
                          "species map) or import with the system these particles belong to")
    rho = N / float(np.prod(frame.box))
    if abs(rho - sys_.density) > DENSITY_RTOL * sys_.density:
        raise ConfigError(f"{where}: number density {rho:.6g} (N = {N}, box "
                          f"{np.round(frame.box, 6).tolist()}) does not match {sys_.name}'s "
                          f"{sys_.density:g} within a relative {DENSITY_RTOL:g}; rescale the "
                          "configuration to the system's density (lengths in units of sigma_AA)")
    threshold = cfg.prepare.min_distance * sys_.sigma_ab(0, 0)
    r, i, j = closest_pair(frame.box, frame.positions)
    if r < threshold:
        raise ConfigError(f"{where}: particles {i} and {j} (0-based, in id order) are "
                          f"{r:.4g} apart, closer than the allowed {threshold:.4g} "
                          f"([prepare].min_distance = {cfg.prepare.min_distance:g} x sigma_AA "
                          f"= {sys_.sigma_ab(0, 0):g}); minimise the configuration first, or "
                          "check that its lengths are in units of sigma_AA")


def closest_pair(box: np.ndarray, x: np.ndarray) -> tuple[float, int, int]:
    """(distance, i, j) of the closest pair under periodic minimum image."""
    from scipy.spatial import cKDTree

    tree = cKDTree(x, boxsize=box)
    d, k = tree.query(x, k=2)
    i = int(np.argmin(d[:, 1]))
    return float(d[i, 1]), i, int(k[i, 1])


def config_for(args_system: str | None, config_path: str | None, overrides: list[str],
               n_particles: int) -> Config:
    """The run's config: the system (``--system``) or a config file, with N from the files."""
    import tomllib

    from glasscam_mpi.config import load_config

    if config_path:
        try:
            with open(config_path, "rb") as fh:
                stated = tomllib.load(fh).get("system", {}).get("n_particles")
        except (OSError, tomllib.TOMLDecodeError):
            stated = None  # load_config reports it
        if stated is not None and stated != n_particles:
            raise ConfigError(f"{config_path}: [system].n_particles = {stated}, but the imported "
                              f"frames hold {n_particles} particles; remove it from the file "
                              "(it is taken from the frames) or import matching files")
    sets = list(overrides) + [f"system.n_particles={n_particles}"]
    if args_system:
        sets.insert(0, f"system.name={json.dumps(args_system)}")
    return load_config(path=config_path, overrides=sets)


# -- the command ------------------------------------------------------------------------------
def run_import(run_dir: str, files: list[str], *, system: str | None = None,
               config: str | None = None, overrides: list[str] | None = None,
               fmt: str | None = None, frames: str = ":", types: str | None = None) -> dict:
    """Read, check and write ``run_dir/prepare.h5`` (rank 0 alone; cheap). Returns a summary."""
    from glasscam_mpi.config import get_system
    from glasscam_mpi.rundir import RunDir

    if bool(system) == bool(config):
        raise ConfigError("glasscam import: give exactly one of --system NAME and --config FILE")
    rd = RunDir(run_dir)
    if rd.config_path.exists() or rd.stage_file("prepare").exists():
        raise ConfigError(f"{rd.path} already holds a run (config.toml or prepare.h5); import "
                          "into a new --run-dir")
    if system:
        try:
            dim = get_system(system).dim
        except ValueError as exc:
            raise ConfigError(f"--system: {exc}") from None
    else:
        from glasscam_mpi.config import load_config

        dim = load_config(path=config).sys.dim
    read: list[tuple[Frame, str]] = []
    for path in files:
        f = format_of(path, fmt)
        digest = sha256_of(path) if os.path.isfile(path) else ""
        read += [(fr, digest) for fr in read_frames(path, f, dim, frames)]
    sizes = {len(fr.labels) for fr, _ in read}
    if len(sizes) > 1:
        listing = ", ".join(f"{fr.path} frame {fr.index}: {len(fr.labels)}" for fr, _ in read)
        raise ConfigError(f"the frames hold different particle numbers ({listing}); allowed: "
                          "one N for a run directory: import them into separate ones")
    N = sizes.pop()
    cfg = config_for(system, config, overrides or [], N)
    mapping = type_map(cfg, parse_type_map(types))
    species = []
    for fr, _ in read:
        t = species_of(fr, mapping, cfg)
        check_frame(fr, t, cfg)
        species.append(t)
    boxes = np.array([fr.box for fr, _ in read])
    if not (boxes == boxes[0]).all():
        raise ConfigError(f"the frames have different boxes ({np.unique(boxes, axis=0).tolist()}); "
                          "allowed: one box for a run directory: import them into separate ones")
    rd.lock("glasscam import")
    try:
        rd.resolve_config(cfg)
        write_prepare_file(rd.stage_file("prepare"), cfg, read, species, mapping)
        record = {"stage": "import", "frames": len(read), "files": list(files),
                  "n_particles": N, "system": cfg.system.name}
        rd.write_log("import", record)
    finally:
        rd.unlock()
    print(f"import: wrote {rd.stage_file('prepare')} ({len(read)} test glass(es) of "
          f"{cfg.system.name}, N = {N}, from {len(files)} file(s))", flush=True)
    q = cfg.propensity
    if q.temperature_unit == "T_star" and q.T_star in ("estimate", 0.0):
        print("import: note: imported glasses have no cooling curve to estimate T* from; set "
              "[propensity].T_star to a number (e.g. the paper's) or temperature_unit = "
              "\"absolute\" before 'glasscam propensity'", flush=True)
    return record


def write_prepare_file(path: Path, cfg: Config, read: list, species: list, mapping: dict) -> None:
    from mpi4py import MPI

    from glasscam_mpi.store import RowSpec, write_stage_file

    n, N, d = len(read), cfg.system.n_particles, cfg.sys.dim
    rows = {"types": RowSpec((N,), "i1", -1), "liquid": RowSpec((N, d), "f8"),
            "glass": RowSpec((N, d), "f8"), "T": RowSpec((0,), "f8"),
            "pe": RowSpec((0,), "f8"), "seeds": RowSpec((3,), "i8", 0)}
    attrs = {"stage": "prepare", "system": cfg.system.name, "dim": d, "n_particles": N,
             "T_high": cfg.prepare.T_high, "T_liquid": cfg.T_liquid, "T_glass": cfg.T_glass,
             "config": cfg.to_toml(), "origin": ORIGIN,
             "import_command": " ".join(sys.argv),
             "type_map": json.dumps({lab: cfg.sys.species[s] for lab, s in mapping.items()})}
    globals_ = {"box": read[0][0].box, "split": np.full(n, 2, dtype=np.int8),
                "T_target": np.zeros(0), "step": np.zeros(0, dtype=np.int64),
                "energy_jump": np.full(n, -1, dtype=np.int8),
                "energy_jump_T": np.full(n, np.nan),
                "source_path": np.array([os.path.abspath(fr.path).encode() for fr, _ in read]),
                "source_format": np.array([fr.format.encode() for fr, _ in read]),
                "source_frame": np.array([fr.index for fr, _ in read], dtype=np.int64),
                "source_sha256": np.array([h.encode() for _, h in read], dtype="S64")}
    write_stage_file(path, MPI.COMM_SELF, n_tasks=n, attrs=attrs, rows=rows, parallel=False,
                     row_data=lambda i: (True, "", {"types": species[i],
                                                    "glass": read[i][0].positions}),
                     globals_=globals_)


def is_imported(path) -> bool:
    """Whether the stage file at ``path`` (prepare.h5) was written by ``glasscam import``."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            return str(fh.attrs.get("origin", "")) == ORIGIN
    except OSError:
        return False
