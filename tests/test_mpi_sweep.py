"""``glasscam sweep`` under real mpiexec on a tiny parent run (prepare, indicators,
propensity): the sub-runs share the parent's files by reference (links, same inode, the
parent's files unchanged), the same files and table under 1 rank (killed once and resumed)
as under 3, a finished sweep not redone, each variant's seed ensemble equal to its seeds'
normalised Gamma averaged, and a bad variants file refused before anything runs."""

import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest

from conftest import TINY_PROPENSITY_TOML, TINY_TOML, TINY_TRAIN_TOML, glasscam

pytestmark = pytest.mark.mpi

SHARED = ("prepare.h5", "indicators.h5", "propensity.h5")
EXTRA = TINY_TRAIN_TOML + TINY_PROPENSITY_TOML + """
[analyze]
xis = [0.0, 1.0, 1.5]
xi_pairs = 1.0
bins = 12
"""
VARIANTS = """
seeds = 2

[variants.base]                  # the parent's own CNN

[variants.stride1-layer0]
train = { strides = [1, 1, 2], epochs = 2, augment = false }
gradcam.layer = 0

[variants.stride1-layer1]        # the same networks as stride1-layer0, another layer
train = { strides = [1, 1, 2], epochs = 2, augment = false }
gradcam.layer = 1
"""


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _clone(parent, dst):
    dst.mkdir()
    for name in (*SHARED, "config.toml"):
        shutil.copy(parent / name, dst / name)
    return dst


def _subruns(root):
    """Every sub-run directory of a sweep (seeds and ensembles)."""
    return sorted(p.parent for p in (root / "sweep").glob("*/*/config.toml"))


