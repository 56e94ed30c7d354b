"""Training rate of two versions of the package side by side, on one dataset and device
(an A/B check against a regression, and the 'before' column of the README's GPU table).
Prints JSON.

Each version is a source tree (e.g. ``git archive OLD glasscam_mpi | tar -x -C /tmp/old``);
``glasscam train`` of each runs on a copy of a run directory holding prepare.h5, one rank,
backend single, with that tree first on PYTHONPATH, and the rate is the training samples per
second of the optimisation steps (train.h5's train_seconds, median over epochs after the
first). Versions alternate within each (device, batch) so drifts of a noisy machine hit
both alike.

    python benchmarks/train_ab.py --dataset RUN_DIR --old /tmp/old [--new .]
        [--device cpu,cuda] [--batch 32,256] [--epochs 12] [--cpu-epochs 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py


def run_one(tree: Path, data: Path, work: Path, device: str, batch: int, epochs: int) -> dict:
    rd = work / f"run-{time.monotonic_ns()}"
    rd.mkdir(parents=True)
    shutil.copy(data / "prepare.h5", rd / "prepare.h5")
    known = subprocess.run([sys.executable, "-c", "from glasscam_mpi.config import TrainSection;"
                            "import dataclasses;print(' '.join(f.name for f in "
                            "dataclasses.fields(TrainSection)))"],
                           capture_output=True, text=True, check=True, cwd=str(tree),
                           env={**os.environ, "PYTHONPATH": str(tree)}).stdout.split()
    # keep the config keys this version knows (an older one refuses newer keys)
    lines, section = [], ""
    for line in (data / "config.toml").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        elif section == "train" and "=" in line and line.split("=")[0].strip() not in known:
            continue
        lines.append(line)
    (rd / "config.toml").write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "glasscam_mpi.cli", "train", "--run-dir", str(rd),
           "--set", f"train.epochs={epochs}", "--set", f"train.batch_size={batch}",
           "--set", "train.backend=single", "--set", f"train.device={device}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tree),
                         env={**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"})
    if res.returncode:
        return {"error": res.stderr[-1500:]}
    with h5py.File(rd / "train.h5") as fh, h5py.File(rd / "prepare.h5") as prep:
        steps = fh["train_seconds"][1:]
        n_train = 2 * int(((prep["split"][:] == 0) & (prep["status"][:] == 1)).sum())
    per_epoch = n_train // batch * batch
    shutil.rmtree(rd, ignore_errors=True)
    return {"samples_per_s": round(per_epoch / statistics.median(steps), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a run directory with prepare.h5")
    parser.add_argument("--old", required=True, help="source tree of the 'old' version")
    parser.add_argument("--new", default=str(Path(__file__).resolve().parents[1]),
                        help="source tree of the 'new' version (default: this one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", default="32")
    parser.add_argument("--epochs", type=int, default=12, help="epochs on a GPU (>= 2)")
    parser.add_argument("--cpu-epochs", type=int, default=3, help="epochs on a CPU (>= 2)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if min(args.epochs, args.cpu_epochs) < 2:
        parser.error("epochs must be >= 2 (the first is warm-up)")
    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="glasscam-ab-") as tmp:
        for device in args.device.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                epochs = args.cpu_epochs if device == "cpu" else args.epochs
                for rep in range(args.repeats):
                    for name, tree in trees.items():
                        r = run_one(tree, Path(args.dataset), Path(tmp), device, batch, epochs)
                        rows.append({"version": name, "device": device, "batch": batch,
                                     "repeat": rep, **r})
                        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ratios = {}
    for device in args.device.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            rate = {v: [r["samples_per_s"] for r in rows if r["version"] == v and
                        r["device"] == device and r["batch"] == batch and "samples_per_s" in r]
                    for v in trees}
            if rate["old"] and rate["new"]:
                ratios[f"{device}, batch {batch}"] = round(
                    statistics.median(rate["new"]) / statistics.median(rate["old"]), 3)
    print(json.dumps({"benchmark": "train_ab", "trees": {k: str(v) for k, v in trees.items()},
                      "rows": rows, "new_over_old": ratios}, indent=1))


if __name__ == "__main__":
    main()
