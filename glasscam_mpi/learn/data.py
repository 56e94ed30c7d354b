"""Samples for the CNN from ``prepare.h5``: every ok run of a split gives two samples,
its liquid (label 0) and its glass (label 1) configuration (paper section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.learn.grid import GridSpec, to_grid_batch
from glasscam_mpi.learn.model import GLASS, LIQUID

SPLITS = {"train": 0, "validation": 1, "test": 2}


def grid_spec_of(cfg: Config) -> GridSpec:
    return GridSpec.for_system(cfg.sys, cfg.n_grid, width_factor=cfg.train.width_factor)


def dataset_meta(cfg: Config, box: np.ndarray) -> dict:
    """What a model must agree with to be applied to this dataset."""
    g = grid_spec_of(cfg)
    return {"system": cfg.system.name, "dim": cfg.sys.dim, "n_species": g.n_species,
            "n_grid": g.n_grid, "widths": list(g.widths), "box": [float(b) for b in box]}


def check_compatible(model_meta: dict, data_meta: dict, model_path: str | Path) -> None:
    """Refuse a model trained on another system, dimension, grid, or box (names both).

    The box matters even with the same ``n_grid``: another N (or density) is another box
    edge L and so another grid spacing h = L / n_grid, and the filters of a CNN are
    lengths in units of h.
    """
    diffs = [f"{key}: model {model_meta.get(key)!r} vs dataset {data_meta.get(key)!r}"
             for key in ("system", "dim", "n_species", "n_grid", "widths")
             if model_meta.get(key) != data_meta.get(key)]
    box_m, box_d = model_meta.get("box"), data_meta.get("box")
    if box_m is None or box_d is None or len(box_m) != len(box_d) or not np.allclose(
            box_m, box_d, rtol=1e-9, atol=0):
        n = data_meta.get("n_grid") or 1
        diffs.append(f"box: model {box_m!r} vs dataset {box_d!r} (grid spacing "
                     + (f"{box_m[0] / n:.4g} vs {box_d[0] / n:.4g}" if box_m and box_d else "?")
                     + "; another N or density)")
    if diffs:
        raise ConfigError(f"model {model_path} does not fit this dataset:\n  " + "\n  ".join(diffs)
                          + "\nUse a model trained with the same [system] (name and "
                            "n_particles) and [train] grid settings (n_grid, width_factor).")


@dataclass
class Split:
    """Positions, types and labels of one split (2 samples per ok run)."""

    name: str
    runs: np.ndarray        # (n,) run index in prepare.h5 of each sample
    labels: np.ndarray      # (n,) int64, 0 liquid / 1 glass
    positions: np.ndarray | None  # (n, N, d); None when loaded without positions
    types: np.ndarray | None      # (n, N)
    box: np.ndarray         # (d,)

    def __len__(self) -> int:
        return len(self.labels)


def liquid_positions(fh, rows, liquid_T: float = 0.0) -> np.ndarray:
    """Positions of the liquid class of runs ``rows`` (increasing) of an open prepare.h5:
    the ``liquid`` sample at T_liquid (``liquid_T`` = 0), or the stored snapshot at
    ``liquid_T`` (``[train].liquid_snapshot``; ConfigError if prepare.h5 has none there)."""
    if not liquid_T:
        return fh["liquid"][rows]
    temps = fh["snapshot_T"][:] if "snapshot_T" in fh else np.zeros(0)
    hit = np.flatnonzero(np.isclose(temps, liquid_T, rtol=0.0, atol=1e-9))
    if not hit.size:
        raise ConfigError(f"[train].liquid_snapshot = {liquid_T}: {fh.filename} keeps no "
                          f"snapshot at that temperature (snapshot_T = {temps.tolist()}); "
                          "allowed: 0 or one of those; prepare with [prepare].extra_snapshots "
                          "naming it")
    return fh["snapshots"][rows, int(hit[0])]


def load_split(prepare_h5: Path | str, name: str, positions: bool = True,
               max_runs: int = 0, liquid_T: float = 0.0) -> Split:
    """Both classes of every ok run of split ``name``; refuses an empty or one-class split.

    ``positions=False`` reads the labels and run indices only (positions and types None):
    a feed that grids on the fly reads the positions itself, in chunks, onto its device.
    ``max_runs`` > 0 keeps the first ``max_runs`` ok runs of the split only
    (``[train].train_runs``). ``liquid_T``: the liquid class's snapshot
    (:func:`liquid_positions`).
    """
    import h5py

    with h5py.File(prepare_h5, "r") as fh:
        runs = np.flatnonzero((fh["split"][:] == SPLITS[name]) & (fh["status"][:] == 1))
        if max_runs:
            runs = runs[:max_runs]
        if len(runs) == 0:
            raise ConfigError(f"the {name} split of {prepare_h5} has no ok runs; raise "
                              "[prepare].n_runs or the split fractions")
        box = fh["box"][:]
        if positions:
            liquid, glass, types = (liquid_positions(fh, runs, liquid_T), fh["glass"][runs],
                                    fh["types"][runs])
        elif liquid_T:
            liquid_positions(fh, runs[:1], liquid_T)  # refuse a missing snapshot now
    n = len(runs)
    labels = np.concatenate([np.full(n, LIQUID), np.full(n, GLASS)]).astype(np.int64)
    if len(set(labels.tolist())) < 2:  # pragma: no cover - both classes come from every run
        raise ConfigError(f"the {name} split has one class only")
    if not positions:
        return Split(name, np.concatenate([runs, runs]), labels, None, None, box)
    return Split(name, np.concatenate([runs, runs]), labels,
                 np.concatenate([liquid, glass]), np.concatenate([types, types]), box)


def grid_split(split: Split, spec: GridSpec, indices: np.ndarray | None = None,
               chunk: int = 256) -> np.ndarray:
    """(n, S, n_grid, ...) float32 grids of the samples ``indices`` (default: all)."""
    idx = np.arange(len(split)) if indices is None else np.asarray(indices)
    out = np.empty((len(idx), *spec.shape), dtype=np.float32)
    for lo in range(0, len(idx), chunk):
        sel = idx[lo:lo + chunk]
        out[lo:lo + len(sel)] = to_grid_batch(spec, split.box, split.positions[sel],
                                              split.types[sel])
    return out


def meta_json(meta: dict) -> str:
    return dumps(meta, sort_keys=True)
