"""LAMMPS's OPENMP styles (``lammps_style = "omp"``, the default: ``-sf omp -pk omp 1``)
against the plain styles, in real LAMMPS, 2D KAM and 3D KA3D.

What is compared, and to what tolerance:

* which styles run: with "omp" the pair style in use is ``lj/smooth/linear/omp`` and the
  thermostat ``nvt/omp``, on one thread; with "plain" the stock ones. (The agreement tests
  below would pass if "omp" silently ran the plain styles; this one would not.)
* forces and energy of one configuration: equal to rounding, |df| <= 1e-12 max|f| (the omp
  kernel sums a particle's pair forces in another order: measured 1.4e-13 of max|f| 526 on
  a lattice start, i.e. the last bit; the energy is summed the same way).
* a replica (the propensity task, ``run_replica``): same seed, same start. The drawn
  velocities are bit-identical (they do not involve forces); the positions agree to
  1e-9 over 200 steps. Two runs whose forces differ in the last bit separate like
  exp(lambda t) (chaos). Measured from these quenched starts at T = 0.6 (3 seeds, 2D and
  3D): <= 6e-14 after 200 steps, <= 6e-12 after 500; from a lattice start at T = 0.8:
  2e-12 after 200, 1e-9 after 500, O(1) after ~2000 steps. 1e-9 at 200 steps leaves a
  margin of > 1e4 for the rounding, while any real difference of the force field (a
  relative error of 1e-8 in the forces moves a particle by ~ eps |f| (n dt)^2 ~ 1e-7 in
  200 steps) fails it. Beyond a few
  hundred steps only statistics can agree (as for ranks_per_task = 1 against 2,
  tests/test_mpi_ranks_per_task.py).
* a cooling run (the prepare task, ``run_cooling``): it starts with an energy
  minimisation from a random start, which stops when the relative energy change falls
  below etol = 1e-4; forces that differ in the last bit can make it stop one iteration
  apart (measured: positions up to 8e-4 apart after the minimisation for 1 seed in 10, the
  energies 1.1e-5 apart). So the energies along a short ramp are compared to the
  minimiser's own tolerance, 1e-4 relative, and the random start itself (types, box) must
  be identical.
* the config choice reaches LAMMPS: ``prepare``'s task with ``lammps_style`` "plain" /
  "omp" is bit for bit ``run_cooling`` with that style.
"""

import re

import numpy as np
import pytest

from glasscam_mpi.config import ConfigError, build_config
from glasscam_mpi.md.cooling import CoolingPlan, run_cooling
from glasscam_mpi.md.engine import commands, open_lammps, style_args
from glasscam_mpi.md.replica import dynamics_lines, load_configuration_lines, run_replica
from glasscam_mpi.systems import get_system

CASES = [("KAM", 256), ("KA3D", 256)]
DT = 0.005


def _cooling_kw(seed: int) -> dict:
    return dict(seeds=(11 + seed, 22 + seed, 33 + seed), min_distance=0.7, timestep=DT,
                T_high=2.0, T_glass=0.3, tdamp_steps=100.0)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def start(request):
    """A quenched configuration (short plain cooling run): (system, positions, types, box)."""
    name, n = request.param
    system = get_system(name)
    plan = CoolingPlan(100, 200, 400, (0, 200, 400))
    res = run_cooling(system, n, plan, **_cooling_kw(0), style="plain")
    return system, res.glass, res.types, res.box


def _load(lmp, system, x, types, box):
    n, d = x.shape
    x3 = np.zeros((n, 3))
    x3[:, :d] = x
    commands(lmp, load_configuration_lines(system, box))
    lmp.create_atoms(n, list(range(1, n + 1)), [int(t) + 1 for t in types], x3.ravel().tolist())
    commands(lmp, dynamics_lines(T=0.6, seed=5, timestep=DT, ensemble="nvt", tdamp_steps=100.0)
             + ["run 0 post no"])


def _forces(lmp, n):
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    f = np.empty((n, 3))
    f[ids - 1] = lmp.numpy.extract_atom("f")[:n]
    return f


def test_style_args():
    assert style_args("plain") == []
    assert style_args("omp") == ["-sf", "omp", "-pk", "omp", "1"]
    with pytest.raises(ValueError, match="allowed"):
        style_args("gpu")


@pytest.mark.parametrize("style", ["omp", "plain"])
def test_the_chosen_styles_run_on_one_thread(start, style, tmp_path):
    """LAMMPS's own ``info``: the pair style, the fixes, and the thread count in use."""
    system, x, types, box = start
    info = tmp_path / "info.txt"
    with open_lammps(style=style) as lmp:
        _load(lmp, system, x, types, box)
        commands(lmp, [f"info system communication fixes out overwrite {info}"])
    text = info.read_text()
    pair = re.search(r"types = +\d+, +style = (\S+)", text).group(1)
    fixes = dict(re.findall(r"Fix\[ *\d+\]: +(\S+), +style = (\S+),", text))
    assert re.search(r"Nthreads = (\d+)", text).group(1) == "1"
    if style == "omp":
        assert (pair, fixes["md"]) == ("lj/smooth/linear/omp", "nvt/omp")
    else:
        assert (pair, fixes["md"]) == ("lj/smooth/linear", "nvt")
        assert not any(s.endswith("/omp") or s == "OMP" for s in fixes.values())


