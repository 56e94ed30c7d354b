"""Run configuration: TOML in, typed and validated once, frozen dataclasses out.

Sources, later ones winning: the defaults below, a preset (``glasscam_mpi/presets/*.toml``),
a user file (which may name a preset with a top-level ``preset = "demo"``), and
``--set section.key=value`` overrides. Anything unknown or out of range is refused with
the field, the value, and what is allowed (:class:`ConfigError`).

A run directory keeps the resolved config as ``config.toml``; every stage re-reads it, so
a stage rerun elsewhere, or under another rank count, sees exactly the same settings.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from glasscam_mpi.mixture import CUSTOM, MixtureError, check_builtin_leaves_custom_fields_unset, \
    custom_system
from glasscam_mpi.systems import SYSTEMS, System, get_system

PRESETS = ("demo", "study", "paper-kam", "paper-abm", "ka3d")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


def _f(default, lo=None, hi=None, *, lo_open=False, choices=None, doc="", empty=False):
    """A config field with its allowed range (inclusive unless lo_open) or choices; a list
    field may be empty only with ``empty``."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open,
                                            "choices": choices, "doc": doc, "empty": empty})


LAMMPS_STYLE_DOC = ("LAMMPS styles: omp = the OPENMP variants (-sf omp) on one thread per "
                    "rank, faster; plain = the stock styles. Same physics; trajectories agree "
                    "to rounding, not bit for bit (md/engine.py)")


@dataclass(frozen=True)
class RunSection:
    seed: int = _f(2023, 0, 2**63 - 1, doc="master seed; every task's stream derives from it")


@dataclass(frozen=True)
class SystemSection:
    name: str = _f("KAM", choices=(*SYSTEMS, CUSTOM),
                   doc="mixture (METHOD.md section 1); custom = the fields below (mixture.py)")
    n_particles: int = _f(2000, 16, 10**8, doc="total particle number N")
    # a custom Lennard-Jones mixture (name = "custom"; unset for a built-in name): the
    # fields, their meaning and their checks are in mixture.py
    label: str = _f("", doc="custom: the mixture's name in reports and seed streams")
    dim: int = _f(0, doc="custom: dimension, 2 or 3")
    species: tuple[str, ...] = _f((), empty=True, doc="custom: species names")
    masses: tuple[float, ...] = _f((), empty=True, doc="custom: mass per species")
    fractions: tuple[float, ...] = _f((), empty=True, doc="custom: number fraction per species")
    sigma: tuple[tuple[float, ...], ...] = _f((), empty=True,
                                              doc="custom: sigma_ab, symmetric S x S matrix")
    epsilon: tuple[tuple[float, ...], ...] = _f((), empty=True,
                                                doc="custom: epsilon_ab, symmetric S x S matrix")
    rc_factor: float = _f(0.0, doc="custom: r_c,ab = rc_factor * sigma_ab (or give cutoff)")
    cutoff: tuple[tuple[float, ...], ...] = _f((), empty=True,
                                               doc="custom: r_c,ab, symmetric S x S matrix")
    density: float = _f(0.0, doc="custom: number density N / L^d")
    radii: tuple[float, ...] = _f((), empty=True,
                                  doc="custom: additive radii of Theta; empty = sigma_ss / 2")
    T_liquid: float = _f(0.0, doc="custom: T_L of the mixture")
    T_glass: float = _f(0.0, doc="custom: T_G of the mixture; 0 = 0.05")
    T_star: float = _f(0.0, doc="custom: a literature T*; 0 = none")
    xi_pairs: float = _f(0.0, doc="custom: xi of the indicator-indicator correlations; 0 = 4")
    unit: tuple[str, ...] = _f((), empty=True,
                               doc="custom: the pair whose sigma and epsilon are the units")


