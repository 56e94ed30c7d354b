"""The report's OVITO picture: one glass test sample coloured by 1 - Gamma, rendered by
OVITO's built-in software ray tracer (Tachyon), headless, from ``glasscam export``'s
extxyz. Optional: without the ``ovito`` module (``hpc/bootstrap.sh --dev`` installs it,
with the Vulkan loader and software driver its renderers need) the report says why the
picture is missing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from glasscam_mpi.report.plotting import FigureFile

KEY = "ovito_glass"
TITLE = "OVITO: a glass sample coloured by 1 − Γ"


def render_glass(run_dir, png: Path, run: int | None = None, size=(500, 500)) -> dict:
    """Render the glass sample of test run ``run`` (default: the first ok test run)
    coloured by 1 - Gamma into ``png``; returns what was drawn (run, OVITO version)."""
    import ovito
    from ovito.io import import_file
    from ovito.modifiers import ColorCodingModifier, ComputePropertyModifier
    from ovito.vis import TachyonRenderer, Viewport

    from glasscam_mpi.export import collect, ok_test_runs, write_extxyz
    from glasscam_mpi.rundir import RunDir

    if run is None:
        run = int(ok_test_runs(RunDir(run_dir))[0])
    ex = collect(run_dir, runs=[run])
    ex.frames = [f for f in ex.frames if f.sample == "glass"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glass.extxyz"
        write_extxyz(ex, path)
        pipeline = import_file(str(path))
        pipeline.modifiers.append(ComputePropertyModifier(output_property="1 - Gamma",
                                                          expressions=["1 - gamma"]))
        pipeline.modifiers.append(ColorCodingModifier(property="1 - Gamma"))
        pipeline.compute()
        pipeline.add_to_scene()
        try:
            vp = Viewport(type=Viewport.Type.Top if len(ex.box) == 2 else Viewport.Type.Ortho)
            vp.zoom_all()
            # ambient occlusion off: 4 s instead of 10 at 500 px on 2 shared cores
            vp.render_image(size=size, filename=str(png),
                            renderer=TachyonRenderer(ambient_occlusion=False))
        finally:
            pipeline.remove_from_scene()
    return {"run": run, "ovito": ".".join(map(str, ovito.version))}


def figure(rd, out: Path) -> FigureFile:
    """The report's figure, or why it is missing."""
    caption = ("Rendered by OVITO's software ray tracer (Tachyon) from 'glasscam export' of a "
               "glass test sample: colour 1 − Γ (OVITO's Rainbow map over the sample's range)")
    try:
        import ovito  # noqa: F401
    except ImportError as exc:
        return FigureFile(KEY, TITLE, caption, None,
                          f"the ovito Python module is not installed ({exc}); "
                          "'bash hpc/bootstrap.sh --dev' installs it")
    if not rd.stage_file("gradcam").exists():
        return FigureFile(KEY, TITLE, caption, None, "no gradcam.h5: Γ was not computed")
    png = out / f"{KEY}.png"
    try:
        got = render_glass(rd.path, png)
    except (RuntimeError, OSError) as exc:  # no Vulkan driver, a renderer error
        return FigureFile(KEY, TITLE, caption, None, f"OVITO could not render it: {exc}")
    return FigureFile(KEY, TITLE, f"{caption}; test run {got['run']}, OVITO {got['ovito']}.",
                      png)
