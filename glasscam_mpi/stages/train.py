"""Stage ``train``: the glass/liquid CNN, data-parallel over ranks (paper sections 3.1, 4.1).

Backends (``[train].backend``): ``horovod`` (DistributedOptimizer, parameters broadcast
from rank 0; the optimizer state is the same on every rank by construction), ``ddp``
(torch.distributed; gloo on CPU, nccl on GPU) or ``single``. Rank and size come from MPI
in every case (mpiexec or srun).

Determinism: the global mini-batch of ``batch_size`` samples is a seeded permutation of
the training set (seed, epoch); each rank takes an equal part of it, and augmentation is
drawn per global batch, and so is the dropout mask: the optimisation sees the same batches
whatever the rank count, and differs between rank counts only by the order of floating-point
sums. Horovod and DDP give bit-identical curves, and a resumed run repeats the
uninterrupted loss curve exactly.

Files: ``RUN_DIR/train/checkpoint.pt`` (every epoch), ``best.pt`` (best validation
accuracy, then loss), ``history.json``, ``curves.png``; at the end ``RUN_DIR/train.h5``:

    attrs    stage, system, backend, ranks, device, model_spec (JSON), data_meta (JSON),
             best_epoch, config
    epoch, train_loss, train_accuracy, val_loss, val_accuracy   (n_epochs,)
    seconds, train_seconds   (n_epochs,) wall time of each epoch, and of its steps alone
    test_accuracy    (2,) f8   [glass, liquid] with the best model (the paper's Table 2)
    test_confusion   (2, 2) i8 rows true class, columns predicted (0 liquid, 1 glass)
    test_counts      (2,) i8   [glass, liquid] test samples

Seed ensembles (``[train].ensemble = k`` > 1, :mod:`glasscam_mpi.learn.ensemble`): k
networks that differ only in their seed are trained one after the other, each on all
ranks. Member 0 is network ``[train].seed`` and keeps the files above (``train/best.pt``
...), so every reader of a one-network run reads member 0 of an ensemble; member m >= 1
is network ``seed + m`` in ``train/member-<m>/`` (the same files). train.h5's top-level
datasets are member 0's, and it adds

    attrs    ensemble (k), network_seeds (k,) the seed each member trained from
    test_accuracy_members  (k, 2) f8    [glass, liquid] of each member
    members/<m>/...        each member's datasets as above (epoch ... test_counts) and its
                           best_epoch attribute

With k = 1 (the default) nothing changes: the same files, the same numbers.

``[train].train_runs`` = n > 0 trains on the first n ok runs of the train split only, and
``[train].liquid_snapshot`` = T > 0 takes the liquid class (train, validation and test)
from prepare.h5's snapshot at T (``[prepare].extra_snapshots``) instead of the T_liquid
sample; Grad-CAM and analyze keep explaining the T_liquid and T_glass samples.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from glasscam_mpi.config import Config, ConfigError
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.learn.checkpoint import load_checkpoint  # noqa: F401 (train.load_checkpoint)
from glasscam_mpi.learn.feed import eval_feed
from glasscam_mpi.learn.loop import EpochSpec, channel_mean_std, evaluate, samples_per_second
from glasscam_mpi.parallel import injected, task_rng
from glasscam_mpi.reference import TABLE2 as PAPER_TABLE2
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Input, Runs, gib
from glasscam_mpi.stages.engine import Stage

STAGE = "train"
HELP = "train the glass/liquid CNN, data-parallel (Horovod, DDP or single)"
DESCRIPTION = ("Train the CNN of the paper (section 3.1) on gridded liquid and glass samples "
               "of prepare.h5, data-parallel over MPI ranks with [train].backend = horovod, "
               "ddp or single. A checkpoint is written every epoch; --resume continues an "
               "interrupted training exactly where it stopped. Writes train.h5 with the test "
               "accuracy per class (the paper's Table 2).")


def _files(rd: RunDir, member: int = 0) -> dict[str, Path]:
    return rd.training_files(member)  # the layout lives in RunDir (gradcam reads it too)


def model_paths(run_dir: Path | str, cfg: Config) -> list[Path]:
    """The best model of every member of the run's ensemble (member 0 first)."""
    return RunDir(run_dir).model_paths(cfg.train.ensemble)


