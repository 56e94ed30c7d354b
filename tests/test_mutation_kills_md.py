"""Tests written to kill surviving mutants of ``systems`` and ``md/`` (tests/tools/mutation.py).

Each test checks a physical or numerical quantity against an independent reference (a
METHOD.md literal, a value worked out by hand, Eq. 1 coded here) or an invariant; the
docstring of each names the mutants it kills. No value is read from the code under test.
"""

import re

import numpy as np
import pytest

from glasscam_mpi.md.cooling import CoolingPlan, input_script, ramp_chunks, run_cooling, setup_lines
from glasscam_mpi.systems import SYSTEMS

# METHOD.md section 1 (paper Table 1): sigma_ab, epsilon_ab, r_c factor per system
SIGMA = {"KAM": {"AA": 1.0, "AB": 0.8, "BB": 0.88}, "ABM": {"AA": 5 / 6, "AB": 1.0, "BB": 7 / 6}}
EPS = {"KAM": {"AA": 1.0, "AB": 1.5, "BB": 0.5}, "ABM": {"AA": 1.0, "AB": 1.0, "BB": 1.0}}
RC_FACTOR = {"KAM": 2.5, "ABM": 3.0}


# -- systems ----------------------------------------------------------------------------------
def test_max_cutoff_is_the_largest_pair_cutoff_of_table1():
    """Kills ``max -> min`` in System.max_cutoff (the interaction range the box is checked
    against): KAM 2.5 sigma_AA (the AA pair), ABM 3.0 * 7/6 (the BB pair), KA3D as KAM."""
    assert SYSTEMS["KAM"].max_cutoff == pytest.approx(2.5, rel=1e-14)
    assert SYSTEMS["ABM"].max_cutoff == pytest.approx(3.0 * 7 / 6, rel=1e-14)
    assert SYSTEMS["KA3D"].max_cutoff == pytest.approx(2.5, rel=1e-14)


@pytest.mark.parametrize("name, n, expect", [
    # largest-remainder rounding worked out by hand: floor, then the extra particles go to
    # the species with the largest fractional parts
    ("KAM", 101, (66, 35)),   # 65.65, 35.35: A's .65 wins
    ("KAM", 102, (66, 36)),   # 66.3, 35.7: B's .7 wins although A is the larger species
    ("KAM", 3, (2, 1)),       # 1.95, 1.05
    ("KA3D", 7, (6, 1)),      # 5.6, 1.4
    ("KA3D", 9, (7, 2)),      # 7.2, 1.8: B's .8 wins
    ("ABM", 5, (3, 2)),       # 2.5, 2.5: a tie goes to the first species (stable order)
])
def test_species_counts_largest_remainder_by_hand(name, n, expect):
    """Kills the mutants of System.counts (floor -> ceil, dropping the minus of the sort key,
    ``raw - counts -> raw + counts``, ``counts[s] += 1`` removed / ``-= 1`` / ``+= 2``):
    the tested N = 2000 and multiples of 5 have no remainder, so these never showed."""
    counts = SYSTEMS[name].counts(n)
    assert counts == expect
    assert sum(counts) == n
    assert all(abs(c - f * n) < 1 for c, f in zip(counts, SYSTEMS[name].fractions))


def test_reference_potential_is_zero_beyond_the_cutoff():
    """Kills ``0.0 -> 1.0`` in the ``np.where(r < rc, ..., 0.0)`` of System.pair_energy and
    System.pair_force: Eq. 1 is zero for r >= r_c (the reference LAMMPS is checked with)."""
    for name in ("KAM", "ABM", "KA3D"):
        s = SYSTEMS[name]
        for a in range(2):
            for b in range(2):
                r = s.cutoff(a, b) * np.array([1.0, 1.01, 1.5, 3.0])
                np.testing.assert_array_equal(s.pair_energy(r, a, b), 0.0)
                np.testing.assert_array_equal(s.pair_force(r, a, b), 0.0)


def test_paper_t_star_and_the_ka3d_protocol_temperatures():
    """Kills the constant mutants of the paper's T* (KAM 0.37, ABM 1.0: METHOD.md section 6)
    and of KA3D's T_L (the 3D extension uses KAM's protocol temperatures)."""
    assert SYSTEMS["KAM"].T_star_paper == pytest.approx(0.37, rel=1e-14)
    assert SYSTEMS["ABM"].T_star_paper == pytest.approx(1.0, rel=1e-14)
    assert SYSTEMS["KA3D"].T_star_paper is None
    assert SYSTEMS["KA3D"].T_liquid == SYSTEMS["KAM"].T_liquid == pytest.approx(0.8)
    assert SYSTEMS["KA3D"].T_glass == SYSTEMS["KAM"].T_glass == pytest.approx(0.05)


