"""``glasscam plan``: what a configuration will cost on a cluster profile, before submitting.

The plan calibrates on the machine it runs on, then counts:

* **MD** (``prepare``, ``propensity``): one real LAMMPS instance through the package's own
  engine (:func:`~glasscam_mpi.md.engine.open_lammps`, the system's potential, the
  configured N, dimension, timestep and thermostat) is set up exactly as a cooling run is
  (random start, minimisation: timed as the per-run set-up), then held at temperatures
  from T_high down to T_G and at the replica temperatures, a short timed run at each. The
  cost of a step depends on temperature (neighbour-list rebuilds), so seconds per step are
  interpolated linearly in T between the measured points and integrated over the
  protocol: equilibration at T_high, the linear ramp T_high -> T_G, each replica's
  t_max / dt steps at its T. Times are the CPU time of the calling thread (LAMMPS runs
  there, serially), so a loaded machine does not inflate them; on a cluster's dedicated
  cores, wall time is the same.
* **Learning** (``train``, ``gradcam``): a few real optimisation steps of the configured
  CNN on batches of the configured grid (with augmentation when it is on), the forward
  pass of validation, the gridding of one batch, and Grad-CAM of one batch through
  :func:`~glasscam_mpi.learn.gradcam.gradcam_particles_layers`, on CUDA when present,
  else on one CPU core; or the rates of an earlier run (``--rates-from RUN_DIR``:
  ``logs/train.json``'s ``samples_per_s``).
* **indicators**: Voronoi volume and Theta of the calibration's own quenched glass.

Per stage it reports core-hours, GPU-hours, disk (stage file from the stages' own row
specs; the shards hold about as much again until they are merged), memory per rank, and
the Slurm jobs and walltime windows the profile needs (each window is one job; a task
must fit in one window, since a task is the unit of resume). What is measured and what
is assumed is said in the output (``basis`` per stage).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import numpy as np

from glasscam_mpi.config import Config, ConfigError

STAGE_ORDER = ("prepare", "train", "gradcam", "indicators", "propensity", "analyze", "report")
_ERROR_ROW = 256 + 1  # 'error' S256 and 'status' i1 of every stage file (store.py)


@dataclass
class StageCost:
    stage: str
    tasks: int
    task_seconds: float         # one task on one core (a LAMMPS run, an epoch, ...)
    core_hours: float
    gpu_hours: float
    wall_hours: float           # on the profile
    disk_bytes: int             # the stage file; shards about as much again while running
    memory_per_rank_bytes: int
    jobs: int
    windows: int
    basis: str                  # what was measured and what was assumed
    memory_note: str = ""
    warnings: list[str] = field(default_factory=list)


# -- clocks and helpers ---------------------------------------------------------------------
def _cpu() -> float:
    return time.thread_time()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return 0


def rows_bytes(rows: dict) -> int:
    """Bytes of one task's row in a stage file (a dict of RowSpec)."""
    return sum(int(np.prod(r.shape, dtype=np.int64)) * np.dtype(r.dtype).itemsize
               for r in rows.values()) + _ERROR_ROW


def window_seconds(text: str) -> float:
    """Seconds of a Slurm time limit ``[D-]HH:MM:SS``."""
    days, _, hms = text.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days) if days else 0) * 86400 + h * 3600 + m * 60 + s


def ranks_per_task(cfg: Config, section: str) -> int:
    """LAMMPS ranks per task of [prepare]/[propensity] (1 where the key does not exist)."""
    return int(getattr(getattr(cfg, section), "ranks_per_task", 1) or 1)


