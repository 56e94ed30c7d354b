"""``glasscam sweep``: CNN variants on one prepared run, as one command (issue 18, item 1).

    mpiexec -n K glasscam sweep --run-dir PARENT --variants VARIANTS.toml [--seeds 3]

PARENT is a run directory whose prepare, indicators and propensity stages are complete.
The variants file names variants, each a set of ``[train]`` / ``[gradcam]`` overrides of
PARENT's configuration::

    seeds = 3                      # optional (default 3; --seeds wins)

    [variants.default]             # PARENT's own CNN

    [variants.fine]
    train.strides = [1, 1, 2]
    train.channels = [8, 16, 16]
    train.hidden = 64

    [variants.fine-layer0]
    train = { strides = [1, 1, 2], channels = [8, 16, 16], hidden = 64 }
    gradcam = { layer = 0 }

Every variant x seed s is a sub-run directory ``PARENT/sweep/<variant>/seed-<s>/``:
its prepare.h5, indicators.h5 and propensity.h5 are symbolic links to PARENT's files
(shared read-only by reference, never copied: ARCHITECTURE.md, "A sub-run shares its
parent's files"); its config.toml is PARENT's with the variant's overrides, network index
``[train].seed = (the variant's seed, default 0) + s`` (:mod:`glasscam_mpi.learn.ensemble`:
network 0 is PARENT's own seed) and ``[train].backend = "single"``. train -> gradcam ->
analyze run in it. Then each variant's seed ensemble, ``PARENT/sweep/<variant>/ensemble/``:
a gradcam.h5 whose Gamma is the members' (the seeds') [0, 1]-normalised Gamma averaged,
with ``gamma_members`` (the layout of a ``[train].ensemble = k`` run), and analyze on it.

Rank independence: every sub-run runs whole on one rank (its stages on ``COMM_SELF``, the
single backend), and the sub-runs are farmed over the ranks; which rank runs a sub-run,
and how many ranks there are, changes nothing in any file or table.

Resume: a sub-run whose analysis.h5 is complete is not touched again; an unfinished one
continues (training from its last checkpoint, farms from their shards). A sub-run that
fails with a user error (e.g. a batch larger than its training set) is reported in the
table and retried on the next sweep.

Output (:mod:`glasscam_mpi.sweep_table`): ``PARENT/sweep/table.md``, ``table.csv`` and
``sweep.png``; ``PARENT/sweep/variants.json`` records the variants and seeds swept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from glasscam_mpi.config import Config, ConfigError, build_config
from glasscam_mpi.jsonio import dumps

SHARED = ("prepare", "indicators", "propensity")  # the parent's stage files a sub-run links
ALLOWED_SECTIONS = ("train", "gradcam")
# set by the sweep itself: a variant may not change them
FORCED = {("train", "backend"): "the sweep trains every sub-run on one rank (single)",
          ("train", "ensemble"): "the sweep's seeds are the ensemble (use --seeds)",
          ("gradcam", "model"): "each sub-run explains with its own trained model"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict          # {"train": {...}, "gradcam": {...}} as given
    configs: tuple           # (Config per seed)

    def seed_dir(self, root: Path, s: int) -> Path:
        return root / self.name / f"seed-{s}"

    def ensemble_dir(self, root: Path) -> Path:
        return root / self.name / "ensemble"


def sweep_root(parent: Path | str) -> Path:
    return Path(parent) / "sweep"


def load_variants(path: Path | str, parent_cfg: Config, seeds: int | None = None
                  ) -> tuple[list[Variant], int]:
    """The variants of a variants file, each validated into one Config per seed, and the
    number of seeds; ConfigError naming the variant, the field, the value and what is
    allowed for anything wrong."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--variants {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"variants", "seeds"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: "
                          "seeds, [variants.NAME]")
    if seeds is None:
        seeds = data.get("seeds", DEFAULT_SEEDS)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 1000:
        raise ConfigError(f"{path}: seeds = {seeds!r}: allowed: an integer >= 1 and <= 1000")
    table = data.get("variants")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: no variants; give at least one table [variants.NAME] "
                          "(an empty one is the parent's own CNN)")
    base = parent_cfg.to_dict()
    out = []
    for name, over in table.items():
        if not _NAME.match(name) or name == "ensemble":
            raise ConfigError(f"{path}: variant name {name!r}: allowed: letters, digits, "
                              "'_', '.', '-' (it names a directory), up to 64 characters")
        if not isinstance(over, dict):
            raise ConfigError(f"{path}: variant {name!r} must be a table [variants.{name}], "
                              f"got {over!r}")
        out.append(Variant(name, over, tuple(_variant_config(path, name, over, base, s)
                                             for s in range(seeds))))
    return out, seeds


