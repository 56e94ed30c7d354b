"""Stage ``report``: the run's answer beside the paper's, in ``RUN_DIR/report/``.

Not a task farm: rank 0 reads analysis.h5 (and the earlier stage files), writes the
tables (Markdown, CSV), the figures (PNG) and ``report.html`` / ``report.md`` (see
:mod:`glasscam_mpi.report`). It is cheap, so every run renders it anew. Every rank takes
part in the lock / config set-up and returns; an error (no analysis.h5, a damaged file)
reaches every rank and is printed once.
"""

from __future__ import annotations

import time

from glasscam_mpi.config import Config
from glasscam_mpi.parallel import bcast_from_root
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages.declare import About, Cost, Flow, Input
from glasscam_mpi.stages.engine import Stage

STAGE = "report"
HELP = "tables and figures of the paper for this run -> report/report.html"
DESCRIPTION = ("Render the paper's Tables 2-5 and S2 beside the paper's numbers, Figs 1-8, the "
               "xi scan, U(T) and g(r) from analysis.h5 into RUN_DIR/report/: one "
               "self-contained report.html, report.md, tables as Markdown and CSV, figures as "
               "PNG. Rendered anew every time; needs 'glasscam analyze' first.")


def work(comm, rd: RunDir, cfg: Config, ready, *, progress_every: float = 5.0) -> dict:
    """Render the report (every rank calls this; rank 0 does the work)."""
    t0 = time.time()

    def render() -> dict:
        from glasscam_mpi.report import render as render_report, report_dir

        got = render_report(rd, cfg)
        seconds = time.time() - t0
        if got["warning"]:
            print(f"report: {got['warning']}", flush=True)
        for key, why in got["skipped"].items():
            print(f"report: {key} not drawn: {why}", flush=True)
        print(f"report: wrote {report_dir(rd) / 'report.html'} ({len(got['figures'])} "
              f"figures, {sum(f.endswith('.csv') for f in got['files'])} tables; "
              f"{seconds:.1f} s)", flush=True)
        rd.write_log(STAGE, {"stage": STAGE, "ranks": comm.Get_size(),
                             "seconds_total": round(seconds, 3), **got})
        return got

    got = bcast_from_root(comm, render)
    return {"complete": True, "files": got["files"]}


def summarize(rd: RunDir, cfg: Config) -> dict:
    """For ``glasscam info``: complete when report/report.html exists; the files."""
    from glasscam_mpi.report import report_dir

    folder = report_dir(rd)
    out: dict = {"complete": (folder / "report.html").is_file()}
    if folder.is_dir():
        out["files"] = sorted(str(p.relative_to(rd.path)) for p in folder.rglob("*")
                              if p.is_file())
    return out


def _cost(cfg: Config, cal, profile) -> Cost:
    return Cost(1, 0.0, 0, cal.md.memory_bytes, "not calibrated (one process reading "
                "analysis.h5: minutes); counted as 0")


stage = Stage(STAGE, About(HELP, DESCRIPTION),
              Flow(needs=("analyze",), inputs=(Input("analyze"),), cost=_cost),
              work=work, summarize=summarize)