def test_abm_code_variant_is_abm_at_the_published_codes_density_and_cutoff():
    """Kills every constant mutant of the ``ABM-code`` entry (no test used it): the ABM of
    Table 1 (sigma, epsilon, 50:50, unit masses, 2D, T_L 2.0, T* 1.0) with rho = 1.2 and
    r_c = 2.5 sigma_ij, as the authors' MD code runs it."""
    s = SYSTEMS["ABM-code"]
    assert (s.dim, s.species) == (2, ("A", "B"))
    np.testing.assert_allclose(s.fractions, (0.5, 0.5), rtol=1e-14)
    np.testing.assert_allclose(s.masses, (1.0, 1.0), rtol=1e-14)
    sig, eps = SIGMA["ABM"], EPS["ABM"]
    np.testing.assert_allclose(s.sigma, [[sig["AA"], sig["AB"]], [sig["AB"], sig["BB"]]],
                               rtol=1e-14)
    np.testing.assert_allclose(s.epsilon, [[eps["AA"], eps["AB"]], [eps["AB"], eps["BB"]]],
                               rtol=1e-14)
    assert s.rc_factor == pytest.approx(2.5) and s.density == pytest.approx(1.2)
    assert s.T_liquid == pytest.approx(2.0) and s.T_star_paper == pytest.approx(1.0)
    assert s.T_glass == pytest.approx(0.05)


# -- md/cooling: the protocol -----------------------------------------------------------------
def _plan(**kw):
    args = dict(timestep=0.005, t_equilibrate=1.0, T_high=4.0, T_liquid=0.8, T_glass=0.05,
                cooling_rate=0.2, energy_samples=7)
    args.update(kw)
    return CoolingPlan.make(**args)


def test_step_clamps_keep_liquid_strictly_between_start_and_glass():
    """Kills the clamps of CoolingPlan.make (``max(2, ...)``, ``n_total - 1``, ``max(1, ...)``
    mutated): config only asks T_G < T_L < T_high, so T_L may sit within half a ramp step of
    T_G or T_high; the liquid sample must still be a distinct step in (0, n_total)."""
    dT = 0.2 * 0.005  # one ramp step
    near_glass = _plan(T_liquid=0.05 + 0.1 * dT)      # rounds onto n_total: clamped below it
    assert near_glass.n_liquid == near_glass.n_total - 1
    near_high = _plan(T_liquid=4.0 - 0.1 * dT)        # rounds onto step 0: clamped to 1
    assert near_high.n_liquid == 1
    fast = _plan(cooling_rate=(4.0 - 0.05) / 0.005)    # the whole ramp in one step
    assert (fast.n_total, fast.n_liquid) == (2, 1)    # still a liquid and a glass step


def test_ramp_chunks_cover_the_ramp_exactly_once():
    """Kills ``done = 0 -> 1`` in ramp_chunks: the ``run`` lengths add up to n_total and the
    chunk ends are the sample steps (a shift of one step would sample the wrong states)."""
    plan = _plan()
    chunks = ramp_chunks(plan)
    lengths = [int(re.match(r"run (\d+) ", line).group(1)) for _, line in chunks]
    assert sum(lengths) == plan.n_total
    assert np.array_equal(np.cumsum(lengths)[1:], [s for s, _ in chunks][1:])
    assert [s for s, _ in chunks] == list(plan.sample_steps)


def test_setup_lines_overlap_in_sigma_aa_and_one_seed_per_species():
    """Kills ``sigma_ab(0, 0) -> sigma_ab(0, 1) / (1, 0)`` of the non-overlap distance
    (``min_distance`` is in sigma_AA; ABM's sigma_AA = 5/6 differs from sigma_AB = 1) and
    ``seeds[s % 2] -> seeds[s // 2]`` (species B must use its own recorded seed)."""
    lines = setup_lines(SYSTEMS["ABM"], 200, seeds=(11, 22, 33), min_distance=0.7,
                        timestep=0.005, T_high=4.0, tdamp_steps=100, n_equilibrate=0)
    create = [line.split() for line in lines if line.startswith("create_atoms")]
    assert [(c[1], c[4]) for c in create] == [("1", "11"), ("2", "22")]
    for c in create:
        assert float(c[c.index("overlap") + 1]) == pytest.approx(0.7 * 5 / 6, rel=1e-12)


