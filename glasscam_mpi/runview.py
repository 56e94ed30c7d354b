"""A run directory's stage files as labelled arrays, for notebooks: :func:`open_run`."""

from __future__ import annotations

from pathlib import Path

from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import SCHEMA_VERSION, check_schema

STAGES = ("prepare", "train", "gradcam", "indicators", "propensity", "analyze")
NAMED_SINCE = 3  # the schema version since which every axis is named (issue 21)


class Run(dict):
    """``open_run``'s answer: file stem (``"prepare"``, ``"train"``, ``"gradcam"``,
    ``"indicators"``, ``"propensity"``, ``"analysis"``) -> ``xarray.DataTree`` of that
    stage file, for the stages whose file exists.

    Attributes:
        path: The run directory.
        notes: One line per file whose axes could not all be named (an older schema: its
            unnamed axes are ``phony_dim_0``, ``phony_dim_1``, ...; the line says what to
            rerun), empty for files of this version.
    """

    def __init__(self, path: Path, trees: dict, notes: list[str]):
        super().__init__(trees)
        self.path = path
        self.notes = notes

    def close(self) -> None:
        """Close every file (the arrays are read lazily until then)."""
        for tree in self.values():
            tree.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_run(run_dir) -> Run:
    """Open every stage file of ``run_dir`` as an ``xarray.DataTree`` with named dimensions.

    Each stage file's groups are the tree's nodes (``run["analysis"]["summary"]``,
    ``run["analysis"]["dynamics/corr"]``); every axis has its name (``runs``, ``class``,
    ``xi``, ``xi_delta``, ``indicator``, ``time``, ``r``, ``particle``, ``delta_target``,
    ``temperature``, ... : :data:`glasscam_mpi.dims.DIMENSIONS`) and its coordinates
    (xi and r in sigma, time in tau: attribute ``units``). Arrays are read lazily, when
    their values are used (``.values``, ``.load()``); close the files with ``run.close()``
    or ``with open_run(d) as run:``. Times and temperatures are not decoded (plain
    floats).

    Files written before named axes (schema version < 3) open too: their axes are
    ``phony_dim_N``, and ``run.notes`` names each such file and the ``glasscam`` command
    that rewrites it (nothing is refused for that).

    Args:
        run_dir: A run directory (holding ``config.toml`` and the stage files).

    Returns:
        A :class:`Run`: file stem -> ``xarray.DataTree``, with ``notes``.

    Raises:
        FileNotFoundError: If ``run_dir`` holds no stage file.
        ConfigError: For a file of a newer schema than this package reads
            (:func:`glasscam_mpi.store.check_schema`).
    """
    import h5py
    import xarray as xr

    rd = RunDir(Path(run_dir))
    trees, notes = {}, []
    for stage in STAGES:
        path = rd.stage_file(stage)
        if not path.exists():
            continue
        with h5py.File(path, "r") as fh:
            version = check_schema(fh, stage)
        kw = {}
        if version < NAMED_SINCE:
            kw["phony_dims"] = "sort"
            notes.append(f"{path.name} has schema version {version}, written before named "
                         f"axes (version {NAMED_SINCE}): its axes are phony_dim_0, "
                         f"phony_dim_1, ...; rerun 'glasscam {stage} --run-dir {rd.path}' "
                         f"with this glasscam_mpi (schema {SCHEMA_VERSION}) to name them")
        trees[path.stem] = xr.open_datatree(path, engine="h5netcdf", decode_times=False,
                                            decode_timedelta=False, **kw)
    if not trees:
        raise FileNotFoundError(f"{rd.path} holds no stage file ({', '.join(STAGES)}); "
                                "run 'glasscam run --run-dir DIR' or a stage first")
    return Run(rd.path, trees, notes)
