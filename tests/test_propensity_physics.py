"""Dynamic propensity at the delta targets, and the LAMMPS data file of a configuration,
checked against analytic cases and independent references (no mocks).

- ``analysis.crossing.at_targets``: the propensity field where the ensemble-mean
  cage-relative displacement delta(t) = mean_i Delta_i(t) first reaches each target.
  Convention read from the code: the first recorded index b with delta[b] >= target and
  a = b - 1 bracket the crossing; the weight w = (target - delta[a]) / (delta[b] - delta[a])
  interpolates the field *linearly in delta* and the time *linearly in log t*
  (t = t_a^(1-w) t_b^w); NaN where delta never reaches the target or where
  delta[0] > target already (a target equal to delta[0] is reached at t[0]). Fields come back as float32, times as float64.
- ``md.replica.write_data_file``: read back by LAMMPS ``read_data`` with the header of
  ``replica.input_script`` (units lj, boundary p p p, atom_style atomic, ...): exact
  coordinates (the file holds ``repr`` of each float), periodic remapping of atoms outside
  the box with image flags that keep the unwrapped position, types, ids, box, atom count;
  and the bare-``lmp`` replica input (data file + ``input_script``) reproduces
  ``run_replica`` (same drawn velocities, same trajectory).
"""

import numpy as np
import pytest

from glasscam_mpi.md.engine import commands, open_lammps
from glasscam_mpi.md.replica import input_script, run_replica, write_data_file
from glasscam_mpi.analysis.crossing import at_targets
from glasscam_mpi.systems import get_system

KAM = get_system("KAM")
KA3D = get_system("KA3D")

F32 = dict(rtol=2e-7, atol=0.0)  # the fields are stored as float32


# --------------------------------------------------------------------------- at_targets


def _geometric(t_a, t_b, w):
    return np.exp((1 - w) * np.log(t_a) + w * np.log(t_b))


def test_linear_growth_field_is_exact_and_time_is_log_interpolated():
    """Delta_i(t) = c_i t on a log time grid: delta = a t with a = mean(c). Each field is
    linear in delta, so the interpolated field at target d is exactly c_i d / a. The time
    is interpolated in log t between the bracketing records, i.e. t_a^(1-w) t_b^w with the
    (here linear-in-t) weight w = (d/a - t_a)/(t_b - t_a): by AM-GM strictly below the true
    crossing time d/a whenever the target falls between two records."""
    t = np.geomspace(0.01, 100.0, 17)
    c = np.array([0.2, 0.55, 0.9, 1.3, 1.8, 0.05, 1.25])
    a = c.mean()
    prop = np.outer(t, c)
    targets = np.array([0.05, 0.3, 2.0, 7.5, 60.0])
    fields, times = at_targets(t, prop, targets)

    assert fields.shape == (len(targets), len(c)) and fields.dtype == np.float32
    assert times.shape == (len(targets),) and times.dtype == np.float64
    np.testing.assert_allclose(fields, np.outer(targets / a, c), **F32)
    for j, d in enumerate(targets):
        t_cross = d / a
        b = np.searchsorted(t, t_cross)  # first record with t >= t_cross
        assert t[b - 1] < t_cross < t[b]
        w = (t_cross - t[b - 1]) / (t[b] - t[b - 1])
        assert times[j] == pytest.approx(_geometric(t[b - 1], t[b], w), rel=1e-12)
        assert t[b - 1] < times[j] < t_cross


def test_logarithmic_growth_gives_the_exact_crossing_time():
    """Delta_i(t) = c_i ln(t / t0) on an irregular (randomly spaced in log t) grid: delta is
    linear in ln t, so log-interpolation is exact: t(d) = t0 exp(d / a), field c_i d / a."""
    rng = np.random.default_rng(3)
    t0 = 0.004
    t = np.sort(np.exp(rng.uniform(np.log(0.01), np.log(500.0), 23)))
    c = rng.uniform(0.1, 2.0, 11)
    a = c.mean()
    prop = np.outer(np.log(t / t0), c)
    delta = prop.mean(axis=1)
    targets = np.linspace(delta[0], delta[-1], 9)[1:-1] + 0.0123
    fields, times = at_targets(t, prop, targets)
    np.testing.assert_allclose(times, t0 * np.exp(targets / a), rtol=1e-12)
    np.testing.assert_allclose(fields, np.outer(targets / a, c), **F32)