# -- MD calibration ------------------------------------------------------------------------
@dataclass
class MDRates:
    """Seconds per MD step at measured temperatures, and the per-run set-up seconds."""

    temperatures: list[float]      # increasing
    seconds_per_step: list[float]
    steps_timed: list[int]
    setup_seconds: float           # open LAMMPS, random start, minimisation
    instance_seconds: float        # open LAMMPS and read a configuration (a replica segment)
    memory_bytes: int              # resident memory of this process with the instance open
    glass: dict                    # the quenched configuration (box, positions, types)
    style: str = "omp"             # the LAMMPS styles timed (md.engine.STYLES)

    def per_step(self, T) -> np.ndarray:
        return np.interp(T, self.temperatures, self.seconds_per_step)

    def ramp_seconds(self, T_high: float, T_low: float, n_steps: int) -> float:
        """Seconds of a linear ramp T_high -> T_low over n_steps: the mean seconds per step
        of the piecewise-linear interpolant over [T_low, T_high], times n_steps."""
        knots = np.unique(np.concatenate([[T_low, T_high],
                                          [t for t in self.temperatures if T_low < t < T_high]]))
        s = self.per_step(knots)
        mean = np.trapezoid(s, knots) / (T_high - T_low) if T_high > T_low else float(s[0])
        return float(mean * n_steps)

    def to_dict(self) -> dict:
        return {"temperatures": self.temperatures,
                "steps_per_s": [round(1.0 / s, 1) for s in self.seconds_per_step],
                "steps_timed": self.steps_timed, "setup_seconds": round(self.setup_seconds, 4),
                "segment_setup_seconds": round(self.instance_seconds, 4),
                "lammps_style": self.style}


def calibration_temperatures(cfg: Config, replica_T: np.ndarray | None = None) -> list[float]:
    """T_high down to T_G in 5 points (the ramp), T_L, and the replica temperatures."""
    p = cfg.prepare
    temps = set(np.round(np.linspace(p.T_high, cfg.T_glass, 5), 6).tolist())
    temps.add(round(cfg.T_liquid, 6))
    if replica_T is not None:
        temps.update(np.round(replica_T, 6).tolist())
    return sorted(temps)


def measure_md(cfg: Config, temperatures: list[float], seconds_per_point: float = 0.4,
               seed: int = 12345, style: str | None = None) -> MDRates:
    """Time the configured system in LAMMPS: set-up as in a cooling run, then a short run
    at each temperature (hot to cold, each after a warm-up at that temperature).

    ``style``: the LAMMPS styles timed (default ``[prepare].lammps_style``)."""
    from glasscam_mpi.md.cooling import setup_lines
    from glasscam_mpi.md.engine import MDError, commands, open_lammps, snapshot
    from glasscam_mpi.md.replica import load_configuration_lines

    p, system, N = cfg.prepare, cfg.sys, cfg.system.n_particles
    style = p.lammps_style if style is None else style
    tdamp = p.tdamp_steps * p.timestep
    with open_lammps(style=style):  # load the library once, as a job's first task has
        pass
    t0 = _cpu()
    per_T: dict[float, tuple[float, int]] = {}
    with open_lammps(style=style) as lmp:
        commands(lmp, setup_lines(system, N, seeds=(seed, seed + 1, seed + 2),
                                  min_distance=p.min_distance, timestep=p.timestep,
                                  T_high=p.T_high, tdamp_steps=p.tdamp_steps, n_equilibrate=0))
        if lmp.get_natoms() != N:
            raise MDError(f"calibration: random start placed {lmp.get_natoms()} of {N} "
                          "particles; lower [prepare].min_distance")
        setup = _cpu() - t0
        memory = _rss_bytes()
        for T in sorted(temperatures, reverse=True):
            commands(lmp, ["unfix thermostat",
                           f"fix thermostat all nvt temp {T!r} {T!r} {tdamp!r}"])
            t0 = _cpu()
            commands(lmp, ["run 20 post no"])
            probe = max(_cpu() - t0, 1e-6) / 20
            n = int(min(50000, max(100, seconds_per_point / probe)))
            commands(lmp, [f"run {max(100, n // 4)} post no"])  # settle at T
            t0 = _cpu()
            commands(lmp, [f"run {n} pre no post no"])
            per_T[T] = ((_cpu() - t0) / n, n)
        glass = snapshot(lmp, system.dim)
    t0 = _cpu()
    with open_lammps(style=style) as lmp:  # what each replica segment pays: a fresh instance
        commands(lmp, load_configuration_lines(system, glass["box"]))
        commands(lmp, ["run 0 post no"])
    instance = _cpu() - t0
    temps = sorted(per_T)
    return MDRates(temps, [per_T[T][0] for T in temps], [per_T[T][1] for T in temps],
                   setup, instance, memory, glass, style)


