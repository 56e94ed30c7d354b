"""Named axes of every stage file: HDF5 dimension scales (schema version 3, issue 21).

Every axis of every dataset of a stage file carries a name (``dims[i].label``) and is
attached to a *dimension scale*: a 1-D dataset named as the dimension, holding its
coordinate values (the xi of the scan, the recorded times, the class names, ...) or, for
an axis without natural coordinates (particles, tasks), its index 0..n-1. This is the
netCDF-4 convention, so ``xarray.open_datatree(path, engine="h5netcdf")`` opens a stage
file with named dimensions and coordinates (``glasscam_mpi.open_run`` does it for a run
directory). Lengths and times carry ``units`` (sigma, tau: the Lennard-Jones units of the
system, README "Outputs").

The declarations are here, in one place: :data:`DIMENSIONS` (what each name means, its
units and where its values come from) and :data:`STAGE_DIMS` (the dimension names of each
dataset, per stage file). :func:`label_file` applies them to a written file, on one rank,
after the collective write (and after a stage's reduce: scales are metadata only, and the
stage's datasets are not changed); it adds the scale datasets that the file does not hold
yet (e.g. ``xi``, a copy of ``xis``) and makes existing 1-D coordinate datasets (``runs``,
``r``, ``time``, ``epoch``) scales in place.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGMA, TAU, ENERGY, TEMPERATURE = "sigma", "tau", "epsilon", "epsilon/k_B"


@dataclass(frozen=True)
class Dim:
    """One named dimension.

    Attributes:
        doc: What one index along it is.
        units: Units of its coordinate values ("" for none).
        source: Where its values come from: ``None`` (the index 0..n-1), ``"self"`` (the
            file's dataset of that name), ``"copy:NAME"`` (a dataset of the same file),
            ``"file:STAGE.h5:NAME"`` (a dataset of another stage file of the run
            directory), ``"attr:NAME"`` (a comma-separated root attribute),
            ``"dsattr:DATASET:NAME"`` (a comma-separated attribute of a dataset) or
            ``"labels:a,b,c"`` (fixed names).
    """

    doc: str
    units: str = ""
    source: str | None = None


DIMENSIONS: dict[str, Dim] = {
    # runs and tasks
    "run": Dim("run of prepare.h5 (all runs; rows of the train/validation/test split)"),
    "runs": Dim("test run (its run index in prepare.h5)", source="self"),
    "task": Dim("task of the stage's farm (row of status/error)"),
    "config": Dim("propensity configuration (its run index in prepare.h5)",
                  source="copy:configs|file:propensity.h5:configs"),
    "temperature": Dim("replica temperature (absolute)", TEMPERATURE,
                       "copy:temperatures|file:propensity.h5:temperatures"),
    "temperature_all": Dim("replica temperature, then the last index: all temperatures "
                           "pooled"),
    "replica": Dim("replica of an ensemble"),
    # fields and lengths
    "particle": Dim("particle (atom id - 1)"),
    "axis": Dim("Cartesian axis", source="labels:x,y,z"),
    "class": Dim("sample class (0 liquid, 1 glass)", source="labels:liquid,glass"),
    "class_reported": Dim("sample class, in the order of test_accuracy",
                          source="labels:glass,liquid"),
    "true_class": Dim("true class (0 liquid, 1 glass)", source="labels:liquid,glass"),
    "predicted_class": Dim("predicted class (0 liquid, 1 glass)",
                           source="labels:liquid,glass"),
    "indicator": Dim("structural indicator", source="attr:indicators"),
    "pair": Dim("pair of indicators", source="attr:pairs"),
    "species_pair": Dim("species pair a <= b (binary: AA, AB, BB)"),
    "xi": Dim("coarse-graining length of the indicator", SIGMA, "copy:xis"),
    "xi_delta": Dim("coarse-graining length of the propensity", SIGMA, "copy:xis"),
    "r": Dim("pair distance of C(r) (0, then bin centres)", SIGMA, "self"),
    "r_rdf": Dim("pair distance of g(r) (bin centres)", SIGMA, "self"),
    "layer": Dim("convolution layer of the CNN (Grad-CAM of each)"),
    "member": Dim("member of the seed ensemble"),
    "gamma_member": Dim("member of the seed ensemble, then the last index: the ensemble"),
    # time and dynamics
    "step": Dim("sample along the cooling ramp (its ramp timestep)", source="self"),
    "snapshot": Dim("extra snapshot along the ramp (its ramp timestep)",
                    source="copy:snapshot_step"),
    "time": Dim("recorded time of the replicas", TAU, "self|file:propensity.h5:time"),
    "delta_target": Dim("target of the mean propensity delta (mean squared displacement)",
                        f"{SIGMA}^2", "copy:delta_targets|file:propensity.h5:delta_targets"),
    "delta_grid": Dim("point of the common log-delta grid of a temperature (values: "
                      "summary/curve_delta)"),
    "epoch": Dim("training epoch", source="self"),
    # table columns
    "seed_kind": Dim("LAMMPS seed", source="labels:place A,place B,velocities"),
    "ensemble_column": Dim("Table 4 column", source="attr:ensemble_columns"),
    "statistic": Dim("statistic over samples",
                     source="dsattr:summary/pairs_pearson:columns"),
    "table5_column": Dim("Table 5 column", source="labels:C_max,delta_star,xi"),
    "uncertainty": Dim("bootstrap statistic",
                       source="dsattr:summary/table5_uncertainty:columns"),
    "null_statistic": Dim("statistic of the null level",
                          source="dsattr:summary/table5_null:columns"),
    "bootstrap": Dim("bootstrap resample"),
    "shift": Dim("random periodic shift of the null level"),
    "spread_row": Dim("quantity spread over members", source="labels:C_max,delta_star,xi"),
    "spread_column": Dim("statistic over members",
                         source="dsattr:summary/members:spread_columns"),
}

# the datasets' dimension names, per stage file; '*' is a glob over the member groups
_RUN = {"status": ("run",), "error": ("run",)}
_RUNS = {"status": ("runs",), "error": ("runs",), "runs": ("runs",)}
_TASK = {"status": ("task",), "error": ("task",)}
_CT = ("config", "temperature")
_SUMMARY_T5 = ("indicator", "temperature_all")

STAGE_DIMS: dict[str, dict[str, tuple[str, ...]]] = {
    "prepare": {
        **_RUN, "runs": ("run",), "box": ("axis",), "split": ("run",),
        "types": ("run", "particle"), "liquid": ("run", "particle", "axis"),
        "glass": ("run", "particle", "axis"), "T": ("run", "step"), "pe": ("run", "step"),
        "T_target": ("step",), "step": ("step",), "seeds": ("run", "seed_kind"),
        "energy_jump": ("run",), "energy_jump_T": ("run",),
        "snapshots": ("run", "snapshot", "particle", "axis"),
        "snapshot_T": ("snapshot",), "snapshot_step": ("snapshot",),
        # an imported prepare.h5 (glasscam import): where each configuration came from
        "source_path": ("run",), "source_format": ("run",), "source_frame": ("run",),
        "source_sha256": ("run",),
    },
    "train": {
        "epoch": ("epoch",), "seconds": ("epoch",), "train_seconds": ("epoch",),
        "train_loss": ("epoch",), "train_accuracy": ("epoch",), "val_loss": ("epoch",),
        "val_accuracy": ("epoch",), "test_accuracy": ("class_reported",),
        "test_confusion": ("true_class", "predicted_class"),
        "test_counts": ("class_reported",),
        "test_accuracy_members": ("member", "class_reported"),
        "members/*/epoch": ("epoch",), "members/*/seconds": ("epoch",),
        "members/*/train_seconds": ("epoch",), "members/*/train_loss": ("epoch",),
        "members/*/train_accuracy": ("epoch",), "members/*/val_loss": ("epoch",),
        "members/*/val_accuracy": ("epoch",),
        "members/*/test_accuracy": ("class_reported",),
        "members/*/test_confusion": ("true_class", "predicted_class"),
        "members/*/test_counts": ("class_reported",),
    },
    "gradcam": {
        **_RUNS, "gamma": ("runs", "class", "particle"),
        "gamma_layers": ("runs", "class", "layer", "particle"),
        "gamma_members": ("runs", "class", "member", "particle"),
        "zero": ("runs", "class"), "p_glass": ("runs", "class"),
        "predicted": ("runs", "class"),
    },
    "indicators": {
        **_RUNS, "volume": ("runs", "class", "particle"),
        "theta": ("runs", "class", "particle"),
    },
    "propensity": {
        **_TASK, "configs": ("config",), "temperatures": ("temperature",),
        "steps": ("time",), "time": ("time",), "delta_targets": ("delta_target",),
        "task_config": ("task",), "task_temperature": ("task",), "task_replica": ("task",),
        "cage_displacement": ("task", "time", "particle"), "T0": ("task",),
        "momentum0": ("task", "axis"), "n_ok_replicas": _CT, "reportable": _CT,
        "stopped_after": _CT, "propensity": (*_CT, "time", "particle"),
        "delta": (*_CT, "time"), "propensity_at_delta": (*_CT, "delta_target", "particle"),
        "t_at_delta": (*_CT, "delta_target"),
    },
    "analyze": {
        **_TASK, "runs": ("runs",), "r": ("r",), "r_rdf": ("r_rdf",), "xis": ("xi",),
        "config_rows": ("config",),
        "samples/pearson": ("runs", "class", "xi", "pair"),
        "samples/spearman": ("runs", "class", "xi", "pair"),
        "samples/constant": ("runs", "class", "indicator"),
        "samples/correct": ("runs", "class"),
        "samples/corr_r": ("runs", "class", "r", "indicator"),
        "samples/corr_r_layers": ("runs", "class", "r", "layer"),
        "samples/rdf": ("runs", "class", "r_rdf", "species_pair"),
        "samples/psi6": ("runs", "class"), "samples/psi6_local": ("runs", "class"),
        "dynamics/corr": (*_CT, "time", "indicator", "xi", "xi_delta"),
        "dynamics/delta": (*_CT, "time"),
        "dynamics/corr_delta_r": (*_CT, "delta_target", "r"),
        "dynamics/maps_indicators": (*_CT, "indicator", "xi", "particle"),
        "dynamics/maps_delta": (*_CT, "delta_target", "xi_delta", "particle"),
        "dynamics/ensemble": (*_CT, "delta_target", "xi", "ensemble_column"),
        "dynamics/corr_members": (*_CT, "time", "member", "xi", "xi_delta"),
        "summary/xi_delta_targets": ("delta_target",),
        "summary/xi_delta_used": ("delta_target",),
        "summary/xi_delta_below_first_shell": ("delta_target",),
        "summary/corr_delta_r_mean": ("delta_target", "r"),
        "summary/curves": ("indicator", "xi", "temperature", "delta_grid"),
        "summary/curves_std": ("indicator", "xi", "temperature", "delta_grid"),
        "summary/curve_delta": ("temperature", "delta_grid"),
        "summary/curve_n_configs": ("temperature",),
        "summary/cmax": ("indicator", "xi", "temperature_all"),
        "summary/delta_star": ("indicator", "xi", "temperature_all"),
        "summary/delta_star_edge": ("indicator", "xi", "temperature_all"),
        "summary/xi_best": ("indicator",), "summary/xi_best_edge": ("indicator",),
        "summary/table5": (*_SUMMARY_T5, "table5_column"),
        "summary/table5_edge": _SUMMARY_T5,
        "summary/table4": ("delta_target", "ensemble_column"),
        "summary/n_misclassified": ("class",),
        "summary/pairs_pearson": ("class", "pair", "statistic"),
        "summary/pairs_spearman": ("class", "pair", "statistic"),
        "summary/n_constant": ("class", "pair"),
        "summary/corr_r_mean": ("class", "r", "indicator"),
        "summary/corr_r_layers_mean": ("class", "r", "layer"),
        "summary/r_zero": ("class", "indicator"),
        "summary/r_zero_first_shell": ("class", "indicator"),
        "summary/r_zero_layers": ("class", "layer"),
        "summary/r_zero_layers_first_shell": ("class", "layer"),
        "summary/rdf_mean": ("class", "r_rdf", "species_pair"),
        "summary/energy_jump": ("run",), "summary/energy_jump_T": ("run",),
        "summary/psi6_flag": ("runs", "class"),
        "summary/bootstrap_cmax": (*_SUMMARY_T5, "bootstrap"),
        "summary/bootstrap_delta_star": (*_SUMMARY_T5, "bootstrap"),
        "summary/table5_uncertainty": (*_SUMMARY_T5, "uncertainty"),
        "summary/null_cmax": (*_SUMMARY_T5, "shift"),
        "summary/table5_null": (*_SUMMARY_T5, "null_statistic"),
        "summary/members/cmax": ("gamma_member", "xi", "temperature_all"),
        "summary/members/delta_star": ("gamma_member", "xi", "temperature_all"),
        "summary/members/xi_best": ("gamma_member",),
        "summary/members/table5": ("gamma_member", "temperature_all", "table5_column"),
        "summary/members/table5_edge": ("gamma_member", "temperature_all"),
        "summary/members/spread": ("spread_row", "spread_column"),
    },
}

# units of datasets (not of their axes), where the quantity has one
UNITS: dict[str, dict[str, str]] = {
    "prepare": {"box": SIGMA, "liquid": SIGMA, "glass": SIGMA, "snapshots": SIGMA,
                "T": TEMPERATURE, "T_target": TEMPERATURE, "snapshot_T": TEMPERATURE,
                "pe": ENERGY, "energy_jump_T": TEMPERATURE},
    "propensity": {"cage_displacement": f"{SIGMA}^2", "propensity": f"{SIGMA}^2",
                   "propensity_at_delta": f"{SIGMA}^2", "delta": f"{SIGMA}^2",
                   "t_at_delta": TAU, "stopped_after": TAU, "T0": TEMPERATURE},
    "analyze": {"dynamics/delta": f"{SIGMA}^2", "summary/xi_delta_targets": SIGMA,
                "summary/xi_delta_used": SIGMA, "summary/curve_delta": f"{SIGMA}^2",
                "summary/delta_star": f"{SIGMA}^2", "summary/xi_best": SIGMA,
                "summary/r_zero": SIGMA, "summary/r_zero_layers": SIGMA,
                "summary/bootstrap_delta_star": f"{SIGMA}^2",
                "summary/members/delta_star": f"{SIGMA}^2",
                "summary/members/xi_best": SIGMA, "summary/energy_jump_T": TEMPERATURE},
    "train": {"seconds": "s", "train_seconds": "s"},
}


def dims_of(stage: str, name: str) -> tuple[str, ...] | None:
    """The declared dimension names of dataset ``name`` (its path in the file) of
    ``stage``'s file, or None if it has none declared."""
    table = STAGE_DIMS.get(stage, {})
    if name in table:
        return table[name]
    for pattern, dims in table.items():
        if "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            return dims
    return None


def _split(text) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode()
    return [s.strip() for s in str(text).split(",")]


def _values(fh, dim: str, n: int, run_dir: Path | None):
    """The coordinate values of ``dim`` (length ``n``) in the open file ``fh``: from the
    first of its sources (``a|b``) that is there, or None for the index; ValueError if
    that source has another length."""
    source = DIMENSIONS[dim].source
    for alternative in (source or "").split("|"):
        values = _source(fh, alternative, run_dir)
        if values is None:
            continue
        values = np.asarray(values)
        if dim == "axis":
            values = values[:n]
        if values.shape != (n,):
            raise ValueError(f"{fh.filename}: the {dim!r} axis has {n} entries but its "
                             f"coordinates ({alternative}) have shape {values.shape}")
        return values
    return None


def _source(fh, source: str, run_dir: Path | None):
    import h5py

    kind, _, rest = source.partition(":")
    if kind == "copy":
        return fh[rest][()] if rest in fh else None
    if kind == "file":
        stage_file, _, name = rest.partition(":")
        other = None if run_dir is None else run_dir / stage_file
        if other is None or not other.exists():
            return None
        with h5py.File(other, "r") as src:
            return src[name][()] if name in src else None
    if kind == "attr":
        return _split(fh.attrs[rest]) if rest in fh.attrs else None
    if kind == "dsattr":
        obj, _, attr = rest.rpartition(":")
        return _split(fh[obj].attrs[attr]) if obj in fh and attr in fh[obj].attrs else None
    if kind == "labels":
        return _split(rest)
    return None  # "self" (found by the caller when the file holds it) or none


def label_file(path, stage: str) -> list[str]:
    """Name every axis of every dataset of the stage file at ``path`` and attach its
    dimension scale (run on one rank, on a closed, complete file; idempotent).

    Returns:
        ``"dataset[axis]"`` of each axis left without a declared name (none for the
        datasets this package writes; ``tests/test_dims.py`` checks it).

    Raises:
        ValueError: If a declared dimension's length disagrees with its coordinates or
            with another dataset's axis of the same name in the same group.
    """
    import h5py

    path = Path(path)
    unlabelled: list[str] = []
    with h5py.File(path, "r+") as fh:
        datasets: list[tuple[str, h5py.Dataset]] = []
        fh.visititems(lambda name, obj: datasets.append((name, obj))
                      if isinstance(obj, h5py.Dataset) else None)
        targets = []
        for name, ds in datasets:
            if ds.attrs.get("CLASS") == b"DIMENSION_SCALE" and name.split("/")[-1] in DIMENSIONS \
                    and dims_of(stage, name) is None:
                continue  # a scale this function added
            dims = dims_of(stage, name)
            if dims is None or len(dims) != ds.ndim:
                unlabelled += [f"{name}[{i}]" for i in range(ds.ndim)]
                continue
            targets.append((name, ds, dims))
        for name, ds, dims in targets:
            group = ds.parent
            for i, dim in enumerate(dims):
                scale = _scale(fh, group, dim, ds.shape[i], path.parent)
                ds.dims[i].label = dim
                if scale.name != ds.name:
                    ds.dims[i].attach_scale(scale)
            units = UNITS.get(stage, {}).get(name)
            if units:
                ds.attrs["units"] = units
        fh.attrs["dimensions"] = "named axes (HDF5 dimension scales): glasscam_mpi.dims"
    return unlabelled


def _scale(fh, group, dim: str, n: int, run_dir: Path):
    """The scale of ``dim`` (length ``n``) visible from ``group``: the nearest one of that
    name in the group or its parents, made if there is none of that length."""
    import h5py

    g = group
    while True:
        if dim in g and isinstance(g[dim], h5py.Dataset) and g[dim].shape == (n,):
            scale = g[dim]
            break
        if g.name == "/":
            scale = None
            break
        g = g.parent
    if scale is None:
        values = _values(fh, dim, n, run_dir)
        if values is None:
            values = np.arange(n, dtype=np.int64)
        elif values.dtype.kind in "US":
            values = np.array([str(v if not isinstance(v, bytes) else v.decode())
                               for v in values], dtype=h5py.string_dtype())
        home = fh if dim not in fh else group  # the root, unless the root's is another length
        if dim in home:
            raise ValueError(f"{fh.filename}: {home[dim].name} has shape {home[dim].shape}, "
                             f"not the ({n},) of the {dim!r} axis of a dataset of "
                             f"{group.name}")
        scale = home.create_dataset(dim, data=values)
    if not scale.is_scale:
        scale.make_scale(dim)
        scale.dims[0].label = dim
        d = DIMENSIONS[dim]
        scale.attrs["long_name"] = d.doc
        if d.units:
            scale.attrs["units"] = d.units
    return scale