def test_target_on_a_recorded_time_returns_that_frame():
    """A target equal to delta at record k > 0 is crossed exactly at t_k: the field is the
    recorded frame k itself (w = 1) and the time is t_k, on a non-uniform grid."""
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.uniform(0.1, 3.0, 12))
    prop = np.cumsum(rng.uniform(0.0, 0.2, (12, 9)), axis=0) + 0.01  # each particle nondecreasing
    delta = prop.mean(axis=1)
    ks = np.array([1, 4, 7, 11])
    fields, times = at_targets(t, prop, delta[ks])
    np.testing.assert_array_equal(fields, prop[ks].astype(np.float32))
    np.testing.assert_allclose(times, t[ks], rtol=1e-14)


def test_unreached_targets_are_nan():
    """NaN (field and time) where delta never reaches the target (above the last value) or
    is already past it at the first record; the first and the largest recorded delta
    themselves are reached, at the first and the last time."""
    t = np.array([0.5, 1.0, 2.0, 4.0])
    prop = np.array([[0.10, 0.30], [0.30, 0.50], [0.50, 0.70], [0.60, 1.00]])  # delta .2 .4 .6 .8
    targets = np.array([0.1, 0.2, 0.8, 0.8000001, 5.0])
    fields, times = at_targets(t, prop, targets)
    for j in (0, 3, 4):
        assert np.all(np.isnan(fields[j])) and np.isnan(times[j]), targets[j]
    np.testing.assert_array_equal(fields[1], np.float32([0.10, 0.30]))
    assert times[1] == 0.5
    np.testing.assert_array_equal(fields[2], np.float32([0.60, 1.00]))
    assert times[2] == pytest.approx(4.0, rel=1e-14)


def test_plateau_first_reached_time_and_last_frame_before_the_rise():
    """Nondecreasing delta with a plateau: a target equal to the plateau value is reached at
    the plateau's first record; a target above it is interpolated between the plateau's
    *last* record and the next one (the particles may rearrange on the plateau while the mean
    stays put, so this is the frame that matters)."""
    t = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    # delta = .1 .2 .5 .5 .5 .9; on the plateau the two particles exchange mobility
    prop = np.array([[0.1, 0.1], [0.1, 0.3], [0.2, 0.8], [0.5, 0.5], [0.8, 0.2], [1.0, 0.8]])
    fields, times = at_targets(t, prop, np.array([0.5, 0.7]))
    np.testing.assert_allclose(fields[0], [0.2, 0.8], **F32)
    assert times[0] == pytest.approx(4.0, rel=1e-14)
    # w = (0.7 - 0.5) / (0.9 - 0.5) = 1/2 between records 4 and 5
    np.testing.assert_allclose(fields[1], [0.9, 0.5], **F32)
    assert times[1] == pytest.approx(np.sqrt(16.0 * 32.0), rel=1e-12)


def test_first_passage_of_a_non_monotone_delta():
    """delta rises past the target, falls back and rises again: the first passage counts."""
    t = np.array([1.0, 10.0, 100.0, 1000.0])
    prop = np.array([[0.1], [0.6], [0.3], [0.8]])
    fields, times = at_targets(t, prop, np.array([0.5, 0.7]))
    np.testing.assert_allclose(fields[:, 0], [0.5, 0.7], **F32)
    assert times[0] == pytest.approx(10 ** 0.8, rel=1e-12)     # w = 0.8 between t = 1 and 10
    assert times[1] == pytest.approx(10 ** 2.8, rel=1e-12)     # w = 0.8 between t = 100 and 1000


def test_stopped_replicas_nan_tail():
    """After the replicas stopped (NaN records at the end), targets beyond the last finite
    delta are NaN and those before it are unchanged from the full series."""
    t = np.geomspace(0.1, 100.0, 10)
    rng = np.random.default_rng(8)
    prop = np.cumsum(rng.uniform(0.01, 0.3, (10, 6)), axis=0)
    delta = prop.mean(axis=1)
    targets = np.array([0.5 * (delta[0] + delta[1]), 0.5 * (delta[4] + delta[5]),
                        0.5 * (delta[6] + delta[7])])
    full_f, full_t = at_targets(t, prop, targets)
    cut = prop.copy()
    cut[6:] = np.nan
    f, tt = at_targets(t, cut, targets)
    np.testing.assert_array_equal(f[:2], full_f[:2])
    np.testing.assert_array_equal(tt[:2], full_t[:2])
    assert np.all(np.isnan(f[2])) and np.isnan(tt[2])
    assert np.all(np.isfinite(full_f)) and np.all(np.isfinite(full_t))


