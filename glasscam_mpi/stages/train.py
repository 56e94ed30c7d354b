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
from glasscam_mpi.learn.checkpoint import load_checkpoint
from glasscam_mpi.parallel import bcast_from_root, injected, task_rng
from glasscam_mpi.reference import TABLE2 as PAPER_TABLE2
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.engine import Stage, session

STAGE = "train"
HELP = "train the glass/liquid CNN, data-parallel (Horovod, DDP or single)"
DESCRIPTION = ("Train the CNN of the paper (section 3.1) on gridded liquid and glass samples "
               "of prepare.h5, data-parallel over MPI ranks with [train].backend = horovod, "
               "ddp or single. A checkpoint is written every epoch; --resume continues an "
               "interrupted training exactly where it stopped. Writes train.h5 with the test "
               "accuracy per class (the paper's Table 2).")


def _files(rd: RunDir, member: int = 0) -> dict[str, Path]:
    d = rd.path / STAGE if member == 0 else rd.path / STAGE / f"member-{member}"
    return {"dir": d, "checkpoint": d / "checkpoint.pt", "best": d / "best.pt",
            "history": d / "history.json", "curves": d / "curves.png"}


def model_paths(run_dir: Path | str, cfg: Config) -> list[Path]:
    """The best model of every member of the run's ensemble (member 0 first)."""
    rd = RunDir(run_dir)
    return [_files(rd, m)["best"] for m in range(cfg.train.ensemble)]


def _save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run(comm, run_dir, requested: Config | None, *, retry_failed: bool = False,
        resume: bool = False, restart: bool = False, progress_every: float = 5.0) -> dict:
    """Train (every rank calls this). ``resume`` continues from the last checkpoint."""
    with session(comm, run_dir, STAGE) as rd:
        files = _files(rd)

        def setup():
            rd.lock("glasscam train")
            if restart:  # before the config check: [train] may change on a restart
                import shutil

                stale = [p for p in (files["dir"], rd.stage_file(STAGE), rd.stage_file("gradcam"),
                                     rd.path / "shards" / "gradcam") if p.exists()]
                for p in stale:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                if stale:
                    print("train --restart: removed " + ", ".join(str(p) for p in stale),
                          flush=True)
            cfg = rd.resolve_config(requested)
            rd.require("prepare")
            if rd.intact(STAGE) and not restart:
                return cfg, None, True
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
            return cfg, states, False

        cfg, state_paths, complete = bcast_from_root(comm, setup)
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


