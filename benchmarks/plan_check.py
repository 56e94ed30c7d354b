"""How close ``glasscam plan`` comes to a real ``glasscam prepare``. Prints JSON.

For each config, ``glasscam plan --json`` calibrates, then ``mpiexec -n 2 glasscam
prepare`` runs the same config right after; the plan's seconds per cooling run are
compared with the mean CPU seconds per task in the run's ``logs/prepare.json`` (CPU, not
wall: a shared machine inflates wall time). ``tests/test_plan.py`` requires the ratio
within 0.75-1.25 for the first; the README's table comes from here.

    python benchmarks/plan_check.py [--n 400,2000] [--runs 4] [--ranks 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """preset = "paper-kam"
[system]
n_particles = {n}
[prepare]
n_runs = {runs}
train_fraction = 0.5
validation_fraction = 0.25
t_equilibrate = 10.0
cooling_rate = 0.05
"""


def glasscam(args: list[str], ranks: int | None = None) -> str:
    cmd = [sys.executable, "-m", "glasscam_mpi.cli", *args]
    if ranks:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return res.stdout


def check(n: int, runs: int, ranks: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(CONFIG.format(n=n, runs=runs))
        plan = json.loads(glasscam(["plan", "--config", str(cfg), "--profile", "local",
                                    "--json"]))["stages"]["prepare"]
        glasscam(["prepare", "--config", str(cfg), "--run-dir", f"{tmp}/run"], ranks)
        log = json.loads((Path(tmp) / "run/logs/prepare.json").read_text())
    cpu, wall = log["task_cpu_seconds"], log["task_wall_seconds"]
    return {"system": "KAM", "n_particles": n, "runs": runs, "ranks": ranks,
            "plan_seconds_per_run": round(plan["task_seconds"], 4),
            "measured_cpu_seconds_per_run": cpu["mean"],
            "measured_wall_seconds_per_run": wall["mean"],
            "ratio_plan_over_measured": round(plan["task_seconds"] / cpu["mean"], 4),
            "target": [0.75, 1.25]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="400,2000", help="particle numbers, comma-separated")
    ap.add_argument("--runs", type=int, default=4, help="cooling runs per check")
    ap.add_argument("--ranks", type=int, default=2, help="mpiexec ranks of prepare")
    args = ap.parse_args()
    rows = [check(int(n), args.runs, args.ranks) for n in args.n.split(",")]
    print(json.dumps({"benchmark": "plan_check", "cores": os.cpu_count(), "checks": rows},
                     indent=2))


if __name__ == "__main__":
    main()