@dataclass(frozen=True)
class PrepareSection:
    n_runs: int = _f(5000, 3, 10**7, doc="independent cooling runs (one liquid + one glass each)")
    train_fraction: float = _f(0.8, 0.0, 1.0, lo_open=True, doc="share of runs for training")
    validation_fraction: float = _f(0.08, 0.0, 1.0, doc="share of runs for validation")
    timestep: float = _f(0.005, 0.0, 0.05, lo_open=True, doc="MD timestep")
    T_high: float = _f(4.0, 0.0, 100.0, lo_open=True, doc="equilibration temperature")
    t_equilibrate: float = _f(100.0, 0.0, 1e7, doc="equilibration time at T_high")
    cooling_rate: float = _f(8.33e-5, 0.0, 10.0, lo_open=True, doc="|dT/dt| of the linear ramp")
    tdamp_steps: float = _f(100.0, 1.0, 1e6, doc="Nose-Hoover damping time in timesteps")
    T_liquid: float = _f(0.0, 0.0, 100.0, doc="T_L of the liquid sample; 0 = the system's")
    T_glass: float = _f(0.0, 0.0, 100.0, doc="T_G of the glass sample; 0 = the system's")
    energy_samples: int = _f(100, 2, 100000, doc="points of (T, U) recorded along the ramp")
    min_distance: float = _f(0.7, 0.0, 2.0, lo_open=True,
                             doc="closest allowed start distance, in units of sigma_AA")
    ranks_per_task: int = _f(1, 1, 4096,
                             doc="MPI ranks that run one cooling run together (LAMMPS domain "
                                 "decomposition); the job's rank count must be a multiple")
    lammps_style: str = _f("omp", choices=("omp", "plain"), doc=LAMMPS_STYLE_DOC)
    extra_snapshots: tuple[float, ...] = _f((), 0.0, 100.0, lo_open=True, empty=True,
                                            doc="more snapshots kept per run, at these target "
                                                "temperatures of the ramp (T_glass < T < "
                                                "T_high): prepare.h5 'snapshots' (n, S, N, d), "
                                                "'snapshot_T'; [train].liquid_snapshot picks one "
                                                "as the liquid class")


@dataclass(frozen=True)
class PropensitySection:
    n_configs: int = _f(1, 1, 10**6, doc="glass configurations: the first n ok test runs")
    temperatures: tuple[float, ...] = _f((1.0, 1.25, 1.5), 0.0, 100.0, lo_open=True,
                                         doc="replica temperatures (see temperature_unit)")
    temperature_unit: str = _f("T_star", choices=("T_star", "absolute"),
                               doc="T_star: temperatures are multiples of T*")
    T_star: float | str = _f("estimate", 0.0, 100.0, choices=("estimate",),
                             doc="T* for temperature_unit = T_star: a number, or \"estimate\" "
                                 "(the kink of U(T) in the cooling curves; biased, see "
                                 "analysis/tstar.py); 0 means estimate too (older run dirs)")
    n_replicas: int = _f(30, 1, 100000, doc="isoconfigurational replicas per (config, T)")
    min_replicas: int = _f(0, 0, 100000, doc="fewest ok replicas for an ensemble to be "
                                             "reported; 0 = 90 % of n_replicas")
    ensemble: str = _f("nvt", choices=("nvt", "nve"),
                       doc="dynamics of the replicas; nve starts from the T_G glass without a "
                           "thermostat (T then only sets the initial velocities)")
    t_max: float = _f(1.0e4, 0.0, 1e9, lo_open=True, doc="longest time recorded")
    n_times: int = _f(40, 2, 10000, doc="log-spaced recording times up to t_max")
    delta_targets: tuple[float, ...] = _f((0.3, 1.0, 3.0), 0.0, 1e3, lo_open=True,
                                          doc="mean cage-relative displacements to report at")
    rounds: int = _f(4, 1, 10000, doc="segments of equal log-time span the replicas run in; "
                                       "the stop rule is applied to each ensemble between them")
    stop_factor: float = _f(1.25, 0.0, 100.0,
                            doc="an ensemble (all its replicas) stops after the round where its "
                                "delta reaches stop_factor * max(delta_targets); 0 = run to t_max")
    ranks_per_task: int = _f(1, 1, 4096,
                             doc="MPI ranks that run one replica together (LAMMPS domain "
                                 "decomposition); the job's rank count must be a multiple")
    lammps_style: str = _f("omp", choices=("omp", "plain"), doc=LAMMPS_STYLE_DOC)


