"""The report's pages: ``report.html`` (one self-contained file: figures as base64 data URIs,
CSS inline, no script, no network) and ``report.md`` (links the PNGs, includes the tables),
both from the same tables, figures and notes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np

from glasscam_mpi.report.data import RunData, form_label
from glasscam_mpi.report.plotting import FigureFile
from glasscam_mpi.report.tables import Table, fmt


def notes(d: RunData) -> list[str]:
    """What a reader must know before the numbers: missing stages, the analysis's notes,
    the crystallisation check, and length scales the run does not resolve."""
    out = []
    if not d.have_gamma:
        out.append("The CNN stages (train, gradcam) were not run: there is no gradcam.h5, so "
                   "the Grad-CAM score Γ is absent from every table and figure.")
    for n in d.notes:
        if n not in out and not (not d.have_gamma and n.startswith("no gradcam.h5")):
            out.append(n)
    c = d.headline.get("crystallisation")
    if c:
        mean = c.get("glass_psi6_mean")
        out.append(f"Crystallisation check: {c['runs_with_energy_jump']} of {c['runs']} cooling "
                   f"runs with an energy jump in U(T); {c['glass_samples_psi6_above']} glass test "
                   f"samples with |ψ6| > {c['psi6_threshold']}"
                   + (f" (mean |ψ6| {mean:.3g})" if mean is not None else "") + ".")
    return out


def answer(d: RunData) -> list[str]:
    """The headline in words: C^max and delta* per indicator beside the paper's."""
    lines = []
    p = d.paper
    for x in d.shown():
        i = d.index(x)
        cm, ds, xi = d.S["table5"][i, -1]
        ref = (f" (paper {p['table5'][x][0]:.3f} at δ* = {p['table5'][x][1]:.3g})"
               if p else "")
        lines.append(f"C^max of {form_label(x, d.forms[x])} with Δ: {fmt(cm)} at δ* = {fmt(ds)}, "
                     f"ξ = {fmt(xi)}{ref}")
    return lines


def _table_context(t: Table) -> dict:
    return {"key": t.key, "title": t.title, "columns": t.columns,
            "rows": [[{"text": fmt(c), "num": isinstance(c, (int, float, np.number))}
                      for c in row] for row in t.rows], "notes": t.notes}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def context(d: RunData, tables: list[Table], figures: list[FigureFile],
            warning: str | None) -> dict:
    from glasscam_mpi import __version__

    return {"system": d.scale.system, "scale_label": d.scale.label, "run_dir": str(d.run_dir),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "version": __version__,
            "warning": warning, "notes": notes(d), "answer": answer(d),
            "tables": [_table_context(t) for t in tables],
            "figures": [f for f in figures if f.path is not None],
            "skipped": [f for f in figures if f.path is None]}


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("glasscam_mpi.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def write_html(path: Path, ctx: dict) -> None:
    figs = [{"title": f.title, "caption": f.caption, "key": f.key, "src": _data_uri(f.path)}
            for f in ctx["figures"]]
    html = _env().get_template("report.html.j2").render(**{**ctx, "figures": figs})
    path.write_text(html, encoding="utf-8")


def write_markdown(path: Path, ctx: dict, tables: list[Table]) -> None:
    out = [f"# glasscam report: {ctx['system']}", "",
           f"{ctx['scale_label']}  ", f"Run directory `{ctx['run_dir']}`, generated "
           f"{ctx['generated']} by glasscam-mpi {ctx['version']}.", ""]
    if ctx["warning"]:
        out += [f"> **⚠ {ctx['warning']}**", ""]
    out += ["## The paper's answer for this run", ""] + [f"- {a}" for a in ctx["answer"]] + [""]
    if ctx["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in ctx["notes"]] + [""]
    out += ["## Tables", ""] + [t.markdown() for t in tables]
    out += ["## Figures", ""]
    for f in ctx["figures"]:
        out += [f"### {f.title}", "", f"![{f.title}](figures/{f.path.name})", "", f.caption, ""]
    for f in ctx["skipped"]:
        out += [f"### {f.title}", "", f"Not drawn: {f.reason}.", ""]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