def _variant_config(path, name: str, over: dict, base: dict, s: int) -> Config:
    where = f"{path}: variant {name!r}"
    data = {sec: dict(vals) for sec, vals in base.items()}
    for section, values in over.items():
        if section not in ALLOWED_SECTIONS:
            raise ConfigError(f"{where}: section [{section}] cannot vary in a sweep; allowed: "
                              + ", ".join(f"[{x}]" for x in ALLOWED_SECTIONS)
                              + " (the sub-runs share the parent's prepare, indicators and "
                              "propensity)")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: '{section}' must be a table of overrides, got "
                              f"{values!r}")
        for key, value in values.items():
            if (section, key) in FORCED:
                raise ConfigError(f"{where}: [{section}].{key} = {value!r} cannot be set: "
                                  f"{FORCED[(section, key)]}")
            if key not in data[section]:
                raise ConfigError(f"{where}: unknown key [{section}].{key} = {value!r}; "
                                  f"allowed keys: {', '.join(sorted(data[section]))}")
            data[section][key] = value
    first = data["train"].get("seed", 0)
    if not isinstance(first, int) or isinstance(first, bool):
        raise ConfigError(f"{where}: [train].seed = {first!r}: allowed: an integer >= 0 "
                          "(the network index of seed 0)")
    data["train"].update(backend="single", ensemble=1, seed=first + s)
    data["gradcam"]["model"] = ""
    try:
        return build_config(data, origin=where)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


# -- sub-run directories ---------------------------------------------------------------------
def link_parent(parent: Path, sub: Path) -> None:
    """Make ``sub`` a sub-run of ``parent``: symbolic links to the parent's prepare.h5,
    indicators.h5 and propensity.h5 (absolute; nothing is copied). An existing entry must
    already be such a link."""
    from glasscam_mpi.rundir import RunDir

    prd = RunDir(parent)
    sub.mkdir(parents=True, exist_ok=True)
    for stage in SHARED:
        target = prd.stage_file(stage).resolve()
        link = RunDir(sub).stage_file(stage)
        if link.is_symlink() or link.exists():
            if not link.is_symlink() or link.resolve() != target:
                raise ConfigError(f"{link} exists but is not a link to {target}: a sweep "
                                  "sub-run shares its parent's files; remove it")
            continue
        os.symlink(target, link)


def _check_parent(parent: Path) -> Config:
    from glasscam_mpi.rundir import RunDir

    rd = RunDir(parent)
    cfg = rd.saved_config()
    if cfg is None:
        raise ConfigError(f"{parent} is not a run directory (no config.toml)")
    for stage in SHARED:
        if not rd.intact(stage):
            raise ConfigError(f"{parent} has no complete {rd.stage_file(stage).name}: run "
                              f"'glasscam {stage} --run-dir {parent}' first (a sweep needs "
                              "prepare, indicators and propensity)")
    return cfg


def _check_same(v: Variant, s: int, sub: Path) -> None:
    """Refuse a variant whose sub-run exists with another configuration (its results would
    be reported under the new overrides)."""
    from glasscam_mpi.config import config_diff, load_saved_config

    if not (sub / "config.toml").exists():
        return
    saved = load_saved_config(sub / "config.toml")
    if saved != v.configs[s]:
        lines = "\n  ".join(config_diff(saved, v.configs[s]))
        raise ConfigError(f"variant {v.name!r}: {sub} was made with other settings (saved -> "
                          f"now):\n  {lines}\ngive the changed variant a new name, or remove "
                          f"{sub.parent} to redo it")


def shared_training(jobs) -> dict[int, int]:
    """``{job: owner}`` for every (variant, seed) job whose ``[train]`` section equals an
    earlier job's: variants that differ only in ``[gradcam]`` (the layer explained, the
    classes explained) explain the same network, so it is trained once, by the owner, and
    the other sub-runs link its training (:func:`link_training`)."""
    first: dict[str, int] = {}
    owner: dict[int, int] = {}
    for i, (v, s) in enumerate(jobs):
        key = json.dumps(v.configs[s].to_dict()["train"], sort_keys=True)
        if key in first:
            owner[i] = first[key]
        else:
            first[key] = i
    return owner