def test_input_script_is_the_whole_protocol():
    """Kills the mutants of input_script (not run by any test; benchmarks/md_throughput.py
    feeds it to the bare ``lmp``): the ramp fix follows the set-up, and the ``run`` lines
    after it add up to the ramp's n_total steps."""
    plan = _plan()
    text = input_script(SYSTEMS["KAM"], 100, plan, seeds=(1, 2, 3), min_distance=0.7,
                        timestep=0.005, T_high=4.0, T_glass=0.05, tdamp_steps=100)
    lines = text.splitlines()
    ramp = lines.index("unfix thermostat")
    assert lines[ramp + 2].split()[5:7] == ["4.0", "0.05"]    # nvt temp T_high -> T_G
    ramp_runs = [int(line.split()[1]) for line in lines[ramp:] if line.startswith("run ")]
    assert sum(ramp_runs) == plan.n_total
    before = [int(line.split()[1]) for line in lines[:ramp] if line.startswith("run ")]
    assert before == [plan.n_equilibrate]


def _eq1_energy_per_particle(name, box, x, types):
    """Potential energy per particle of a configuration from Eq. 1 coded here (numpy)."""
    key = np.array([["AA", "AB"], ["AB", "BB"]])
    d = x[:, None, :] - x[None, :, :]
    d -= box * np.round(d / box)
    r = np.sqrt((d * d).sum(-1))
    total = 0.0
    n = len(x)
    iu = np.triu_indices(n, 1)
    for (i, j) in zip(*iu):
        k = key[types[i], types[j]]
        sg, ep = SIGMA[name][k], EPS[name][k]
        rc = RC_FACTOR[name] * sg
        rij = r[i, j]
        if rij >= rc:
            continue
        lj = lambda q: 4 * ep * ((sg / q) ** 12 - (sg / q) ** 6)  # noqa: E731
        dlj = lambda q: 4 * ep * (-12 * sg**12 / q**13 + 6 * sg**6 / q**7)  # noqa: E731
        total += lj(rij) - lj(rc) - (rij - rc) * dlj(rc)
    return total / n


def test_liquid_and_glass_samples_are_the_states_recorded_at_t_l_and_t_g():
    """Kills ``step == plan.n_liquid -> !=`` in run_cooling (the liquid sample would be the
    last snapshot, i.e. the glass): the stored liquid and glass configurations have the
    potential energies recorded at the n_liquid and n_total samples, by Eq. 1 coded here."""
    system = SYSTEMS["KAM"]
    plan = _plan(cooling_rate=1.0, t_equilibrate=0.5, energy_samples=5)
    res = run_cooling(system, 64, plan, seeds=(5, 6, 7), min_distance=0.7, timestep=0.005,
                      T_high=4.0, T_glass=0.05, tdamp_steps=100)
    k_liquid = list(plan.sample_steps).index(plan.n_liquid)
    e_liquid = _eq1_energy_per_particle("KAM", res.box, res.liquid, res.types)
    e_glass = _eq1_energy_per_particle("KAM", res.box, res.glass, res.types)
    assert e_liquid == pytest.approx(res.pe[k_liquid], rel=1e-6, abs=1e-9)
    assert e_glass == pytest.approx(res.pe[-1], rel=1e-6, abs=1e-9)
    assert abs(e_liquid - e_glass) > 0.1   # the two samples are distinct states


# -- md/engine ----------------------------------------------------------------------------------
def test_wrap_counting_images_near_period_boundaries():
    """Kills ``pos[under] += L -> -=`` and the ``edge`` step's mutants in
    wrap_counting_images: coordinates a few ulps from a multiple of L make x - L floor(x / L)
    come out slightly negative, equal to L, or so slightly negative that adding L gives L.
    Invariants: pos in [0, L) and pos + wraps L == x (to rounding), so the unwrapped
    trajectory never jumps by a box length."""
    from glasscam_mpi.md.engine import wrap_counting_images
    rng = np.random.default_rng(0)
    L = np.array([3.3, 7.1, 5.9])
    k = rng.integers(-50, 50, (20000, 3))
    x = k * L + rng.choice([-1, 1], (20000, 3)) * np.ldexp(1.0, rng.integers(-60, -45, (20000, 3)))
    x[:5000] = np.nextafter(k[:5000] * L, -np.inf)       # one ulp below a multiple of L
    x[0] = -5e-324                                        # the smallest negative double
    raw = x - np.floor(x / L) * L
    assert np.any(raw < 0) and np.any(raw >= L)          # both rounding cases occur here
    assert np.any((raw < 0) & (raw + L >= L))             # and a tiny negative + L == L
    pos, wraps = wrap_counting_images(x.copy(), L)
    assert np.all(pos >= 0) and np.all(pos < L)
    np.testing.assert_allclose(pos + wraps * L, x, rtol=0, atol=1e-12)


