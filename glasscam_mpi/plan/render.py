"""The plan as a human-readable table."""

from __future__ import annotations

import math

from glasscam_mpi.stages.declare import gib as _gib


def _hours(h: float | None) -> str:
    if h is None or not math.isfinite(h):
        return "never"
    return f"{h:,.1f}" if h >= 1 else f"{h:.3f}"


def render_table(result: dict) -> str:
    """The plan as a human-readable table."""
    pr = result["profile"]
    c = result["config"]
    lines = [f"glasscam plan: {c['system']} N = {c['n_particles']} ({c['dim']}D), "
             f"{c['n_runs']} cooling runs; profile {pr['name']!r}: {pr['nodes']} node(s) x "
             f"{pr['ntasks_per_node']} ranks, {pr['gpus_per_node']} GPU(s) per node, "
             f"window {pr['time']}",
             "",
             f"{'stage':<11} {'tasks':>7} {'s/task':>9} {'core-h':>10} {'GPU-h':>8} "
             f"{'wall-h':>8} {'disk':>10} {'mem/rank':>10} {'jobs':>5} {'windows':>7}"]
    for name, s in result["stages"].items():
        lines.append(f"{name:<11} {s['tasks']:>7} {s['task_seconds']:>9.3g} "
                     f"{_hours(s['core_hours']):>10} {_hours(s['gpu_hours']):>8} "
                     f"{_hours(s['wall_hours']):>8} {_gib(s['disk_bytes']):>10} "
                     f"{_gib(s['memory_per_rank_bytes']):>10} {s['jobs']:>5} {s['windows']:>7}")
    t = result["total"]
    lines.append(f"{'total':<11} {'':>7} {'':>9} {_hours(t['core_hours']):>10} "
                 f"{_hours(t['gpu_hours']):>8} {_hours(t['wall_hours']):>8} "
                 f"{_gib(t['disk_bytes']):>10} {_gib(t['memory_per_rank_bytes']):>10} "
                 f"{t['jobs']:>5} {t['windows']:>7}")
    lines += ["", "Disk: the stage files; the task shards hold about as much again until a "
                  "stage is merged.", "", "What each estimate rests on:"]
    for name, s in result["stages"].items():
        lines.append(f"  {name}: {s['basis']}")
        if s["memory_note"]:
            lines.append(f"  {name} memory: {s['memory_note']}")
    md = result["calibration"]["md"]
    lines += ["", f"MD calibration here ({md.get('lammps_style', 'plain')} styles; steps/s on "
              "one core, by temperature): "
              + ", ".join(f"T={T:g}: {r:,.0f}" for T, r in zip(md["temperatures"],
                                                               md["steps_per_s"]))]
    for w in result["warnings"]:
        lines.append(f"WARNING: {w}")
    return "\n".join(lines)
