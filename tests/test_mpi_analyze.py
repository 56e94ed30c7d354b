"""``glasscam analyze`` under real mpiexec on a tiny but complete run directory: the same
analysis.h5 under 1 and 3 ranks, every reported number recomputed by brute force here
(O(N^2) minimum-image sums, scipy's Pearson), the ensemble study, a run directory without
the CNN stages, and clear errors for bad input."""

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
import scipy.stats

from conftest import (TINY_PROPENSITY_TOML, TINY_TOML, TINY_TRAIN_TOML, assert_same_data,
                      glasscam, read_stage)

pytestmark = pytest.mark.mpi

EXTRA = TINY_TRAIN_TOML + TINY_PROPENSITY_TOML + """
[analyze]
xis = [0.0, 1.0, 1.5, 2.0]
xi_pairs = 1.0
bins = 12
subensemble_size = 2
subensembles = 2
"""


def _min_image(box, x):
    d = x[:, None, :] - x[None, :, :]
    d -= box * np.rint(d / box)
    return np.sqrt((d * d).sum(-1))


def _cg(box, x, f, xi):
    """Brute-force Gaussian coarse-graining (METHOD.md section 7): every j within 2 xi."""
    if xi == 0:
        return np.asarray(f, float)
    r = _min_image(box, x)
    w = np.exp(-(r / xi) ** 2) * (r <= 2 * xi)
    norm = w.sum(axis=1)
    return w @ f / (norm[:, None] if np.ndim(f) == 2 else norm)


def _corr_r(box, x, f, r_max, bins):
    """Brute-force C(r): mean of dX_i dX_j over distinct pairs in each bin, over var."""
    r = _min_image(box, x)
    iu = np.triu_indices(len(x), 1)
    rr = r[iu]
    df = f - f.mean()
    prod = df[iu[0]] * df[iu[1]]
    keep = rr <= r_max
    b = np.minimum((rr[keep] / (r_max / bins)).astype(int), bins - 1)
    sums = np.bincount(b, weights=prod[keep], minlength=bins)
    counts = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.concatenate([[1.0], sums / counts / np.mean(df * df)])


@pytest.fixture(scope="module")
def full_run(tiny_prepared, tmp_path_factory):
    """prepare (shared) -> train -> gradcam -> indicators -> propensity, then analyze
    under 1 rank; a copy analysed under 3 ranks."""
    base = tmp_path_factory.mktemp("analyze")
    rd = base / "n1"
    rd.mkdir()
    for name in ("prepare.h5", "config.toml"):
        shutil.copy(tiny_prepared / name, rd / name)
    cfg = base / "c.toml"
    cfg.write_text(TINY_TOML + EXTRA)
    glasscam(["train", "--run-dir", str(rd), "--config", str(cfg)], n=2)
    for stage in ("gradcam", "indicators", "propensity"):
        glasscam([stage, "--run-dir", str(rd)], n=2)
    rd3 = base / "n3"
    shutil.copytree(rd, rd3, ignore=shutil.ignore_patterns(".lock"))
    glasscam(["analyze", "--run-dir", str(rd)], n=1)
    glasscam(["analyze", "--run-dir", str(rd3)], n=3)
    return rd, rd3


def test_analysis_is_identical_under_1_and_3_ranks(full_run):
    with h5py.File(full_run[0] / "analysis.h5", "r") as fa, \
            h5py.File(full_run[1] / "analysis.h5", "r") as fb:
        names = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert len(names) > 30
        for n in names:
            np.testing.assert_array_equal(fa[n][()], fb[n][()], err_msg=n)
        assert fa.attrs["headline"] == fb.attrs["headline"]