def link_training(owner: Path, sub: Path) -> None:
    """Make ``sub``'s training the ``owner`` sub-run's: symbolic links to its train.h5 and
    train/ (models, curves), nothing copied. An existing entry must be that link."""
    from glasscam_mpi.rundir import RunDir

    for target, link in ((RunDir(owner).stage_file("train"), RunDir(sub).stage_file("train")),
                         (owner / "train", sub / "train")):
        target = target.resolve()
        if link.is_symlink() or link.exists():
            if not link.is_symlink() or link.resolve() != target:
                raise ConfigError(f"{link} exists but is not a link to {target}: this variant "
                                  f"shares the training of {owner} (same [train]); remove it")
            continue
        os.symlink(target, link, target_is_directory=(target.name == "train"))


def _done(sub: Path) -> bool:
    from glasscam_mpi.rundir import RunDir

    return RunDir(sub).intact("analyze")


# -- running -------------------------------------------------------------------------------------
def _run_seed(sub: Path, cfg: Config) -> None:
    """train -> gradcam -> analyze in one sub-run, on this rank alone."""
    from mpi4py import MPI

    from glasscam_mpi.stages import STAGES

    STAGES["train"].run(MPI.COMM_SELF, sub, cfg, resume=True)
    STAGES["gradcam"].run(MPI.COMM_SELF, sub, None)
    STAGES["analyze"].run(MPI.COMM_SELF, sub, None)


def _ensemble_config(variant: Variant) -> Config:
    """The config of a variant's seed ensemble: its seeds' with [train].ensemble = seeds."""
    base = variant.configs[0].to_dict()
    return build_config({**base, "train": {**base["train"], "ensemble": len(variant.configs)}},
                        origin=f"variant {variant.name!r} ensemble")


def _stale_ensemble(variant: Variant, root: Path) -> bool:
    """Whether the variant's ensemble directory was made with other settings (e.g. a sweep
    rerun with more --seeds): its numbers would be reported under the new ones."""
    from glasscam_mpi.config import load_saved_config

    saved = variant.ensemble_dir(root) / "config.toml"
    return saved.exists() and load_saved_config(saved) != _ensemble_config(variant)


def _run_ensemble(variant: Variant, root: Path, parent: Path) -> None:
    """The seed ensemble of a variant: its members' Gamma combined, then analyze."""
    from mpi4py import MPI

    from glasscam_mpi.rundir import RunDir
    from glasscam_mpi.stages import STAGES
    from glasscam_mpi.stages.gradcam import write_ensemble_file

    sub = variant.ensemble_dir(root)
    cfg = _ensemble_config(variant)
    if _stale_ensemble(variant, root):   # made from another number of seeds: redo it
        import shutil

        shutil.rmtree(sub)
    link_parent(parent, sub)
    rd = RunDir(sub)
    rd.resolve_config(cfg)
    if not rd.intact("gradcam"):
        write_ensemble_file(rd.stage_file("gradcam"),
                            [RunDir(variant.seed_dir(root, s)).stage_file("gradcam")
                             for s in range(len(variant.configs))], cfg)
    STAGES["analyze"].run(MPI.COMM_SELF, sub, None)


@contextlib.contextmanager
def _logged(sub: Path):
    """The sub-run's stage output (stdout) into ``sub/logs/sweep.out``."""
    (sub / "logs").mkdir(parents=True, exist_ok=True)
    with open(sub / "logs" / "sweep.out", "a") as fh, contextlib.redirect_stdout(fh):
        yield