def _train(comm, rd: RunDir, cfg: Config, state_path, progress_every: float,
           member: int = 0, seed: int | None = None) -> dict:
    """Train one network (ensemble member ``member``, from the streams of ``seed``; default
    the run seed) and evaluate its best model on the test set. Returns, on every rank, what
    train.h5 records of it."""
    import torch
    import torch.nn.functional as F
    from mpi4py import MPI

    from glasscam_mpi.learn import augment
    from glasscam_mpi.learn.data import dataset_meta, grid_spec_of, grid_split, load_split
    from glasscam_mpi.learn.distributed import open_backend, parameter_digest, pick_device
    from glasscam_mpi.parallel import NodeShared, proportional_set_size
    from glasscam_mpi.learn.model import GLASS, LIQUID, ModelSpec, build_model

    t = cfg.train
    rank, size = comm.Get_rank(), comm.Get_size()
    files = _files(rd, member)
    seed = cfg.run.seed if seed is None else seed
    t_start = time.time()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = pick_device(t.device, comm)
    if t.batch_size % size:
        raise ConfigError(f"[train].batch_size = {t.batch_size} must be divisible by the "
                          f"{size} ranks (each rank takes an equal part of every mini-batch)")
    gspec = grid_spec_of(cfg)
    # labels first: positions are read by the feed, held on the host only when gridded here
    liq = t.liquid_snapshot  # the liquid class: T_liquid's sample, or a stored snapshot
    train, val = (load_split(rd.stage_file("prepare"), s, positions=False,
                             max_runs=t.train_runs if s == "train" else 0, liquid_T=liq)
                  for s in ("train", "validation"))
    if len(train) < t.batch_size:
        raise ConfigError(f"[train].batch_size = {t.batch_size} is larger than the "
                          f"{len(train)} training samples; lower it or raise [prepare].n_runs")
    meta = dataset_meta(cfg, train.box)
    mspec = ModelSpec.for_grid(gspec, channels=t.channels, kernels=t.kernels, strides=t.strides,
                               hidden=t.hidden, dropout=t.dropout)
    par = open_backend(t.backend, comm, device)
    torch.manual_seed(task_rng(seed, STAGE, "init").integers(2**62))
    # test hook: GLASSCAM_INJECT_INIT=train:1 gives rank 1 other initial weights, which the
    # backend's broadcast from rank 0 must replace (digests printed before and after)
    apart = injected("GLASSCAM_INJECT_INIT", STAGE)
    if rank in apart:
        torch.manual_seed(10_000 + rank)

    def show_digests(when: str) -> None:
        digests = comm.allgather(parameter_digest(model))
        if rank == 0:
            print(f"train: parameter digests {when}: {' '.join(digests)}", flush=True)

    model = build_model(mspec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    history: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_accuracy",
                                               "val_loss", "val_accuracy", "seconds",
                                               "train_seconds")}
    best = {"epoch": -1, "val_accuracy": -1.0, "val_loss": float("inf")}
    first_epoch = 0
    # Where the samples live (learn/feed.py): the training set gridded once per node into
    # MPI shared memory (the node's ranks each grid a block; batches are global
    # permutations, so every rank reads all of it), then moved to the GPU when it fits; or,
    # on the fly, positions only, each batch gridded on the device.
    from glasscam_mpi.learn.feed import GridFeed, PositionFeed, choose_on_the_fly

    grid_bytes = len(train) * int(np.prod(gspec.shape)) * 4
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    node_copies = 1 if t.shared_grids else node.Get_size()
    node.Free()
    on_the_fly, why = choose_on_the_fly(t.grid_on_the_fly, grid_bytes, device, node_copies)
    # one choice for all ranks (free memory differs between GPUs): on the fly if any needs it
    on_the_fly = comm.allreduce(on_the_fly, op=MPI.LOR)
    grids = None
    if on_the_fly:
        feed = PositionFeed(rd.stage_file("prepare"), train.runs, train.labels, gspec, train.box,
                            device, liquid_T=liq)
        X_host = None
    else:
        train = load_split(rd.stage_file("prepare"), "train", max_runs=t.train_runs,
                           liquid_T=liq)
        grids = NodeShared(comm, (len(train), *gspec.shape), share=t.shared_grids)
        X_host = torch.from_numpy(grids.fill(lambda lo, hi: grid_split(train, gspec,
                                                                       np.arange(lo, hi))))
        feed = GridFeed(X_host, device, t.batch_size // size)
    train.positions = None  # the feed holds what training needs
    pss_mib = par.allreduce_sum(np.array([proportional_set_size()]))[0]  # all ranks, all nodes
    y = torch.from_numpy(train.labels).to(device)
    if state_path is None:
        # standardise each input channel with the training set's mean and std (float64
        # sums, the same on every rank): without it the 0.6 +- 0.26 density grids leave the
        # small demo network on a plateau for ~80 epochs instead of ~10
        model.set_input_normalization(*_channel_mean_std(feed))
    # wrap first, then load: Horovod's DistributedOptimizer is a new optimizer built from
    # the parameter groups, and would drop an Adam state loaded before it
    opt = par.wrap_optimizer(opt, model)
    if state_path is not None:
        # every rank loads the very same checkpoint file: nothing to broadcast
        ck = load_checkpoint(state_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best, first_epoch = ck["history"], ck["best"], ck["epoch"] + 1
    else:
        if apart:
            show_digests("before the broadcast")
        par.broadcast_parameters(model)
    net = par.wrap_model(model)
    if apart and state_path is None:
        show_digests("after the broadcast")
    val_feed, val_y = _eval_feed(rd, val, rank, size, gspec, device, on_the_fly, liq)
    n_batches = len(train) // t.batch_size
    local = t.batch_size // size
    amp = t.amp and device.type == "cuda"
    crashes = injected("GLASSCAM_INJECT_CRASH", STAGE)
    # test hook: GLASSCAM_INJECT_DESYNC=train:E nudges the last rank's parameters after the
    # first step of epoch E, which check_sync must catch
    desync = injected("GLASSCAM_INJECT_DESYNC", STAGE)
    if rank == 0:
        print(f"train: {cfg.system.name} {len(train)} train / {len(val)} validation samples, "
              f"grid {gspec.n_grid}^{gspec.dim} x {gspec.n_species} ch, backend {par.name} on "
              f"{size} rank(s), {device.type}; epochs {first_epoch + 1}..{t.epochs}, "
              f"{n_batches} steps of {t.batch_size} per epoch", flush=True)
        if on_the_fly:
            print(f"train: gridding on the fly ({why}): positions {feed.nbytes / 2**20:.1f} MiB "
                  f"per rank on the {device.type} device", flush=True)
        else:
            where = (f"shared by the {grids.node.Get_size()} rank(s) of each node"
                     if grids.shared else "a copy on every rank")
            print(f"train: training grids {grids.nbytes / 2**20:.1f} MiB, {where} ({why}); "
                  f"batches from {feed.where}", flush=True)
    steps_checked = 0
    for epoch in range(first_epoch, t.epochs):
        if epoch in crashes:
            raise RuntimeError(f"injected crash in train epoch {epoch}")
        t0 = time.time()
        perm = task_rng(seed, STAGE, "epoch", epoch).permutation(len(train))
        perm = torch.from_numpy(perm).to(device)
        # this epoch's dropout masks and augmentations, drawn on the host from the seeds of
        # (epoch, batch) and sent to the device once; this rank's rows of each global batch
        mine_rows = slice(rank * local, (rank + 1) * local)
        masks = torch.from_numpy(np.stack([
            task_rng(seed, STAGE, "dropout", epoch, b).random(
                (t.batch_size, mspec.hidden))[mine_rows] >= t.dropout
            for b in range(n_batches)])).to(device)
        if t.augment:
            augs = [augment.draw(task_rng(seed, STAGE, "augment", epoch, b),
                                 t.batch_size, gspec.dim, gspec.n_grid)
                    for b in range(n_batches)]
            augs = augment.Params(*(torch.from_numpy(np.stack([a[k][mine_rows] for a in augs]))
                                    .to(device) for k in range(3)))
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
        for b in range(n_batches):
            mine = perm[b * t.batch_size + rank * local:b * t.batch_size + (rank + 1) * local]
            xb = feed.batch(mine)
            if t.augment:
                xb = augment.augment_batch(xb, augment.Params(*(v[b] for v in augs)))
            yb = y.index_select(0, mine)
            opt.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(xb, dropout_mask=masks[b])
                loss = F.cross_entropy(logits.float(), yb)
            loss.backward()
            opt.step()
            if epoch in desync and b == 0 and rank == size - 1:
                with torch.no_grad():
                    next(model.parameters()).view(-1)[0] += 1e-3
            with torch.no_grad():  # on the device: no host sync per step
                sums[0] += loss.detach().double() * local
                sums[1] += (logits.argmax(1) == yb).sum()
            if t.check_sync:
                digests = comm.allgather(parameter_digest(model))
                if len(set(digests)) != 1:
                    raise RuntimeError(f"parameters differ between ranks after epoch {epoch} "
                                       f"step {b}: {digests}")
                steps_checked += 1
        sums[2] = n_batches * local
        sums = sums.cpu().numpy()  # the epoch's one host sync
        t_steps = time.time() - t0  # the optimisation steps alone (no validation, no I/O)
        tr = par.allreduce_sum(sums)
        va = par.allreduce_sum(_evaluate(net, val_feed, val_y, device, amp)[0])
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
        if rank == 0:
            state = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "history": history, "best": best, "model_spec": mspec.to_dict(),
                     "data_meta": meta, "backend": par.name}
            if is_best:
                _save({k: v for k, v in state.items() if k != "optimizer"}, files["best"])
            _save(state, files["checkpoint"])
            files["history"].write_text(dumps(history, indent=1) + "\n")
            print(f"train: epoch {epoch + 1}/{t.epochs} loss {history['train_loss'][-1]:.4f} "
                  f"acc {history['train_accuracy'][-1]:.3f} | validation loss "
                  f"{history['val_loss'][-1]:.4f} acc {history['val_accuracy'][-1]:.3f} | "
                  f"{history['seconds'][-1]:.1f} s ({n_batches * t.batch_size / t_steps:.0f} "
                  f"samples/s){'  *best' if is_best else ''}", flush=True)
        comm.Barrier()  # the checkpoint of this epoch exists before anyone goes on

    feed_where = feed.where
    feed.free()
    del X_host  # (a view of the shared window)
    if grids is not None:
        grids.free()

    # the best model on the test set, split over the ranks
    test = load_split(rd.stage_file("prepare"), "test", positions=False, liquid_T=liq)
    best_state = load_checkpoint(files["best"])
    model.load_state_dict(best_state["model"])
    test_feed, test_y = _eval_feed(rd, test, rank, size, gspec, device, on_the_fly, liq)
    _, pred = _evaluate(model, test_feed, test_y, device, amp)
    confusion = np.zeros((2, 2))
    np.add.at(confusion, (test_y.cpu().numpy(), pred), 1)
    confusion = par.allreduce_sum(confusion).astype(np.int64)
    counts = confusion.sum(axis=1)
    acc = {"glass": confusion[GLASS, GLASS] / counts[GLASS],
           "liquid": confusion[LIQUID, LIQUID] / counts[LIQUID]}
    peaks = _peak_memory(par, device)
    par.close()
    if rank == 0:
        _plot(files["curves"], history, cfg.system.name)
        paper = PAPER_TABLE2.get(cfg.system.name)
        print("train: test accuracy (the paper's Table 2)\n"
              f"  {'':<16} {'glass':>7} {'liquid':>7}\n"
              f"  {cfg.system.name + ' (this run)':<16} {acc['glass']:>7.3f} {acc['liquid']:>7.3f}"
              + (f"\n  {cfg.system.name + ' (paper)':<16} {paper[0]:>7.3f} {paper[1]:>7.3f}"
                 if paper else ""), flush=True)
        if t.check_sync:
            print(f"train: parameters identical on all {size} ranks after each of "
                  f"{steps_checked} steps (checked)", flush=True)
        rd.write_log(STAGE, {"stage": STAGE, "ranks": size, "backend": par.name,
                             "device": device.type, "seconds_total": time.time() - t_start,
                             "epochs_run": t.epochs - first_epoch, "steps_checked": steps_checked,
                             "samples_per_s": _rate(history, n_batches * t.batch_size,
                                                    first_epoch),
                             "grid_mib": grid_bytes / 2**20 if grids else 0.0,
                             "grids_shared": bool(grids and grids.shared),
                             "grid_on_the_fly": on_the_fly, "feed": feed_where,
                             "pss_mib_all_ranks": pss_mib, **peaks,
                             **({"member": member, "seed": seed}
                                if cfg.train.ensemble > 1 else {})})
    return {"history": history, "best": best, "mspec": mspec, "meta": meta, "acc": acc,
            "confusion": confusion, "backend": par.name, "ranks": size,
            "device": device.type, "seed": seed}


def _channel_mean_std(feed):
    """Per-channel mean and standard deviation of the feed's (n, C, *grid) samples, summed
    in float64 chunk by chunk (no float64 copy of the whole set)."""
    import torch

    s1 = s2 = None
    count = 0
    for lo in range(0, feed.n, feed.chunk):
        index = torch.arange(lo, min(lo + feed.chunk, feed.n), device=feed.device)
        x = feed.batch(index).double()
        axes = (0,) + tuple(range(2, x.dim()))
        s1 = x.sum(dim=axes) if s1 is None else s1 + x.sum(dim=axes)
        s2 = (x * x).sum(dim=axes) if s2 is None else s2 + (x * x).sum(dim=axes)
        count += x.numel() // x.shape[1]
    mean = (s1 / count).cpu()
    return mean, torch.sqrt(torch.clamp((s2 / count).cpu() - mean * mean, min=0.0))


def _eval_feed(rd: RunDir, split, rank: int, size: int, gspec, device, on_the_fly: bool,
               liquid_T: float = 0.0):
    """This rank's share (every size-th sample) of a validation or test split, as a feed
    on the device, and its labels."""
    import torch

    from glasscam_mpi.learn.data import grid_split
    from glasscam_mpi.learn.feed import GridFeed, PositionFeed

    from glasscam_mpi.learn.data import load_split

    idx = np.arange(len(split))[rank::size]
    labels = torch.from_numpy(split.labels[idx]).to(device)
    if on_the_fly:
        return PositionFeed(rd.stage_file("prepare"), split.runs[idx], split.labels[idx], gspec,
                            split.box, device, liquid_T=liquid_T), labels
    if split.positions is None:
        split = load_split(rd.stage_file("prepare"), split.name, liquid_T=liquid_T)
    return GridFeed(torch.from_numpy(grid_split(split, gspec, idx)), device, 256), labels


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


def _rate(history: dict, per_epoch: int, first_epoch: int) -> float:
    """Training samples per second of the optimisation steps (this job's epochs)."""
    secs = history["train_seconds"][first_epoch:]
    return per_epoch * len(secs) / sum(secs) if secs and sum(secs) > 0 else float("nan")


def _evaluate(model, feed, y, device, amp: bool):
    """(loss * n, correct, n) and the predictions of a feed's samples, in eval mode; summed
    on the device, one host copy at the end."""
    import torch
    import torch.nn.functional as F

    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    preds = []
    with torch.no_grad():
        for lo in range(0, feed.n, feed.chunk):
            index = torch.arange(lo, min(lo + feed.chunk, feed.n), device=device)
            xb, yb = feed.batch(index), y[lo:lo + feed.chunk]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb).float()
            p = logits.argmax(1)
            sums += torch.stack([F.cross_entropy(logits, yb, reduction="sum").double(),
                                 (p == yb).sum().double()])
            preds.append(p)
    pred = (torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64))
    loss, correct = sums.cpu().numpy()
    return np.array([loss, correct, feed.n], dtype=np.float64), pred


