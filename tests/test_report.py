"""``glasscam report``: the run's answer beside the paper's, from real stage files.

One tiny but complete run directory is made once through the CLI under ``mpiexec -n 2``
(prepare -> train -> gradcam -> indicators -> propensity -> analyze -> report), with an
ensemble study small enough to run (2 sub-ensembles of 2 of 4 replicas) and one delta
target that is never reached. A second directory holds the same prepare, indicators and
propensity files but no CNN stages. The tables are checked against numbers read (and,
where cheap, recomputed) from analysis.h5 directly, and report.html is opened in a real
headless Chromium.
"""

from __future__ import annotations

import csv
import html
import json
import math
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import TINY_TOML, TINY_TRAIN_TOML, glasscam

pytestmark = pytest.mark.mpi

TOML = TINY_TOML + TINY_TRAIN_TOML + """
[propensity]
n_configs = 1
temperatures = [0.45, 0.8]
temperature_unit = "absolute"
n_replicas = 4
t_max = 10.0
n_times = 8
delta_targets = [0.05, 0.08, 50.0]
stop_factor = 0.0

[analyze]
xis = [0.0, 1.0, 1.5, 2.0, 3.0]
xi_pairs = 1.0
bins = 20
subensemble_size = 2
subensembles = 2
"""
TABLES = ("scale", "table2", "table3", "table3_scan", "table4", "table5", "tableS2",
          "crystallisation")
FIGURES = ("fig1_2_maps", "ovito_glass", "fig3_corr_delta", "fig4_ensembles", "fig5_7_curves",
           "fig6_violins", "fig8_corr_r", "xi_scan", "energy", "rdf", "train_curves")
