"""Where job templates and cluster profiles come from: the package's own data, the
checkout's ``jobscripts``/``hpc/profiles`` (symlinks to it), ``$GLASSCAM_PROFILES`` (a
site's folders, searched first) and a profile given by path; and the errors of each.

The installed wheel, outside this checkout, is tested in ``test_installed_wheel.py``.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import pytest

from conftest import ROOT, glasscam
from glasscam_mpi.config import ConfigError
from glasscam_mpi.slurm import load_profile, packaged, profile_dirs, render, stages_with_scripts

PACKAGE = Path(str(resources.files("glasscam_mpi")))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("checkout, package", [("jobscripts", "jobscripts"),
                                               ("hpc/profiles", "profiles")])
def test_checkout_folders_are_links_to_the_packaged_ones(checkout, package):
    """One source of truth: the files live in the package; the folders users read and edit
    in a checkout are symlinks to them, so both show the same files, byte for byte."""
    link = ROOT / checkout
    assert link.is_symlink(), f"{checkout} should be a symlink to glasscam_mpi/{package}"
    assert link.resolve() == (PACKAGE / package).resolve()
    in_package = _files(PACKAGE / package)
    assert in_package and _files(link) == in_package
    # and the code reads the packaged folder
    assert _files(Path(str(packaged(package)))) == in_package


def test_every_stage_template_and_the_named_profiles_are_packaged():
    names = sorted(p.name for p in packaged("jobscripts").iterdir())
    assert "base.sbatch.j2" in names and "sweep.sbatch.j2" in names
    assert [f"{s}.sbatch.j2" for s in stages_with_scripts()] == [
        n for n in names if n not in ("base.sbatch.j2", "sweep.sbatch.j2")]
    assert {"generic.toml", "local.toml", "local2.toml"} <= {
        p.name for p in packaged("profiles").iterdir()}


@pytest.fixture
def sites(tmp_path, monkeypatch):
    """Two site folders: 'a' shadows the packaged 'generic' and has 'onlya'; 'b' has its
    own 'generic' (shadowed by a's) and 'onlyb'."""
    a, b = tmp_path / "site a", tmp_path / "site-b"
    a.mkdir()
    b.mkdir()
    (a / "generic.toml").write_text('partition = "site_a"\nnodes = 2\n')
    (a / "onlya.toml").write_text('partition = "only_a"\n')
    (b / "generic.toml").write_text('partition = "site_b"\n')
    (b / "onlyb.toml").write_text('partition = "only_b"\n')
    (b / "notes.txt").write_text("not a profile\n")
    monkeypatch.setenv("GLASSCAM_PROFILES", f"{a}{os.pathsep}{b}")
    return a, b


def test_site_folders_are_searched_in_order_before_the_packaged_profiles(sites):
    a, b = sites
    assert [str(d) for _, d in profile_dirs()] == [str(a), str(b), str(packaged("profiles"))]
    generic = load_profile("generic")
    assert (generic.name, generic.partition, generic.nodes) == ("generic", "site_a", 2)
    assert load_profile("onlyb").partition == "only_b"
    assert load_profile("local").partition == "local"   # not in a site folder: the packaged one
    text = render("prepare", generic, "/scratch/kam", glasscam="/opt/glasscam")
    assert "#SBATCH --partition=site_a\n" in text and "(profile 'generic')" in text


def test_an_unknown_profile_lists_the_names_found_and_where_it_looked(sites):
    a, b = sites
    with pytest.raises(ConfigError) as err:
        load_profile("nosuch")
    msg = str(err.value)
    assert msg.startswith("Slurm profile 'nosuch' not found; known: generic, local, local2, "
                          "onlya, onlyb (looked in: ")
    assert (f"GLASSCAM_PROFILES folder {a}; GLASSCAM_PROFILES folder {b}; the packaged "
            f"profiles {packaged('profiles')}") in msg
    assert msg.endswith("or give the path of a TOML file")


def test_a_profile_file_given_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine").write_text('partition = "by_path"\n')   # no suffix, a '/'
    (tmp_path / "gpu.toml").write_text('partition = "gpu"\ngpus_per_node = 2\n')
    assert load_profile("sub/mine").partition == "by_path"
    assert load_profile("sub/mine").name == "mine"
    prof = load_profile("gpu.toml")                                     # a suffix, no '/'
    assert (prof.name, prof.gpus_per_node) == ("gpu", 2)
    assert load_profile(str(tmp_path / "gpu.toml")) == prof
    with pytest.raises(ConfigError, match=r"^Slurm profile file 'sub/none' not found \(a "
                       r"--profile with a suffix or a '/' is a path; a name has neither\)"):
        load_profile("sub/none")


def test_bad_site_folders_and_bad_toml_are_refused(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("GLASSCAM_PROFILES", f"{tmp_path}{os.pathsep}{missing}")
    with pytest.raises(ConfigError, match="^" + re.escape(
            f"GLASSCAM_PROFILES='{tmp_path}:{missing}': '{missing}' is not a folder; allowed: "
            "folders of profile files NAME.toml, separated by ':'")):
        load_profile("generic")
    load_profile(str(ROOT / "hpc" / "profiles" / "generic.toml"))  # a path needs no lookup
    monkeypatch.setenv("GLASSCAM_PROFILES", str(tmp_path))
    (tmp_path / "broken.toml").write_text("partition = \n")
    with pytest.raises(ConfigError, match="^" + re.escape(
            f"profile {tmp_path / 'broken.toml'}: not valid TOML (Invalid value")):
        load_profile("broken")
    monkeypatch.setenv("GLASSCAM_PROFILES", "")   # set but empty: the packaged ones only
    assert [d for _, d in profile_dirs()] == [packaged("profiles")]


def test_the_cli_takes_a_site_profile_and_names_the_places_it_looked(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "cluster.toml").write_text('partition = "site_part"\nntasks_per_node = 2\n')
    env = {"GLASSCAM_PROFILES": str(site)}
    res = glasscam(["submit", "prepare", "--dry-run", "--profile", "cluster", "--preset", "demo",
                    "--run-dir", str(tmp_path / "run")], env=env)
    assert "#SBATCH --partition=site_part\n" in res.stdout
    assert (tmp_path / "run" / "jobs" / "prepare.sbatch").read_text() in res.stdout
    res = glasscam(["submit", "prepare", "--dry-run", "--profile", "nosuch", "--preset", "demo",
                    "--run-dir", str(tmp_path / "run2")], env=env, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("glasscam submit: error: Slurm profile 'nosuch' not found; "
                                 "known: cluster, generic, local, local2 (looked in: "
                                 f"GLASSCAM_PROFILES folder {site}; the packaged profiles ")
    assert not (tmp_path / "run2").exists()