def test_sample_correlations_and_c_of_r_equal_brute_force(full_run):
    rd = full_run[0]
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "analysis.h5", "r") as an, \
            h5py.File(rd / "indicators.h5", "r") as ind, h5py.File(rd / "gradcam.h5", "r") as gc:
        box, xis, r_corr = prep["box"][:], an["xis"][:], float(an.attrs["r_corr"])
        forms = json.loads(an.attrs["forms"])
        sign = np.array([-1.0 if forms[k] == "1 - X" else 1.0 for k in ("gamma", "volume", "theta")])
        assert list(sign) == [-1.0, 1.0, -1.0]  # KAM: the paper's 1 - Gamma, Upsilon, 1 - Theta
        for row, run in enumerate(an["runs"][:]):
            for cls, name in enumerate(("liquid", "glass")):
                x = prep[name][run]
                F = np.stack([gc["gamma"][row, cls], ind["volume"][row, cls],
                              ind["theta"][row, cls]], axis=1).astype(float)
                for a_xi, xi in enumerate(xis):
                    G = _cg(box, x, F, xi)   # the pairs are of the bare indicators (Fig. 6)
                    for p, (u, v) in enumerate(((0, 1), (0, 2), (2, 1))):
                        want = scipy.stats.pearsonr(G[:, u], G[:, v]).statistic
                        assert an["samples/pearson"][row, cls, a_xi, p] == \
                            pytest.approx(want, abs=1e-9)
                        # ties: equal to 1e-12 of the [0, 1]-normalised range (the
                        # stage's documented convention)
                        gu, gv = (np.round((g - g.min()) / np.ptp(g), 12)
                                  for g in (G[:, u], G[:, v]))
                        want = scipy.stats.spearmanr(gu, gv).statistic
                        assert an["samples/spearman"][row, cls, a_xi, p] == \
                            pytest.approx(want, abs=1e-9)
                for q in range(3):
                    np.testing.assert_allclose(an["samples/corr_r"][row, cls, :, q],
                                               _corr_r(box, x, F[:, q], r_corr, 12),
                                               rtol=1e-9, atol=1e-12)
                pred = gc["predicted"][row, cls]
                assert an["samples/correct"][row, cls] == int(pred == cls)


def test_indicator_propensity_correlations_equal_brute_force(full_run):
    rd = full_run[0]
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "analysis.h5", "r") as an, \
            h5py.File(rd / "indicators.h5", "r") as ind, h5py.File(rd / "gradcam.h5", "r") as gc, \
            h5py.File(rd / "propensity.h5", "r") as pr:
        box, xis = prep["box"][:], an["xis"][:]
        runs = list(an["runs"][:])
        corr = an["dynamics/corr"][:]
        checked = 0
        for c, run in enumerate(pr["configs"][:]):
            row = runs.index(run)
            x0 = prep["glass"][run]
            F = np.stack([gc["gamma"][row, 1], ind["volume"][row, 1], ind["theta"][row, 1]],
                         axis=1).astype(float)
            for k in range(len(pr["temperatures"])):
                D = pr["propensity"][c, k].astype(float)
                for t in range(D.shape[0]):
                    for b, xb in enumerate(xis):
                        Dc = _cg(box, x0, D[t], xb)
                        for a_xi, xa in enumerate(xis):
                            G = _cg(box, x0, F, xa)
                            for q, s in enumerate((-1.0, 1.0, -1.0)):
                                want = s * scipy.stats.pearsonr(G[:, q], Dc).statistic
                                assert corr[c, k, t, q, a_xi, b] == pytest.approx(want, abs=1e-9)
                                checked += 1
        assert checked == corr.size
        # Table 5: C^max and delta* are the maxima of the curves pooled over configurations
        # at common delta: each configuration's curve interpolated linearly in log delta
        # onto 20 points per decade over the delta range every configuration reached
        S = an["summary"]
        b = int(np.flatnonzero(xis == S.attrs["xi_delta"])[0])
        delta = an["dynamics/delta"][:]                   # (n_c, n_T, d_t)
        np.testing.assert_allclose(delta, pr["delta"][:])
        n_T = delta.shape[1]
        best_T = np.full((3, len(xis), n_T, 2), np.nan)  # [C^max, delta*]
        for k in range(n_T):
            lo = max(np.nanmin(delta[c, k]) for c in range(delta.shape[0]))
            hi = min(np.nanmax(delta[c, k]) for c in range(delta.shape[0]))
            grid = np.geomspace(lo, hi, max(2, int(np.ceil(20 * np.log10(hi / lo))) + 1))
            np.testing.assert_allclose(S["curve_delta"][k, :len(grid)], grid, rtol=1e-12)
            for q in range(3):
                for a_xi in range(len(xis)):
                    each = []
                    for c in range(delta.shape[0]):
                        ok = np.isfinite(delta[c, k])
                        d, y = delta[c, k][ok], corr[c, k][ok][:, q, a_xi, b]
                        # each delta where first reached: records below an earlier delta
                        # (noise on the cage plateau) do not count
                        first = np.array([d[i] > d[:i].max(initial=-np.inf)
                                          for i in range(len(d))])
                        each.append(np.interp(np.log(grid), np.log(d[first]), y[first]))
                    pooled = np.mean(each, axis=0)
                    best_T[q, a_xi, k] = pooled.max(), grid[np.argmax(pooled)]
                    assert S["cmax"][q, a_xi, k] == pytest.approx(pooled.max(), abs=1e-12)
        for q in range(3):
            for a_xi in range(len(xis)):
                k = int(np.argmax(best_T[q, a_xi, :, 0]))
                assert S["cmax"][q, a_xi, -1] == pytest.approx(best_T[q, a_xi, k, 0], abs=1e-12)
                assert S["delta_star"][q, a_xi, -1] == pytest.approx(best_T[q, a_xi, k, 1],
                                                                      rel=1e-12)
            best = int(np.argmax(S["cmax"][q, :, -1]))
            assert S["xi_best"][q] == xis[best]
            np.testing.assert_allclose(S["table5"][q, -1], [S["cmax"][q, best, -1],
                                                           S["delta_star"][q, best, -1], xis[best]])


