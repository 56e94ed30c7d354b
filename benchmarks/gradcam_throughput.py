"""Grad-CAM throughput, per stage and end to end (gridding M, Grad-CAM, M^-1). Prints JSON.

A batch of random 2D KAM-like configurations (N particles, density 1.2, 65:35 A:B, uniform
random positions) is gridded with the KAM GridSpec at ``--grid`` points per axis and
explained by an untrained default :class:`GlassCNN`. Each stage is timed ``--repeats``
times on the whole batch (median); the report gives samples per second for: gridding
(``to_grid_batch``), Grad-CAM forward + backward (``gradcam``), mapping back to particles
(``particle_scores``), the end-to-end ``gradcam_particles``, and, for reference, a plain
forward pass. Target: >= 50 samples/s end to end on one CPU core at grid 128, N = 2000.

    python benchmarks/gradcam_throughput.py [--grid 128] [--n-particles 2000] [--batch 32]
        [--threads 1] [--device cpu|cuda] [--repeats 5]
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

TARGET = 50.0  # samples/s end to end, one CPU core, grid 128, N = 2000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--n-particles", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    system = get_system("KAM")
    n, b = args.n_particles, args.batch
    length = system.box_length(n)
    box = np.array([length, length])
    rng = np.random.default_rng(0)
    positions = rng.random((b, n, 2)) * box
    types = np.repeat(np.arange(2), system.counts(n))
    gspec = GridSpec.for_system(system, n_grid=args.grid)
    torch.manual_seed(0)
    model = build_model(ModelSpec.for_grid(gspec)).to(device).eval()

    x_np = to_grid_batch(gspec, box, positions, types)
    x = torch.from_numpy(x_np).to(device)
    cam = gradcam(model, x).cam

    def forward():
        with torch.no_grad():
            model(x)

    t = {
        "gridding": median_s(lambda: to_grid_batch(gspec, box, positions, types),
                             args.repeats, sync),
        "gradcam_fwd_bwd": median_s(lambda: gradcam(model, x), args.repeats, sync),
        "from_grid": median_s(lambda: particle_scores(cam, box, positions), args.repeats, sync),
        "end_to_end": median_s(lambda: gradcam_particles(model, gspec, box, positions, types),
                               args.repeats, sync),
        "forward_only": median_s(forward, args.repeats, sync),
    }
    report = {
        "benchmark": "gradcam_throughput",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "threads": args.threads,
        "grid": args.grid,
        "n_particles": n,
        "batch": b,
        "repeats": args.repeats,
        "samples_per_s": {k: round(b / v, 1) for k, v in t.items()},
        "ms_per_sample": {k: round(1e3 * v / b, 3) for k, v in t.items()},
        "target_end_to_end_samples_per_s": TARGET,
        "meets_target": bool(b / t["end_to_end"] >= TARGET),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