def test_snapshot_of_a_3d_box_off_the_origin_with_image_flags():
    """Kills ``(0, 10, 20)[z] -> 21`` (the z image bits), ``boxhi - lo -> + lo`` and
    ``x - lo -> x + lo`` in snapshot: LAMMPS packs image flags in 10-bit fields (x, y, z);
    positions are reported relative to the box's lower corner, in [0, L)."""
    from glasscam_mpi.md.engine import commands, open_lammps, snapshot
    with open_lammps() as lmp:
        commands(lmp, ["units lj", "dimension 3", "boundary p p p", "atom_style atomic",
                       "atom_modify map array", "region box block -1.5 6.5 2.0 5.0 -3.0 1.0",
                       "create_box 1 box", "mass 1 1.0",
                       "create_atoms 1 single 0.25 4.5 -2.0",
                       "create_atoms 1 single -1.0 2.5 0.5",
                       "set atom 1 image 2 -1 3", "set atom 2 image -4 0 -2"])
        snap = snapshot(lmp, 3)
    np.testing.assert_allclose(snap["box"], [8.0, 3.0, 4.0])
    np.testing.assert_allclose(snap["positions"], [[1.75, 2.5, 1.0], [0.5, 0.5, 3.5]])
    np.testing.assert_array_equal(snap["images"], [[2, -1, 3], [-4, 0, -2]])


# -- md/replica ---------------------------------------------------------------------------------
def test_log_times_default_start_is_ten_timesteps_and_spacing_is_geometric():
    """Kills the mutants of log_times' start (``max -> min``, ``/ dt -> * dt``,
    ``10 -> 11``, ``1.0 -> 2.0``): records start at t_min = 10 dt by default (at one step
    if t_min is shorter), end at t_max, and successive ratios are one constant factor up
    to the rounding to whole steps."""
    from glasscam_mpi.md.replica import log_times
    steps = log_times(0.005, 10.0, 20)
    assert steps[0] == 10 and steps[-1] == 2000 and len(steps) == 20
    q = (2000 / 10) ** (1 / 19)
    np.testing.assert_allclose(steps, 10 * q ** np.arange(20), rtol=0, atol=0.5)
    assert log_times(0.005, 1.0, 5, t_min=0.001)[0] == 1     # shorter than one step: step 1


@pytest.mark.parametrize("name, box", [("KA3D", (4.5, 5.0, 5.5)), ("KAM", (6.0, 7.5))])
def test_replica_box_and_data_file_have_the_given_edges(tmp_path, name, box):
    """Kills ``box[0] -> box[1]`` and the 3D ``zlo 0.0 -> 1.0`` of load_configuration_lines
    and write_data_file: LAMMPS's box must be [0, L_1) x ... for a non-cubic box too."""
    from glasscam_mpi.md.engine import commands, open_lammps
    from glasscam_mpi.md.replica import load_configuration_lines, write_data_file
    system = SYSTEMS[name]
    box = np.array(box)
    d = len(box)
    with open_lammps() as lmp:
        commands(lmp, load_configuration_lines(system, box))
        lo, hi = lmp.extract_box()[:2]
    np.testing.assert_allclose(lo[:d], 0.0)
    np.testing.assert_allclose(np.array(hi[:d]) - np.array(lo[:d]), box, rtol=1e-14)
    x = np.random.default_rng(1).uniform(0, 1, (5, d)) * box
    write_data_file(tmp_path / "c.data", box, x, np.array([0, 1, 0, 1, 0]), 2)
    with open_lammps() as lmp:
        commands(lmp, ["units lj", f"dimension {d}", "boundary p p p", "atom_style atomic",
                       "atom_modify map array", f"read_data {tmp_path / 'c.data'}"])
        lo, hi = lmp.extract_box()[:2]
        pos = np.array(lmp.numpy.extract_atom("x")[:5, :d])
        ids = np.array(lmp.numpy.extract_atom("id")[:5])
    np.testing.assert_allclose(np.array(hi[:d]) - np.array(lo[:d]), box, rtol=1e-14)
    np.testing.assert_allclose(pos[np.argsort(ids)], x, rtol=1e-14)