@dataclass(frozen=True)
class TrainSection:
    backend: str = _f("horovod", choices=("horovod", "ddp", "single"),
                      doc="data parallelism: Horovod, torch.distributed (DDP), or one process")
    epochs: int = _f(250, 1, 100000, doc="training epochs (the paper: 250)")
    batch_size: int = _f(32, 1, 65536, doc="global mini-batch, split evenly over the ranks")
    lr: float = _f(1e-3, 0.0, 10.0, lo_open=True, doc="Adam learning rate")
    weight_decay: float = _f(0.0, 0.0, 1.0, doc="Adam weight decay")
    n_grid: int = _f(0, 0, 4096, doc="grid points per axis; 0 = 128 in 2D, 48 in 3D")
    width_factor: float = _f(0.5, 0.0, 10.0, lo_open=True,
                             doc="Gaussian width of species s = width_factor * sigma_ss")
    channels: tuple[int, ...] = _f((16, 32, 64), 1, 4096, doc="output channels of the 3 convolutions")
    kernels: tuple[int, ...] = _f((5, 3, 3), 1, 63, doc="odd kernel sizes of the 3 convolutions")
    strides: tuple[int, ...] = _f((2, 2, 2), 1, 16, doc="strides of the 3 convolutions")
    hidden: int = _f(128, 1, 65536, doc="width of the hidden fully connected layer")
    dropout: float = _f(0.5, 0.0, 0.99, doc="dropout before the output layer")
    augment: bool = _f(True, doc="random periodic shifts and box symmetries of the training grids")
    shared_grids: bool = _f(True, doc="hold the training grids once per node in MPI shared "
                                      "memory (false: a private copy on every rank)")
    grid_on_the_fly: bool | str = _f("auto", choices=("auto",),
                                     doc="grid each mini-batch from positions on the device "
                                         "instead of holding the gridded training set: memory "
                                         "grows with the positions, not the grids; auto = "
                                         "when the gridded set would not fit in memory")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"), doc="auto: CUDA when available")
    amp: bool = _f(False, doc="mixed precision (bfloat16 autocast) on CUDA")
    check_sync: bool = _f(False, doc="verify after every step that all ranks hold identical "
                                     "parameters (slow; for tests)")
    ensemble: int = _f(1, 1, 256, doc="networks trained that differ only in their seed (a seed "
                                      "ensemble); Grad-CAM averages their [0, 1]-normalised "
                                      "Gamma; 1 = one network (train/best.pt); member m >= 1 "
                                      "is kept in train/member-<m>/")
    seed: int = _f(0, 0, 10**9, doc="network index of the first network: network j trains "
                                    "from a seed derived from [run].seed and j (j = 0: "
                                    "[run].seed itself); members take seed, seed + 1, ...")
    train_runs: int = _f(0, 0, 10**7, doc="training runs used (the first of the train split); "
                                          "0 = all")
    liquid_snapshot: float = _f(0.0, 0.0, 100.0,
                                doc="temperature of the liquid class the CNN learns (train, "
                                    "validation, test): 0 = the liquid sample at T_liquid; "
                                    "else one of [prepare].extra_snapshots")


@dataclass(frozen=True)
class GradcamSection:
    layer: int = _f(-1, -3, 2, doc="convolution whose feature maps are used; -1 = the last")
    batch_size: int = _f(32, 1, 65536, doc="samples per Grad-CAM batch on a GPU: the farm "
                                           "hands out blocks of batch_size / 2 test runs")
    model: str = _f("", doc="checkpoint to explain with; empty = this run directory's best model")
    target_glass: str = _f("glass", choices=("glass", "liquid"),
                           doc="class whose logit is explained on glass samples (the paper: glass)")
    target_liquid: str = _f("glass", choices=("glass", "liquid"),
                            doc="class whose logit is explained on liquid samples (default glass: "
                                "where the network sees glass-like structure in a liquid)")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"), doc="auto: CUDA when available")


