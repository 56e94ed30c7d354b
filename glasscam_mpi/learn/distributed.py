"""Data parallelism for training: Horovod, torch.distributed (DDP), or a single process.

One small interface over the three, so the training loop is written once:

    par = open_backend("horovod" | "ddp" | "single", comm, device)
    model = par.wrap_model(model)             # DDP wraps; Horovod/single return it
    opt = par.wrap_optimizer(opt, model)      # Horovod: DistributedOptimizer
    par.broadcast_parameters(model)           # rank 0's parameters and buffers
    ... loss.backward(); opt.step() ...       # gradients averaged over ranks
    total = par.allreduce_sum(array)          # metrics (numpy, float64)

Rank and size come from MPI (mpi4py's COMM_WORLD, under mpiexec or srun) for every
backend, so there is one source of truth; Horovod is initialised on that communicator, and
DDP's rendezvous address (rank 0's host and a free port) is broadcast over it.
"""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import torch

BACKENDS = ("horovod", "ddp", "single")


class BackendError(RuntimeError):
    """A backend is not usable here (not installed, wrong launch, ...)."""


# A process that runs a whole sub-run alone on COMM_SELF (glasscam sweep) picks its GPU by
# its rank in the job's node, set here once, not by its rank in COMM_SELF (always 0)
_JOB_LOCAL_RANK: int | None = None


def use_job_local_rank(comm) -> None:
    """Make a later single-rank :func:`local_rank` answer this process's node-local rank
    in ``comm`` (the job), so sub-runs on one rank each spread over the node's GPUs."""
    global _JOB_LOCAL_RANK
    _JOB_LOCAL_RANK = None
    _JOB_LOCAL_RANK = local_rank(comm)


def local_rank(comm) -> int:
    """This rank's index among the ranks on its node (for picking a GPU)."""
    from mpi4py import MPI

    if _JOB_LOCAL_RANK is not None and comm.Get_size() == 1:
        return _JOB_LOCAL_RANK

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def pick_device(choice: str, comm) -> torch.device:
    """``auto``: this rank's GPU when CUDA exists, else CPU. The GPU is the node-local
    rank modulo the node's GPU count (:func:`glasscam_mpi.env.gpu_index`, what ``glasscam
    env --ranks`` prints); ``GLASSCAM_GPUS_PER_NODE`` may lower that count, not raise it."""
    from glasscam_mpi.env import GPUS_VARIABLE, gpu_index, gpus_per_node

    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendError("device = 'cuda' but torch sees no CUDA GPU "
                           f"(torch {torch.__version__}); use device = 'auto' or 'cpu'")
    n_gpus, _ = gpus_per_node()
    if n_gpus > torch.cuda.device_count() or n_gpus == 0:
        raise BackendError(f"{GPUS_VARIABLE} = {n_gpus}, but torch sees "
                           f"{torch.cuda.device_count()} GPU(s) on this node; allowed: 1 to "
                           f"{torch.cuda.device_count()}, or unset")
    index = gpu_index(local_rank(comm), n_gpus)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


class Single:
    name = "single"

    def __init__(self, comm, device: torch.device):
        self.comm, self.device = comm, device
        self.rank, self.size = 0, 1
        if comm.Get_size() > 1:
            raise BackendError(f"backend 'single' runs in one process, but {comm.Get_size()} "
                               "ranks were started; use backend 'horovod' or 'ddp', or run "
                               "without mpiexec")

    def wrap_model(self, model):
        return model

    def unwrap(self, model):
        return model

    def wrap_optimizer(self, opt, model):
        return opt

    def broadcast_parameters(self, model) -> None:
        pass

    def allreduce_sum(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def close(self) -> None:
        pass


class Horovod(Single):
    name = "horovod"

    def __init__(self, comm, device: torch.device):
        self.comm, self.device = comm, device
        try:
            import horovod.torch as hvd
        except ImportError as exc:
            raise BackendError(f"backend 'horovod' needs horovod.torch ({exc}); build it with "
                               "'bash hpc/bootstrap.sh', or use backend 'ddp'") from None
        self.hvd = hvd
        hvd.init(comm=comm)
        self.rank, self.size = hvd.rank(), hvd.size()
        if (self.rank, self.size) != (comm.Get_rank(), comm.Get_size()):
            raise BackendError(f"Horovod sees rank {self.rank} of {self.size}, MPI rank "
                               f"{comm.Get_rank()} of {comm.Get_size()}")

    def wrap_optimizer(self, opt, model):
        return self.hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                             op=self.hvd.Average)

    def broadcast_parameters(self, model) -> None:
        # Parameters only. hvd.broadcast_optimizer_state() on a fresh Adam first takes a
        # step with zero gradients to create the state: that advances Adam's step count and
        # so changes the bias correction of every later step. A fresh optimizer is the same
        # on every rank anyway, and a resumed one is loaded from one checkpoint file.
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    def allreduce_sum(self, x: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        return self.comm.allreduce(np.asarray(x, dtype=np.float64), op=MPI.SUM)

    def close(self) -> None:
        self.hvd.shutdown()


class DDP(Single):
    name = "ddp"

    def __init__(self, comm, device: torch.device):
        import torch.distributed as dist

        self.comm, self.device, self.dist = comm, device, dist
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        address = None
        if self.rank == 0:
            with socket.socket() as s:
                s.bind(("", 0))
                address = f"tcp://{socket.gethostname()}:{s.getsockname()[1]}"
        address = comm.bcast(address, root=0)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=address, rank=self.rank,
                                world_size=self.size,
                                device_id=device if device.type == "cuda" else None)

    def wrap_model(self, model):
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def unwrap(self, model):
        return model.module

    def broadcast_parameters(self, model) -> None:
        pass  # DistributedDataParallel broadcasts rank 0's parameters and buffers as it wraps

    def allreduce_sum(self, x: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        return self.comm.allreduce(np.asarray(x, dtype=np.float64), op=MPI.SUM)

    def close(self) -> None:
        self.dist.destroy_process_group()


def open_backend(name: str, comm, device: torch.device):
    if name not in BACKENDS:
        raise BackendError(f"backend {name!r}; allowed: {', '.join(BACKENDS)}")
    return {"horovod": Horovod, "ddp": DDP, "single": Single}[name](comm, device)


def parameter_digest(model) -> str:
    """SHA-1 of every parameter's bytes, in order (to compare models across ranks)."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

