"""Training throughput of ``glasscam train`` per backend and rank count, Grad-CAM throughput,
and the projected time of the paper's training job. Prints JSON.

What runs is the real stage, as a user runs it: a small real dataset is made once with
``glasscam prepare`` (paper-kam system, N = 2000, a fast ramp: the configurations' physics
does not change the cost of a training step), then ``mpiexec -n K glasscam train`` runs for
each (backend, K) on a copy of it with the paper's default CNN and grid (128^2 in 2D) unless
told otherwise. The rate of one configuration is the training samples per second of the
optimisation steps (``train.h5``'s ``train_seconds``), median over the epochs after the
first (warm-up); the per-epoch overhead (validation, checkpoint) is reported apart.
Memory: the training grids are held once per node in MPI shared memory; the last row
repeats the largest rank count with a private copy per rank (``shared_grids = false``), and
every row gives the proportional set size summed over the ranks after gridding.

    scaling efficiency(K) = rate(backend, K ranks) / (K * rate(single, 1 rank))

The paper's job (8000 training samples x 250 epochs, section 4.1; 8 h on a Quadro P4000) is
projected from the fastest configuration measured here:

    hours = 250 * (8000 / rate + overhead per epoch * 8000 / n_train) / 3600

Every configuration is measured on each device of ``--device`` (e.g. ``cpu,cuda``) and
each batch size of ``--batch``, side by side in one run, and the paper's job is projected
per device and batch size. The memory line: peak host memory (max RSS) and peak device
memory (torch's allocator) per rank, training pre-gridded against gridding on the fly
(``[train].grid_on_the_fly``), on the 2D dataset and, with ``--dataset-3d``, on a 3D one
(e.g. KA3D N = 16000, made with ``glasscam prepare --preset ka3d``).

Grad-CAM throughput is ``benchmarks/gradcam_throughput.py``'s end-to-end figure (gridding,
Grad-CAM, M^-1) on the same grid, run in the same job. Goals (issue 10): the paper's job in
<= 4 min on one H100 at batch 32; Grad-CAM >= 5000 samples/s on an H100, >= 300 on one CPU
core.

    python benchmarks/train_throughput.py [--runs 100] [--epochs 4] [--ranks 1,2]
        [--backends horovod,ddp] [--grid 0] [--batch 32[,256]] [--device cpu[,cuda]]
        [--amp] [--dataset DIR] [--dataset-3d DIR] [--workdir DIR] [--keep]

``--dataset DIR`` uses a run directory that already holds prepare.h5 (e.g. made on a login
node: a GPU node needs no LAMMPS for this benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"samples": 8000, "epochs": 250, "hours": 8.0, "gpu": "Quadro P4000"}
GOAL_MINUTES_H100 = 4.0


def glasscam(args: list[str], n: int | None, env: dict | None = None) -> str:
    cmd = [sys.executable, "-m", "glasscam_mpi.cli", *args]
    if n is not None:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(n), *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}"
                         f"\n{res.stderr[-3000:]}")
    return res.stdout


def prepared(base: Path, runs: int) -> Path:
    rd = base / "prepared"
    if not (rd / "prepare.h5").exists():
        glasscam(["prepare", "--preset", "paper-kam", "--run-dir", str(rd),
                  "--set", f"prepare.n_runs={runs}", "--set", "prepare.cooling_rate=0.5",
                  "--set", "prepare.t_equilibrate=1.0", "--set", "prepare.energy_samples=10"],
                 n=min(2, os.cpu_count() or 1))
    return rd


def measure(base: Path, src: Path, backend: str, ranks: int, batch: int,
            sets: list[str], tag: str = "") -> dict:
    import h5py

    rd = base / f"{backend}-{ranks}-{len(sets)}{tag}"
    shutil.rmtree(rd, ignore_errors=True)
    rd.mkdir()
    for name in ("prepare.h5", "config.toml"):
        shutil.copy(src / name, rd / name)
    t0 = time.perf_counter()
    glasscam(["train", "--run-dir", str(rd), "--set", f"train.backend={backend}",
              *[a for s in sets for a in ("--set", s)]], n=ranks)
    wall = time.perf_counter() - t0
    with h5py.File(rd / "train.h5", "r") as fh:
        steps = fh["train_seconds"][1:]
        epoch = fh["seconds"][1:]
        device = str(fh.attrs["device"])
    with h5py.File(rd / "prepare.h5", "r") as fh:  # one liquid + one glass sample per run
        n_train = 2 * int(((fh["split"][:] == 0) & (fh["status"][:] == 1)).sum())
    per_epoch = n_train // batch * batch
    rate = per_epoch / statistics.median(steps)
    log = json.loads((rd / "logs" / "train.json").read_text())
    return {"backend": backend, "ranks": ranks, "device": device, "batch": batch,
            "grid_on_the_fly": log.get("grid_on_the_fly"), "feed": log.get("feed"),
            "peak_host_mib_per_rank": log.get("peak_host_mib_per_rank"),
            "peak_device_mib_per_rank": log.get("peak_device_mib_per_rank"),
            "grids_shared": log["grids_shared"], "grid_mib": round(log["grid_mib"], 1),
            "pss_mib_all_ranks": round(log["pss_mib_all_ranks"], 1),
            "samples_per_epoch": int(round(per_epoch)),
            "samples_per_s": round(rate, 1),
            "overhead_s_per_epoch": round(statistics.median(epoch - steps), 4),
            "job_wall_s": round(wall, 1)}


def paper_hours(r: dict) -> float:
    n_train = r["samples_per_epoch"]
    return PAPER["epochs"] * (PAPER["samples"] / r["samples_per_s"]
                              + r["overhead_s_per_epoch"] * PAPER["samples"] / n_train) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="cooling runs of the dataset")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement (>= 2)")
    parser.add_argument("--ranks", default="1,2", help="rank counts, comma separated")
    parser.add_argument("--backends", default="horovod,ddp")
    parser.add_argument("--grid", type=int, default=0, help="grid points per axis; 0 = 128")
    parser.add_argument("--batch", default="32", help="global mini-batch(es), comma separated")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cpu,cuda")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--dataset", help="a run directory holding prepare.h5 (2D)")
    parser.add_argument("--dataset-3d", help="a 3D run directory for the memory line")
    parser.add_argument("--no-gradcam", action="store_true",
                        help="skip the Grad-CAM figure (run gradcam_throughput.py apart)")
    parser.add_argument("--workdir", help="keep the dataset here (reused when present)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    ranks = [int(k) for k in args.ranks.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    devices = [d for d in args.device.split(",") if d]
    batches = [int(b) for b in args.batch.split(",")]
    if any(d not in ("cpu", "cuda") for d in devices):
        parser.error(f"--device: cpu, cuda or cpu,cuda; got {args.device!r}")

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="glasscam-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        src = Path(args.dataset) if args.dataset else prepared(base, args.runs)
        results = []
        for device in devices:
            for batch in batches:
                sets = [f"train.epochs={args.epochs}", f"train.batch_size={batch}",
                        f"train.n_grid={args.grid}", f"train.device={device}",
                        f"train.amp={'true' if args.amp else 'false'}",
                        "train.grid_on_the_fly=false"]
                tag = f"-{device}-{batch}"
                if 1 in ranks:
                    results.append(measure(base, src, "single", 1, batch, sets, tag))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                for backend in backends:
                    for k in ranks:
                        results.append(measure(base, src, backend, k, batch, sets, tag))
                if backends and max(ranks) > 1:  # training grids once per node vs per rank
                    results.append(measure(base, src, backends[0], max(ranks), batch,
                                           sets + ["train.shared_grids=false"], tag))
        for r in results:
            single = next((q["samples_per_s"] for q in results if q["backend"] == "single"
                           and q["device"] == r["device"] and q["batch"] == r["batch"]), None)
            if single:
                r["scaling_efficiency"] = round(r["samples_per_s"] / (r["ranks"] * single), 3)
            r["paper_job_minutes"] = round(60 * paper_hours(r), 2)

        # the memory line: pre-gridded vs on the fly, one rank, on the last device
        memory = []
        for label, data in (("2D", src), ("3D", args.dataset_3d)):
            if not data:
                continue
            for fly in ("false", "true"):
                sets = ["train.epochs=2", f"train.batch_size={batches[0]}",
                        f"train.device={devices[-1]}", f"train.grid_on_the_fly={fly}"]
                if label == "2D":
                    sets.append(f"train.n_grid={args.grid}")
                r = measure(base, Path(data), "single", 1, batches[0], sets,
                            f"-mem-{label}-{fly}")
                memory.append({"dataset": label, "on_the_fly": fly == "true",
                               **{k: r[k] for k in ("device", "samples_per_s", "grid_mib",
                                                    "peak_host_mib_per_rank",
                                                    "peak_device_mib_per_rank", "feed")}})
                print(json.dumps(memory[-1]), file=sys.stderr, flush=True)

        from glasscam_mpi.config import load_config

        n_grid = load_config(preset="paper-kam", overrides=[f"train.n_grid={args.grid}"]).n_grid
        gradcam = {}
        if not args.no_gradcam:
            gc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gradcam_throughput.py"),
                                 "--grid", str(n_grid), "--n-particles", "2000",
                                 "--batch", ",".join(str(b) for b in batches), "--threads", "1",
                                 "--device", "cuda" if "cuda" in devices else "cpu"],
                                capture_output=True, text=True, cwd=ROOT, check=True)
            gradcam = json.loads(gc.stdout)

        paper = {}
        for device in devices:
            for batch in batches:
                rows = [r for r in results if r["batch"] == batch and
                        (r["device"] == device or (device == "cuda" and r["device"] != "cpu"))]
                if not rows:
                    continue
                best = max(rows, key=lambda r: r["samples_per_s"])
                hours = paper_hours(best)
                paper[f"{device}, batch {batch}"] = {
                    "projected_minutes": round(60 * hours, 2),
                    "projected_speedup_vs_paper": round(PAPER["hours"] / hours, 1),
                    "from": f"{best['backend']} x {best['ranks']} on {best['device']}"}
        report = {
            "benchmark": "train_throughput",
            "host": platform.node(), "cpus": os.cpu_count(), "devices": devices,
            "dataset": {"system": "KAM", "n_particles": 2000, "path": str(src),
                        "n_grid": n_grid, "batches": batches, "epochs": args.epochs},
            "results": results,
            "memory": memory,
            "gradcam": gradcam.get("best_end_to_end"),
            "paper_job": {**PAPER, "goal_minutes_on_h100_batch_32": GOAL_MINUTES_H100,
                          "projected": paper},
        }
        print(json.dumps(report, indent=1))
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
