"""The T* estimate of the cooling curves is made whatever the temperature unit (issue 18,
defect 6): with ``temperature_unit = "absolute"`` propensity.h5 used to keep NaN, ``glasscam
info`` showed null while the report computed it from prepare.h5, and the propensity log
printed "T* = nan from none". No MD here: a prepare.h5 with a known kink in U(T).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from glasscam_mpi.analysis.tstar import estimate_t_star
from glasscam_mpi.config import build_config
from glasscam_mpi.rundir import RunDir
from glasscam_mpi.stages import propensity

T_KINK = 0.41


def _prepare(rd, n_runs=6, n=64):
    """prepare.h5 whose every run cools along a hinge: glass line below T_KINK, a steeper
    liquid line above it (an exact kink, recovered to ~1e-9 by the estimator)."""
    rd.mkdir(parents=True, exist_ok=True)
    T = np.linspace(1.2, 0.05, 60)
    U = -3.0 + (T - T_KINK) + 1.5 * np.maximum(0.0, T - T_KINK)
    rng = np.random.default_rng(0)
    L = math.sqrt(n / 1.2)
    with h5py.File(rd / "prepare.h5", "w") as fh:
        fh.attrs.update(stage="prepare", schema_version=1)
        fh["status"] = np.ones(n_runs, np.int8)
        fh["split"] = np.array([0, 0, 0, 1, 2, 2], np.int8)
        fh["T"] = np.tile(T, (n_runs, 1))
        fh["pe"] = np.tile(U, (n_runs, 1))
        fh["box"] = np.array([L, L])
        fh["glass"] = rng.uniform(0, L, (n_runs, n, 2)).astype(np.float32)
        fh["types"] = np.zeros((n_runs, n), np.int8)
    return T, U


@pytest.mark.parametrize("unit", ["absolute", "T_star"])
def test_the_estimate_is_made_for_either_temperature_unit(tmp_path, unit, capsys):
    T, U = _prepare(tmp_path)
    want = estimate_t_star(T, U).T_star
    assert want == pytest.approx(T_KINK, abs=1e-6)
    cfg = build_config({"system": {"name": "KAM", "n_particles": 64},
                        "propensity": {"temperature_unit": unit, "temperatures": [0.5, 0.6],
                                       "T_star": "estimate" if unit == "T_star" else 0.37,
                                       "n_configs": 1}})
    plan = propensity.stage.plan(RunDir(tmp_path), cfg)
    assert plan.T_star_estimate == pytest.approx(want, rel=1e-12)
    if unit == "absolute":
        # the temperatures are absolute; T* used is the configured one, for reference
        np.testing.assert_allclose(plan.temps, [0.5, 0.6])
        assert (plan.T_star, plan.T_star_source) == (0.37, "config")
    else:
        assert plan.T_star_source == "estimate"
        np.testing.assert_allclose(plan.temps, np.array([0.5, 0.6]) * want)
    words = propensity.t_star_words(plan)
    assert "nan" not in words and f"{want:.4g}" in words


def test_absolute_without_a_configured_t_star_still_reports_the_estimate(tmp_path):
    T, U = _prepare(tmp_path)
    cfg = build_config({"system": {"name": "KAM", "n_particles": 64},
                        "propensity": {"temperature_unit": "absolute", "T_star": "estimate",
                                       "temperatures": [0.5], "n_configs": 1}})
    plan = propensity.stage.plan(RunDir(tmp_path), cfg)
    assert plan.T_star_source == "none" and math.isnan(plan.T_star)
    assert plan.T_star_estimate == pytest.approx(T_KINK, abs=1e-6)
    words = propensity.t_star_words(plan)
    assert "nan" not in words.lower() and "absolute temperatures" in words
