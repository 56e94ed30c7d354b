"""The README's main command on the unchanged demo preset, as a user runs it:
``mpiexec -n 2 glasscam run --preset demo`` (prepare, train with Horovod, gradcam,
indicators, propensity, analyze, report). The trained CNN must tell glass from liquid on
the held-out test runs (test accuracy >= 0.95 for both classes; the paper's Table 2 has
1.00 / 0.998), Grad-CAM must give a score to every particle of every test sample, the
propensity ensembles must reach every delta target the preset asks for, and the report
must be written with the paper's answer in ``glasscam info``.

About 3-4 minutes on 2 cores, most of it the 120 cooling runs of ``prepare``.
"""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import glasscam

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # ~3-4 min on 2 cores: -m "not slow"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    rd = tmp_path_factory.mktemp("demo") / "run"
    run = glasscam(["run", "--preset", "demo", "--run-dir", str(rd)], n=2, timeout=1200)
    return rd, run


def test_demo_cnn_tells_glass_from_liquid(demo):
    rd, train = demo
    assert "backend horovod on 2 rank(s)" in train.stdout
    with h5py.File(rd / "train.h5", "r") as fh:
        glass, liquid = fh["test_accuracy"][:]
        counts = fh["test_counts"][:]
        confusion = fh["test_confusion"][:]
        val = fh["val_accuracy"][:]
    with h5py.File(rd / "prepare.h5", "r") as prep:
        n_test = int(((prep["split"][:] == 2) & (prep["status"][:] == 1)).sum())
    assert n_test >= 15 and (counts == n_test).all()  # one glass and one liquid per test run
    assert glass >= 0.95 and liquid >= 0.95, (glass, liquid, confusion.tolist())
    assert val.max() >= 0.95
    info = json.loads(glasscam(["info", str(rd)]).stdout)["stages"]["train"]
    assert info["test_accuracy"] == {"glass": round(float(glass), 4),
                                     "liquid": round(float(liquid), 4)}


def test_demo_gradcam_scores_every_test_particle(demo):
    rd, _ = demo
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "gradcam.h5", "r") as out:
        test_runs = np.flatnonzero((prep["split"][:] == 2) & (prep["status"][:] == 1))
        np.testing.assert_array_equal(out["runs"][:], test_runs)
        gamma, p_glass, predicted = out["gamma"][:], out["p_glass"][:], out["predicted"][:]
    n_particles = 200
    assert gamma.shape == (len(test_runs), 2, n_particles)
    assert np.isfinite(gamma).all() and (gamma >= 0).all()
    # the trained network looks at glass samples: their Grad-CAM maps are not all zero
    assert (gamma[:, 1].max(axis=1) > 0).mean() >= 0.95
    # predicted class per sample [liquid, glass]: agrees with the test accuracy above
    assert (predicted[:, 1] == 1).mean() >= 0.95 and (predicted[:, 0] == 0).mean() >= 0.95
    assert (p_glass[:, 1] > 0.5).mean() >= 0.95 and (p_glass[:, 0] < 0.5).mean() >= 0.95


def test_demo_reaches_every_delta_target_and_reports(demo):
    rd, _ = demo
    with h5py.File(rd / "propensity.h5", "r") as fh:
        targets = fh["delta_targets"][:]
        assert list(targets) == [0.3, 1.0, 3.0]
        assert np.isfinite(fh["t_at_delta"][:]).all(), fh["t_at_delta"][:]
        assert (fh["reportable"][:] == 1).all()
    html = (rd / "report" / "report.html").read_text()
    assert "NOT THE PAPER&#39;S SCALE" in html and html.count("<img") >= 10
    info = json.loads(glasscam(["info", str(rd)]).stdout)
    assert info["complete"] == ["prepare", "train", "gradcam", "indicators", "propensity",
                                "analyze", "report"]
    head = info["stages"]["analyze"]["headline"]
    assert head["T_star"]["used"] == 0.6 and head["T_star"]["source"] == "config"
    for name in ("gamma", "volume", "theta"):
        entry = head["table5"][name]
        assert -1 <= entry["C_max"] <= 1 and entry["delta_star"] > 0
        assert len(entry["per_T"]) == 2


def test_demo_stage_files_identical_to_recorded_digests(demo):
    """Every dataset of every stage file equals, bit for bit, the one recorded on main at
    6a4f481 (before issue 20 moved code between modules): ``tests/golden/demo-digests.json``,
    written by ``python tests/tools/h5digest.py RUN_DIR --out ...``. Two runs of the demo
    on this machine give identical digests apart from wall-time datasets (``*seconds``,
    whose dtype and shape alone are compared). A change that is meant to change results
    must record new digests and say why in its commit; floating-point results are those of
    this machine type (CI runs on the same one)."""
    from tools.h5digest import compare, run_digests

    rd, _ = demo
    want = json.loads((Path(__file__).parent / "golden" / "demo-digests.json").read_text())
    diff = compare(run_digests(rd), want)
    assert not diff, "stage files differ from the recorded demo:\n" + "\n".join(diff)
