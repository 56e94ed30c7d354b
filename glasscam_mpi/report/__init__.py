"""The run's answer beside the paper's: ``RUN_DIR/report/``.

    report/report.html      one self-contained file (figures embedded, no network)
    report/report.md        the same, linking the PNGs
    report/tables/*.md|csv  Tables 2-5 and S2, the scale, the crystallisation check
    report/figures/*.png    Figs 1-8, the xi scan, U(T), g(r), the training curves, and
                            an OVITO rendering of a glass coloured by 1 - Gamma

Modules, one idea each: :mod:`.data` (read the stage files once), :mod:`.tables`,
:mod:`.figures` (curves), :mod:`.maps` (per-particle maps), :mod:`.ensemble` (Fig. 4's
sub-ensemble fields, the one thing computed here), :mod:`.sweep` (a ``glasscam sweep``'s
table and figure, when the run has one), :mod:`.page` (HTML and Markdown).
The report reads files and makes pictures; it does not redo the analysis.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from glasscam_mpi.config import Config
from glasscam_mpi.rundir import RunDir

FOLDER = "report"


def report_dir(rd: RunDir) -> Path:
    return rd.path / FOLDER


def render(rd: RunDir, cfg: Config) -> dict:
    """Write ``RUN_DIR/report/`` from scratch; returns what was written (paths relative to
    the run directory) and the figures left out with why."""
    from glasscam_mpi.report import data, figures, maps, ovito_view, page, sweep, tables

    d = data.load(rd, cfg)
    out = report_dir(rd)
    tmp = out.with_name(f".{FOLDER}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "tables").mkdir(parents=True)
    (tmp / "figures").mkdir()
    built = tables.build(d) + sweep.tables(rd.path)
    warning = tables.warning(d)
    head = f"{d.scale.label}\n\n" + (f"> **⚠ {warning}**\n\n" if warning else "")
    for t in built:
        (tmp / "tables" / f"{t.key}.md").write_text(head + t.markdown(), encoding="utf-8")
        (tmp / "tables" / f"{t.key}.csv").write_text(t.csv(), encoding="utf-8")
    fig_dir = tmp / "figures"
    drawn = [maps.indicator_maps(d, fig_dir), ovito_view.figure(rd, fig_dir),
             figures.corr_delta(d, fig_dir),
             maps.ensemble_maps(d, fig_dir), figures.curves(d, fig_dir),
             figures.violins(d, fig_dir), figures.corr_r(d, fig_dir), figures.xi_scan(d, fig_dir),
             figures.energy(d, fig_dir), figures.rdf(d, fig_dir),
             figures.train_curves(d, fig_dir)] + sweep.figures(rd.path, fig_dir)
    ctx = page.context(d, built, drawn, warning)
    page.write_markdown(tmp / "report.md", ctx, built)
    page.write_html(tmp / "report.html", ctx)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    files = sorted(str(p.relative_to(rd.path)) for p in out.rglob("*") if p.is_file())
    return {"files": files, "figures": [f.key for f in drawn if f.path is not None],
            "skipped": {f.key: f.reason for f in drawn if f.path is None},
            "warning": warning}
