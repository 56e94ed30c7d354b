"""The parent run's ``glasscam sweep`` in its report: the sweep table and figure, when
``RUN_DIR/sweep/table.csv`` exists (written by :mod:`glasscam_mpi.sweep_table`). Read as
written; nothing is recomputed here."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from glasscam_mpi.report.plotting import FigureFile
from glasscam_mpi.report.tables import Table

COLUMNS = {"variant": "variant", "row": "run", "C_max_gamma": "C^max Γ,Δ",
           "C_max_gamma_std": "± (bootstrap)", "null_q95_gamma": "null q95",
           "delta_star_gamma": "δ*", "xi_gamma": "ξ_Γ", "r_gamma": "r_Γ",
           "acc_glass": "test acc. glass", "acc_liquid": "test acc. liquid",
           "C_max_volume": "C^max Υ,Δ", "C_max_theta": "C^max Θ,Δ", "status": "status"}


def _cell(key: str, text: str):
    if key in ("variant", "row", "status"):
        return text
    return float(text) if text else float("nan")


def tables(run_dir: Path) -> list[Table]:
    """The sweep table, or nothing when the run has no sweep."""
    path = Path(run_dir) / "sweep" / "table.csv"
    if not path.is_file():
        return []
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return [Table("sweep", "CNN variants of this run (glasscam sweep)", list(COLUMNS.values()),
                  [[_cell(k, r[k]) for k in COLUMNS] for r in rows],
                  ["Each variant x seed is a sub-run sharing this run's prepare, indicators "
                   "and propensity files; 'ensemble' averages the seeds' [0, 1]-normalised Γ; "
                   "mean / std / min / max are over the seeds. C^max, δ*, ξ are Table 5's 'all "
                   "T' values, with their bootstrap std and the shift null level; Υ and Θ "
                   "are this run's.",
                   f"Files: {path.parent}/table.md, table.csv, sweep.png."])]


def figures(run_dir: Path, fig_dir: Path) -> list[FigureFile]:
    """The sweep's figure, copied into the report, or nothing when there is none."""
    src = Path(run_dir) / "sweep" / "sweep.png"
    if not src.is_file():
        return []
    dst = fig_dir / "sweep.png"
    shutil.copyfile(src, dst)
    return [FigureFile("sweep", "CNN variants: C^max of Γ with Δ per seed and ensemble",
                       "Each variant's seeds (dots) and seed ensemble (star) from "
                       "glasscam sweep, beside the Voronoi volume's and Θ's C^max of the same "
                       "run (dashed).", dst)]