def run_sweep(comm, parent: Path | str, variants_path: Path | str, seeds: int | None = None,
              progress_every: float = 5.0) -> dict:
    """Every rank calls this. Returns the table rows on rank 0."""
    from glasscam_mpi.parallel import Outcome, Progress, TaskFarm, bcast_from_root
    from glasscam_mpi.rundir import RunDir
    from glasscam_mpi.sweep_table import write_table

    from glasscam_mpi.learn.distributed import use_job_local_rank

    parent = Path(parent).resolve()
    root = sweep_root(parent)
    rank = comm.Get_rank()
    use_job_local_rank(comm)  # on a GPU node, rank r's sub-runs use GPU r mod the GPUs

    def setup():
        cfg = _check_parent(parent)
        variants, n_seeds = load_variants(variants_path, cfg, seeds)
        root.mkdir(exist_ok=True)
        record = {"variants": {v.name: v.overrides for v in variants}, "seeds": n_seeds,
                  "variants_file": str(Path(variants_path).resolve())}
        (root / "variants.json").write_text(dumps(record, indent=2) + "\n")
        jobs = [(v, s) for v in variants for s in range(n_seeds)]
        for v, s in jobs:
            _check_same(v, s, v.seed_dir(root, s))
            link_parent(parent, v.seed_dir(root, s))
        todo = [i for i, (v, s) in enumerate(jobs) if not _done(v.seed_dir(root, s))]
        return variants, n_seeds, todo

    variants, n_seeds, todo = bcast_from_root(comm, setup)
    jobs = [(v, s) for v in variants for s in range(n_seeds)]
    if rank == 0:
        print(f"sweep: {len(variants)} variant(s) x {n_seeds} seed(s) on {parent}: "
              f"{len(todo)} of {len(jobs)} sub-runs to do on {comm.Get_size()} rank(s), "
              f"then {len(variants)} ensemble(s)", flush=True)

    owner = shared_training(jobs)

    def one_seed(i: int) -> Outcome:
        v, s = jobs[i]
        sub = v.seed_dir(root, s)
        t0 = time.perf_counter()
        steps = "train -> gradcam -> analyze"
        if i in owner:
            ov, os_ = jobs[owner[i]]
            if not RunDir(ov.seed_dir(root, os_)).intact("train"):
                return Outcome(i, False, f"{v.name}/seed-{s}: not run, the training it shares "
                               f"({ov.name}/seed-{os_}) did not finish",
                               seconds=time.perf_counter() - t0, rank=rank)
            link_training(ov.seed_dir(root, os_), sub)
            steps = f"gradcam -> analyze (the network of {ov.name}/seed-{os_})"
        print(f"sweep: {v.name}/seed-{s} on rank {rank}: {steps} "
              f"(log {sub / 'logs' / 'sweep.out'})", flush=True)
        try:
            with _logged(sub):
                _run_seed(sub, v.configs[s])
        except ConfigError as exc:
            (sub / "FAILED").write_text(f"{exc}\n")
            return Outcome(i, False, f"{v.name}/seed-{s}: {exc}",
                           seconds=time.perf_counter() - t0, rank=rank)
        (sub / "FAILED").unlink(missing_ok=True)
        return Outcome(i, True, seconds=time.perf_counter() - t0, rank=rank)

    # the sub-runs that train first, then those that explain a network trained above
    progress = Progress("sweep", len(todo), "sub-runs", progress_every) if rank == 0 else None
    outcomes = TaskFarm(comm, [i for i in todo if i not in owner], progress).run(one_seed)
    comm.Barrier()
    outcomes += TaskFarm(comm, [i for i in todo if i in owner], progress).run(one_seed)
    comm.Barrier()

    def ens_todo():
        return [j for j, v in enumerate(variants)
                if all(_done(v.seed_dir(root, s)) for s in range(n_seeds))
                and (_stale_ensemble(v, root) or not _done(v.ensemble_dir(root)))]

    todo_e = bcast_from_root(comm, ens_todo)

    def one_ensemble(j: int) -> Outcome:
        v = variants[j]
        t0 = time.perf_counter()
        print(f"sweep: {v.name}/ensemble of {n_seeds} seeds on rank {rank}", flush=True)
        try:
            with _logged(v.ensemble_dir(root)):
                _run_ensemble(v, root, parent)
        except ConfigError as exc:
            return Outcome(j, False, f"{v.name}/ensemble: {exc}",
                           seconds=time.perf_counter() - t0, rank=rank)
        return Outcome(j, True, seconds=time.perf_counter() - t0, rank=rank)

    progress = Progress("sweep ensembles", len(todo_e), "ensembles", progress_every) \
        if rank == 0 else None
    outcomes += TaskFarm(comm, todo_e, progress).run(one_ensemble)
    comm.Barrier()
    if rank != 0:
        return {}
    for o in outcomes:
        if not o.ok:
            print(f"sweep: FAILED {o.message}", flush=True)
    rows = write_table(root, variants, n_seeds)
    print(f"sweep: wrote {root / 'table.md'}, {root / 'table.csv'} and {root / 'sweep.png'}",
          flush=True)
    return {"rows": rows, "failed": [o.message for o in outcomes if not o.ok]}