def test_matches_an_independent_interpolation_and_keeps_the_mean_at_the_target():
    """For strictly increasing delta, the result equals numpy's piecewise-linear
    interpolation against delta (field: np.interp of each Delta_i; time: np.interp of ln t),
    targets in any order; and since the mean is linear, mean_i of the field equals the
    target (the defining property of 'the field where delta = target')."""
    rng = np.random.default_rng(11)
    n_t, n = 20, 50
    t = np.sort(rng.uniform(0.01, 1000.0, n_t))
    prop = np.cumsum(rng.exponential(0.05, (n_t, n)), axis=0)
    delta = prop.mean(axis=1)
    assert np.all(np.diff(delta) > 0)
    targets = rng.uniform(delta[0], delta[-1], 15)  # unsorted
    fields, times = at_targets(t, prop, targets)
    ref_f = np.stack([[np.interp(d, delta, prop[:, i]) for i in range(n)] for d in targets])
    ref_t = np.exp(np.interp(targets, delta, np.log(t)))
    np.testing.assert_allclose(fields, ref_f, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(times, ref_t, rtol=1e-11)
    np.testing.assert_allclose(fields.astype(np.float64).mean(axis=1), targets, rtol=1e-6)
    one = [at_targets(t, prop, np.array([d])) for d in targets]
    np.testing.assert_array_equal(fields, np.concatenate([f for f, _ in one]))
    np.testing.assert_array_equal(times, np.concatenate([x for _, x in one]))


# ----------------------------------------------------------------------- write_data_file


def _header(system, path) -> list[str]:
    """The lines of replica.input_script up to and including its read_data."""
    lines = input_script(system, str(path), T=0.5, seed=1, timestep=0.005,
                         steps=np.array([], dtype=np.int64)).splitlines()
    return lines[:lines.index(f"read_data {path}") + 1]


def _per_atom(lmp, d: int):
    """(ids, x, v, type, image flags) by atom id, straight from LAMMPS."""
    n = lmp.get_natoms()
    ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=np.int64)
    order = np.argsort(ids)
    x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=np.float64)[order]
    v = np.array(lmp.numpy.extract_atom("v")[:n], dtype=np.float64)[order]
    typ = np.array(lmp.numpy.extract_atom("type")[:n], dtype=np.int64)[order]
    image = np.array(lmp.numpy.extract_atom("image")[:n], dtype=np.int64)[order]
    img = np.stack([((image >> s) & 1023) - 512 for s in (0, 10, 20)], axis=1)
    return ids[order], x, v, typ, img


def _kam_config(rng, n=36, *, jitter=0.05):
    """A 2D KAM-like sample: jittered square lattice at density 1.2, 65:35 A:B shuffled."""
    m = int(round(np.sqrt(n)))
    L = float(np.sqrt(n / KAM.density))
    g = (np.arange(m) + 0.5) * L / m
    x = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    x = x + rng.uniform(-jitter, jitter, x.shape)
    types = np.array([0] * int(round(0.65 * n)) + [1] * (n - int(round(0.65 * n))))
    return x, rng.permutation(types), np.array([L, L])