def _save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _reset(rd: RunDir, *, resume: bool = False, restart: bool = False) -> None:
    """``--restart``: remove the training, its model and what was explained with it (before
    the config check: [train] may change on a restart)."""
    if not restart:
        return
    import shutil

    stale = [p for p in (_files(rd)["dir"], rd.stage_file(STAGE), rd.stage_file("gradcam"),
                         rd.path / "shards" / "gradcam") if p.exists()]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if stale:
        print("train --restart: removed " + ", ".join(str(p) for p in stale), flush=True)


def _setup(rd: RunDir, cfg: Config, *, resume: bool = False, restart: bool = False):
    """Rank 0: (each member's checkpoint to resume from or None, complete already)."""
    if rd.intact(STAGE) and not restart:
        return None, True
    states = []
    for m in range(cfg.train.ensemble):
        ck_path = _files(rd, m)["checkpoint"]
        states.append(ck_path if ck_path.exists() else None)
        if ck_path.exists() and not resume:
            ck = load_checkpoint(ck_path)
            raise ConfigError(f"training in {rd.path} stopped after epoch "
                              f"{ck['epoch'] + 1} of {cfg.train.epochs} "
                              f"({ck_path}): rerun with --resume to continue "
                              "from there, or --restart to start over")
        _files(rd, m)["dir"].mkdir(parents=True, exist_ok=True)
    return states, False


def _work(comm, rd: RunDir, cfg: Config, ready, *, progress_every: float = 5.0,
          resume: bool = False, restart: bool = False) -> dict:
    """Train every member of the ensemble (every rank calls this), then write train.h5."""
    state_paths, complete = ready
    if complete:
        if comm.Get_rank() == 0:
            print(f"train: {rd.stage_file(STAGE)} is already complete (--restart to retrain)")
        return {"complete": True}
    from glasscam_mpi.learn.ensemble import network_seed

    k = cfg.train.ensemble
    results = []
    for m in range(k):
        seed = network_seed(cfg.run.seed, cfg.train.seed + m)
        if k > 1 and comm.Get_rank() == 0:
            print(f"train: ensemble member {m + 1}/{k} (network {cfg.train.seed + m}, "
                  f"seed {seed}) in {_files(rd, m)['dir']}", flush=True)
        results.append(_train(comm, rd, cfg, state_paths[m], progress_every, m, seed))
    if comm.Get_rank() == 0:
        _write_h5(rd, cfg, results)
    acc = results[0]["acc"]
    return {"complete": True, "test_accuracy": acc,
            "test_accuracy_members": [r["acc"] for r in results]}


HISTORY = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
           "train_seconds")


class _Job:
    """One network's training on this rank: what every step below shares."""

    def __init__(self, comm, rd: RunDir, cfg: Config, member: int, seed: int):
        import torch

        from glasscam_mpi.learn.data import grid_spec_of
        from glasscam_mpi.learn.distributed import pick_device

        self.comm, self.rd, self.cfg, self.t = comm, rd, cfg, cfg.train
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.files = _files(rd, member)
        self.member, self.seed = member, seed
        self.t_start = time.time()
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.device = pick_device(self.t.device, comm)
        if self.t.batch_size % self.size:
            raise ConfigError(f"[train].batch_size = {self.t.batch_size} must be divisible by "
                              f"the {self.size} ranks (each rank takes an equal part of every "
                              "mini-batch)")
        self.gspec = grid_spec_of(cfg)
        self.liq = self.t.liquid_snapshot  # the liquid class: T_liquid's, or a snapshot
        self.amp = self.t.amp and self.device.type == "cuda"
        self.steps_checked = 0


