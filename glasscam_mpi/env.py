"""What the software stack under this process is, in one place.

``check_stack()`` is what ``hpc/bootstrap.sh`` prints at its end and what ``glasscam
env`` shows: the MPI library, whether h5py has MPI (parallel HDF5), the LAMMPS build and
the MPI it runs on, torch, and Horovod. Nothing here touches ``MPI.COMM_WORLD``.

``gpus_per_node()`` and ``gpu_index()`` are the one rule by which a rank takes a GPU
(its node-local rank modulo the node's GPU count), used by training and Grad-CAM
(``learn.distributed.pick_device``) and printed per rank by ``glasscam env --ranks``
(:func:`format_placement`, over :func:`glasscam_mpi.parallel.placement`).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings


def serial_hdf5_requested() -> bool:
    """True when ``GLASSCAM_SERIAL_HDF5`` is set (to anything but empty or ``0``)."""
    return os.environ.get("GLASSCAM_SERIAL_HDF5", "") not in ("", "0")


def h5py_has_mpi() -> bool:
    """True when h5py was built with ``HDF5_MPI=ON`` (``driver="mpio"`` available) and the
    serial path was not asked for.

    ``GLASSCAM_SERIAL_HDF5=1`` in the environment makes this False even where h5py has MPI:
    stage files are then gathered and written by rank 0, exactly as on a stack without
    parallel HDF5. The tests use it to check that fallback against the parallel path; on a
    cluster it sidesteps a file system whose MPI-IO misbehaves. (Every rank of a job must
    see the same value; mpiexec and srun pass the environment on.)
    """
    import h5py

    return bool(h5py.get_config().mpi) and not serial_hdf5_requested()


_WARNED_SERIAL_HDF5 = False


def warn_serial_hdf5_once() -> None:
    """Say once per process that writes go through rank 0 (h5py lacks MPI, or
    ``GLASSCAM_SERIAL_HDF5`` is set)."""
    global _WARNED_SERIAL_HDF5
    if not _WARNED_SERIAL_HDF5:
        _WARNED_SERIAL_HDF5 = True
        warnings.warn(
            "GLASSCAM_SERIAL_HDF5 is set: HDF5 output is gathered and written by rank 0"
            if serial_hdf5_requested() else
            "h5py has no MPI support: HDF5 output is gathered and written by rank 0 "
            "(correct, but slower at scale). Build parallel h5py with hpc/bootstrap.sh.",
            RuntimeWarning,
            stacklevel=2,
        )


def check_stack() -> dict[str, str]:
    """Import every layer of the stack and describe it; raise with advice if one is broken."""
    report: dict[str, str] = {"python": sys.version.split()[0]}

    from mpi4py import MPI

    report["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    report["mpi4py"] = importlib.import_module("mpi4py").__version__

    import h5py

    report["h5py"] = f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version}, " + (
        "parallel)" if h5py_has_mpi() else "serial: writes go through rank 0)"
    ) + (" [GLASSCAM_SERIAL_HDF5 set]" if serial_hdf5_requested() else "")

    from glasscam_mpi.md.engine import lammps_info

    report["lammps"] = lammps_info()

    import torch

    report["torch"] = f"{torch.__version__} (cuda: {torch.cuda.is_available()})"
    try:
        import horovod.torch as hvd  # noqa: F401

        report["horovod"] = importlib.import_module("horovod").__version__ + (
            " (mpi)" if hvd.mpi_built() else " (no mpi)"
        )
    except ImportError as exc:
        report["horovod"] = f"not available ({exc}); use train backend 'ddp'"
    import freud

    report["freud"] = freud.__version__
    report["threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
    return report


GPUS_VARIABLE = "GLASSCAM_GPUS_PER_NODE"


def gpus_per_node() -> tuple[int, str]:
    """(how many GPUs a node offers its ranks, where that number came from).

    ``GLASSCAM_GPUS_PER_NODE`` when set (an integer >= 0): to check, before a big run,
    which GPU each rank of an allocation would take on nodes unlike this one, and for
    the tests, which have no GPU. Otherwise torch's CUDA device count (0 without CUDA).
    Training refuses a value larger than the GPUs torch sees (``pick_device``).
    """
    text = os.environ.get(GPUS_VARIABLE, "")
    if text:
        if not text.isdigit():
            from glasscam_mpi.config import ConfigError

            raise ConfigError(f"{GPUS_VARIABLE} = {text!r}: allowed: an integer >= 0 (the "
                              "GPUs of one node), or unset to count them with torch")
        return int(text), GPUS_VARIABLE
    import torch

    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), "torch.cuda"


def gpu_index(local_rank: int, n_gpus: int) -> int | None:
    """The GPU a rank takes: its node-local rank modulo the node's GPUs (None: no GPU).
    With as many ranks per node as GPUs (the train job script), one GPU each."""
    return None if n_gpus <= 0 else local_rank % n_gpus


def cpu_list(cpus) -> str:
    """CPU ids as a short list: (0, 1, 2, 5) -> '0-2,5'; None -> '?'."""
    if cpus is None:
        return "?"
    cpus, parts = sorted(cpus), []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def format_placement(rows: list[dict]) -> str:
    """``glasscam env --ranks``: one line per rank, then one per node, then warnings."""
    n_gpus, source = gpus_per_node()
    lines = []
    for r in rows:
        gpu = gpu_index(r["local_rank"], n_gpus)
        lines.append(f"rank {r['rank']:>4} of {len(rows)}: host {r['host']}, node-local rank "
                     f"{r['local_rank']} of {r['local_size']}, cpus {cpu_list(r['cpus'])}, gpu "
                     + ("none" if gpu is None else str(gpu)))
    hosts: dict[str, list[int]] = {}
    for r in rows:
        hosts.setdefault(r["host"], []).append(r["rank"])
    lines.append(f"{len(hosts)} host(s), {len(rows)} rank(s); {n_gpus} GPU(s) per node "
                 f"({source})")
    for host, ranks in hosts.items():
        lines.append(f"  {host}: ranks {cpu_list(ranks)}")
    lines += [f"warning: {w}" for w in placement_warnings(rows, n_gpus)]
    return "\n".join(lines)


def placement_warnings(rows: list[dict], n_gpus: int) -> list[str]:
    """What in an allocation would make a run slower or wrong: a host split over several
    shared-memory domains or one domain over several hosts (hostnames MPI cannot tell
    apart), more ranks per node than GPUs where GPUs are used, ranks bound to the same CPUs."""
    out = []
    domains: dict[str, set[int]] = {}
    hosts: dict[int, set[str]] = {}
    for r in rows:
        domains.setdefault(r["host"], set()).add(r["node"])
        hosts.setdefault(r["node"], set()).add(r["host"])
    for host, nodes in domains.items():
        if len(nodes) > 1:
            out.append(f"host {host} has {len(nodes)} MPI shared-memory domains: node-local "
                       "ranks (and so GPUs) repeat on it")
    for node, names in hosts.items():
        if len(names) > 1:
            out.append(f"one MPI shared-memory domain spans hosts {', '.join(sorted(names))}")
    for r in rows:
        if n_gpus and r["local_size"] > n_gpus:
            out.append(f"host {r['host']}: {r['local_size']} ranks share {n_gpus} GPU(s)")
            break
    seen: dict[tuple, list[int]] = {}
    for r in rows:
        if r["cpus"] is not None and len(r["cpus"]) == 1:
            seen.setdefault((r["host"], tuple(r["cpus"])), []).append(r["rank"])
    for (host, cpus), ranks in seen.items():
        if len(ranks) > 1:
            out.append(f"host {host}: ranks {cpu_list(ranks)} are all bound to CPU {cpus[0]}")
    return out