def _write_h5(rd, cfg, results: list[dict]):
    import h5py

    from glasscam_mpi import __version__

    first = results[0]
    path = rd.stage_file(STAGE)
    tmp = path.with_suffix(".h5.partial")
    with h5py.File(tmp, "w") as fh:
        fh.attrs.update({"stage": STAGE, "system": cfg.system.name, "backend": first["backend"],
                         "ranks": first["ranks"], "device": first["device"],
                         "model_spec": first["mspec"].to_json(),
                         "data_meta": dumps(first["meta"]),
                         "best_epoch": first["best"]["epoch"],
                         "config": cfg.to_toml(), "glasscam_version": __version__})
        _write_member(fh, first)
        if len(results) > 1:
            fh.attrs["ensemble"] = len(results)
            fh.attrs["network_seeds"] = np.array([r["seed"] for r in results], dtype=np.int64)
            fh["test_accuracy_members"] = np.array([[r["acc"]["glass"], r["acc"]["liquid"]]
                                                    for r in results])
            fh["test_accuracy_members"].attrs["axes"] = "member; [glass, liquid]"
            for m, r in enumerate(results):
                g = fh.create_group(f"members/{m}")
                g.attrs.update({"best_epoch": r["best"]["epoch"], "seed": r["seed"]})
                _write_member(g, r)
    os.replace(tmp, path)


def _write_member(g, r: dict) -> None:
    """One network's datasets (the training curves and its test accuracy) into group ``g``."""
    acc, confusion = r["acc"], r["confusion"]
    for key, values in r["history"].items():
        g.create_dataset(key, data=np.asarray(values))
    g["test_accuracy"] = np.array([acc["glass"], acc["liquid"]])
    g["test_accuracy"].attrs["classes"] = "glass,liquid"
    g["test_confusion"] = confusion
    g["test_confusion"].attrs["axes"] = "rows true, columns predicted; 0 liquid, 1 glass"
    g["test_counts"] = np.array([confusion[1].sum(), confusion[0].sum()])


def _plot(path: Path, history: dict, system: str) -> None:
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


stage = Stage(STAGE, HELP, DESCRIPTION, run=run, summarize=summarize,
              run_options={"resume": True},  # 'glasscam run' continues an interrupted training
              options=(("--resume", "continue an interrupted training from its last checkpoint"),
                       ("--restart", "discard checkpoints and a finished model; train from "
                                     "scratch")))