def _train(comm, rd: RunDir, cfg: Config, state_path, progress_every: float,
           member: int = 0, seed: int | None = None) -> dict:
    """Train one network (ensemble member ``member``, from the streams of ``seed``; default
    the run seed) and evaluate its best model on the test set. Returns, on every rank, what
    train.h5 records of it."""
    job = _Job(comm, rd, cfg, member, cfg.run.seed if seed is None else seed)
    from glasscam_mpi.parallel import proportional_set_size

    train, val = _load_labels(job)
    model, opt, par = _build(job, train)
    feed, grids, grid_bytes, why, train = _training_feed(job, train)
    on_the_fly = job.on_the_fly
    pss_mib = par.allreduce_sum(np.array([proportional_set_size()]))[0]  # all ranks, nodes
    history, best, first_epoch, net = _start(job, state_path, model, opt, par, feed)
    val_feed, val_y = eval_feed(rd.stage_file("prepare"), val, job.rank, job.size, job.gspec,
                                job.device, on_the_fly, job.liq)
    n_batches = len(train) // job.t.batch_size
    if job.rank == 0:
        _announce(job, train, val, par, first_epoch, n_batches, feed, grids, on_the_fly, why)
    y = _labels_on_device(job, train)
    for epoch in range(first_epoch, job.t.epochs):
        t0 = time.time()
        sums = _epoch(job, net, model, feed, y, len(train), n_batches, epoch)
        t_steps = time.time() - t0  # the optimisation steps alone (no validation, no I/O)
        tr = par.allreduce_sum(sums)
        va = par.allreduce_sum(evaluate(net, val_feed, val_y, job.device, job.amp)[0])
        best = _record_epoch(job, history, best, epoch, tr, va, t0, t_steps, model, par,
                             n_batches)
    feed_where = feed.where
    feed.free()
    if grids is not None:
        grids.free()
    acc, confusion = _test(job, model, par)
    peaks = _peak_memory(par, job.device)
    par.close()
    if job.rank == 0:
        _report(job, history, acc, par, first_epoch, n_batches, grids, grid_bytes, on_the_fly,
                feed_where, pss_mib, peaks)
    return {"history": history, "best": best, "mspec": job.mspec, "meta": job.meta,
            "acc": acc, "confusion": confusion, "backend": par.name, "ranks": job.size,
            "device": job.device.type, "seed": job.seed}


def _load_labels(job: _Job):
    """The training and validation splits' labels (positions are read by the feed, held on
    the host only when gridded here)."""
    from glasscam_mpi.learn.data import load_split

    t = job.t
    train, val = (load_split(job.rd.stage_file("prepare"), s, positions=False,
                             max_runs=t.train_runs if s == "train" else 0, liquid_T=job.liq)
                  for s in ("train", "validation"))
    if len(train) < t.batch_size:
        raise ConfigError(f"[train].batch_size = {t.batch_size} is larger than the "
                          f"{len(train)} training samples; lower it or raise [prepare].n_runs")
    return train, val