# -- learning calibration -------------------------------------------------------------------
@dataclass
class LearnRates:
    device: str
    train_samples_per_s: float     # one optimisation step: forward, backward, Adam (+augment)
    eval_samples_per_s: float      # forward only (validation)
    grid_samples_per_s: float      # gridding configurations (M)
    gradcam_samples_per_s: float   # Grad-CAM end to end (M, forward, backward, M^-1)
    source: str

    def to_dict(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _timed(fn, min_seconds: float, max_reps: int = 50) -> float:
    """Seconds per call of fn (one warm-up call, then until min_seconds or max_reps)."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or (time.perf_counter() - t0 < min_seconds and reps < max_reps):
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps


def measure_learning(cfg: Config, glass: dict, seconds: float = 0.5) -> LearnRates:
    """Rates of the configured CNN on this machine (CUDA if present, else one CPU core)."""
    import torch

    from glasscam_mpi.learn import augment
    from glasscam_mpi.learn.data import grid_spec_of
    from glasscam_mpi.learn.gradcam import gradcam_particles_layers
    from glasscam_mpi.learn.grid import to_grid_batch
    from glasscam_mpi.learn.model import ModelSpec, build_model

    t = cfg.train
    device = torch.device("cuda" if torch.cuda.is_available() and t.device != "cpu" else "cpu")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gspec = grid_spec_of(cfg)
    mspec = ModelSpec.for_grid(gspec, channels=t.channels, kernels=t.kernels, strides=t.strides,
                               hidden=t.hidden, dropout=t.dropout)
    torch.manual_seed(0)
    model = build_model(mspec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    B = t.batch_size if device.type == "cuda" else min(t.batch_size, 8)
    x = torch.rand(B, *gspec.shape, device=device)
    y = torch.randint(0, 2, (B,), device=device)
    rng = np.random.default_rng(0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        xb = augment.augment_batch(x, augment.draw(rng, B, gspec.dim, gspec.n_grid)) \
            if t.augment else x
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()
        sync()

    def forward():
        with torch.no_grad():
            model(x)
        sync()

    model.train()
    train_rate = B / _timed(step, seconds)
    model.eval()
    eval_rate = B / _timed(forward, seconds)
    Bg = min(cfg.gradcam.batch_size, B)
    box, pos, typ = glass["box"], glass["positions"], glass["types"]
    positions = np.broadcast_to(pos, (Bg, *pos.shape)).copy()
    types = np.broadcast_to(typ, (Bg, *typ.shape)).copy()
    grid_rate = Bg / _timed(lambda: to_grid_batch(gspec, box, positions, types), seconds)
    cam_rate = Bg / _timed(lambda: (gradcam_particles_layers(model, gspec, box, positions,
                                                             types), sync()), seconds)
    return LearnRates(device.type, train_rate, eval_rate, grid_rate, cam_rate,
                      f"measured here on {device.type} (batch {B}, random grids)")


def read_train_log(run_dir) -> dict:
    """``samples_per_s``, ``ranks``, ``device`` of an earlier run's ``logs/train.json``."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "logs" / "train.json"
    try:
        log = json.loads(path.read_text())
        rate = float(log["samples_per_s"])
    except FileNotFoundError:
        raise ConfigError(f"--rates-from {run_dir}: {path} does not exist; give a run "
                          "directory whose train stage has run") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"--rates-from {run_dir}: {path} has no usable samples_per_s "
                          f"({exc})") from None
    if not rate > 0 or not math.isfinite(rate):
        raise ConfigError(f"--rates-from {run_dir}: samples_per_s = {rate} in {path}; "
                          "must be a number > 0")
    return {"path": str(path), "samples_per_s": rate, "ranks": int(log.get("ranks", 1)),
            "device": str(log.get("device", "unknown"))}


