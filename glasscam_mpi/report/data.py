"""What the report shows, read once from a run directory's stage files.

:func:`load` is the one door: it opens ``analysis.h5`` (and whatever earlier stage files
exist), checks what it needs is there, and returns a :class:`RunData` of plain arrays.
Nothing here recomputes the analysis; the only derived numbers are the T* estimate of the
cooling curves (as ``glasscam info`` shows it) and the run counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.reference import PAPER_SCALE, paper_numbers
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.store import check_schema, stage_dataset

SYMBOLS = {"gamma": "Γ", "volume": "Υ", "theta": "Θ"}
SPLITS = ("train", "validation", "test")


def form_label(name: str, form: str) -> str:
    """'1 − Γ' or 'Υ': the symbol of indicator ``name`` in ``form`` ("X" or "1 - X")."""
    s = SYMBOLS[name]
    return f"1 − {s}" if form == "1 - X" else s


@dataclass(frozen=True)
class Scale:
    """The run's scale beside the paper's (printed above every table)."""

    system: str
    dim: int
    n_particles: int
    n_runs: int
    n_ok: int
    split_ok: tuple[int, int, int]
    split_total: tuple[int, int, int]
    cooling_rate: float
    T_star_estimate: float
    T_star_why: str                 # why there is no estimate ("" when there is one)
    T_star_used: float
    T_star_source: str
    T_star_paper: float | None
    temperatures: np.ndarray
    n_configs: int
    n_replicas: int
    delta_targets: np.ndarray
    units: tuple[str, str]          # (length, energy) unit names, e.g. ("σ_AA", "ε_AA")

    def differences(self) -> list[str]:
        """How this run differs from the paper's scale (empty: the paper's scale)."""
        p = PAPER_SCALE
        out = []
        if self.n_particles != p["n_particles"]:
            out.append(f"N = {self.n_particles} (paper {p['n_particles']})")
        if self.n_runs != p["n_runs"]:
            out.append(f"{self.n_runs} cooling runs (paper {p['n_runs']})")
        if not math.isclose(self.cooling_rate, p["cooling_rate"], rel_tol=0.01):
            out.append(f"cooling rate {self.cooling_rate:g} (paper {p['cooling_rate']:g})")
        if self.n_replicas != p["n_replicas"]:
            out.append(f"{self.n_replicas} replicas per ensemble (paper {p['n_replicas']})")
        if self.dim != 2:
            out.append(f"{self.dim}D (the paper is 2D only)")
        return out

    @property
    def label(self) -> str:
        """One line for figure titles."""
        tag = "demo scale" if self.differences() else "paper scale"
        return (f"{self.system} ({self.dim}D), N = {self.n_particles}, {self.n_ok}/{self.n_runs} "
                f"runs, cooling rate {self.cooling_rate:g}, {self.n_replicas} replicas "
                f"[{tag}]")


@dataclass
class RunData:
    """Everything the tables and figures read (arrays from the stage files)."""

    run_dir: Path
    cfg: Config
    scale: Scale
    paper: dict | None
    have_gamma: bool
    forms: dict[str, str]
    indicators: tuple[str, ...]
    pairs: tuple[str, ...]
    xis: np.ndarray
    r: np.ndarray
    r_rdf: np.ndarray
    S: dict[str, np.ndarray]            # the summary group
    S_attrs: dict
    headline: dict
    study: tuple | None                 # (size, count) of the ensemble study
    configs: np.ndarray                 # propensity configurations (runs of prepare.h5)
    reportable: np.ndarray              # (n_c, n_T)
    n_ok_replicas: np.ndarray           # (n_c, n_T)
    delta_max: np.ndarray               # (n_c, n_T) largest delta reached
    delta_min: np.ndarray               # (n_c, n_T) smallest delta (the first record)
    pearson: np.ndarray                 # (n, 2, m, P) samples/pearson
    correct: np.ndarray                 # (n, 2) samples/correct
    maps_indicators: np.ndarray         # (n_T, X, m, N) of configuration 0
    maps_delta: np.ndarray              # (n_T, D, m, N) of configuration 0
    box: np.ndarray
    positions: np.ndarray               # (N, d) glass of configuration 0
    types: np.ndarray                   # (N,)
    cooling_T: np.ndarray               # (n_ok, n_samples) measured T of the ok runs
    cooling_U: np.ndarray               # (n_ok, n_samples) U per particle
    ok_runs: np.ndarray                 # run index of each row of cooling_T
    train: dict | None = None           # test_accuracy, test_counts, epochs, best_epoch
    curves_png: Path | None = None
    n_layers: int = 0
    notes: list[str] = field(default_factory=list)

    def index(self, name: str) -> int:
        return self.indicators.index(name)

    def shown(self) -> list[str]:
        """The indicators with data (Gamma only with gradcam.h5)."""
        return [x for x in self.indicators if self.have_gamma or x != "gamma"]

    def xi_index(self, xi: float) -> int:
        return int(np.flatnonzero(np.isclose(self.xis, xi))[0])

    def missed(self, target: float, c: int | None = None, k: int | None = None) -> str:
        """Why there is no propensity at ``target`` (ensemble (c, k), or any ensemble):
        delta never reached it, or had passed it at the first recorded time."""
        sel = (slice(None) if c is None else c, slice(None) if k is None else k)
        hi, lo = np.asarray(self.delta_max[sel]), np.asarray(self.delta_min[sel])
        if not np.isfinite(hi).any():
            return f"δ = {target:g}: no recorded δ"
        if np.nanmax(hi) < target:
            return f"δ = {target:g} not reached (largest δ {np.nanmax(hi):.3g})"
        if np.nanmin(lo) > target:
            return f"δ = {target:g} passed before the first record (δ {np.nanmin(lo):.3g})"
        return f"δ = {target:g} not crossed within the records"


def load(rd: RunDir, cfg: Config) -> RunData:
    """Read the run directory ``rd`` (analysis.h5 must exist and be intact)."""
    import h5py

    path = rd.require("analyze")
    if not rd.intact("analyze"):
        raise ConfigError(f"{path} is damaged or not an analysis file; rerun 'glasscam analyze "
                          f"--run-dir {rd.path}'")
    try:
        with h5py.File(path, "r") as fh:
            check_schema(fh, "analyze")
            if "summary" not in fh:
                raise ConfigError(f"{path} has no summary group (analyze did not finish); "
                                  f"rerun 'glasscam analyze --run-dir {rd.path}'")
            a = fh.attrs
            S = {k: fh["summary"][k][()] for k in fh["summary"]}
            S_attrs = dict(fh["summary"].attrs)
            headline = json.loads(a["headline"]) if "headline" in a else {}
            study = json.loads(a["study"]) if "study" in a else None
            got = dict(have_gamma=bool(int(a["have_gamma"])), forms=json.loads(a["forms"]),
                       indicators=tuple(str(a["indicators"]).split(",")),
                       pairs=tuple(str(a["pairs"]).split(",")), xis=fh["xis"][:],
                       r=fh["r"][:], r_rdf=fh["r_rdf"][:], pearson=fh["samples/pearson"][:],
                       correct=fh["samples/correct"][:],
                       maps_indicators=fh["dynamics/maps_indicators"][0],
                       maps_delta=fh["dynamics/maps_delta"][0],
                       n_layers=int(fh["summary/corr_r_layers_mean"].shape[-1]))
    except (OSError, KeyError) as exc:
        raise ConfigError(f"{path} lacks what the report needs ({exc}); rerun 'glasscam analyze "
                          f"--run-dir {rd.path}'") from None
    with h5py.File(rd.require("propensity"), "r") as prop:
        check_schema(prop, "propensity")
        configs, temps, targets, delta = (stage_dataset(prop, "propensity", name) for name in
                                          ("configs", "temperatures", "delta_targets", "delta"))
        pa = prop.attrs
        T_used, T_source = float(pa.get("T_star", np.nan)), str(pa.get("T_star_source", "none"))
        n_replicas = prop["cage_displacement"].shape[0] // max(1, len(configs) * len(temps))
        reportable = stage_dataset(prop, "propensity", "reportable")
        n_ok_rep = stage_dataset(prop, "propensity", "n_ok_replicas")
        some = np.isfinite(delta).any(axis=-1)
        delta_max = np.where(some, np.where(np.isfinite(delta), delta, -np.inf).max(-1), np.nan)
        delta_min = np.where(some, np.where(np.isfinite(delta), delta, np.inf).min(-1), np.nan)
    with h5py.File(rd.require("prepare"), "r") as prep:
        check_schema(prep, "prepare")
        status, split = prep["status"][:], prep["split"][:]
        ok = np.flatnonzero(status == 1)
        box = prep["box"][:]
        positions, types = prep["glass"][int(configs[0])], prep["types"][int(configs[0])]
        cooling_T, cooling_U = prep["T"][:][ok], prep["pe"][:][ok]
    scale = Scale(system=cfg.sys.name, dim=cfg.sys.dim, n_particles=cfg.system.n_particles,
                  n_runs=len(status), n_ok=len(ok),
                  split_ok=tuple(int(((split == s) & (status == 1)).sum()) for s in range(3)),
                  split_total=tuple(int((split == s).sum()) for s in range(3)),
                  cooling_rate=cfg.prepare.cooling_rate, **_t_star_estimate(rd, cfg),
                  T_star_used=T_used, T_star_source=T_source, T_star_paper=cfg.sys.T_star_paper,
                  temperatures=temps, n_configs=len(configs), n_replicas=int(n_replicas),
                  delta_targets=targets, units=units_of(cfg))
    data = RunData(run_dir=rd.path, cfg=cfg, scale=scale, paper=paper_numbers(cfg.system.name),
                   S=S, S_attrs=S_attrs, headline=headline,
                   study=tuple(study) if study else None, configs=configs,
                   reportable=reportable, n_ok_replicas=n_ok_rep, delta_max=delta_max,
                   delta_min=delta_min, box=box,
                   positions=positions, types=types, cooling_T=cooling_T, cooling_U=cooling_U,
                   ok_runs=ok, notes=list(headline.get("notes", [])), **got)
    data.train = _train(rd)
    curves = rd.path / "train" / "curves.png"
    data.curves_png = curves if curves.exists() else None
    return data


def units_of(cfg: Config) -> tuple[str, str]:
    """Names of the reduced length and energy units (paper Table 1: the pair with sigma = 1
    and epsilon = 1; KAM sigma_AA, ABM sigma_AB; a custom mixture's [system].unit)."""
    s = cfg.sys
    if s.unit_pair is not None:
        ab = "".join(s.unit_pair)
        return f"σ_{ab}", f"ε_{ab}"
    for a in range(s.n_species):
        for b in range(a, s.n_species):
            if math.isclose(s.sigma_ab(a, b), 1.0) and math.isclose(s.epsilon_ab(a, b), 1.0):
                ab = s.species[a] + s.species[b]
                return f"σ_{ab}", f"ε_{ab}"
    return "σ", "ε"


def _t_star_estimate(rd: RunDir, cfg: Config) -> dict:
    """T* from the cooling curves of prepare.h5, as ``glasscam info`` shows it (NaN and
    the estimator's reason where it finds no kink)."""
    from glasscam_mpi.analysis.tstar import estimate_t_star
    from glasscam_mpi.store import cooling_curves

    try:
        return {"T_star_estimate": float(estimate_t_star(
            *cooling_curves(rd.stage_file("prepare"))).T_star), "T_star_why": ""}
    except ValueError as exc:
        return {"T_star_estimate": float("nan"), "T_star_why": str(exc)}


def _train(rd: RunDir) -> dict | None:
    """Table 2's numbers from train.h5, or None without a trained CNN."""
    import h5py

    if not rd.intact("train"):
        return None
    with h5py.File(rd.stage_file("train"), "r") as fh:
        return {"test_accuracy": fh["test_accuracy"][:], "test_counts": fh["test_counts"][:],
                "epochs": int(len(fh["epoch"])), "best_epoch": int(fh.attrs["best_epoch"]) + 1,
                "backend": str(fh.attrs.get("backend", ""))}