@pytest.fixture(scope="module")
def swept(tiny_prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    parent = base / "parent"
    parent.mkdir()
    for name in ("prepare.h5", "config.toml"):
        shutil.copy(tiny_prepared / name, parent / name)
    cfg = base / "c.toml"
    cfg.write_text(TINY_TOML + EXTRA)
    glasscam(["indicators", "--run-dir", str(parent), "--config", str(cfg)], n=2)
    glasscam(["propensity", "--run-dir", str(parent)], n=2)
    variants = base / "variants.toml"
    variants.write_text(VARIANTS)
    p3, p1 = _clone(parent, base / "p3"), _clone(parent, base / "p1")
    before = {name: _sha(p3 / name) for name in SHARED}
    res3 = glasscam(["sweep", "--run-dir", str(p3), "--variants", str(variants)], n=3,
                    timeout=600)
    # one rank, killed in its first sub-run's training after the first epoch, then resumed
    cut = glasscam(["sweep", "--run-dir", str(p1), "--variants", str(variants)], n=1,
                   check=False, env={"GLASSCAM_INJECT_CRASH": "train:1"})
    res1 = glasscam(["sweep", "--run-dir", str(p1), "--variants", str(variants)], n=1,
                    timeout=600)
    return {"p3": p3, "p1": p1, "before": before, "res3": res3, "cut": cut, "res1": res1,
            "variants": variants}


def test_sub_runs_share_the_parent_files_by_reference_and_leave_them_unchanged(swept):
    p3 = swept["p3"]
    subs = _subruns(p3)
    assert [s.relative_to(p3 / "sweep").as_posix() for s in subs] == [
        "base/ensemble", "base/seed-0", "base/seed-1", "stride1-layer0/ensemble",
        "stride1-layer0/seed-0", "stride1-layer0/seed-1", "stride1-layer1/ensemble",
        "stride1-layer1/seed-0", "stride1-layer1/seed-1"]
    for sub in subs:
        for name in SHARED:
            link = sub / name
            assert link.is_symlink(), link
            assert os.path.realpath(link) == os.path.realpath(p3 / name)
            assert os.stat(link).st_ino == os.stat(p3 / name).st_ino
    copies = [p for p in (p3 / "sweep").rglob("*.h5") if p.name in SHARED and not p.is_symlink()]
    assert copies == []
    assert {name: _sha(p3 / name) for name in SHARED} == swept["before"]


def test_one_rank_killed_and_resumed_writes_what_three_ranks_write(swept):
    p1, p3 = swept["p1"], swept["p3"]
    cut = swept["cut"]
    assert cut.returncode != 0 and "injected crash in train epoch 1" in cut.stderr
    assert "6 of 6 sub-runs to do on 3 rank(s)" in swept["res3"].stdout
    assert "6 of 6 sub-runs to do on 1 rank(s)" in swept["res1"].stdout   # none had finished
    for name in ("table.csv", "table.md"):
        assert (p1 / "sweep" / name).read_bytes() == (p3 / "sweep" / name).read_bytes(), name
    assert (p3 / "sweep" / "sweep.png").stat().st_size > 5000
    for sub3 in _subruns(p3):
        sub1 = p1 / sub3.relative_to(p3)
        for stage in ("train.h5", "gradcam.h5", "analysis.h5"):
            if not (sub3 / stage).exists():
                assert stage == "train.h5" and sub3.name == "ensemble"
                continue
            with h5py.File(sub1 / stage, "r") as a, h5py.File(sub3 / stage, "r") as b:
                names = []
                a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                assert names
                for n in names:
                    if n not in ("seconds", "train_seconds"):   # wall times
                        np.testing.assert_array_equal(a[n][()], b[n][()],
                                                      err_msg=f"{sub3} {stage} {n}")


def test_variants_that_differ_only_in_gradcam_explain_one_trained_network(swept):
    """stride1-layer1 has stride1-layer0's [train]: its sub-runs link that training (no
    second training), so every layer's Gamma is the same, and only the layer used differs."""
    p3 = swept["p3"]
    assert "gradcam -> analyze (the network of stride1-layer0/seed-0)" in swept["res3"].stdout
    for s in range(2):
        own = p3 / "sweep" / "stride1-layer0" / f"seed-{s}"
        shared = p3 / "sweep" / "stride1-layer1" / f"seed-{s}"
        for name in ("train.h5", "train"):
            assert (shared / name).is_symlink()
            assert os.path.realpath(shared / name) == os.path.realpath(own / name)
        with h5py.File(own / "gradcam.h5", "r") as a, h5py.File(shared / "gradcam.h5", "r") as b:
            assert (int(a.attrs["layer"]), int(b.attrs["layer"])) == (0, 1)
            np.testing.assert_array_equal(a["gamma_layers"][:], b["gamma_layers"][:])
            np.testing.assert_array_equal(b["gamma"][:], b["gamma_layers"][:, :, 1])
            assert not np.array_equal(a["gamma"][:], b["gamma"][:])


def test_a_finished_sweep_is_not_redone(swept):
    p3 = swept["p3"]
    stamps = {p: p.stat().st_mtime_ns for p in (p3 / "sweep").rglob("*.h5") if not p.is_symlink()}
    res = glasscam(["sweep", "--run-dir", str(p3), "--variants", str(swept["variants"])], n=2)
    assert "0 of 6 sub-runs to do" in res.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_the_table_and_each_seed_ensemble(swept):
    import csv

    p3 = swept["p3"]
    rows = list(csv.DictReader((p3 / "sweep" / "table.csv").open()))
    assert [(r["variant"], r["row"]) for r in rows[:7]] == [
        ("base", "seed-0"), ("base", "seed-1"), ("base", "ensemble"), ("base", "mean"),
        ("base", "std"), ("base", "min"), ("base", "max")]
    for variant in ("base", "stride1-layer0", "stride1-layer1"):
        mine = {r["row"]: r for r in rows if r["variant"] == variant}
        seeds = [float(mine[f"seed-{s}"]["C_max_gamma"]) for s in range(2)]
        assert float(mine["mean"]["C_max_gamma"]) == pytest.approx(np.mean(seeds), abs=1e-6)
        assert float(mine["max"]["C_max_gamma"]) == pytest.approx(max(seeds), abs=1e-6)
        root = p3 / "sweep" / variant
        with h5py.File(root / "ensemble" / "analysis.h5", "r") as an:
            assert float(mine["ensemble"]["C_max_gamma"]) == pytest.approx(
                an["summary/table5"][0, -1, 0], abs=1e-6)
            # the member rows of the ensemble's analysis are the seeds' own analyses
            members = an["summary/members/table5"][:]
        for s in range(2):
            with h5py.File(root / f"seed-{s}" / "analysis.h5", "r") as an:
                np.testing.assert_allclose(members[s], an["summary/table5"][0], atol=1e-12)
                for col, value in (("C_max_gamma_std", an["summary/table5_uncertainty"][0, -1, 0]),
                                   ("null_q95_gamma", an["summary/table5_null"][0, -1, 2])):
                    cell = mine[f"seed-{s}"][col]
                    assert (float(cell) == pytest.approx(value, abs=1e-6)) if cell \
                        else not np.isfinite(value)
            with h5py.File(root / f"seed-{s}" / "train.h5", "r") as tr:
                acc = tr["test_accuracy"][:]
            assert float(mine[f"seed-{s}"]["acc_glass"]) == pytest.approx(acc[0], abs=1e-6)
        # the ensemble's Gamma: each seed's Gamma normalised to [0, 1] per sample, averaged
        g = []
        for s in range(2):
            with h5py.File(root / f"seed-{s}" / "gradcam.h5", "r") as fh:
                g.append(fh["gamma_layers"][:].astype(np.float64))
        g = np.stack(g)                                              # (k, n, 2, L, N)
        lo, hi = g.min(axis=-1, keepdims=True), g.max(axis=-1, keepdims=True)
        norm = np.where(hi > lo, (g - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
        with h5py.File(root / "ensemble" / "gradcam.h5", "r") as fh:
            layer = int(fh.attrs["layer"])
            assert int(fh.attrs["ensemble"]) == 2
            np.testing.assert_allclose(fh["gamma_layers"][:], norm.mean(axis=0), atol=1e-6)
            np.testing.assert_array_equal(fh["gamma"][:], fh["gamma_layers"][:, :, layer])
            np.testing.assert_array_equal(fh["gamma_members"][:],
                                          g[:, :, :, layer].transpose(1, 2, 0, 3)
                                          .astype(np.float32))
    with h5py.File(p3 / "sweep" / "stride1-layer0" / "seed-1" / "train.h5", "r") as fh:
        assert len(fh["epoch"]) == 2 and fh.attrs["backend"] == "single"


def test_a_bad_variant_is_refused_before_anything_runs(swept, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[variants.ok]\n[variants.wide]\ntrain.strides = [2, 2]\n")
    res = glasscam(["sweep", "--run-dir", str(swept["p1"]), "--variants", str(bad)], n=2,
                   check=False)
    assert res.returncode == 2
    assert "variant 'wide'" in res.stderr and "[train].strides = [2, 2]" in res.stderr
    assert "give 3 values" in res.stderr
    assert not (swept["p1"] / "sweep" / "wide").exists()
    res = glasscam(["sweep", "--run-dir", str(tmp_path), "--variants", str(bad)], n=1,
                   check=False)
    assert res.returncode == 2 and "not a run directory" in res.stderr
    changed = tmp_path / "changed.toml"       # a swept variant's settings changed since
    changed.write_text(VARIANTS.replace("epochs = 2", "epochs = 3"))
    res = glasscam(["sweep", "--run-dir", str(swept["p1"]), "--variants", str(changed)], n=1,
                   check=False)
    assert res.returncode == 2 and "variant 'stride1-layer0'" in res.stderr
    assert "[train].epochs: 2 -> 3" in res.stderr and "a new name" in res.stderr


def test_the_parent_report_shows_the_sweep(swept):
    p3 = swept["p3"]
    glasscam(["analyze", "--run-dir", str(p3)], n=2)     # the parent's own analysis (no CNN)
    glasscam(["report", "--run-dir", str(p3)], n=1)
    md = (p3 / "report" / "report.md").read_text()
    assert "### CNN variants of this run (glasscam sweep)" in md
    assert "| stride1-layer0 | ensemble |" in md
    assert (p3 / "report" / "figures" / "sweep.png").read_bytes() == \
        (p3 / "sweep" / "sweep.png").read_bytes()
    assert (p3 / "report" / "tables" / "sweep.csv").is_file()
    assert 'id="sweep"' in (p3 / "report" / "report.html").read_text()
    assert {name: _sha(p3 / name) for name in SHARED} == swept["before"]


def test_single_rank_sub_runs_pick_the_gpu_of_their_rank_on_the_node():
    """A sub-run runs on COMM_SELF, where every rank is rank 0 of its node: the sweep makes
    the GPU choice follow the rank's place in the job instead (rank r: GPU r mod count)."""
    import subprocess
    import sys

    from conftest import ROOT, mpiexec

    code = ("from mpi4py import MPI\n"
            "from glasscam_mpi.learn.distributed import local_rank, use_job_local_rank\n"
            "before = local_rank(MPI.COMM_SELF)\n"
            "use_job_local_rank(MPI.COMM_WORLD)\n"
            "row = (MPI.COMM_WORLD.Get_rank(), before, local_rank(MPI.COMM_SELF))\n"
            "rows = MPI.COMM_WORLD.gather(row, root=0)\n"  # one print: ranks' lines can mix
            "if MPI.COMM_WORLD.Get_rank() == 0:\n"
            "    print(sorted(rows), flush=True)\n")
    out = subprocess.run([*mpiexec(3), sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, check=True).stdout
    assert out.strip() == str([(0, 0, 0), (1, 0, 1), (2, 0, 2)])


def test_info_shows_the_sweep_and_submit_writes_its_job_script(swept):
    import csv
    import json

    p3 = swept["p3"]
    info = json.loads(glasscam(["info", str(p3)]).stdout)["sweep"]
    rows = {(r["variant"], r["row"]): r for r in csv.DictReader((p3 / "sweep" / "table.csv")
                                                                 .open())}
    for (variant, row), r in rows.items():
        got = info["variants"][variant]["C_max_gamma"][row]
        assert got == (round(float(r["C_max_gamma"]), 4) if r["C_max_gamma"] else None)
    res = glasscam(["sweep", "--run-dir", str(p3), "--variants", str(swept["variants"]),
                    "--seeds", "2", "--submit", "local", "--dry-run"])
    script = (p3 / "jobs" / "sweep.sbatch").read_text()
    assert script in res.stdout
    assert f"sweep --run-dir {p3} --variants {swept['variants']} --seeds 2 || status=$?" \
        in script