def test_dynamics_lines_thermostat_and_damping():
    """Kills ``ensemble == "nvt" -> !=`` and ``tdamp_steps * timestep -> /`` in
    dynamics_lines: NVT is a Nose-Hoover fix at T with damping time 100 timesteps
    (METHOD.md section 2: 100 x 0.005 = 0.5), NVE has no thermostat."""
    from glasscam_mpi.md.replica import dynamics_lines
    nvt = dynamics_lines(T=0.45, seed=3, timestep=0.005, ensemble="nvt", tdamp_steps=100)
    fix = [line.split() for line in nvt if line.startswith("fix")]
    assert len(fix) == 1 and fix[0][3] == "nvt"
    assert [float(v) for v in fix[0][5:8]] == pytest.approx([0.45, 0.45, 0.5])
    nve = dynamics_lines(T=0.45, seed=3, timestep=0.005, ensemble="nve", tdamp_steps=100)
    assert [line for line in nve if line.startswith("fix")] == ["fix md all nve"]


@pytest.mark.parametrize("name", ["KAM", "KA3D"])
def test_replica_input_script_dimension_runs_and_dumps(name):
    """Kills the mutants of md.replica.input_script (``d == 2 -> !=`` for enforce2d, the
    dump lines run by no test, ``' zu'`` only in 3D): one ``run`` per record step adding up
    to the last step, a dump of unwrapped coordinates after each, enforce2d only in 2D."""
    from glasscam_mpi.md.replica import input_script
    steps = np.array([10, 30, 100])
    text = input_script(SYSTEMS[name], "c.data", T=0.5, seed=1, timestep=0.005, steps=steps,
                        dump="out.dump")
    lines = text.splitlines()
    assert ("fix twod all enforce2d" in lines) == (name == "KAM")
    runs = [int(line.split()[1]) for line in lines if line.startswith("run ")]
    assert runs[0] == 0 and sum(runs) == 100 and len(runs) == 4
    dumps = [line for line in lines if line.startswith("write_dump")]
    assert len(dumps) == 3
    cols = "id xu yu zu" if name == "KA3D" else "id xu yu"
    assert all(f"custom out.dump {cols} modify" in line for line in dumps)


def _lattice(dim, n_side):
    """A simple square / cubic lattice at density 1.2, about 1/3 B particles."""
    L = (n_side**dim / 1.2) ** (1 / dim)
    g = (np.arange(n_side) + 0.5) * L / n_side
    x = np.array(np.meshgrid(*[g] * dim, indexing="ij")).reshape(dim, -1).T
    types = (np.arange(len(x)) % 3 == 2).astype(np.int64)
    return np.full(dim, L), x, types


@pytest.mark.parametrize("name, dim, n_side", [("KAM", 2, 8), ("KA3D", 3, 5)])
def test_replica_continued_from_a_restart_file_follows_the_unbroken_run(tmp_path, name, dim,
                                                                        n_side):
    """Kills the mutants of run_replica's restart path (run in-process by no fast test; the
    MPI science test covers it too): ``read_restart`` or ``write_restart`` removed, the
    velocity line kept instead of dropped (velocities redrawn), enforce2d given to the
    wrong dimension. Over a few steps the chaotic divergence of a segmented run is far
    below 1e-6, so the second segment must reproduce the unbroken trajectory."""
    from glasscam_mpi.md.replica import run_replica
    box, x, types = _lattice(dim, n_side)
    kw = dict(T=0.5, seed=7, timestep=0.005, ensemble="nvt", tdamp_steps=100)
    whole = run_replica(SYSTEMS[name], x, types, box, steps=np.array([10, 20, 30]), **kw)
    restart = tmp_path / "seg.restart"
    first = run_replica(SYSTEMS[name], x, types, box, steps=np.array([10]),
                        restart_to=restart, **kw)
    assert restart.exists()
    second = run_replica(SYSTEMS[name], x, types, box, steps=np.array([20, 30]),
                         restart_from=restart, **kw)
    assert second.steps.tolist() == [20, 30] and np.isnan(second.T0)
    np.testing.assert_allclose(first.positions[0], whole.positions[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(second.positions, whole.positions[1:], rtol=0, atol=1e-6)
    assert np.abs(whole.positions[2] - whole.positions[0]).max() > 1e-3   # they do move