def rates_from_log(log: dict, measured: LearnRates) -> LearnRates:
    """The training rate of an earlier run, per rank; validation and Grad-CAM scaled by
    the same factor against this machine's measurement."""
    rate, ranks = log["samples_per_s"], log["ranks"]
    scale = rate / ranks / measured.train_samples_per_s
    return LearnRates(log["device"], rate / ranks, measured.eval_samples_per_s * scale,
                      measured.grid_samples_per_s, measured.gradcam_samples_per_s * scale,
                      f"training rate from {log['path']} ({rate:.0f} samples/s on {ranks} "
                      f"rank(s), {log['device']}); validation and Grad-CAM scaled by the same "
                      "factor")


# -- the plan --------------------------------------------------------------------------------
def _farm_schedule(n_tasks: int, task_s: float, ranks: int, per_task: int, window_s: float,
                   name: str) -> tuple[float, int, list[str]]:
    """(wall seconds, windows, warnings) of n_tasks equal tasks of task_s wall seconds each,
    farmed over the ranks, per_task ranks to a task."""
    slots = max(1, ranks // per_task)
    warnings = []
    if task_s > window_s:
        warnings.append(f"{name}: one task takes {task_s / 3600:.2f} h, longer than the "
                        f"profile's window of {window_s / 3600:.2f} h: it can never finish "
                        "(a task is the unit of resume); raise the profile's time or shorten "
                        "the task")
        return math.inf, 0, warnings
    if ranks % per_task:
        warnings.append(f"{name}: {ranks} ranks are not a multiple of ranks_per_task = "
                        f"{per_task}; {ranks - slots * per_task} rank(s) idle")
    if math.isinf(window_s):
        windows = 1
    else:
        per_window = slots * max(1, int(window_s // task_s))
        windows = max(1, math.ceil(n_tasks / per_window))
    waves = math.ceil(n_tasks / slots)
    return waves * task_s, windows, warnings


def make_plan(cfg: Config, profile, md: MDRates, learn: LearnRates,
              md_propensity: MDRates | None = None) -> dict:
    """Every stage's cost on ``profile`` from the calibration ``md`` and ``learn``
    (``md_propensity``: the replicas' rates where ``[propensity].lammps_style`` differs from
    ``[prepare]``'s; default ``md``)."""
    from glasscam_mpi.md.replica import log_times
    from glasscam_mpi.stages import gradcam as gradcam_stage
    from glasscam_mpi.stages import indicators as indicators_stage
    from glasscam_mpi.stages import prepare as prepare_stage
    from glasscam_mpi.stages import propensity as propensity_stage

    p, q, t = cfg.prepare, cfg.propensity, cfg.train
    N, d, S = cfg.system.n_particles, cfg.sys.dim, cfg.sys.n_species
    ranks = profile.nodes * profile.ntasks_per_node
    window_s = window_seconds(profile.time) or math.inf  # Slurm: a time of 0 is no limit
    n_train, n_val, n_test = cfg.split_counts()
    stages: dict[str, StageCost] = {}

    def farm(name: str, n_tasks: int, task_s: float, per_task: int, disk: int, mem: int,
             basis: str, memory_note: str = "") -> None:
        # task_s is one core's seconds; a task on k ranks (ranks_per_task) is assumed to
        # scale perfectly over them (not measured here: a lower bound on its cost)
        wall, windows, warn = _farm_schedule(n_tasks, task_s / per_task, ranks, per_task,
                                             window_s, name)
        if per_task > 1:
            basis += (f"; {per_task} ranks per task, assumed to scale perfectly (a lower "
                      "bound on the cost)")
        stages[name] = StageCost(name, n_tasks, task_s, n_tasks * task_s / 3600,
                                 0.0, wall / 3600, disk, mem, windows, windows, basis,
                                 memory_note, warn)

    # prepare
    cooling = prepare_stage.plan_of(cfg)
    T_eq = md.per_step(p.T_high) * cooling.n_equilibrate
    ramp = md.ramp_seconds(p.T_high, cfg.T_glass, cooling.n_total)
    task_s = md.setup_seconds + T_eq + ramp
    rows = prepare_stage._rows(cfg, prepare_stage.Plan(p.n_runs, cooling))
    run_bytes = 2 * N * d * 8
    farm("prepare", p.n_runs, task_s, ranks_per_task(cfg, "prepare"),
         p.n_runs * rows_bytes(rows), md.memory_bytes + run_bytes,
         f"measured: LAMMPS set-up {md.setup_seconds:.3g} s and steps/s ({p.lammps_style} "
         "styles) at "
         f"{len(md.temperatures)} temperatures; {cooling.n_equilibrate} + {cooling.n_total} "
         "steps per run integrated over the ramp")

    # train (data-parallel over the profile's GPUs, else its ranks; linear scaling assumed)
    gpus = profile.nodes * profile.gpus_per_node
    workers = gpus or ranks
    n_train_s, n_val_s = 2 * (min(n_train, t.train_runs) if t.train_runs else n_train), 2 * n_val
    epoch_s = n_train_s / learn.train_samples_per_s + n_val_s / learn.eval_samples_per_s
    grid_once_s = (n_train_s + n_val_s) / learn.grid_samples_per_s
    k_ens = t.ensemble  # a seed ensemble trains k networks one after the other
    train_s = k_ens * (t.epochs * epoch_s + grid_once_s)
    grid_set = n_train_s * int(np.prod((S,) + (cfg.n_grid,) * d)) * 4
    per_node = profile.ntasks_per_node if t.shared_grids else 1
    wall = train_s / workers
    windows = max(1, math.ceil(wall / window_s))
    stages["train"] = StageCost(
        "train", k_ens * t.epochs, epoch_s, 0.0 if gpus else train_s / 3600,
        train_s / 3600 if gpus else 0.0, wall / 3600,
        _model_bytes(cfg) * 3 * t.ensemble, md.memory_bytes + grid_set // per_node, windows, windows,
        f"{learn.source}: {learn.train_samples_per_s:.1f} samples/s on one "
        f"{learn.device} worker; {t.epochs} epochs of {n_train_s} samples"
        + (f" for each of {k_ens} ensemble members" if k_ens > 1 else "") + "; linear "
        f"scaling over {workers} {'GPUs' if gpus else 'ranks'} assumed",
        f"training grids {_gib(grid_set)} ({n_train_s} x {S} x {cfg.n_grid}^{d} float32), held "
        + ("once per node in shared memory" if t.shared_grids else "on every rank")
        + ("; gridded on the fly instead when they do not fit"
           if t.grid_on_the_fly == "auto" else ""),
        [] if gpus else ["train: the profile has no GPUs; training on CPU ranks"])
    if learn.device != "cuda" and gpus:
        stages["train"].warnings.append(
            "train: the rate was measured on this machine's CPU; on the profile's GPUs it is "
            "much faster: give --rates-from RUN_DIR of a run trained on such a GPU")

    # gradcam: every test run, liquid and glass
    n_cam = 2 * n_test
    cam_s = k_ens * n_cam / learn.gradcam_samples_per_s  # every member explains every sample
    cam_rows = gradcam_stage.stage.rows(cfg, SimpleNamespace(spec={"channels": t.channels},
                                                             members=(None,) * k_ens))
    wall = cam_s / workers
    windows = max(1, math.ceil(wall / window_s))
    stages["gradcam"] = StageCost(
        "gradcam", n_test, cam_s / max(n_test, 1), 0.0 if gpus else cam_s / 3600,
        cam_s / 3600 if gpus else 0.0, wall / 3600, n_test * rows_bytes(cam_rows),
        md.memory_bytes + cfg.gradcam.batch_size * int(np.prod((S,) + (cfg.n_grid,) * d)) * 4 * 4,
        windows, windows, f"{learn.source}: {learn.gradcam_samples_per_s:.1f} samples/s"
        + (f" per member, x {k_ens} members" if k_ens > 1 else ""))

    # indicators: Voronoi volume and Theta of the calibration's glass
    from glasscam_mpi.stages.indicators import indicator_fields

    g = md.glass
    per_config = _timed(lambda: indicator_fields(cfg, g["box"], g["positions"], g["types"]),
                        0.3, max_reps=5)
    volume, theta = indicator_fields(cfg, g["box"], g["positions"], g["types"])
    ind_rows = indicators_stage.stage.rows(cfg, None)
    farm("indicators", n_test, 2 * per_config, 1, n_test * rows_bytes(ind_rows),
         md.memory_bytes, f"measured: {per_config:.3g} s per configuration (Voronoi, Theta)")

    # propensity: every replica to t_max (the stop rule ends ensembles early: an upper bound)
    temps = np.array(q.temperatures, dtype=float)
    T_star, note = _t_star(cfg)
    if q.temperature_unit == "T_star":
        temps = temps * T_star
    steps = log_times(p.timestep, q.t_max, q.n_times)
    mdq = md if md_propensity is None else md_propensity
    seg = mdq.instance_seconds * q.rounds
    per_T = [seg + float(mdq.per_step(T)) * int(steps[-1]) for T in temps]
    n_rep = q.n_configs * q.n_replicas
    prop_rows = propensity_stage._rows(cfg, SimpleNamespace(steps=steps))
    merged = q.n_configs * len(temps) * (len(steps) * (N * 4 + 8) + len(q.delta_targets) * (N * 4 + 8))
    farm("propensity", n_rep * len(temps), float(np.mean(per_T)),
         ranks_per_task(cfg, "propensity"),
         n_rep * len(temps) * rows_bytes(prop_rows) + merged,
         md.memory_bytes + len(steps) * N * d * 8 * 2,
         f"measured steps/s ({q.lammps_style} styles) at the replica temperatures "
         f"{', '.join(f'{T:.3g}' for T in temps)}{note}; {int(steps[-1])} steps per replica "
         "(t_max, no early stop: an upper bound "
         f"while stop_factor = {q.stop_factor:g})")
    # analyze: the stage's own task functions on the calibration's glass
    n_T = len(temps)
    aplan, sample_s, ensemble_s = _time_analyze(cfg, g, volume, theta, n_test, n_T, len(steps))
    n_ens = q.n_configs * n_T
    n_an = n_test + n_ens
    farm("analyze", n_an, (n_test * 2 * sample_s + n_ens * ensemble_s) / max(n_an, 1), 1,
         rows_total_bytes(analyze_rows(cfg, aplan), n_an), md.memory_bytes,
         f"measured: the stage's task functions on the calibration's glass, {sample_s:.3g} s "
         f"per test sample and class, {ensemble_s:.3g} s per ensemble (fields stand-ins: the "
         "cost does not depend on their values)")
    stages["report"] = StageCost("report", 1, 0.0, 0.0, 0.0, 0.0, 0, md.memory_bytes, 1, 1,
                                 "not calibrated (one process reading analysis.h5: minutes); "
                                 "counted as 0")
    ordered = [stages[s] for s in STAGE_ORDER]
    return _with_totals(cfg, profile, ordered, md, learn)


def analyze_rows(cfg: Config, aplan) -> dict:
    from glasscam_mpi.stages import analyze as analyze_stage

    return analyze_stage._rows(cfg, aplan)


def rows_total_bytes(rows: dict, n_tasks: int) -> int:
    """Bytes of a stage file whose RowSpecs may have their own leading shape (analyze)."""
    total = n_tasks * _ERROR_ROW
    for r in rows.values():
        lead = r.lead if r.lead is not None else (n_tasks,)
        total += int(np.prod(lead, dtype=np.int64)) * int(np.prod(r.shape, dtype=np.int64)) \
            * np.dtype(r.dtype).itemsize
    return total


def _time_analyze(cfg: Config, glass: dict, volume, theta, n_test: int, n_T: int,
                  n_times: int):
    """(analyze Plan, seconds per sample and class, seconds per ensemble) on ``glass``."""
    from glasscam_mpi.analysis.xiscan import resolve_xis
    from glasscam_mpi.stages import analyze as A

    a, q = cfg.analyze, cfg.propensity
    box, x, types = glass["box"], glass["positions"], glass["types"]
    try:
        xis = resolve_xis(box, a.xis, a.xi_pairs, a.xi_delta, cfg.sys.xi_pairs).xis
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    r_corr = min(a.r_max or 10.0, float(box.min()) / 2)
    n_c, n_layers = q.n_configs, len(cfg.train.channels)
    sign = np.array([-1.0 if v in A.one_minus(cfg) else 1.0 for v in A.INDICATORS])
    aplan = A.Plan(np.arange(max(n_test, 1)), True, n_layers, box, tuple(float(v) for v in xis),
                   r_corr, a.bins, (n_c, n_T), np.zeros(n_c, np.int64), n_times,
                   len(q.delta_targets), np.ones((n_c, n_T), np.int8), None, sign)
    F = np.stack([volume, volume, theta], axis=1)  # Gamma's stand-in: the volume field
    layers = np.repeat(volume[:, None], n_layers, axis=1)
    D = np.outer(np.geomspace(0.01, 3.0, n_times), volume)
    at = D[np.linspace(0, n_times - 1, len(q.delta_targets)).astype(int)]
    sample_s = _timed(lambda: A.analyse_sample(aplan, x, types, F, layers, 1, 1), 0.3, 3)
    ensemble_s = _timed(lambda: A.analyse_ensemble(aplan, A._pair_list(aplan, x), F, D, at),
                        0.3, 3)
    return aplan, sample_s, ensemble_s


def _t_star(cfg: Config) -> tuple[float, str]:
    value = cfg.propensity.T_star
    if value not in ("estimate", 0.0):
        return float(value), ""
    if cfg.sys.T_star_paper is not None:
        return cfg.sys.T_star_paper, f" (T* = {cfg.sys.T_star_paper}, the paper's, assumed)"
    guess = cfg.T_liquid / 2
    return guess, f" (T* unknown before prepare; assumed T_L / 2 = {guess:g})"


def _model_bytes(cfg: Config) -> int:
    from glasscam_mpi.learn.data import grid_spec_of
    from glasscam_mpi.learn.model import ModelSpec, build_model

    t = cfg.train
    mspec = ModelSpec.for_grid(grid_spec_of(cfg), channels=t.channels, kernels=t.kernels,
                               strides=t.strides, hidden=t.hidden, dropout=t.dropout)
    return sum(p.numel() for p in build_model(mspec).parameters()) * 4


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.4g} MiB"


def _with_totals(cfg: Config, profile, stages: list[StageCost], md: MDRates,
                 learn: LearnRates) -> dict:
    out = {"config": {"system": cfg.system.name, "n_particles": cfg.system.n_particles,
                      "dim": cfg.sys.dim, "n_runs": cfg.prepare.n_runs},
           "profile": {"name": profile.name, "nodes": profile.nodes,
                       "ntasks_per_node": profile.ntasks_per_node,
                       "gpus_per_node": profile.gpus_per_node, "time": profile.time},
           "calibration": {"md": md.to_dict(), "learning": learn.to_dict(),
                           "clock": "CPU seconds of the calling thread (MD); wall (learning)"},
           "stages": {}}
    for s in stages:
        row = asdict(s)
        row.pop("stage")
        for k in ("core_hours", "gpu_hours", "wall_hours", "task_seconds"):
            row[k] = float(row[k])
        out["stages"][s.stage] = row
    keys = ("core_hours", "gpu_hours", "wall_hours", "disk_bytes", "jobs", "windows")
    out["total"] = {k: sum(out["stages"][s][k] for s in out["stages"]) for k in keys}
    # a stage that can never finish in the profile's window: wall time null (strict JSON)
    for row in (*out["stages"].values(), out["total"]):
        if not math.isfinite(row["wall_hours"]):
            row["wall_hours"] = None
    out["total"]["memory_per_rank_bytes"] = max(s.memory_per_rank_bytes for s in stages)
    out["warnings"] = [w for s in stages for w in s.warnings]
    return out


def plan(cfg: Config, profile, rates_from=None, seconds_per_point: float = 0.4) -> dict:
    """Calibrate here and cost every stage of ``cfg`` on ``profile`` (a slurm.Profile)."""
    temps = None
    if cfg.propensity.temperature_unit == "T_star":
        temps = np.array(cfg.propensity.temperatures) * _t_star(cfg)[0]
    else:
        temps = np.array(cfg.propensity.temperatures)
    log = read_train_log(rates_from) if rates_from is not None else None
    md = measure_md(cfg, calibration_temperatures(cfg, temps), seconds_per_point)
    md_propensity = None
    if cfg.propensity.lammps_style != cfg.prepare.lammps_style:
        md_propensity = measure_md(cfg, sorted(set(np.round(temps, 6).tolist())),
                                   seconds_per_point, style=cfg.propensity.lammps_style)
    learn = measure_learning(cfg, md.glass)
    if log is not None:
        learn = rates_from_log(log, learn)
    return make_plan(cfg, profile, md, learn, md_propensity)


def _hours(h: float | None) -> str:
    if h is None or not math.isfinite(h):
        return "never"
    return f"{h:,.1f}" if h >= 1 else f"{h:.3f}"


def render_table(result: dict) -> str:
    """The plan as a human-readable table."""
    pr = result["profile"]
    c = result["config"]
    lines = [f"glasscam plan: {c['system']} N = {c['n_particles']} ({c['dim']}D), "
             f"{c['n_runs']} cooling runs; profile {pr['name']!r}: {pr['nodes']} node(s) x "
             f"{pr['ntasks_per_node']} ranks, {pr['gpus_per_node']} GPU(s) per node, "
             f"window {pr['time']}",
             "",
             f"{'stage':<11} {'tasks':>7} {'s/task':>9} {'core-h':>10} {'GPU-h':>8} "
             f"{'wall-h':>8} {'disk':>10} {'mem/rank':>10} {'jobs':>5} {'windows':>7}"]
    for name, s in result["stages"].items():
        lines.append(f"{name:<11} {s['tasks']:>7} {s['task_seconds']:>9.3g} "
                     f"{_hours(s['core_hours']):>10} {_hours(s['gpu_hours']):>8} "
                     f"{_hours(s['wall_hours']):>8} {_gib(s['disk_bytes']):>10} "
                     f"{_gib(s['memory_per_rank_bytes']):>10} {s['jobs']:>5} {s['windows']:>7}")
    t = result["total"]
    lines.append(f"{'total':<11} {'':>7} {'':>9} {_hours(t['core_hours']):>10} "
                 f"{_hours(t['gpu_hours']):>8} {_hours(t['wall_hours']):>8} "
                 f"{_gib(t['disk_bytes']):>10} {_gib(t['memory_per_rank_bytes']):>10} "
                 f"{t['jobs']:>5} {t['windows']:>7}")
    lines += ["", "Disk: the stage files; the task shards hold about as much again until a "
                  "stage is merged.", "", "What each estimate rests on:"]
    for name, s in result["stages"].items():
        lines.append(f"  {name}: {s['basis']}")
        if s["memory_note"]:
            lines.append(f"  {name} memory: {s['memory_note']}")
    md = result["calibration"]["md"]
    lines += ["", f"MD calibration here ({md.get('lammps_style', 'plain')} styles; steps/s on "
              "one core, by temperature): "
              + ", ".join(f"T={T:g}: {r:,.0f}" for T, r in zip(md["temperatures"],
                                                               md["steps_per_s"]))]
    for w in result["warnings"]:
        lines.append(f"WARNING: {w}")
    return "\n".join(lines)
