"""The table of a ``glasscam sweep``: one row per variant x seed, the variant's seed
ensemble, and the spread over seeds; beside the Voronoi volume and Theta of the same run.

Files, under ``PARENT/sweep/``:

    table.csv   variant, row (seed-<s>, ensemble, or mean / std / min / max over the
                seeds), C_max_gamma, C_max_gamma_std (its bootstrap std over replicas),
                null_q95_gamma (95 % level of C^max with the Gamma field shifted at
                random: C^max must exceed it), delta_star_gamma, xi_gamma, r_gamma (first zero of
                C(r) of Gamma on the glass samples), acc_glass, acc_liquid (test accuracy;
                the ensemble's from its mean glass probability), C_max_volume, C_max_theta,
                status ("ok", or why the row is missing)
    table.md    the same as a Markdown table (spread rows as mean +- std [min, max])
    sweep.png   C^max_Gamma,Delta per variant: each seed, the ensemble, and the volume's
                and Theta's C^max as lines

C^max, delta* and xi are Table 5's "all T" values of each sub-run's analysis.h5 (the
temperature with the largest C^max, at xi_best), with analyze's uncertainty and null level; the columns are numbers only, nothing of timing or ranks, so
the files are the same whatever the rank count.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from glasscam_mpi.learn.ensemble import SPREAD, spread

COLUMNS = ("variant", "row", "C_max_gamma", "C_max_gamma_std", "null_q95_gamma",
           "delta_star_gamma", "xi_gamma", "r_gamma", "acc_glass", "acc_liquid",
           "C_max_volume", "C_max_theta", "status")
NUMERIC = COLUMNS[2:-1]


def sub_run_row(sub: Path) -> dict:
    """The numbers of one sub-run (a seed or an ensemble) from its files."""
    import h5py

    from glasscam_mpi.rundir import RunDir

    rd = RunDir(sub)
    row = {k: float("nan") for k in NUMERIC}
    if not rd.intact("analyze"):
        failed = sub / "FAILED"
        row["status"] = (failed.read_text().strip().splitlines()[0][:200] if failed.exists()
                         else "not done")
        return row
    with h5py.File(rd.stage_file("analyze"), "r") as fh:
        t5 = fh["summary/table5"][:]                     # (X, n_T + 1, 3) gamma, volume, theta
        row.update(C_max_gamma=t5[0, -1, 0], delta_star_gamma=t5[0, -1, 1],
                   xi_gamma=t5[0, -1, 2], r_gamma=fh["summary/r_zero"][1, 0],
                   C_max_volume=t5[1, -1, 0], C_max_theta=t5[2, -1, 0])
        if "summary/table5_uncertainty" in fh:   # bootstrap over replicas; shift null level
            row["C_max_gamma_std"] = fh["summary/table5_uncertainty"][0, -1, 0]
            row["null_q95_gamma"] = fh["summary/table5_null"][0, -1, 2]
    if rd.intact("train"):
        with h5py.File(rd.stage_file("train"), "r") as fh:
            row["acc_glass"], row["acc_liquid"] = (float(v) for v in fh["test_accuracy"][:])
    elif rd.intact("gradcam"):  # an ensemble: accuracy of its mean glass probability
        with h5py.File(rd.stage_file("gradcam"), "r") as fh:
            ok = fh["status"][:] == 1
            pred = fh["predicted"][:][ok]
            row["acc_glass"] = float((pred[:, 1] == 1).mean()) if ok.any() else float("nan")
            row["acc_liquid"] = float((pred[:, 0] == 0).mean()) if ok.any() else float("nan")
    row["status"] = "ok"
    return {k: float(v) if k in NUMERIC else v for k, v in row.items()}


def collect(root: Path, variants, n_seeds: int) -> list[dict]:
    """Every sub-run's row, under the sweep directory ``root`` (``PARENT/sweep``)."""
    rows = []
    for v in variants:
        seeds = [{"variant": v.name, "row": f"seed-{s}", **sub_run_row(v.seed_dir(root, s))}
                 for s in range(n_seeds)]
        rows += seeds
        rows.append({"variant": v.name, "row": "ensemble", **sub_run_row(v.ensemble_dir(root))})
        for stat in SPREAD:
            rows.append({"variant": v.name, "row": stat, "status": f"over {n_seeds} seeds",
                         **{k: spread([r[k] for r in seeds])[stat] for k in NUMERIC}})
    return rows


def _fmt(x: float, digits: int = 3) -> str:
    return "" if not math.isfinite(x) else f"{x:.{digits}f}"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r["variant"], r["row"]] + [_fmt(r[k], 6) for k in NUMERIC] + [r["status"]])
    return buf.getvalue()


def to_markdown(rows: list[dict], n_seeds: int) -> str:
    head = ("| variant | run | C^max Γ,Δ | ± (bootstrap) | null q95 | δ* | ξ_Γ | r_Γ | "
            "acc glass | acc liquid | C^max Υ,Δ | C^max Θ,Δ | status |")
    lines = [f"Sweep: {n_seeds} seed(s) per variant; ensemble = the seeds' [0, 1]-normalised "
             "Γ averaged; spread = mean ± std [min, max] over the seeds.", "", head,
             "|" + "---|" * len(COLUMNS)]
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    for name, rs in by_variant.items():
        stats = {r["row"]: r for r in rs if r["row"] in SPREAD}
        for r in rs:
            if r["row"] in SPREAD:
                continue
            lines.append(f"| {name} | {r['row']} | " + " | ".join(_fmt(r[k]) for k in NUMERIC)
                         + f" | {r['status']} |")
        cells = []
        for k in NUMERIC:
            m, s, lo, hi = (stats[x][k] for x in SPREAD)
            cells.append("" if not math.isfinite(m) else
                         f"{m:.3f} ± {s:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {name} | seeds | " + " | ".join(cells) + f" | over {n_seeds} seeds |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 2), 3.6),
                           constrained_layout=True)
    for i, name in enumerate(names):
        seeds = [r for r in rows if r["variant"] == name and r["row"].startswith("seed-")]
        ens = [r for r in rows if r["variant"] == name and r["row"] == "ensemble"]
        ax.scatter([i] * len(seeds), [r["C_max_gamma"] for r in seeds], color="C0",
                   label="seeds" if i == 0 else None, zorder=3)
        if ens:
            ax.scatter([i + 0.15], [ens[0]["C_max_gamma"]], marker="*", s=140, color="C3",
                       label="seed ensemble" if i == 0 else None, zorder=3)
    ok = [r for r in rows if r["status"] == "ok"]
    for key, label, color in (("C_max_volume", "Υ (Voronoi)", "C2"),
                              ("C_max_theta", "Θ", "C1")):
        vals = [r[key] for r in ok if math.isfinite(r[key])]
        if vals:
            ax.axhline(float(np.mean(vals)), color=color, ls="--", label=f"{label}, same run")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel="C$^{max}_{\\Gamma,\\Delta}$", title="glasscam sweep: CNN variants")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(root: Path, variants, n_seeds: int) -> list[dict]:
    """Collect every sub-run's row and write table.csv, table.md and sweep.png into the
    sweep directory ``root`` (``PARENT/sweep``)."""
    import os

    rows = collect(root, variants, n_seeds)
    for name, text in (("table.csv", to_csv(rows)), ("table.md", to_markdown(rows, n_seeds))):
        tmp = root / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / name)
    plot(rows, root / "sweep.png")
    return rows
