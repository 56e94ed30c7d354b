"""Shared plumbing of the report's figures: a headless matplotlib figure, its title, and
the record of a figure written (or of why it was not).

Figures are ``matplotlib.figure.Figure`` objects saved with the Agg renderer: no pyplot,
no display, whatever ``MPLBACKEND`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glasscam_mpi.report.data import RunData

MARKERS = {"gamma": "o", "volume": "s", "theta": "^"}
COLOURS = {"gamma": "tab:red", "volume": "tab:blue", "theta": "tab:green"}
DPI = 110


@dataclass(frozen=True)
class FigureFile:
    """One figure of the report: written to ``path``, or not drawn (``path`` None) and why."""

    key: str
    title: str
    caption: str
    path: Path | None = None
    reason: str = ""


def new_figure(d: RunData, what: str, nrows: int = 1, ncols: int = 1, size=(5.0, 4.0),
               **kw):
    """(figure, axes array) with a title naming ``what``, the system and the scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    fig.suptitle(f"{what}\n{d.scale.label}", fontsize=10)
    return fig, axes


def save(fig, folder: Path, key: str, title: str, caption: str) -> FigureFile:
    path = folder / f"{key}.png"
    fig.savefig(path, dpi=DPI)
    return FigureFile(key, title, caption, path)


def skipped(key: str, title: str, reason: str) -> FigureFile:
    return FigureFile(key, title, "", None, reason)


def length_label(d: RunData, what: str = "r") -> str:
    return f"{what} [{d.scale.units[0]}]"
