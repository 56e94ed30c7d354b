"""Storage: per-task shards while a stage runs, one HDF5 file per stage when it is done.

**Shards** (``RUN_DIR/shards/<stage>/<index>.<ok|failed>.npz``) are the resume ledger.
Each is written to a temporary name and renamed into place, so a task is done exactly
when its shard exists, whatever kill arrives. A failed task's shard holds only its error
message; the status is in the name, so counting needs no reading.

**Stage files** (``RUN_DIR/<stage>.h5``) are written once all tasks are in, by
:func:`write_stage_file`: with ``driver="mpio"`` and every rank writing its block of rows
when h5py has MPI, through rank 0 otherwise. The file is written as ``<stage>.h5.partial``
and renamed when complete, so a ``<stage>.h5`` is always whole. Rows of failed tasks hold
the fill value (NaN for floats) and are flagged in ``status``: never data.

Common to every stage file (the per-stage datasets are documented with each stage):

    attrs   stage, schema_version, glasscam_version, system, dim, n_particles,
            config (the resolved TOML of the run directory)
    status  (n_tasks,) int8     1 = ok, 2 = failed
    error   (n_tasks,) S256     LAMMPS's message for failed tasks, empty otherwise

**Schema versions: one rule for every stage file and every reader.** A file records the
``schema_version`` it was written with (1: up to and including issue 17; 2: since the
pooling, edge flags and uncertainties of issue 18; 3: since issue 21, every axis named, as
HDF5 dimension scales: :mod:`glasscam_mpi.dims`, metadata only, so a version 2 file is
read by every stage as before and only ``glasscam_mpi.open_run`` notes its unnamed axes). Readers open earlier stage files
through :func:`check_schema` and read datasets that may be missing through
:func:`stage_dataset`:

* a file of a *newer* schema than this package knows is refused (upgrade, or rerun the
  stage with this version);
* a file of an *older* schema is read: a dataset it lacks is derived from what it holds
  where that is exact (:data:`DERIVED`: propensity.h5's ``n_ok_replicas`` from ``status``,
  ``reportable`` from those counts and ``min_replicas``), or taken as absent where the
  reader declares it optional (``default``); otherwise it is refused with a
  :class:`~glasscam_mpi.config.ConfigError` naming the file, its schema version, the
  dataset, and the ``glasscam`` command that rewrites the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glasscam_mpi import __version__

SCHEMA_VERSION = 3
_NO_DEFAULT = object()
STATUS_OK, STATUS_FAILED = 1, 2
_SHARD = re.compile(r"^(\d{7,})\.(ok|failed)\.npz$")


class ShardStore:
    """Per-task result files of one stage in one run directory."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _path(self, index: int, ok: bool) -> Path:
        return self.root / f"{index:07d}.{'ok' if ok else 'failed'}.npz"

    def scan(self) -> dict[int, bool]:
        """{task index: ok} for every shard present."""
        if not self.root.is_dir():
            return {}
        found = {}
        for name in os.listdir(self.root):
            m = _SHARD.match(name)
            if m:
                found[int(m.group(1))] = m.group(2) == "ok"
        return found

    def clean_partial(self) -> int:
        """Remove temporary files left by a killed job; returns how many."""
        if not self.root.is_dir():
            return 0
        stale = [n for n in os.listdir(self.root) if ".tmp." in n]
        for name in stale:
            (self.root / name).unlink(missing_ok=True)
        return len(stale)

    def write(self, index: int, arrays: Mapping[str, np.ndarray] | None = None,
              error: str | None = None) -> None:
        """Store a task's arrays (success) or its error message (failure), atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        ok = error is None
        final = self._path(index, ok)
        tmp = final.with_name(f"{index:07d}.tmp.{os.getpid()}.npz")
        payload = dict(arrays or {}) if ok else {"error": np.array(error)}
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._path(index, not ok).unlink(missing_ok=True)

    def read(self, index: int, ok: bool) -> dict[str, np.ndarray]:
        with np.load(self._path(index, ok), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


@dataclass(frozen=True)
class RowSpec:
    """A dataset with one row per task: shape (n_tasks, *shape), dtype, fill for failures.

    A stage whose tasks are of several kinds (``analyze``: test samples, then propensity
    ensembles) gives each kind's datasets the tasks they hold: ``offset`` is the first such
    task and ``lead`` the dataset's leading shape (default ``(n_tasks,)``); task i then
    fills the row ``unravel_index(i - offset, lead)``. A task leaves out the datasets that
    are not its own.
    """

    shape: tuple[int, ...]
    dtype: str
    fill: float | int = 0
    lead: tuple[int, ...] | None = None
    offset: int = 0

    def row(self, i: int) -> tuple[int, ...]:
        """The dataset row of task ``i``."""
        if self.lead is None:
            return (i,)
        return tuple(int(k) for k in np.unravel_index(i - self.offset, self.lead))


ERROR_ROW_BYTES = 256 + 1  # 'error' S256 and 'status' i1 of every row


def file_bytes(rows: Mapping[str, RowSpec], n_tasks: int) -> int:
    """Bytes of a stage file of ``n_tasks`` rows (RowSpecs with their own leading shape
    counted by it), without its global datasets."""
    total = n_tasks * ERROR_ROW_BYTES
    for r in rows.values():
        lead = r.lead if r.lead is not None else (n_tasks,)
        total += (int(np.prod(lead, dtype=np.int64)) * int(np.prod(r.shape, dtype=np.int64))
                  * np.dtype(r.dtype).itemsize)
    return total


def _fill(spec: RowSpec):
    return np.nan if np.dtype(spec.dtype).kind == "f" else spec.fill


def write_stage_file(path: Path | str, comm, *, n_tasks: int, attrs: Mapping[str, object],
                     rows: Mapping[str, RowSpec], row_data: Callable[[int], tuple[bool, str, dict]],
                     globals_: Mapping[str, np.ndarray] | None = None,
                     parallel: bool | None = None) -> Path:
    """Write a stage file collectively; every rank of ``comm`` must call this.

    Args:
        path: Final file name; written as ``path + '.partial'`` and renamed when complete.
        comm: MPI communicator of the job.
        n_tasks: Rows of every row dataset.
        attrs: Root attributes (same on every rank).
        rows: Row datasets (name -> :class:`RowSpec`).
        row_data: ``i -> (ok, error message, {name: array})`` for task i (reads its shard).
        globals_: Small datasets written once (e.g. box, split); same on every rank.
        parallel: Use parallel HDF5; default: when h5py has MPI and ``comm`` has >1 rank,
            unless ``GLASSCAM_SERIAL_HDF5=1`` is set in the environment, which forces the
            rank-0 path (see :func:`glasscam_mpi.env.h5py_has_mpi`).
    """
    import h5py

    from glasscam_mpi.env import h5py_has_mpi, warn_serial_hdf5_once

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    rank, size = comm.Get_rank(), comm.Get_size()
    if parallel is None:
        parallel = size > 1 and h5py_has_mpi()
        if size > 1 and not parallel:
            warn_serial_hdf5_once()
    if parallel:
        fh = h5py.File(tmp, "w", driver="mpio", comm=comm)
        lo, hi = rank * n_tasks // size, (rank + 1) * n_tasks // size
    elif rank == 0:
        fh = h5py.File(tmp, "w")
        lo, hi = 0, n_tasks
    else:
        fh, lo, hi = None, 0, 0
    if fh is not None:
        with fh:
            _create(fh, n_tasks, attrs, rows, globals_ or {})
            for i in range(lo, hi):
                ok, message, data = row_data(i)
                fh["status"][i] = STATUS_OK if ok else STATUS_FAILED
                if not ok:
                    fh["error"][i] = message.encode("utf-8", "replace")[:255]
                    continue
                for name, value in data.items():
                    fh[name][rows[name].row(i)] = value
    comm.Barrier()
    if rank == 0:
        label(tmp, str(attrs.get("stage", "")))
        os.replace(tmp, path)
    comm.Barrier()
    return path


def label(path: Path | str, stage: str) -> None:
    """Name the axes of the closed stage file at ``path`` (:func:`glasscam_mpi.dims.label_file`,
    on one rank, after the collective write; again after a stage's reduce), warning about
    any axis left without a declared name."""
    import warnings

    from glasscam_mpi.dims import STAGE_DIMS, label_file

    if stage not in STAGE_DIMS:  # a stage without declarations (the tests' toy files)
        return
    unnamed = label_file(path, stage)
    if unnamed:
        warnings.warn(f"{Path(path).name.removesuffix('.partial')}: axes without a declared name in glasscam_mpi.dims: "
                      f"{', '.join(unnamed)}", stacklevel=2)


@dataclass(frozen=True)
class Data:
    """A dataset of :func:`write_file` with attributes."""

    data: np.ndarray
    attrs: Mapping = None


@dataclass(frozen=True)
class Group:
    """A group of :func:`write_file`: its attributes and its members (name -> array,
    :class:`Data` or :class:`Group`)."""

    attrs: Mapping
    members: Mapping


def write_file(path: Path | str, attrs: Mapping[str, object], members: Mapping) -> Path:
    """Write a whole stage file that is not a task farm's (``train.h5``) from this rank
    alone: ``members`` name -> array, :class:`Data` or :class:`Group`; the schema version
    and package version are added to ``attrs``. Written as ``path + '.partial'`` and
    renamed when complete, like every stage file."""
    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")

    def fill(g, attrs, members):
        g.attrs.update(dict(attrs))
        for name, m in members.items():
            if isinstance(m, Group):
                fill(g.create_group(name), m.attrs, m.members)
            elif isinstance(m, Data):
                g.create_dataset(name, data=np.asarray(m.data))
                g[name].attrs.update(dict(m.attrs or {}))
            else:
                g.create_dataset(name, data=np.asarray(m))

    with h5py.File(tmp, "w") as fh:
        fh.attrs["schema_version"] = SCHEMA_VERSION
        fh.attrs["glasscam_version"] = __version__
        fill(fh, attrs, members)
    label(tmp, str(dict(attrs).get("stage", "")))
    os.replace(tmp, path)
    return path


def _create(fh, n_tasks: int, attrs: Mapping, rows: Mapping[str, RowSpec], globals_: Mapping) -> None:
    """Create every dataset (collective under mpio: the same calls on every rank)."""
    fh.attrs["schema_version"] = SCHEMA_VERSION
    fh.attrs["glasscam_version"] = __version__
    for key, value in attrs.items():
        fh.attrs[key] = value
    fh.create_dataset("status", (n_tasks,), dtype="i1", fillvalue=0)
    fh.create_dataset("error", (n_tasks,), dtype="S256")
    for name, spec in rows.items():
        lead = (n_tasks,) if spec.lead is None else tuple(spec.lead)
        fh.create_dataset(name, (*lead, *spec.shape), dtype=spec.dtype, fillvalue=_fill(spec))
    for name, value in globals_.items():
        fh.create_dataset(name, data=np.asarray(value))


# -- reading stage files of any schema (the one rule, see the module docstring) ----------------
def _rerun(fh, stage: str) -> str:
    run_dir = Path(fh.filename).parent
    return f"rerun 'glasscam {stage} --run-dir {run_dir}'"


def check_schema(fh, stage: str) -> int:
    """The schema version of the open stage file ``fh`` of ``stage`` (files older than
    versions had 1); a newer one than this package writes is refused.

    Raises:
        ConfigError: For a file of another stage, or of a newer schema.
    """
    from glasscam_mpi.config import ConfigError

    found = str(fh.attrs.get("stage", stage))
    if found != stage:
        raise ConfigError(f"{fh.filename} is the file of stage {found!r}, not {stage!r}; "
                          f"{_rerun(fh, stage)}")
    version = int(fh.attrs.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ConfigError(f"{fh.filename} has schema version {version}, newer than this "
                          f"glasscam_mpi {__version__} reads ({SCHEMA_VERSION}): upgrade the "
                          f"package, or {_rerun(fh, stage)} with this version")
    return version


def _n_ok_replicas(fh) -> np.ndarray:
    n_c, n_T = len(fh["configs"]), len(fh["temperatures"])
    status = fh["status"][:]
    return (status.reshape(n_c, n_T, -1) == STATUS_OK).sum(axis=-1).astype(np.int32)


def _reportable(fh) -> np.ndarray:
    n_ok = stage_dataset(fh, "propensity", "n_ok_replicas")
    return (n_ok >= int(fh.attrs.get("min_replicas", 1))).astype(np.int8)


# (stage, dataset) -> how to derive it exactly from an older file of that stage
DERIVED: dict[tuple[str, str], Callable] = {
    ("propensity", "n_ok_replicas"): _n_ok_replicas,
    ("propensity", "reportable"): _reportable,
}


def stage_dataset(fh, stage: str, name: str, default=_NO_DEFAULT):
    """Dataset ``name`` of the open stage file ``fh``, read whole; derived (:data:`DERIVED`)
    where an older file lacks it, else ``default`` where the caller gives one.

    Raises:
        ConfigError: If the file lacks the dataset, it cannot be derived and no default is
            given: the message names the file, its schema version and what to rerun.
    """
    from glasscam_mpi.config import ConfigError

    if name in fh:
        return fh[name][()]
    derive = DERIVED.get((stage, name))
    if derive is not None:
        try:
            return derive(fh)
        except (KeyError, ValueError) as exc:
            why = f"and it cannot be derived from what the file holds ({exc})"
    else:
        why = "which cannot be derived from the rest"
    if default is not _NO_DEFAULT:
        return default
    version = int(fh.attrs.get("schema_version", 1))
    raise ConfigError(f"{fh.filename} (schema version {version}, glasscam "
                      f"{fh.attrs.get('glasscam_version', '?')}) lacks the dataset {name!r}, "
                      f"{why}; {_rerun(fh, stage)} to rewrite it")


def cooling_curves(path) -> tuple[np.ndarray, np.ndarray]:
    """(T, U) along the cooling ramp of prepare.h5 at ``path``: the measured temperature
    and the potential energy per particle, each averaged over the ok runs (what T* is
    estimated from: :func:`~glasscam_mpi.analysis.tstar.estimate_t_star`).

    Raises:
        ValueError: If the file has no ok run.
    """
    import h5py

    with h5py.File(path, "r") as fh:
        ok = fh["status"][:] == 1
        if not ok.any():
            raise ValueError("no ok runs in prepare.h5")
        U = fh["pe"][:][ok].mean(axis=0)
        T = fh["T"][:][ok].mean(axis=0)
    return T, U


def estimate_t_star_of(fh_path, cfg=None):
    """T* (METHOD.md section 6) from the run-averaged cooling curves U(T) in prepare.h5
    (:func:`cooling_curves`; ``cfg`` is not needed and kept for the callers' signature).

    The measured temperature is used, not the thermostat target: at fast cooling the
    system lags the target. Every point of the ramp enters: the estimator itself narrows
    the liquid branch to a window of about 2 T* (analysis/tstar.py documents its bias).
    """
    from glasscam_mpi.analysis.tstar import estimate_t_star

    return estimate_t_star(*cooling_curves(fh_path))
