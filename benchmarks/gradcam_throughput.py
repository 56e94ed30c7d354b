"""Grad-CAM throughput, per stage and end to end (gridding M, Grad-CAM, M^-1), on the CPU
and, when there is one, on a CUDA GPU, side by side in one run. Prints JSON.

A batch of random 2D KAM-like configurations (N particles, density 1.2, 65:35 A:B, uniform
random positions) is gridded with the KAM GridSpec at ``--grid`` points per axis and
explained by an untrained default :class:`GlassCNN`. Each path is timed ``--repeats``
times on the whole batch (median), for every batch size of ``--batch``:

* ``cpu/numpy``: the numpy reference M and M^-1 on the host (what a CPU rank runs);
* ``cpu/torch``: the torch M and M^-1 (learn/torchgrid.py) on the CPU device;
* ``cuda/torch``: everything on the GPU (what ``glasscam gradcam`` runs there);
* ``cuda/numpy``: the GPU network with host gridding (the path before the torch gridding).

Per path: gridding, Grad-CAM forward + backward of one layer, M^-1, end to end for one
layer (``gradcam_particles``) and for every layer at once (``gradcam_particles_layers``,
what the stage computes per sample), and a plain forward pass for reference.
Goals (issue 10): >= 5000 samples/s end to end on one H100, >= 300 on one CPU core, at
grid 128, N = 2000.

    python benchmarks/gradcam_throughput.py [--grid 128] [--n-particles 2000]
        [--batch 2,32,256] [--threads 1] [--device auto|cpu|cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys

_THREADS = "1"
if "--threads" in sys.argv[:-1]:
    _THREADS = sys.argv[sys.argv.index("--threads") + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from glasscam_mpi.learn import (GridSpec, ModelSpec, build_model, gradcam,  # noqa: E402
                                gradcam_particles, particle_scores, to_grid_batch)
from glasscam_mpi.systems import get_system  # noqa: E402

TARGETS = {"cpu": 300.0, "cuda": 5000.0}  # samples/s end to end, grid 128, N = 2000


def median_s(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(device: str, gridding: str, b: int, args, system, gspec) -> dict:
    from glasscam_mpi.learn import (from_grid_torch, gradcam_particles_layers, to_grid_torch)

    dev = torch.device(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n = args.n_particles
    length = system.box_length(n)
    box = np.array([length, length])
    rng = np.random.default_rng(0)
    positions = rng.random((b, n, 2)) * box
    types = np.repeat(np.arange(2), system.counts(n))
    torch.manual_seed(0)
    model = build_model(ModelSpec.for_grid(gspec)).to(dev).eval()
    x = torch.from_numpy(to_grid_batch(gspec, box, positions, types)).to(dev)
    cam = gradcam(model, x).cam
    if gridding == "torch":
        pos_dev = torch.from_numpy(positions).float().to(dev)
        types_dev = torch.from_numpy(types).to(dev)
        grid = lambda: to_grid_torch(gspec, box, pos_dev, types_dev)  # noqa: E731
        back = lambda: from_grid_torch(box, cam, pos_dev).cpu()  # noqa: E731
    else:
        grid = lambda: torch.from_numpy(to_grid_batch(gspec, box, positions, types)).to(dev)  # noqa: E731
        back = lambda: particle_scores(cam, box, positions)  # noqa: E731

    def forward():
        with torch.no_grad():
            model(x)

    t = {
        "gridding": median_s(grid, args.repeats, sync),
        "gradcam_fwd_bwd": median_s(lambda: gradcam(model, x), args.repeats, sync),
        "from_grid": median_s(back, args.repeats, sync),
        "end_to_end": median_s(lambda: gradcam_particles(model, gspec, box, positions, types,
                                                         gridding=gridding),
                               args.repeats, sync),
        "end_to_end_all_layers": median_s(
            lambda: gradcam_particles_layers(model, gspec, box, positions, types,
                                             gridding=gridding), args.repeats, sync),
        "forward_only": median_s(forward, args.repeats, sync),
    }
    out = {"device": device if device == "cpu" else torch.cuda.get_device_name(0),
           "gridding": gridding, "batch": b,
           "samples_per_s": {k: round(b / v, 1) for k, v in t.items()},
           "ms_per_sample": {k: round(1e3 * v / b, 3) for k, v in t.items()}}
    if args.grid == 128 and n == 2000:
        out["target_end_to_end"] = TARGETS[device]
        out["meets_target"] = bool(b / t["end_to_end"] >= TARGETS[device])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--n-particles", type=int, default=2000)
    parser.add_argument("--batch", default="32", help="batch sizes, comma separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and CUDA too when there is a GPU")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
               "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    system = get_system("KAM")
    gspec = GridSpec.for_system(system, n_grid=args.grid)
    results = []
    for device in devices:
        for gridding in ("torch", "numpy") if device == "cuda" else ("numpy", "torch"):
            for b in (int(v) for v in args.batch.split(",")):
                if device == "cpu" and b > 64:
                    continue  # minutes per point on one core; the rate is flat in b there
                results.append(measure(device, gridding, b, args, system, gspec))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    best = {dev: max((r for r in results if r["device"] == dev or
                      (dev == "cuda" and r["device"] != "cpu")),
                     key=lambda r: r["samples_per_s"]["end_to_end"], default=None)
            for dev in devices}
    report = {
        "benchmark": "gradcam_throughput",
        "threads": args.threads,
        "grid": args.grid,
        "n_particles": args.n_particles,
        "repeats": args.repeats,
        "results": results,
        "best_end_to_end": {dev: {"samples_per_s": r["samples_per_s"]["end_to_end"],
                                  "gridding": r["gridding"], "batch": r["batch"]}
                            for dev, r in best.items() if r},
        "targets_end_to_end": TARGETS,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
