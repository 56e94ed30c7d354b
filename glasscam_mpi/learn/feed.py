"""Where the training samples live, and how a mini-batch reaches the network.

Two feeds with one interface, ``feed.batch(index) -> (b, C, n, ..., n)`` grids on the
training device, ``index`` a long tensor on that device:

* :class:`GridFeed` -- the gridded set (gridded once, before training). On a GPU it is
  copied to the device when it fits (a batch is then an ``index_select`` there); otherwise
  it stays in host memory and each batch is gathered into one of two pinned staging
  buffers and copied asynchronously, so the copy of batch k+1 overlaps the step of batch k.
* :class:`PositionFeed` -- grid on the fly: only positions and species are held (on the
  device), and each batch is gridded there by :func:`~glasscam_mpi.learn.torchgrid.to_grid_torch`
  (dense GEMMs: the fast way on a GPU). On the CPU the numpy stencil of
  :func:`~glasscam_mpi.learn.grid.to_grid_batch` is 7x faster than those GEMMs and holds
  far smaller temporaries, so a CPU feed grids with numpy -- the very numbers of the
  pre-gridded set -- unless ``GLASSCAM_TORCH_GRIDDING=1`` asks for the torch path (the
  tests use it to run the GPU's code on the CPU).
  Memory then grows with the positions (N d floats per sample) instead of the grids
  (S n^d per sample), and the host holds no copy of the set: it is read from prepare.h5 in
  chunks straight onto the device.

:func:`choose_on_the_fly` decides ``[train].grid_on_the_fly = "auto"``: on the fly when the
gridded set would not fit in the device's free memory (GPU) or in the node's available
memory (CPU), with room to spare. :func:`eval_feed` gives one rank's share of a
validation or test split as either feed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

# fraction of the free memory the gridded training set may take before auto grids on the fly
FIT_FRACTION = 0.5
# samples per evaluation batch and per block of the input statistics, the same for every
# feed so that sums run in the same order whichever feed holds the data
CHUNK = 64


def available_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device, or the host's MemAvailable (``/proc/meminfo``)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 1 << 62  # unknown: assume it fits


def choose_on_the_fly(setting, grid_bytes: int, device: torch.device,
                      copies_per_node: int = 1) -> tuple[bool, str]:
    """(on the fly?, why) for ``[train].grid_on_the_fly`` = true, false or "auto".

    ``grid_bytes`` is the gridded training set; ``copies_per_node`` how many copies the
    node would hold (1 with shared grids on the CPU; one per GPU rank on GPUs, whose
    memories are separate, so it does not matter there).
    """
    if setting is True or setting is False:
        return setting, "[train].grid_on_the_fly = " + str(setting).lower()
    free = available_bytes(device)
    need = grid_bytes * (1 if device.type == "cuda" else copies_per_node)
    fits = need <= FIT_FRACTION * free
    where = "the GPU's free memory" if device.type == "cuda" else "the node's available memory"
    return (not fits, f"auto: the gridded set ({need / 2**20:.0f} MiB) "
                      f"{'fits in' if fits else 'would not fit in'} {FIT_FRACTION:g} x "
                      f"{where} ({free / 2**20:.0f} MiB)")


class GridFeed:
    """Pre-gridded samples: on the device when they fit, else pinned, asynchronous copies."""

    chunk = CHUNK

    def __init__(self, X: torch.Tensor, device: torch.device, local_batch: int):
        self.device = device
        self.n = len(X)
        self.on_device = device.type == "cpu" or (
            X.numel() * X.element_size() <= FIT_FRACTION * available_bytes(device))
        if device.type == "cpu":
            self.X = X
        elif self.on_device:
            self.X = X.to(device)
        else:
            self.X = X
            shape = (local_batch,) + tuple(X.shape[1:])
            self._staging = [torch.empty(shape, dtype=X.dtype, pin_memory=True) for _ in range(2)]
            self._ready = [None, None]
            self._turn = 0
        self.where = ("host" if device.type == "cpu" else
                      "device" if self.on_device else "pinned host, asynchronous copies")
        self.nbytes = X.numel() * X.element_size()

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        if self.on_device:
            return self.X.index_select(0, index)
        k = self._turn
        self._turn ^= 1
        if self._ready[k] is not None:
            self._ready[k].synchronize()  # its last copy is done: the buffer is free again
        buf = self._staging[k][:len(index)]
        torch.index_select(self.X, 0, index.cpu(), out=buf)
        out = buf.to(self.device, non_blocking=True)
        self._ready[k] = torch.cuda.Event()
        self._ready[k].record()
        return out

    def free(self) -> None:
        self.X = None


class PositionFeed:
    """Grid on the fly: positions and species on the device, each batch gridded there."""

    def __init__(self, prepare_h5, runs: np.ndarray, classes: np.ndarray, gspec, box,
                 device: torch.device, dtype=torch.float32, chunk: int = 256,
                 liquid_T: float = 0.0):
        """Samples (run ``runs[i]``, class ``classes[i]``: 0 liquid, 1 glass) of prepare.h5,
        read in chunks of ``chunk`` samples straight into device memory; the liquid class
        from the snapshot at ``liquid_T`` (:func:`~glasscam_mpi.learn.data.liquid_positions`)."""
        from glasscam_mpi.learn.data import liquid_positions

        import h5py

        from glasscam_mpi.learn.torchgrid import to_grid_torch

        self.gspec, self.device, self.dtype = gspec, device, dtype
        self.torch_gridding = (device.type != "cpu"
                               or os.environ.get("GLASSCAM_TORCH_GRIDDING") == "1")
        self.chunk = CHUNK
        if not self.torch_gridding:  # numpy M in float64, from the file's float64 positions
            dtype = torch.float64
        self.dtype = dtype
        self.box = torch.as_tensor(np.asarray(box, dtype=float), dtype=dtype, device=device)
        self.n = len(runs)
        with h5py.File(prepare_h5, "r") as fh:
            n_part = fh["types"].shape[1]
            self.positions = torch.empty((self.n, n_part, gspec.dim), dtype=dtype, device=device)
            self.types = torch.empty((self.n, n_part), dtype=torch.int8, device=device)
            names = ("liquid", "glass")
            for lo in range(0, self.n, chunk):
                for c in (0, 1):
                    sel = np.flatnonzero(classes[lo:lo + chunk] == c)
                    if not len(sel):
                        continue
                    rows = runs[lo + sel]
                    order = np.argsort(rows)  # h5py reads increasing indices
                    back = np.empty_like(order)
                    back[order] = np.arange(len(order))
                    pos = (liquid_positions(fh, rows[order], liquid_T) if c == 0
                           else fh[names[c]][rows[order]])[back]
                    typ = fh["types"][rows[order]][back]
                    dst = torch.as_tensor(lo + sel, device=device)
                    self.positions[dst] = torch.as_tensor(pos, dtype=dtype).to(device)
                    self.types[dst] = torch.as_tensor(typ.astype(np.int8)).to(device)
        if self.n:  # the grid and box checks of M, once
            to_grid_torch(gspec, self.box, self.positions[:1], self.types[:1].long())
        self._boxes = self.box.expand(1, -1)
        self.nbytes = (self.positions.numel() * self.positions.element_size()
                       + self.types.numel())

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        from glasscam_mpi.learn.grid import to_grid_batch
        from glasscam_mpi.learn.torchgrid import grid_checked

        if not self.torch_gridding:
            return torch.from_numpy(to_grid_batch(
                self.gspec, self.box.double().numpy(), self.positions[index].double().numpy(),
                self.types[index].long().numpy()))
        return grid_checked(self.gspec, self._boxes.expand(len(index), -1),
                            self.positions.index_select(0, index),
                            self.types.index_select(0, index).long())

    def free(self) -> None:
        self.positions = self.types = None

    @property
    def where(self) -> str:
        how = "torch, on the device" if self.torch_gridding else "numpy, on the host"
        return f"positions only, each batch gridded on the fly ({how})"


def eval_feed(prepare: Path, split, rank: int, size: int, gspec, device, on_the_fly: bool,
              liquid_T: float = 0.0):
    """This rank's share (every size-th sample) of a validation or test split of
    ``prepare`` (prepare.h5), as a feed on the device, and its labels."""
    from glasscam_mpi.learn.data import grid_split, load_split

    idx = np.arange(len(split))[rank::size]
    labels = torch.from_numpy(split.labels[idx]).to(device)
    if on_the_fly:
        return PositionFeed(prepare, split.runs[idx], split.labels[idx], gspec, split.box,
                            device, liquid_T=liquid_T), labels
    if split.positions is None:
        split = load_split(prepare, split.name, liquid_T=liquid_T)
    return GridFeed(torch.from_numpy(grid_split(split, gspec, idx)), device, 256), labels