@dataclass(frozen=True)
class AnalyzeSection:
    xis: tuple[float, ...] = _f((0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0), 0.0, 1e4,
                                doc="coarse-graining lengths xi scanned (0 = the bare field); "
                                    "an xi with 2 xi > min(L)/2 is left out with a warning "
                                    "(the box would clip its kernel)")
    xi_delta: float | str = _f("auto", 0.0, 1e4, lo_open=True, choices=("auto",),
                               doc="xi of the propensity in the indicator-propensity "
                                   "correlations (paper Figs 5, 7); auto = its C_Delta 1/e "
                                   "length at delta_ref, rounded to the nearest of xis")
    delta_ref: float = _f(1.0, 0.0, 1e3, lo_open=True,
                          doc="the delta whose 1/e length gives xi_delta = auto (Table 3)")
    xi_pairs: float | str = _f("auto", 0.0, 1e4, lo_open=True, choices=("auto",),
                               doc="xi of the indicator-indicator correlations (paper Fig. 6); "
                                   "auto = the system's (KAM 4, ABM 3, KA3D 4: systems.py), "
                                   "or the largest xi of the scan the box allows where that "
                                   "does not fit (2 xi <= min(L)/2)")
    one_minus: str = _f("paper", doc="indicators used as 1 - X: \"paper\" (KAM: gamma, theta; "
                                      "ABM: gamma, volume), \"none\", or a comma list of "
                                      "gamma, volume, theta")
    r_max: float = _f(0.0, 0.0, 1e4, doc="range of the correlation functions C(r) and g(r); "
                                         "0 = min(10, L/2)")
    bins: int = _f(50, 2, 100000, doc="distance bins of C(r) and g(r)")
    subensemble_size: int = _f(30, 1, 100000,
                               doc="replicas per sub-ensemble of the ensemble study (Table 4)")
    subensembles: int = _f(3, 2, 1000, doc="disjoint sub-ensembles of the ensemble study; it "
                                           "runs when n_replicas >= both multiplied")
    bootstrap: int = _f(200, 0, 100000,
                        doc="bootstrap resamples (over replicas, and over configurations where "
                            "there are several) for the uncertainty of C^max and delta*; 0 = none")
    null_shifts: int = _f(200, 0, 100000,
                          doc="random periodic shifts of each indicator field against Delta for "
                              "the null level of C^max; 0 = none")


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    system: SystemSection = field(default_factory=SystemSection)
    prepare: PrepareSection = field(default_factory=PrepareSection)
    propensity: PropensitySection = field(default_factory=PropensitySection)
    train: TrainSection = field(default_factory=TrainSection)
    gradcam: GradcamSection = field(default_factory=GradcamSection)
    analyze: AnalyzeSection = field(default_factory=AnalyzeSection)

    # -- derived ---------------------------------------------------------------------------
    @property
    def sys(self) -> System:
        if self.system.name == CUSTOM:
            return custom_system(self.system)
        return get_system(self.system.name)

    @property
    def T_liquid(self) -> float:
        return self.prepare.T_liquid or self.sys.T_liquid

    @property
    def T_glass(self) -> float:
        return self.prepare.T_glass or self.sys.T_glass

    @property
    def n_grid(self) -> int:
        """Grid points per axis of the CNN input (METHOD.md section 3 defaults)."""
        return self.train.n_grid or (128 if self.sys.dim == 2 else 48)

    def split_counts(self) -> tuple[int, int, int]:
        """(train, validation, test) run counts; test takes what is left."""
        n = self.prepare.n_runs
        n_train = int(round(self.prepare.train_fraction * n))
        n_val = int(round(self.prepare.validation_fraction * n))
        return n_train, n_val, n - n_train - n_val

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in fields(self)}

    def to_toml(self) -> str:
        """The config as TOML; [system]'s custom-mixture fields only where set (an unset
        one is its default, so the text reloads to the same config)."""
        data, unset = self.to_dict(), dataclasses.asdict(SystemSection())
        data["system"] = {k: v for k, v in data["system"].items()
                          if k in ("name", "n_particles") or v != unset[k]}
        return dump_toml(data)


_SECTIONS = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def _allowed(meta: dict, typ: type) -> str:
    if meta["choices"]:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta["lo"], meta["hi"]
    left = f"> {lo}" if meta["lo_open"] else f">= {lo}"
    return f"{'an integer' if typ is int else 'a number'} {left} and <= {hi}"