def test_2d_data_file_round_trips_through_lammps(tmp_path):
    """2D, two species, N = 36 in a periodic square box (irrational L): LAMMPS holds exactly
    N atoms, 2 types, box [0, L]^2 x [-0.5, 0.5], ids 1..N in file order, types + 1, and
    bit-for-bit the coordinates inside the box (the file holds repr of each float). The
    function does not wrap; LAMMPS remaps atoms outside (or at x = L) periodically into
    [0, L) and sets image flags so that x + image L is the written position. The file has
    no Velocities section, so the velocities read back are zero and z is 0."""
    rng = np.random.default_rng(21)
    x, types, box = _kam_config(rng)
    L = box[0]
    inside = np.ones(len(x), bool)
    edits = {0: [0.0, 0.0], 1: [np.nextafter(L, 0), 1.0], 2: [L, 2.0], 3: [-0.2, 3.0],
             4: [L + 0.3, -0.7], 5: [2 * L + 0.1, -L - 0.05], 6: [-1e-17, 4.0]}
    for i, xy in edits.items():
        x[i] = xy
        inside[i] = bool(np.all((x[i] >= 0) & (x[i] < L)))
    assert inside[:2].all() and not inside[2:7].any()
    path = tmp_path / "kam.data"
    write_data_file(path, box, x, types, KAM.n_species)
    with open_lammps() as lmp:
        commands(lmp, _header(KAM, path))
        assert lmp.get_natoms() == len(x)
        assert lmp.extract_global("ntypes") == KAM.n_species
        boxlo, boxhi, xy, yz, xz, periodic, _ = lmp.extract_box()
        assert list(boxlo) == [0.0, 0.0, -0.5] and list(boxhi) == [L, L, 0.5]
        assert (xy, yz, xz) == (0.0, 0.0, 0.0) and list(periodic) == [1, 1, 1]
        ids, xl, v, typ, img = _per_atom(lmp, 2)
        raw_ids = np.array(lmp.numpy.extract_atom("id")[:len(x)])
    np.testing.assert_array_equal(ids, np.arange(1, len(x) + 1))
    np.testing.assert_array_equal(raw_ids, np.arange(1, len(x) + 1))  # stored in file order
    np.testing.assert_array_equal(typ, types + 1)
    np.testing.assert_array_equal(v, 0.0)
    np.testing.assert_array_equal(xl[:, 2], 0.0)
    np.testing.assert_array_equal(img[:, 2], 0)
    np.testing.assert_array_equal(xl[inside, :2], x[inside])
    np.testing.assert_array_equal(img[inside], 0)
    assert np.all((xl[:, :2] >= 0) & (xl[:, :2] < L))
    np.testing.assert_allclose(xl[:, :2] + img[:, :2] * L, x, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(img[[2, 3, 4, 5], :2], [[1, 0], [-1, 0], [1, -1], [2, -2]])


def test_3d_data_file_round_trips_float32_positions_and_int8_types(tmp_path):
    """3D (KA3D), positions given as float32 and types as int8 (as HDF5 may hand them):
    LAMMPS holds exactly the float64 values of the float32 coordinates, z included, in the
    box [0, L]^3; a species that no atom uses still counts as a declared type."""
    rng = np.random.default_rng(4)
    n = 30
    L = float((n / KA3D.density) ** (1 / 3))
    box = np.array([L, L, L])
    x = rng.uniform(0, L, (n, 3)).astype(np.float32)
    x = np.minimum(x, np.float32(np.nextafter(np.float32(L), np.float32(0))))
    types = np.zeros(n, dtype=np.int8)  # only species A
    path = tmp_path / "ka3d.data"
    write_data_file(path, box, x, types, KA3D.n_species)
    with open_lammps() as lmp:
        commands(lmp, _header(KA3D, path))
        assert lmp.get_natoms() == n
        assert lmp.extract_global("ntypes") == 2
        boxlo, boxhi = lmp.extract_box()[:2]
        assert list(boxlo) == [0.0, 0.0, 0.0] and list(boxhi) == [L, L, L]
        ids, xl, v, typ, img = _per_atom(lmp, 3)
    np.testing.assert_array_equal(ids, np.arange(1, n + 1))
    np.testing.assert_array_equal(xl, x.astype(np.float64))
    np.testing.assert_array_equal(img, 0)
    np.testing.assert_array_equal(typ, 1)
    np.testing.assert_array_equal(v, 0.0)


def test_bare_lmp_replica_input_reproduces_run_replica(tmp_path):
    """The bare-lmp path (write_data_file + replica.input_script, as the throughput
    benchmark runs it) and run_replica (create_atoms through the Python API) start from the
    same state: with the same seed, LAMMPS's position-keyed velocity draw (loop geom) gives
    identical Maxwell-Boltzmann velocities, and the NVT trajectory is the same."""
    rng = np.random.default_rng(33)
    x, types, box = _kam_config(rng)
    steps = np.array([2, 5, 9])
    T, seed, dt = 0.45, 9173, 0.005
    res = run_replica(KAM, x, types, box, T=T, seed=seed, timestep=dt, steps=steps)

    path = tmp_path / "glass.data"
    write_data_file(path, box, x, types, KAM.n_species)
    lines = input_script(KAM, str(path), T=T, seed=seed, timestep=dt, steps=steps).splitlines()
    first_run = lines.index("run 0 post no")
    with open_lammps() as lmp:
        commands(lmp, lines[:first_run + 1])
        _, x0, v0, typ, _ = _per_atom(lmp, 2)
        T0 = float(lmp.get_thermo("temp"))
        commands(lmp, lines[first_run + 1:])
        _, xe, _, _, img = _per_atom(lmp, 2)
    np.testing.assert_array_equal(x0[:, :2], x)
    np.testing.assert_array_equal(typ, types + 1)
    np.testing.assert_array_equal(v0[:, :2], res.velocities0)
    assert T0 == res.T0
    unwrapped = xe[:, :2] + img[:, :2] * box
    np.testing.assert_allclose(unwrapped, res.positions[-1], rtol=0, atol=1e-12)
    assert np.abs(res.positions[-1] - x).max() > 1e-4  # the particles did move