# drawn whatever the CNN learnt (fig6 and fig8 need correctly classified samples)
ALWAYS = set(FIGURES) - {"fig6_violins", "fig8_corr_r"}
SYMBOL = {"gamma": "Γ", "volume": "Υ", "theta": "Θ"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The whole pipeline on the tiny config; the report rendered with no MPLBACKEND and
    no DISPLAY (headless by construction)."""
    base = tmp_path_factory.mktemp("report")
    cfg = base / "cfg.toml"
    cfg.write_text(TOML)
    rd = base / "run"
    glasscam(["prepare", "--config", str(cfg), "--run-dir", str(rd)], n=2)
    for stage in ("train", "gradcam", "indicators", "propensity", "analyze"):
        glasscam([stage, "--run-dir", str(rd)], n=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MPLBACKEND", raising=False)
        mp.delenv("DISPLAY", raising=False)
        res = glasscam(["report", "--run-dir", str(rd)], n=2)
    assert "report: wrote" in res.stdout
    return rd


@pytest.fixture(scope="module")
def no_cnn_dir(run_dir, tmp_path_factory) -> Path:
    """The same prepare, indicators and propensity files, no train/gradcam: analyze and
    report run without Gamma (report with MPLBACKEND=Agg)."""
    rd = tmp_path_factory.mktemp("report_no_cnn") / "run"
    rd.mkdir()
    for name in ("config.toml", "prepare.h5", "indicators.h5", "propensity.h5"):
        shutil.copy(run_dir / name, rd / name)
    glasscam(["analyze", "--run-dir", str(rd)], n=2)
    glasscam(["report", "--run-dir", str(rd)], n=2, env={"MPLBACKEND": "Agg"})
    return rd


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def num(cell: str) -> float:
    return float(cell) if cell != "" else float("nan")


def summary(rd: Path) -> tuple[dict, dict]:
    with h5py.File(rd / "analysis.h5", "r") as fh:
        S = {k: fh["summary"][k][()] for k in fh["summary"]}
        attrs = {"forms": json.loads(fh.attrs["forms"]), "xis": fh["xis"][:],
                 "indicators": str(fh.attrs["indicators"]).split(","),
                 "pairs": str(fh.attrs["pairs"]).split(","),
                 "have_gamma": int(fh.attrs["have_gamma"]),
                 "xi_pairs": float(fh["summary"].attrs["xi_pairs"]),
                 "pearson": fh["samples/pearson"][:], "correct": fh["samples/correct"][:],
                 "ensemble": fh["dynamics/ensemble"][:]}
    return S, attrs


# -- files ---------------------------------------------------------------------------------------
def test_every_file_is_written(run_dir):
    """Every table; every figure drawn, or left out with its reason on the page (the tiny
    CNN may misclassify every glass sample, and Fig. 8 averages correct ones only)."""
    rep = run_dir / "report"
    for key in TABLES:
        for ext in ("md", "csv"):
            assert (rep / "tables" / f"{key}.{ext}").stat().st_size > 0, f"{key}.{ext}"
    log = json.loads((run_dir / "logs" / "report.json").read_text())
    pngs = sorted(p.stem for p in (rep / "figures").glob("*.png"))
    assert pngs == sorted(log["figures"])
    assert set(pngs) | set(log["skipped"]) == set(FIGURES)
    assert ALWAYS <= set(pngs), log["skipped"]
    for p in (rep / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
    page = html.unescape((rep / "report.html").read_text())
    md = (rep / "report.md").read_text()
    for key in pngs:
        assert f"](figures/{key}.png)" in md, key
    for why in log["skipped"].values():
        assert f"Not drawn: {why}." in page and f"Not drawn: {why}." in md
    assert "### Table 5" in md and "### Table S2" in md


def test_info_and_run_order(run_dir):
    from glasscam_mpi.stages import STAGES

    names = list(STAGES)
    assert names.index("report") == names.index("analyze") + 1 == len(names) - 1
    info = json.loads(glasscam(["info", str(run_dir)]).stdout)
    rep = info["stages"]["report"]
    assert rep["complete"] and "report" in info["complete"]
    assert "report/report.html" in rep["files"] and "report/tables/table5.csv" in rep["files"]


def test_scale_warning_for_a_tiny_run(run_dir):
    rep = run_dir / "report"
    for text in (html.unescape((rep / "report.html").read_text()), (rep / "report.md").read_text(),
                 (rep / "tables" / "table5.md").read_text()):
        assert "NOT THE PAPER'S SCALE" in text
        assert "N = 64 (paper 2000)" in text and "6 cooling runs (paper 5000)" in text
        assert "cooling rate 0.2 (paper 8.33e-05)" in text
        assert "4 replicas per ensemble (paper 30)" in text


# -- the tables hold analysis.h5's numbers -------------------------------------------------------
def test_table5_is_the_maximum_of_the_curves(run_dir):
    """C^max, delta* per indicator and temperature: equal to summary/table5 and to the
    maximum of summary/curves at xi_best (recomputed here)."""
    S, a = summary(run_dir)
    rows = read_csv(run_dir / "report" / "tables" / "table5.csv")
    n_T = S["curve_delta"].shape[0]
    assert len(rows) == 3 * (n_T + 1)
    for x, name in enumerate(a["indicators"]):
        mine = [r for r in rows if r["indicator"] == SYMBOL[name]]
        assert len(mine) == n_T + 1
        xi_i = int(np.flatnonzero(a["xis"] == S["xi_best"][x])[0])
        for k, r in enumerate(mine):
            form = "1 − " + SYMBOL[name] if a["forms"][name] == "1 - X" else SYMBOL[name]
            assert r["form"] == form
            y = S["curves"][x, xi_i, k] if k < n_T else S["curves"][x, xi_i].ravel()
            d = S["curve_delta"][k] if k < n_T else S["curve_delta"].ravel()
            best = int(np.nanargmax(y))
            assert num(r["C^max"]) == pytest.approx(y[best], rel=1e-12)
            assert num(r["δ*"]) == pytest.approx(d[best], rel=1e-12)
            assert num(r["C^max"]) == S["table5"][x, k, 0]
            assert num(r["ξ"]) == S["xi_best"][x]
    pooled = [r for r in rows if r["T"] == "all (pooled)"]
    assert [num(r["paper C^max"]) for r in pooled] == [0.925, 0.966, 0.885]


def test_table3_and_the_xi_scan(run_dir):
    S, a = summary(run_dir)
    rows = read_csv(run_dir / "report" / "tables" / "table3.csv")
    targets = (0.05, 0.08, 50.0)
    for j, t in enumerate(targets):
        r = rows[j]
        assert f"δ = {t:g}" in r["quantity"]
        np.testing.assert_equal(num(r["this run"]), S["xi_delta_targets"][j])
        np.testing.assert_equal(num(r["this run on the ξ grid"]), S["xi_delta_used"][j])
    assert "not reached" in rows[2]["note"] and math.isnan(num(rows[2]["this run"]))
    for x, name in enumerate(a["indicators"]):
        r = next(r for r in rows if r["quantity"].startswith(f"ξ_{SYMBOL[name]}:"))
        assert num(r["this run"]) == S["xi_best"][x] and r["paper"] == "8.0"
    scan = read_csv(run_dir / "report" / "tables" / "table3_scan.csv")
    assert [num(r["ξ"]) for r in scan] == list(a["xis"])
    for x, name in enumerate(a["indicators"]):
        col = next(c for c in scan[0] if c.startswith("C^max") and SYMBOL[name] in c)
        assert a["forms"][name] in ("X", "1 - X") and ("1 − " in col) == (a["forms"][name] != "X")
        np.testing.assert_array_equal([num(r[col]) for r in scan], S["cmax"][x, :, -1])


def test_table_s2_is_the_mean_over_correct_samples(run_dir):
    """Means of the bare indicators' coefficients (as analysis.h5 stores them), checked
    against a mean of samples/pearson over the correctly classified samples computed here."""
    S, a = summary(run_dir)
    rows = read_csv(run_dir / "report" / "tables" / "tableS2.csv")
    assert len(rows) == 6
    xi_i = int(np.flatnonzero(a["xis"] == a["xi_pairs"])[0])
    finite = 0
    for r in rows:
        cls = {"glass": 1, "liquid": 0}[r["class"]]
        u, v = (next(n for n, s in SYMBOL.items() if s == c.strip())
                for c in r["pair (bare indicators)"].split(","))
        p = a["pairs"].index(f"{u}-{v}")
        keep = a["correct"][:, cls] != 0                  # misclassified samples left out
        vals = a["pearson"][keep, cls, xi_i, p]
        vals = vals[np.isfinite(vals)]
        mean = vals.mean() if vals.size else np.nan
        std = vals.std(ddof=1) if vals.size > 1 else np.nan
        finite += vals.size > 1
        assert num(r["Pearson mean"]) == pytest.approx(mean, rel=1e-12, nan_ok=True)
        assert num(r["Pearson mean"]) == pytest.approx(S["pairs_pearson"][cls, p, 1],
                                                       nan_ok=True)
        assert num(r["Pearson std"]) == pytest.approx(std, rel=1e-12, nan_ok=True)
        assert num(r["Spearman mean"]) == pytest.approx(S["pairs_spearman"][cls, p, 1],
                                                        nan_ok=True)
        assert int(r["samples"]) == vals.size
        assert int(r["constant fields"]) == S["n_constant"][cls, p]
    assert finite >= 3, "no class with two usable test samples: the check would be empty"
    mis = S["n_misclassified"]
    note = (run_dir / "report" / "tables" / "tableS2.md").read_text()
    assert f"misclassified test samples (liquid {mis[0]}, glass {mis[1]})" in note


def test_table2_and_table4(run_dir):
    with h5py.File(run_dir / "train.h5", "r") as fh:
        acc = fh["test_accuracy"][:]
    rows = read_csv(run_dir / "report" / "tables" / "table2.csv")
    assert [num(rows[0]["glass"]), num(rows[0]["liquid"])] == list(acc)
    assert [num(rows[1]["glass"]), num(rows[1]["liquid"])] == [1.0, 0.998]
    S, a = summary(run_dir)
    rows = read_csv(run_dir / "report" / "tables" / "table4.csv")
    assert len(rows) == 4 and rows[-1]["δ"].startswith("paper")
    for j, r in enumerate(rows[:3]):
        np.testing.assert_array_equal([num(r[c]) for c in list(r)[2:]], S["table4"][j])
    assert np.isfinite(S["table4"][:2]).all() and np.isnan(S["table4"][2]).all()


def test_fig4_fields_are_those_of_table4(run_dir):
    """The report's per-replica maps give analyze's ensemble-study coefficients back."""
    from glasscam_mpi.report import data, ensemble
    from glasscam_mpi.rundir import RunDir

    rd = RunDir(run_dir)
    d = data.load(rd, rd.saved_config())
    k, j = ensemble.choose(d)
    m = ensemble.compute(d, k, j)
    S, a = summary(run_dir)
    xi_i = int(np.flatnonzero(a["xis"] == S["xi_delta_used"][j])[0])
    ens = a["ensemble"][0, k, j, xi_i]
    assert np.corrcoef(m.bare[:, 0], m.bare[:, 1])[0, 1] == pytest.approx(ens[0], rel=1e-9)
    assert np.corrcoef(m.coarse[:, 0], m.coarse[:, 1])[0, 1] == pytest.approx(ens[1], rel=1e-9)
    assert np.corrcoef(m.bare[:, 2], m.coarse[:, 2])[0, 1] == pytest.approx(ens[3], rel=1e-9)
    assert m.bare.min() == 0.0 and m.bare.max() == 1.0


# -- the page in a real browser ---------------------------------------------------------------
def _chromium():
    missing = [exe for exe in ("chromium", "chromedriver") if shutil.which(exe) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (PyPI)")
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run `bash hpc/bootstrap.sh --dev` "
                    "(it installs chromium, chromium-driver and selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000"):
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="glasscam-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    return driver, profile


def test_report_html_in_a_headless_browser(run_dir):
    page = run_dir / "report" / "report.html"
    text = page.read_text()
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    driver, profile = _chromium()
    try:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
            "i.naturalHeight, i.getAttribute('src').slice(0, 22)])")
        warning = driver.execute_script(
            "var w = document.getElementById('scale-warning'); return w ? w.innerText : null")
        tables = driver.execute_script("return document.querySelectorAll('table').length")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    n_png = len(list((run_dir / "report" / "figures").glob("*.png")))
    assert len(images) == n_png >= len(ALWAYS)
    for complete, width, height, src in images:
        assert complete and width > 0 and height > 0
        assert src == "data:image/png;base64,"
    assert warning and "NOT THE PAPER'S SCALE" in warning
    assert tables == len(TABLES)


# -- without the CNN stages; before analyze ----------------------------------------------
def test_report_without_gradcam(no_cnn_dir):
    rep = no_cnn_dir / "report"
    text = (rep / "report.html").read_text()
    assert "The CNN stages (train, gradcam) were not run" in text
    figures = sorted(p.stem for p in (rep / "figures").glob("*.png"))
    assert figures == sorted(set(FIGURES) - {"train_curves", "ovito_glass"})
    assert "no gradcam.h5: Γ was not computed" in text          # why the OVITO image is absent
    t5 = read_csv(rep / "tables" / "table5.csv")
    assert {r["indicator"] for r in t5} == {"Υ", "Θ"}
    s2 = read_csv(rep / "tables" / "tableS2.csv")
    assert all("Γ" not in r["pair (bare indicators)"] for r in s2) and len(s2) == 2
    scan = read_csv(rep / "tables" / "table3_scan.csv")
    assert not any("Γ" in c for c in scan[0])
    t3 = read_csv(rep / "tables" / "table3.csv")
    assert not any(r["quantity"].startswith("ξ_Γ") for r in t3)
    t2 = (rep / "tables" / "table2.md").read_text()
    assert "No train.h5: the CNN stages (train, gradcam) were not run." in t2
    assert len(read_csv(rep / "tables" / "table2.csv")) == 1       # the paper's row only


def test_report_without_ovito_says_why_its_image_is_missing(run_dir, tmp_path, monkeypatch):
    """The OVITO picture is optional: with the module unimportable (None in sys.modules
    makes 'import ovito' raise ImportError) the figure is not drawn, with the reason."""
    import sys

    from glasscam_mpi.report import ovito_view
    from glasscam_mpi.rundir import RunDir

    monkeypatch.setitem(sys.modules, "ovito", None)
    fig = ovito_view.figure(RunDir(run_dir), tmp_path)
    assert fig.path is None and not list(tmp_path.iterdir())
    assert "ovito Python module is not installed" in fig.reason and "--dev" in fig.reason


def test_report_before_analyze_is_a_user_error(run_dir, tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    for name in ("config.toml", "prepare.h5"):
        shutil.copy(run_dir / name, rd / name)
    res = glasscam(["report", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("glasscam report: error:")
    assert "no analysis.h5: run 'glasscam analyze' first" in lines[0]
    assert not (rd / "report").exists()


def test_report_reads_an_older_propensity_file_that_analyze_accepts(run_dir, tmp_path):
    """Issue 18, defect 8: propensity.h5 from before ``reportable`` and ``n_ok_replicas``
    (schema 1): analyze accepted it, report crashed with KeyError: 'reportable'. Both now
    follow one rule (glasscam_mpi.store): derived from status, the same report."""
    rd = tmp_path / "old"
    shutil.copytree(run_dir, rd, ignore=shutil.ignore_patterns(".lock", "report"))
    with h5py.File(rd / "propensity.h5", "a") as fh:
        del fh["reportable"], fh["n_ok_replicas"]
        fh.attrs["schema_version"] = 1
    res = glasscam(["report", "--run-dir", str(rd)], n=1, env={"MPLBACKEND": "Agg"},
                   check=False)
    assert res.returncode == 0, res.stderr
    for key in ("table5", "table4", "scale"):
        assert (rd / "report" / "tables" / f"{key}.csv").read_text() == \
            (run_dir / "report" / "tables" / f"{key}.csv").read_text(), key
    # a dataset that cannot be derived: refused with what to rerun, one line, no traceback
    with h5py.File(rd / "propensity.h5", "a") as fh:
        del fh["temperatures"]
    res = glasscam(["report", "--run-dir", str(rd)], n=1, env={"MPLBACKEND": "Agg"},
                   check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "rerun 'glasscam propensity" in res.stderr