def _check_value(section: str, key: str, value: Any, type_name: str, meta) -> Any:
    if type_name == "float | str":
        if isinstance(value, str):
            if value not in meta["choices"]:
                raise ConfigError(f"[{section}].{key} = {value!r}: allowed: a number "
                                  f"{'>' if meta['lo_open'] else '>='} {meta['lo']} and <= "
                                  f"{meta['hi']}, or one of "
                                  + ", ".join(repr(c) for c in meta["choices"]))
            return value
        return _check_value(section, key, value, "float", {**meta, "choices": None})
    if type_name == "bool | str":
        if isinstance(value, str) and value in meta["choices"]:
            return value
        if not isinstance(value, bool):
            raise ConfigError(f"[{section}].{key} = {value!r}: allowed: true, false, or one of "
                              + ", ".join(repr(c) for c in meta["choices"]))
        return value
    if type_name == "tuple[tuple[float, ...], ...]":
        if not isinstance(value, (list, tuple)) or (not value and not meta.get("empty")):
            raise ConfigError(f"[{section}].{key} = {value!r}: expected a matrix, a list of "
                              "rows, e.g. [[1.0, 0.8], [0.8, 0.88]]")
        return tuple(_check_value(section, f"{key}[{i}]", row, "tuple[float, ...]",
                                  {**meta, "empty": False}) for i, row in enumerate(value))
    if type_name in ("tuple[float, ...]", "tuple[int, ...]", "tuple[str, ...]"):
        item = type_name[6:-6]
        where = f"[{section}].{key} = {value!r}"
        if not isinstance(value, (list, tuple)) or (not value and not meta.get("empty")):
            raise ConfigError(f"{where}: expected a non-empty list of {item}s, e.g. "
                              + {"float": "[1.0, 1.5]", "int": "[16, 32, 64]",
                                 "str": '["A", "B"]'}[item])
        return tuple(_check_value(section, f"{key}[{i}]", v, item, meta)
                     for i, v in enumerate(value))
    typ = {"int": int, "float": float, "str": str, "bool": bool}[type_name]
    where = f"[{section}].{key} = {value!r}"
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_allowed(meta, typ) if typ in (int, float) else typ.__name__}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{where}: must be finite; allowed: {_allowed(meta, typ)}")
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{where}: allowed: {_allowed(meta, typ)}")
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (value < lo or (meta["lo_open"] and value == lo) or value > hi):
        raise ConfigError(f"{where}: allowed: {_allowed(meta, typ)}")
    return value


def _merge(base: dict, new: dict, origin: str) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in new.items():
        if section == "preset":
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}]; allowed: "
                              + ", ".join(f"[{s}]" for s in _SECTIONS))
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: '{section}' must be a table [{section}], got {values!r}")
        known = {f.name for f in fields(_SECTIONS[section]())}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown key [{section}].{key}; allowed keys: "
                                  + ", ".join(sorted(known)))
            out.setdefault(section, {})[key] = value
    return out