def test_xi_delta_and_ensemble_study_equal_brute_force(full_run):
    rd = full_run[0]
    with h5py.File(rd / "prepare.h5", "r") as prep, h5py.File(rd / "analysis.h5", "r") as an, \
            h5py.File(rd / "propensity.h5", "r") as pr:
        box, xis, r_corr = prep["box"][:], an["xis"][:], float(an.attrs["r_corr"])
        r = an["r"][:]
        at = pr["propensity_at_delta"][:]
        n_c, n_T, n_d = at.shape[:3]
        curves = np.full((n_c, n_T, n_d, 13), np.nan)
        for c, run in enumerate(pr["configs"][:]):
            x0 = prep["glass"][run]
            for k in range(n_T):
                for j in range(n_d):
                    if np.isfinite(at[c, k, j]).all():
                        curves[c, k, j] = _corr_r(box, x0, at[c, k, j].astype(float), r_corr, 12)
        np.testing.assert_allclose(an["dynamics/corr_delta_r"][:], curves, rtol=1e-9,
                                   atol=1e-12, equal_nan=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (empty) bins stay NaN
            mean = np.nanmean(curves, axis=(0, 1))
        S = an["summary"]
        for j in range(n_d):
            ok = np.isfinite(mean[j])                      # empty bins are skipped,
            ok[0] = False                                  # and so is the r = 0 self term
            rr, cc = r[ok], mean[j][ok]
            below = np.flatnonzero(cc <= 1 / np.e)
            if below.size == 0:
                assert np.isnan(S["xi_delta_targets"][j])
                continue
            i = below[0]
            if i == 0:  # below 1/e at the first pair distance: that distance, flagged
                assert S["xi_delta_targets"][j] == rr[0]
                assert S["xi_delta_below_first_shell"][j] == 1
                continue
            assert S["xi_delta_below_first_shell"][j] == 0
            want = rr[i - 1] + (1 / np.e - cc[i - 1]) * (rr[i] - rr[i - 1]) / (cc[i] - cc[i - 1])
            assert S["xi_delta_targets"][j] == pytest.approx(want, abs=1e-12)
            pos = xis[xis > 0]
            assert S["xi_delta_used"][j] == pos[np.argmin(np.abs(pos - want))]
        # the ensemble study with 2 disjoint sub-ensembles of 2 replicas out of 4
        assert json.loads(an.attrs["study"]) == [2, 2]
        ens = an["dynamics/ensemble"][:]
        disp = pr["cage_displacement"][:].astype(float)
        for c, run in enumerate(pr["configs"][:]):
            x0 = prep["glass"][run]
            for k in range(n_T):
                lo = (c * n_T + k) * 4
                full = disp[lo:lo + 4].mean(axis=0)
                delta = full.mean(axis=1)
                for j, target in enumerate(pr["delta_targets"][:]):
                    above = np.flatnonzero(delta >= target)
                    if len(above) == 0 or above[0] == 0:
                        assert np.isnan(ens[c, k, j]).all()
                        continue
                    b = above[0]
                    w = (target - delta[b - 1]) / (delta[b] - delta[b - 1])
                    field = lambda f: (1 - w) * f[b - 1] + w * f[b]  # noqa: E731
                    e100 = field(full)
                    # the full-ensemble field at the crossing is the stored propensity there
                    np.testing.assert_allclose(e100, at[c, k, j], rtol=2e-6)
                    eA, eB = field(disp[lo:lo + 2].mean(axis=0)), field(disp[lo + 2:lo + 4].mean(axis=0))
                    for a_xi, xi in enumerate(xis):
                        cA, cB, c100 = (_cg(box, x0, f, xi) for f in (eA, eB, e100))
                        P = lambda u, v: scipy.stats.pearsonr(u, v).statistic  # noqa: E731
                        # both readings of C(e30, e30~) (issue 18, defect 4): against
                        # the own coarse field, and against the other sub-ensemble's
                        want = [P(eA, eB), P(cA, cB), (P(eA, cA) + P(eB, cB)) / 2,
                                P(e100, c100), (P(cA, c100) + P(cB, c100)) / 2,
                                (P(eA, cB) + P(eB, cA)) / 2]
                        np.testing.assert_allclose(ens[c, k, j, a_xi], want, atol=1e-9)


def test_info_shows_t_star_and_c_max(full_run):
    info = json.loads(glasscam(["info", str(full_run[0])]).stdout)
    assert "analyze" in info["complete"]
    head = info["stages"]["analyze"]["headline"]
    assert set(head["table5"]) == {"gamma", "volume", "theta"}
    for name, entry in head["table5"].items():
        assert "C_max" in entry and "delta_star" in entry and len(entry["per_T"]) == 2
    assert head["T_star"]["paper"] == 0.37 and head["T_star"]["source"] == "none"


def test_info_json_is_strict_and_shows_the_t_star_estimate(full_run):
    """Issue 18, defect 6: with absolute temperatures the cooling-curve estimate of T* is
    still made (from prepare.h5) and shown; and ``glasscam info`` never prints NaN or
    Infinity (not JSON): a missing number is null."""
    from glasscam_mpi.config import load_config
    from glasscam_mpi.stages.prepare import estimate_t_star_of

    out = glasscam(["info", str(full_run[0])]).stdout

    def refuse(token):
        raise AssertionError(f"glasscam info printed {token}, which is not JSON")

    info = json.loads(out, parse_constant=refuse)
    cfg = load_config(path=full_run[0] / "config.toml")
    try:
        want = estimate_t_star_of(full_run[0] / "prepare.h5", cfg).T_star
    except ValueError:
        want = None
    prop = info["stages"]["propensity"]
    head = info["stages"]["analyze"]["headline"]["T_star"]
    if want is None:
        assert prop["T_star_estimate"] is None and prop["T_star_estimate_why"]
    else:
        assert prop["T_star_estimate"] == pytest.approx(want, rel=1e-12)
        assert head["estimate"] == pytest.approx(want, abs=1e-4)
    with h5py.File(full_run[0] / "propensity.h5", "r") as fh:
        kept = float(fh.attrs["T_star_estimate"])
    assert (want is None and np.isnan(kept)) or kept == pytest.approx(want, rel=1e-12)


def test_xi_beyond_half_the_box_is_left_out_with_a_warning(full_run):
    """Issue 18, defect 3: N = 64 gives L/2 = 3.65, so xi = 2 (2 xi = 4) would be clipped by
    the box: it is left out of the scan, said so in the headline, and xi_best cannot be 2."""
    with h5py.File(full_run[0] / "analysis.h5", "r") as an:
        np.testing.assert_array_equal(an["xis"][:], [0.0, 1.0, 1.5])
        head = json.loads(an.attrs["headline"])
        assert any("xi = 2 left out" in n for n in head["notes"]), head["notes"]
        assert np.all(np.isin(an["summary/xi_best"][:][np.isfinite(an["summary/xi_best"][:])],
                              [0.0, 1.0, 1.5]))


def test_without_cnn_stages_the_gamma_rows_are_absent(full_run, tmp_path):
    rd = tmp_path / "nocnn"
    shutil.copytree(full_run[0], rd, ignore=shutil.ignore_patterns(
        ".lock", "train*", "gradcam*", "analysis.h5", "analyze"))
    shutil.rmtree(rd / "shards" / "analyze", ignore_errors=True)
    shutil.rmtree(rd / "shards" / "gradcam", ignore_errors=True)
    res = glasscam(["analyze", "--run-dir", str(rd)], n=2)
    assert "without Gamma" in res.stdout
    with h5py.File(rd / "analysis.h5", "r") as an, \
            h5py.File(full_run[0] / "analysis.h5", "r") as ref:
        assert an.attrs["have_gamma"] == 0
        assert np.isnan(an["samples/pearson"][:, :, :, :2]).all()   # the pairs with Gamma
        np.testing.assert_array_equal(an["samples/pearson"][:, :, :, 2],
                                      ref["samples/pearson"][:, :, :, 2])
        assert np.isnan(an["dynamics/corr"][:, :, :, 0]).all()
        np.testing.assert_array_equal(an["dynamics/corr"][:, :, :, 1:],
                                      ref["dynamics/corr"][:, :, :, 1:])
        head = json.loads(an.attrs["headline"])
        assert "gamma" not in head["table5"] and any("CNN stages" in n for n in head["notes"])


def test_bad_input_is_a_clear_error(full_run, tiny_prepared, tmp_path):
    # before propensity
    rd = tmp_path / "early"
    rd.mkdir()
    for name in ("prepare.h5", "config.toml", "indicators.h5"):
        shutil.copy(full_run[0] / name, rd / name)
    res = glasscam(["analyze", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2 and "run 'glasscam propensity' first" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # a damaged stage file: analyze refuses it, info says so instead of a traceback
    rd = tmp_path / "damaged"
    shutil.copytree(full_run[0], rd, ignore=shutil.ignore_patterns(".lock", "analysis.h5"))
    shutil.rmtree(rd / "shards" / "analyze")
    data = (rd / "indicators.h5").read_bytes()
    (rd / "indicators.h5").write_bytes(data[:len(data) // 3])
    res = glasscam(["analyze", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2 and "indicators.h5 is damaged" in res.stderr
    assert "rerun 'glasscam indicators" in res.stderr
    info = json.loads(glasscam(["info", str(rd)]).stdout)
    assert "indicators" not in info["complete"]
    assert "damaged" in info["stages"]["indicators"]["error"]
    # ... and rerunning the stage rebuilds it from its task shards, identical
    glasscam(["indicators", "--run-dir", str(rd)], n=2)
    assert_same_data(read_stage(rd / "indicators.h5"), read_stage(full_run[0] / "indicators.h5"))
    # no ok test runs
    rd = tmp_path / "notest"
    cfg = tmp_path / "t.toml"
    cfg.write_text(TINY_TOML)
    with h5py.File(tiny_prepared / "prepare.h5", "r") as fh:
        test_runs = np.flatnonzero(fh["split"][:] == 2)
    res = glasscam(["prepare", "--config", str(cfg), "--run-dir", str(rd)], n=2,
                   env={"GLASSCAM_INJECT_FAULT": "prepare:" + ",".join(map(str, test_runs))})
    res = glasscam(["indicators", "--run-dir", str(rd)], n=2, check=False)
    assert res.returncode == 2 and "no ok test runs" in res.stderr


def test_fig8_zero_crossings_equal_brute_force(full_run):
    """r where C(r) of the bare Upsilon and Theta (mean over every glass test sample)
    first crosses 0, the r = 0 self term left out."""
    with h5py.File(full_run[0] / "analysis.h5", "r") as an:
        r, C = an["r"][:], an["samples/corr_r"][:, 1]        # (n, B+1, X)
        for q in (1, 2):
            mean = C[:, :, q].mean(axis=0)
            rr, cc = r[1:][np.isfinite(mean[1:])], mean[1:][np.isfinite(mean[1:])]
            below = np.flatnonzero(cc <= 0)
            if below.size == 0:
                assert np.isnan(an["summary/r_zero"][1, q])
                continue
            i = below[0]
            want = rr[0] if i == 0 else rr[i - 1] - cc[i - 1] * (rr[i] - rr[i - 1]) / (cc[i] - cc[i - 1])
            assert an["summary/r_zero"][1, q] == pytest.approx(want, abs=1e-12)
            np.testing.assert_allclose(an["summary/corr_r_mean"][1, :, q], mean, rtol=1e-12)


def test_uncertainty_and_null_level_of_table5(full_run):
    """Issue 18, item 5: Table 5's bootstrap uncertainty and shift null are in analysis.h5
    and in ``glasscam info``; uniform replica weights give back the stored curves (the
    resampling acts on the same coarse-grained propensity the analysis correlated)."""
    from glasscam_mpi.analysis.uncertainty import replica_bootstrap
    from glasscam_mpi.config import load_config
    from glasscam_mpi.stages.analyze_uncertainty import _ensemble

    rd = full_run[0]
    cfg = load_config(path=rd / "config.toml")
    with h5py.File(rd / "analysis.h5", "r") as an, h5py.File(rd / "propensity.h5", "r") as pr, \
            h5py.File(rd / "prepare.h5", "r") as prep:
        S = an["summary"]
        n_T = len(pr["temperatures"])
        B, n_null = cfg.analyze.bootstrap, cfg.analyze.null_shifts
        assert S.attrs["n_bootstrap"] == B > 0 and S.attrs["n_null_shifts"] == n_null > 0
        assert S["bootstrap_cmax"].shape == (3, n_T + 1, B)
        assert S["null_cmax"].shape == (3, n_T + 1, n_null)
        unc, nul = S["table5_uncertainty"][:], S["table5_null"][:]
        for x in range(3):
            assert np.isfinite(unc[x]).all() and (unc[x, :, 0] > 0).all()
            assert (unc[x, :, 1] <= unc[x, :, 2]).all() and (unc[x, :, 3] <= unc[x, :, 4]).all()
            assert np.isfinite(nul[x]).all() and (nul[x, :, 0] <= nul[x, :, 2]).all()
        xis, xi_best = an["xis"][:], S["xi_best"][:]
        b = int(np.flatnonzero(xis == S.attrs["xi_delta"])[0])
        plan = type("P", (), {"shape": (len(pr["configs"]), n_T)})()
        for c in range(len(pr["configs"])):
            for k in range(n_T):
                cg, delta_rep, _ = _ensemble(pr, prep, plan, c, k, float(xis[b]), prep["box"][:])
                keep = np.isfinite(cg).all(axis=(0, 2))
                a = [int(np.flatnonzero(xis == xi_best[x])[0]) for x in range(3)]
                ind = np.stack([an["dynamics/maps_indicators"][c, k, x, a[x]] for x in range(3)],
                               axis=1).astype(float)
                n_s = cg.shape[0]
                C, D = replica_bootstrap(cg[:, keep], delta_rep[:, keep], ind,
                                         np.full((1, n_s), 1.0 / n_s))
                for x in range(3):
                    np.testing.assert_allclose(C[0, :, x], an["dynamics/corr"][c, k][keep][:, x,
                                                                                        a[x], b],
                                               atol=2e-5)
                np.testing.assert_allclose(D[0], an["dynamics/delta"][c, k][keep], rtol=1e-5)
        head = json.loads(an.attrs["headline"])
    for name, entry in head["table5"].items():
        assert entry["C_max_err"] > 0 and len(entry["C_max_interval"]) == 2
        assert entry["C_max_null_q95"] is not None and isinstance(entry["above_null"], bool)
    assert head["uncertainty"]["bootstrap"] == B
    info = json.loads(glasscam(["info", str(rd)]).stdout)
    assert info["stages"]["analyze"]["headline"]["table5"]["volume"]["C_max_err"] == \
        head["table5"]["volume"]["C_max_err"]