def test_forces_and_energy_agree_to_rounding(start):
    system, x, types, box = start
    out = {}
    for style in ("plain", "omp"):
        with open_lammps(style=style) as lmp:
            _load(lmp, system, x, types, box)
            out[style] = (_forces(lmp, len(x)), float(lmp.get_thermo("pe")))
    (fa, ua), (fb, ub) = out["plain"], out["omp"]
    assert np.abs(fa).max() > 1.0  # a glass: forces are not ~0
    assert np.abs(fa - fb).max() <= 1e-12 * np.abs(fa).max()
    assert ub == pytest.approx(ua, rel=1e-13, abs=0)


def test_replica_trajectories_agree_to_rounding_over_200_steps(start):
    system, x, types, box = start
    steps = np.array([1, 10, 50, 100, 200])
    res = {style: run_replica(system, x, types, box, T=0.6, seed=777, timestep=DT, steps=steps,
                              style=style) for style in ("plain", "omp")}
    a, b = res["plain"], res["omp"]
    np.testing.assert_array_equal(a.velocities0, b.velocities0)
    assert a.T0 == b.T0
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-9)
    assert np.abs(a.positions[-1] - x).max() > 1e-2  # the particles did move


@pytest.mark.parametrize("name", ["KAM", "KA3D"])
def test_cooling_runs_agree_to_the_minimiser_tolerance(name):
    system = get_system(name)
    plan = CoolingPlan(0, 10, 20, (0, 10, 20))
    for seed in range(3):
        a = run_cooling(system, 64, plan, **_cooling_kw(seed), style="plain")
        b = run_cooling(system, 64, plan, **_cooling_kw(seed), style="omp")
        np.testing.assert_array_equal(a.types, b.types)
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_allclose(b.pe, a.pe, rtol=1e-4, atol=0)
        np.testing.assert_allclose(b.T, a.T, rtol=1e-3, atol=0)


def test_config_chooses_the_style_of_the_prepare_task():
    from glasscam_mpi.stages.prepare import cooling_task, plan_of, run_seeds

    base = {"system": {"name": "KAM", "n_particles": 64},
            "prepare": {"n_runs": 4, "t_equilibrate": 0.5, "cooling_rate": 2.0,
                        "energy_samples": 5}}
    assert build_config(base).prepare.lammps_style == "omp"  # the default
    assert build_config(base).propensity.lammps_style == "omp"
    with pytest.raises(ConfigError, match="lammps_style"):
        build_config({**base, "prepare": {**base["prepare"], "lammps_style": "gpu"}})
    tasks = {}
    for style in ("plain", "omp"):
        cfg = build_config({**base, "prepare": {**base["prepare"], "lammps_style": style}})
        plan, p = plan_of(cfg), cfg.prepare
        ref = run_cooling(cfg.sys, 64, plan, seeds=run_seeds(cfg, 1), min_distance=p.min_distance,
                          timestep=p.timestep, T_high=p.T_high, T_glass=cfg.T_glass,
                          tdamp_steps=p.tdamp_steps, style=style)
        tasks[style] = cooling_task(cfg, plan, 1)
        np.testing.assert_array_equal(tasks[style]["glass"], ref.glass)
        np.testing.assert_array_equal(tasks[style]["pe"], ref.pe)
    # the two styles' runs are not bit-identical (evidence each task ran its own style)
    assert not np.array_equal(tasks["plain"]["glass"], tasks["omp"]["glass"])


def test_a_run_directory_older_than_the_field_goes_on_with_the_plain_styles(tmp_path):
    """A saved config.toml without lammps_style was made by a version that ran the plain
    styles: resuming it must not switch its remaining runs to omp (mixed styles in one
    prepare), while a new run directory gets the omp default."""
    from glasscam_mpi.config import load_config
    from glasscam_mpi.rundir import RunDir

    cfg = load_config(preset="demo")
    old = "\n".join(line for line in cfg.to_toml().splitlines()
                    if not line.startswith("lammps_style"))
    rd = RunDir(tmp_path / "old")
    rd.path.mkdir()
    rd.config_path.write_text(old + "\n")
    saved = rd.saved_config()
    assert saved.prepare.lammps_style == "plain"
    assert saved.propensity.lammps_style == "plain"
    assert rd.resolve_config(None).prepare.lammps_style == "plain"
    new = RunDir(tmp_path / "new").resolve_config(cfg)
    assert new.prepare.lammps_style == "omp"
    assert RunDir(tmp_path / "new").saved_config().prepare.lammps_style == "omp"
    # --set alone on the old directory (the CLI's path) keeps its plain [prepare] and may
    # change the not-yet-started [propensity]
    from glasscam_mpi.config import load_saved_config

    changed = load_saved_config(rd.config_path, overrides=["propensity.lammps_style=omp"])
    assert changed.prepare.lammps_style == "plain"
    assert rd.resolve_config(changed).propensity.lammps_style == "omp"