def _build(job: _Job, train):
    """The model (seeded from the job's stream), its optimizer and the backend."""
    import torch

    from glasscam_mpi.learn.data import dataset_meta
    from glasscam_mpi.learn.distributed import open_backend
    from glasscam_mpi.learn.model import ModelSpec, build_model

    t = job.t
    job.meta = dataset_meta(job.cfg, train.box)
    job.mspec = ModelSpec.for_grid(job.gspec, channels=t.channels, kernels=t.kernels,
                                   strides=t.strides, hidden=t.hidden, dropout=t.dropout)
    job.espec = EpochSpec(lambda *keys: task_rng(job.seed, STAGE, *keys), t.batch_size,
                          job.rank, job.size, job.mspec.hidden, t.dropout, t.augment,
                          job.gspec.dim, job.gspec.n_grid, job.amp)
    par = open_backend(t.backend, job.comm, job.device)
    torch.manual_seed(task_rng(job.seed, STAGE, "init").integers(2**62))
    # test hook: GLASSCAM_INJECT_INIT=train:1 gives rank 1 other initial weights, which the
    # backend's broadcast from rank 0 must replace (digests printed before and after)
    job.apart = injected("GLASSCAM_INJECT_INIT", STAGE)
    if job.rank in job.apart:
        torch.manual_seed(10_000 + job.rank)
    model = build_model(job.mspec).to(job.device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return model, opt, par


def _training_feed(job: _Job, train):
    """Where the training samples live (learn/feed.py): gridded once per node into MPI
    shared memory (the node's ranks each grid a block; batches are global permutations, so
    every rank reads all of it), then moved to the GPU when it fits; or, on the fly,
    positions only, each batch gridded on the device. Returns (feed, shared grids or None,
    grid bytes, why, the training split without its positions); sets ``job.on_the_fly``."""
    import torch
    from mpi4py import MPI

    from glasscam_mpi.learn.data import grid_split, load_split
    from glasscam_mpi.learn.feed import GridFeed, PositionFeed, choose_on_the_fly
    from glasscam_mpi.parallel import NodeShared

    t, gspec, comm = job.t, job.gspec, job.comm
    grid_bytes = len(train) * int(np.prod(gspec.shape)) * 4
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    node_copies = 1 if t.shared_grids else node.Get_size()
    node.Free()
    on_the_fly, why = choose_on_the_fly(t.grid_on_the_fly, grid_bytes, job.device, node_copies)
    # one choice for all ranks (free memory differs between GPUs): on the fly if any needs it
    on_the_fly = comm.allreduce(on_the_fly, op=MPI.LOR)
    job.on_the_fly = on_the_fly
    grids = None
    if on_the_fly:
        feed = PositionFeed(job.rd.stage_file("prepare"), train.runs, train.labels, gspec,
                            train.box, job.device, liquid_T=job.liq)
    else:
        train = load_split(job.rd.stage_file("prepare"), "train", max_runs=t.train_runs,
                           liquid_T=job.liq)
        grids = NodeShared(comm, (len(train), *gspec.shape), share=t.shared_grids)
        X_host = torch.from_numpy(grids.fill(lambda lo, hi: grid_split(train, gspec,
                                                                       np.arange(lo, hi))))
        feed = GridFeed(X_host, job.device, t.batch_size // job.size)
    train.positions = None  # the feed holds what training needs
    return feed, grids, grid_bytes, why, train


def _labels_on_device(job: _Job, train):
    import torch

    return torch.from_numpy(train.labels).to(job.device)


def _start(job: _Job, state_path, model, opt, par, feed):
    """Input normalisation (a new training) or the checkpoint's state (a resumed one), the
    optimizer wrapped and the parameters broadcast: (history, best, first epoch, net)."""
    history: dict[str, list] = {k: [] for k in HISTORY}
    best = {"epoch": -1, "val_accuracy": -1.0, "val_loss": float("inf")}
    first_epoch = 0
    if state_path is None:
        # standardise each input channel with the training set's mean and std (float64
        # sums, the same on every rank): without it the 0.6 +- 0.26 density grids leave the
        # small demo network on a plateau for ~80 epochs instead of ~10
        model.set_input_normalization(*channel_mean_std(feed))
    # wrap first, then load: Horovod's DistributedOptimizer is a new optimizer built from
    # the parameter groups, and would drop an Adam state loaded before it
    job.opt = opt = par.wrap_optimizer(opt, model)
    if state_path is not None:
        # every rank loads the very same checkpoint file: nothing to broadcast
        ck = load_checkpoint(state_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best, first_epoch = ck["history"], ck["best"], ck["epoch"] + 1
    else:
        if job.apart:
            _show_digests(job, model, "before the broadcast")
        par.broadcast_parameters(model)
    net = par.wrap_model(model)
    if job.apart and state_path is None:
        _show_digests(job, model, "after the broadcast")
    return history, best, first_epoch, net


def _show_digests(job: _Job, model, when: str) -> None:
    from glasscam_mpi.learn.distributed import parameter_digest

    digests = job.comm.allgather(parameter_digest(model))
    if job.rank == 0:
        print(f"train: parameter digests {when}: {' '.join(digests)}", flush=True)


def _announce(job: _Job, train, val, par, first_epoch, n_batches, feed, grids, on_the_fly,
              why) -> None:
    t, gspec = job.t, job.gspec
    print(f"train: {job.cfg.system.name} {len(train)} train / {len(val)} validation samples, "
          f"grid {gspec.n_grid}^{gspec.dim} x {gspec.n_species} ch, backend {par.name} on "
          f"{job.size} rank(s), {job.device.type}; epochs {first_epoch + 1}..{t.epochs}, "
          f"{n_batches} steps of {t.batch_size} per epoch", flush=True)
    if on_the_fly:
        print(f"train: gridding on the fly ({why}): positions {feed.nbytes / 2**20:.1f} MiB "
              f"per rank on the {job.device.type} device", flush=True)
    else:
        where = (f"shared by the {grids.node.Get_size()} rank(s) of each node"
                 if grids.shared else "a copy on every rank")
        print(f"train: training grids {grids.nbytes / 2**20:.1f} MiB, {where} ({why}); "
              f"batches from {feed.where}", flush=True)


def _epoch(job: _Job, net, model, feed, y, n_train: int, n_batches: int, epoch: int):
    """One epoch's optimisation steps on this rank (:func:`glasscam_mpi.learn.loop.run_epoch`)
    with the stage's checks between steps: (loss * n, correct, n) summed here."""
    from glasscam_mpi.learn.distributed import parameter_digest
    from glasscam_mpi.learn.loop import run_epoch

    if epoch in injected("GLASSCAM_INJECT_CRASH", STAGE):
        raise RuntimeError(f"injected crash in train epoch {epoch}")
    # test hook: GLASSCAM_INJECT_DESYNC=train:E nudges the last rank's parameters after the
    # first step of epoch E, which check_sync must catch
    desync = injected("GLASSCAM_INJECT_DESYNC", STAGE)

    def after_step(b: int) -> None:
        if epoch in desync and b == 0 and job.rank == job.size - 1:
            import torch

            with torch.no_grad():
                next(model.parameters()).view(-1)[0] += 1e-3
        if job.t.check_sync:
            digests = job.comm.allgather(parameter_digest(model))
            if len(set(digests)) != 1:
                raise RuntimeError(f"parameters differ between ranks after epoch {epoch} "
                                   f"step {b}: {digests}")
            job.steps_checked += 1

    return run_epoch(job.espec, net, job.opt, feed, y, n_train, n_batches, epoch, job.device,
                     after_step)


def _record_epoch(job: _Job, history, best, epoch, tr, va, t0, t_steps, model, par,
                  n_batches) -> dict:
    """The epoch into the history; rank 0 saves the checkpoint (and the best model) and
    prints the epoch; every rank waits for the checkpoint. Returns the best so far."""
    t = job.t
    history["epoch"].append(epoch)
    history["train_loss"].append(float(tr[0] / tr[2]))
    history["train_accuracy"].append(float(tr[1] / tr[2]))
    history["val_loss"].append(float(va[0] / va[2]))
    history["val_accuracy"].append(float(va[1] / va[2]))
    history["seconds"].append(time.time() - t0)
    history["train_seconds"].append(t_steps)
    is_best = (history["val_accuracy"][-1], -history["val_loss"][-1]) > \
        (best["val_accuracy"], -best["val_loss"])
    if is_best:
        best = {"epoch": epoch, "val_accuracy": history["val_accuracy"][-1],
                "val_loss": history["val_loss"][-1]}
    if job.rank == 0:
        files = job.files
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": job.opt.state_dict(),
                 "history": history, "best": best, "model_spec": job.mspec.to_dict(),
                 "data_meta": job.meta, "backend": par.name}
        if is_best:
            _save({k: v for k, v in state.items() if k != "optimizer"}, files["best"])
        _save(state, files["checkpoint"])
        files["history"].write_text(dumps(history, indent=1) + "\n")
        print(f"train: epoch {epoch + 1}/{t.epochs} loss {history['train_loss'][-1]:.4f} "
              f"acc {history['train_accuracy'][-1]:.3f} | validation loss "
              f"{history['val_loss'][-1]:.4f} acc {history['val_accuracy'][-1]:.3f} | "
              f"{history['seconds'][-1]:.1f} s ({n_batches * t.batch_size / t_steps:.0f} "
              f"samples/s){'  *best' if is_best else ''}", flush=True)
    job.comm.Barrier()  # the checkpoint of this epoch exists before anyone goes on
    return best


def _test(job: _Job, model, par):
    """The best model on the test set, split over the ranks: (accuracy per class,
    confusion matrix)."""
    from glasscam_mpi.learn.data import load_split
    from glasscam_mpi.learn.model import GLASS, LIQUID

    test = load_split(job.rd.stage_file("prepare"), "test", positions=False, liquid_T=job.liq)
    best_state = load_checkpoint(job.files["best"])
    model.load_state_dict(best_state["model"])
    test_feed, test_y = eval_feed(job.rd.stage_file("prepare"), test, job.rank, job.size,
                                  job.gspec, job.device, job.on_the_fly, job.liq)
    _, pred = evaluate(model, test_feed, test_y, job.device, job.amp)
    confusion = np.zeros((2, 2))
    np.add.at(confusion, (test_y.cpu().numpy(), pred), 1)
    confusion = par.allreduce_sum(confusion).astype(np.int64)
    counts = confusion.sum(axis=1)
    acc = {"glass": confusion[GLASS, GLASS] / counts[GLASS],
           "liquid": confusion[LIQUID, LIQUID] / counts[LIQUID]}
    return acc, confusion


def _report(job: _Job, history, acc, par, first_epoch, n_batches, grids, grid_bytes,
            on_the_fly, feed_where, pss_mib, peaks) -> None:
    """Rank 0: the curves, the test accuracy beside the paper's, and logs/train.json."""
    t, cfg, size = job.t, job.cfg, job.size
    _plot(job.files["curves"], history, cfg.system.name)
    paper = PAPER_TABLE2.get(cfg.system.name)
    print("train: test accuracy (the paper's Table 2)\n"
          f"  {'':<16} {'glass':>7} {'liquid':>7}\n"
          f"  {cfg.system.name + ' (this run)':<16} {acc['glass']:>7.3f} {acc['liquid']:>7.3f}"
          + (f"\n  {cfg.system.name + ' (paper)':<16} {paper[0]:>7.3f} {paper[1]:>7.3f}"
             if paper else ""), flush=True)
    if t.check_sync:
        print(f"train: parameters identical on all {size} ranks after each of "
              f"{job.steps_checked} steps (checked)", flush=True)
    job.rd.write_log(STAGE, {"stage": STAGE, "ranks": size, "backend": par.name,
                             "device": job.device.type,
                             "seconds_total": time.time() - job.t_start,
                             "epochs_run": t.epochs - first_epoch,
                             "steps_checked": job.steps_checked,
                             "samples_per_s": samples_per_second(history, n_batches * t.batch_size,
                                                    first_epoch),
                             "grid_mib": grid_bytes / 2**20 if grids else 0.0,
                             "grids_shared": bool(grids and grids.shared),
                             "grid_on_the_fly": on_the_fly, "feed": feed_where,
                             "pss_mib_all_ranks": pss_mib, **peaks,
                             **({"member": job.member, "seed": job.seed}
                                if cfg.train.ensemble > 1 else {})})


def _peak_memory(par, device) -> dict:
    """The largest peak over the ranks of host memory (max RSS) and of the device memory
    torch allocated, in MiB."""
    import resource

    import torch

    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    dev = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    from mpi4py import MPI

    host = par.comm.allreduce(float(host), op=MPI.MAX)
    dev = par.comm.allreduce(float(dev), op=MPI.MAX)
    return {"peak_host_mib_per_rank": round(float(host), 1),
            "peak_device_mib_per_rank": round(float(dev), 1)}


def _write_h5(rd, cfg, results: list[dict]):
    """train.h5 (member 0's datasets at the top; with an ensemble, every member's too),
    through :func:`glasscam_mpi.store.write_file`."""
    from glasscam_mpi.store import Data, Group, write_file

    first = results[0]
    tree = _member_tree(first)
    attrs = {"stage": STAGE, "system": cfg.system.name, "backend": first["backend"],
             "ranks": first["ranks"], "device": first["device"],
             "model_spec": first["mspec"].to_json(), "data_meta": dumps(first["meta"]),
             "best_epoch": first["best"]["epoch"], "config": cfg.to_toml()}
    if len(results) > 1:
        attrs["ensemble"] = len(results)
        attrs["network_seeds"] = np.array([r["seed"] for r in results], dtype=np.int64)
        tree["test_accuracy_members"] = Data(
            np.array([[r["acc"]["glass"], r["acc"]["liquid"]] for r in results]),
            {"axes": "member; [glass, liquid]"})
        tree["members"] = Group({}, {str(m): Group({"best_epoch": r["best"]["epoch"],
                                                    "seed": r["seed"]}, _member_tree(r))
                                     for m, r in enumerate(results)})
    write_file(rd.stage_file(STAGE), attrs, tree)


def _member_tree(r: dict) -> dict:
    """One network's datasets (the training curves and its test accuracy)."""
    from glasscam_mpi.store import Data

    acc, confusion = r["acc"], r["confusion"]
    tree: dict = {key: np.asarray(values) for key, values in r["history"].items()}
    tree["test_accuracy"] = Data(np.array([acc["glass"], acc["liquid"]]),
                                 {"classes": "glass,liquid"})
    tree["test_confusion"] = Data(confusion, {"axes": "rows true, columns predicted; "
                                                      "0 liquid, 1 glass"})
    tree["test_counts"] = np.array([confusion[1].sum(), confusion[0].sum()])
    return tree


def _plot(path: Path, history: dict, system: str) -> None:
    """Loss and accuracy per epoch, training and validation, into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.asarray(history["epoch"]) + 1
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    a.plot(ep, history["train_loss"], label="train")
    a.plot(ep, history["val_loss"], label="validation")
    a.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{system}: loss")
    b.plot(ep, history["train_accuracy"], label="train")
    b.plot(ep, history["val_accuracy"], label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title=f"{system}: accuracy", ylim=(0, 1.02))
    for ax in (a, b):
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(rd: RunDir, cfg: Config) -> dict:
    files = _files(rd)
    out: dict = {"complete": rd.intact(STAGE)}
    if not out["complete"]:
        if rd.stage_file(STAGE).exists():
            out["error"] = (f"{rd.stage_file(STAGE).name} is damaged: rerun 'glasscam train "
                            f"--run-dir {rd.path} --resume' to rewrite it")
        if files["history"].exists():
            h = json.loads(files["history"].read_text())
            out["epochs_done"] = len(h["epoch"])
            out["epochs_total"] = cfg.train.epochs
        return out
    import h5py

    with h5py.File(rd.stage_file(STAGE), "r") as fh:
        acc = fh["test_accuracy"][:]
        out.update(backend=str(fh.attrs["backend"]), ranks=int(fh.attrs["ranks"]),
                   device=str(fh.attrs["device"]), best_epoch=int(fh.attrs["best_epoch"]) + 1,
                   epochs=len(fh["epoch"]),
                   final_val_accuracy=round(float(fh["val_accuracy"][-1]), 4))
        out["test_accuracy"] = {"glass": round(float(acc[0]), 4),
                                "liquid": round(float(acc[1]), 4)}
        if "test_accuracy_members" in fh:
            from glasscam_mpi.learn.ensemble import spread

            mem = fh["test_accuracy_members"][:]
            out["ensemble"] = {"members": int(fh.attrs["ensemble"]),
                               "network_seeds": [int(v) for v in fh.attrs["network_seeds"]],
                               "test_accuracy_members": [[round(float(v), 4) for v in row]
                                                         for row in mem],
                               "test_accuracy_spread": {
                                   c: {k: round(v, 4) for k, v in spread(mem[:, j]).items()}
                                   for j, c in enumerate(("glass", "liquid"))}}
    paper = PAPER_TABLE2.get(cfg.system.name)
    if paper:
        out["test_accuracy_paper"] = {"glass": paper[0], "liquid": paper[1]}
    return out


def _cost(cfg: Config, cal, profile) -> Cost:
    """Epochs of the training and validation sets at the measured rates, plus gridding the
    sets once, for every member; data-parallel over the profile's GPUs (else its ranks),
    linear scaling assumed."""
    from glasscam_mpi.learn.calibrate import model_bytes

    t, learn, S, d = cfg.train, cal.learn, cfg.sys.n_species, cfg.sys.dim
    n_train, n_val, _ = cfg.split_counts()
    gpus = profile.nodes * profile.gpus_per_node
    workers = gpus or profile.nodes * profile.ntasks_per_node
    n_train_s, n_val_s = 2 * (min(n_train, t.train_runs) if t.train_runs else n_train), 2 * n_val
    epoch_s = n_train_s / learn.train_samples_per_s + n_val_s / learn.eval_samples_per_s
    grid_once_s = (n_train_s + n_val_s) / learn.grid_samples_per_s
    k = t.ensemble  # a seed ensemble trains k networks one after the other
    grid_set = n_train_s * int(np.prod((S,) + (cfg.n_grid,) * d)) * 4
    per_node = profile.ntasks_per_node if t.shared_grids else 1
    warnings = [] if gpus else ["train: the profile has no GPUs; training on CPU ranks"]
    if learn.device != "cuda" and gpus:
        warnings.append("train: the rate was measured on this machine's CPU; on the profile's "
                        "GPUs it is much faster: give --rates-from RUN_DIR of a run trained "
                        "on such a GPU")
    return Cost(
        k * t.epochs, epoch_s, model_bytes(cfg) * 3 * k,
        cal.md.memory_bytes + grid_set // per_node,
        f"{learn.source}: {learn.train_samples_per_s:.1f} samples/s on one "
        f"{learn.device} worker; {t.epochs} epochs of {n_train_s} samples"
        + (f" for each of {k} ensemble members" if k > 1 else "") + "; linear "
        f"scaling over {workers} {'GPUs' if gpus else 'ranks'} assumed",
        seconds=k * (t.epochs * epoch_s + grid_once_s),
        memory_note=(f"training grids {gib(grid_set)} ({n_train_s} x {S} x {cfg.n_grid}^{d} "
                     "float32), held "
                     + ("once per node in shared memory" if t.shared_grids else "on every rank")
                     + ("; gridded on the fly instead when they do not fit"
                        if t.grid_on_the_fly == "auto" else "")),
        warnings=warnings)


stage = Stage(
    STAGE,
    About(HELP, DESCRIPTION,
          options=(("--resume", "continue an interrupted training from its last checkpoint"),
                   ("--restart", "discard checkpoints and a finished model; train from "
                                 "scratch")),
          run_options={"resume": True}),  # 'glasscam run' continues an interrupted training
    Flow(needs=("prepare",), runs=Runs("gpu", rank_per_gpu=True), inputs=(Input("prepare"),),
         cost=_cost),
    work=_work, summarize=summarize, setup=_setup, reset=_reset)
