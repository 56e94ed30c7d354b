"""A minimal run directory for testing analyze's reduce (``summarize_into``) without MD.

``write_fake_run`` writes prepare.h5, propensity.h5 and analysis.h5 holding only what the
summary reads, with the dynamics curves given by the caller, so a test can put known
C(delta) curves in and check what the tables report. No MPI, no LAMMPS.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

from glasscam_mpi.config import AnalyzeSection, build_config


def fake_config(**analyze):
    base = {"xis": [0.0, 1.0, 2.0], "xi_delta": 1.0, "xi_pairs": 1.0, "bootstrap": 0,
            "null_shifts": 0}
    base.update(analyze)
    known = {f.name for f in dataclasses.fields(AnalyzeSection)}
    base = {k: v for k, v in base.items() if k in known}  # (also on older code: tests fail there
    return build_config({"system": {"name": "KAM", "n_particles": 400},  # by their asserts)
                         "analyze": base})


def write_fake_run(rd: Path, cfg, delta: np.ndarray, corr: np.ndarray, *,
                   corr_r: np.ndarray | None = None, n_samples: int = 2, bins: int = 8,
                   temperatures=None):
    """Write the stage files; returns the plan-like object summarize_into needs.

    Args:
        delta: (n_c, n_T, d_t) delta(t) of every ensemble (NaN after a stop).
        corr: (n_c, n_T, d_t, X, m) C of each indicator at each xi (the same for every
            xi_Delta).
        corr_r: (n, 2, B+1, X) C(r) of the bare fields, or None (an exponential decay).
    """
    rd.mkdir(parents=True, exist_ok=True)
    n_c, n_T, d_t = delta.shape
    X, m = corr.shape[3], corr.shape[4]
    xis = np.array(cfg.analyze.xis, dtype=float)
    assert m == len(xis)
    temps = np.asarray(temperatures if temperatures is not None else np.linspace(0.5, 0.6, n_T))
    r = np.concatenate([[0.0], (np.arange(bins) + 0.5) * 0.5])
    with h5py.File(rd / "prepare.h5", "w") as fh:
        fh.attrs.update(stage="prepare", schema_version=1)
        fh["status"] = np.ones(4, np.int8)
        fh["energy_jump"] = np.zeros(4, np.int8)
        fh["energy_jump_T"] = np.full(4, np.nan)
    with h5py.File(rd / "propensity.h5", "w") as fh:
        fh.attrs.update(stage="propensity", schema_version=1, T_star=np.nan,
                        T_star_source="none", T_star_estimate=np.nan)
        fh["delta_targets"] = np.array([1.0])
        fh["temperatures"] = temps
        fh["status"] = np.ones(n_c * n_T, np.int8)
    n = n_samples
    with h5py.File(rd / "analysis.h5", "w") as fh:
        fh.attrs.update(stage="analyze", schema_version=1, have_gamma=1)
        fh["status"] = np.ones(n + n_c * n_T, np.int8)
        fh["xis"], fh["r"] = xis, r
        fh["dynamics/corr"] = np.repeat(corr[..., None], m, axis=-1)
        fh["dynamics/delta"] = delta
        cdr = np.exp(-r / 1.0)[None, None, None, :] * np.ones((n_c, n_T, 1, 1))
        fh["dynamics/corr_delta_r"] = cdr
        fh["dynamics/ensemble"] = np.full((n_c, n_T, 1, m, 6), np.nan)
        fh["samples/correct"] = np.ones((n, 2), np.int8)
        rng = np.random.default_rng(3)
        fh["samples/pearson"] = rng.uniform(-1, 1, (n, 2, m, 3))
        fh["samples/spearman"] = rng.uniform(-1, 1, (n, 2, m, 3))
        if corr_r is None:
            corr_r = np.exp(-r / 2.0)[None, None, :, None] * np.ones((n, 2, 1, 3))
        fh["samples/corr_r"] = corr_r
        fh["samples/corr_r_layers"] = corr_r[..., :1]
        fh["samples/rdf"] = np.ones((n, 2, 5, 3))
        fh["samples/psi6"] = np.full((n, 2), 0.05)
    return SimpleNamespace(n_samples=n, shape=(n_c, n_T), have_gamma=True, study=None,
                           n_layers=1)


def summarize(rd: Path, cfg, plan) -> tuple[dict, dict]:
    """Run the reduce; returns (summary datasets, headline)."""
    from glasscam_mpi.stages.analyze_summary import summarize_into

    summarize_into(rd / "analysis.h5", cfg, plan)
    with h5py.File(rd / "analysis.h5", "r") as fh:
        return ({k: fh["summary"][k][()] for k in fh["summary"]},
                json.loads(fh.attrs["headline"]))