def _read_toml(path: Path | str, origin: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None


def preset_dict(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    text = resources.files("glasscam_mpi.presets").joinpath(f"{name}.toml").read_text()
    return tomllib.loads(text)


def parse_override(text: str) -> dict:
    """``'prepare.n_runs=10'`` -> ``{'prepare': {'n_runs': 10}}`` (value parsed as TOML)."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. prepare.n_runs=10")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is taken as a string
    return {section: {name: value}}


def build_config(data: dict, origin: str = "config") -> Config:
    """Validate a nested dict (sections -> keys -> values) into a :class:`Config`."""
    merged = _merge({}, data, origin)
    sections = {}
    for name, factory in _SECTIONS.items():
        values = merged.get(name, {})
        default = factory()
        checked = {f.name: _check_value(name, f.name, values[f.name], str(f.type), f.metadata)
                   for f in fields(default) if f.name in values}
        sections[name] = dataclasses.replace(default, **checked)
    cfg = Config(**sections)
    _check_cross(cfg)
    return cfg


def _check_cross(cfg: Config) -> None:
    try:  # the system first: every check below reads it
        if cfg.system.name == CUSTOM:
            custom_system(cfg.system)
        else:
            check_builtin_leaves_custom_fields_unset(cfg.system)
    except MixtureError as exc:
        raise ConfigError(str(exc)) from None
    p = cfg.prepare
    if p.train_fraction + p.validation_fraction >= 1.0:
        raise ConfigError(
            f"[prepare].train_fraction + validation_fraction = "
            f"{p.train_fraction + p.validation_fraction:g}: must be < 1 so a test split remains")
    n_train, n_val, n_test = cfg.split_counts()
    if min(n_train, n_test) < 1:
        raise ConfigError(f"[prepare].n_runs = {p.n_runs}: gives {n_train} train / {n_val} "
                          f"validation / {n_test} test runs; need at least 1 train and 1 test")
    if not cfg.T_glass < cfg.T_liquid < p.T_high:
        raise ConfigError(f"temperatures must satisfy T_glass < T_liquid < T_high, got "
                          f"{cfg.T_glass} / {cfg.T_liquid} / {p.T_high} "
                          f"([prepare].T_glass / T_liquid / T_high; 0 means the system's value)")
    extra = list(p.extra_snapshots)
    bad = [T for T in extra if not cfg.T_glass < T < p.T_high]
    if bad or len(set(extra)) != len(extra):
        raise ConfigError(f"[prepare].extra_snapshots = {extra}: allowed: distinct temperatures "
                          f"between T_glass = {cfg.T_glass} and T_high = {p.T_high} (exclusive)")
    ls = cfg.train.liquid_snapshot
    if ls and ls not in extra:
        raise ConfigError(f"[train].liquid_snapshot = {ls}: allowed: 0 (the liquid sample at "
                          f"T_liquid = {cfg.T_liquid}) or one of [prepare].extra_snapshots = "
                          f"{extra} (snapshots prepare keeps)")
    q = cfg.propensity
    if list(q.delta_targets) != sorted(set(q.delta_targets)):
        raise ConfigError(f"[propensity].delta_targets = {list(q.delta_targets)}: must be "
                          "strictly increasing")
    a = cfg.analyze
    if a.one_minus not in ("paper", "none"):
        bad = [x for x in a.one_minus.split(",") if x.strip() not in ("gamma", "volume", "theta")]
        if bad or not a.one_minus.strip():
            raise ConfigError(f"[analyze].one_minus = {a.one_minus!r}: allowed: \"paper\", "
                              "\"none\", or a comma list of gamma, volume, theta")
    t = cfg.train
    for key in ("channels", "kernels", "strides"):
        if len(getattr(t, key)) != 3:
            raise ConfigError(f"[train].{key} = {list(getattr(t, key))}: give 3 values, one per "
                              "convolution")
    if any(k % 2 == 0 for k in t.kernels):
        raise ConfigError(f"[train].kernels = {list(t.kernels)}: kernel sizes must be odd")
    n_grid, stride = cfg.n_grid, math.prod(t.strides)
    if n_grid % stride:
        raise ConfigError(f"[train].n_grid = {n_grid}: must be divisible by the total stride "
                          f"{stride} ([train].strides = {list(t.strides)}) so the feature maps "
                          "tile the periodic box")
    L = cfg.sys.box_length(cfg.system.n_particles)
    if L <= 2 * cfg.sys.max_cutoff:
        n_min = math.ceil(cfg.sys.density * (2 * cfg.sys.max_cutoff) ** cfg.sys.dim) + 1
        raise ConfigError(f"[system].n_particles = {cfg.system.n_particles}: box L = {L:.3g} is "
                          f"not larger than twice the cutoff {cfg.sys.max_cutoff:g}; "
                          f"use n_particles >= {n_min} for {cfg.sys.name}")


def load_config(preset: str | None = None, path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve defaults <- preset <- file <- overrides into a validated :class:`Config`."""
    data: dict = {}
    file_data = _read_toml(path, str(path)) if path else {}
    base = preset or file_data.get("preset")
    if preset and file_data.get("preset") and file_data["preset"] != preset:
        raise ConfigError(f"--preset {preset!r} and preset = {file_data['preset']!r} in {path} disagree")
    if base:
        data = _merge(data, preset_dict(base), f"preset {base!r}")
    if file_data:
        data = _merge(data, file_data, str(path))
    for text in overrides:
        data = _merge(data, parse_override(text), f"--set {text}")
    return build_config(data, origin=str(path or preset or "defaults"))


# Fields added after run directories already existed, with the value an older saved
# config.toml (fully resolved, so a key it lacks is a key that did not exist yet) stands
# for: what the package did before the field was there. Read by load_saved_config only;
# a user's file still gets today's defaults.
LEGACY_VALUES = {("prepare", "lammps_style"): "plain", ("propensity", "lammps_style"): "plain"}


def load_saved_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A run directory's saved ``config.toml`` (then ``--set`` overrides); a field it
    predates takes the value the package used before that field existed
    (:data:`LEGACY_VALUES`), not today's default, so a run directory made by an older
    version goes on as it started."""
    data = _read_toml(path, str(path))
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    for text in overrides:
        data = _merge(data, parse_override(text), f"--set {text}")
    return build_config(data, origin=str(path))


def config_diff(a: Config, b: Config) -> list[str]:
    """Lines ``[section].key: a -> b`` for every field that differs."""
    da, db = a.to_dict(), b.to_dict()
    return [f"[{s}].{k}: {da[s][k]!r} -> {db[s][k]!r}"
            for s in da for k in da[s] if da[s][k] != db[s][k]]


def dump_toml(data: dict[str, dict[str, Any]]) -> str:
    """A minimal TOML writer for flat sections of scalars (what :class:`Config` holds)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} to TOML")

    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{k} = {fmt(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)
