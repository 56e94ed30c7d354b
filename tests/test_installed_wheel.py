"""An installed package submits: build the sdist and the wheel of this checkout, install the
wheel into a fresh venv outside the source tree, and run ``glasscam submit --dry-run`` and
``glasscam plan`` from an unrelated directory, with the packaged profiles, a profile file
given by path, and ``$GLASSCAM_PROFILES``.

No network: the wheel is built with what the bootstrap installed (``pip wheel --no-deps
--no-build-isolation``, as ``hpc/wheelhouse.sh`` does) and installed with ``--no-deps
--no-index``. The fresh venv gets its dependencies (mpi4py, h5py, LAMMPS, torch, ... built
against this machine's MPI) from the site-packages of the Python running the tests, named
in a ``.pth`` file as a plain path: Python does not read the ``.pth`` files of a folder
added that way, so the checkout's editable install (a ``.pth`` finder there) is not on the
new venv's path. (``venv --system-site-packages`` would not do: made from a venv, it links
the *base* interpreter's site-packages, which lack these.) The test asserts that
``glasscam_mpi`` and its templates are imported from the new venv.

The commands run with only the venv's ``bin`` on ``PATH``: no ``sbatch`` or other Slurm
command is reachable, so ``submit --dry-run`` and ``plan`` are shown to need no Slurm.
About 20 s on 2 cores, most of it ``plan``'s calibration.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, TINY_TOML
from glasscam_mpi.slurm import Profile, load_profile, render

pytestmark = pytest.mark.slow

# The data files that must travel with the package (relative to glasscam_mpi/)
DATA = sorted(f"{folder}/{p.name}"
              for folder in ("jobscripts", "profiles", "presets", "report/templates")
              for p in (ROOT / "glasscam_mpi" / folder).iterdir()
              if p.is_file() and p.suffix != ".py")
# What a build reads: everything but the checkout's own environment and build products
_TOP_LEVEL_SKIP = {".git", ".venv", "build", "dist", "runs", ".pytest_cache", ".whl", ".gl"}


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def _copy_ignore(folder, names):
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(folder) == ROOT:
        skip |= _TOP_LEVEL_SKIP & set(names)
    return skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist and the wheel of a copy of this checkout (symlinks kept as symlinks; the
    copy keeps build products out of the checkout and stale ones out of the wheel)."""
    base = tmp_path_factory.mktemp("wheel")
    src, out = base / "src", base / "dist"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_copy_ignore)
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
          "print(build_meta.build_sdist(sys.argv[1]))", str(out)], cwd=src)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(out)], cwd=src)
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel


def test_sdist_and_wheel_carry_the_templates_and_profiles(built):
    sdist, wheel = built
    assert {"jobscripts/base.sbatch.j2", "jobscripts/prepare.sbatch.j2",
            "profiles/generic.toml", "report/templates/report.html.j2"} <= set(DATA)
    with zipfile.ZipFile(wheel) as zf:
        for rel in DATA:
            assert zf.read(f"glasscam_mpi/{rel}") == (ROOT / "glasscam_mpi" / rel).read_bytes(), rel
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        for rel in DATA:
            member = tf.getmember(f"{top}/glasscam_mpi/{rel}")
            assert member.isfile(), rel   # a file, not a link into the checkout
            assert tf.extractfile(member).read() == (ROOT / "glasscam_mpi" / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """A fresh venv outside the source tree with the wheel installed; returns its python,
    its glasscam and an unrelated working directory."""
    _, wheel = built
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
          "--no-compile", "-q", str(wheel)])
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                        ).stdout.strip())
    deps = [d for d in site.getsitepackages() if not (Path(d) / "glasscam_mpi").exists()]
    (purelib / "_glasscam_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    work = base / "elsewhere"
    work.mkdir()
    return py, venv / "bin" / "glasscam", work


def _env(venv_bin: Path, **extra) -> dict[str, str]:
    """The environment of a user of the installed package: no PYTHONPATH, no site profiles,
    and only the venv on PATH (no sbatch: nothing may need Slurm)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "GLASSCAM_PROFILES", "VIRTUAL_ENV")}
    env.update(PATH=str(venv_bin), PYTHONUNBUFFERED="1", **extra)
    return env


def test_the_package_is_imported_from_the_new_venv(installed):
    py, glasscam, work = installed
    venv = py.parent.parent
    res = _run([str(py), "-c", "import glasscam_mpi, json, sys; "
                "from glasscam_mpi.slurm import packaged; "
                "print(json.dumps([glasscam_mpi.__file__, str(packaged('jobscripts')), sys.path, "
                "[repr(f) for f in sys.meta_path]]))"],
               cwd=work, env=_env(py.parent))
    module, jobscripts, path, finders = json.loads(res.stdout)
    assert Path(module).is_relative_to(venv) and Path(jobscripts).is_relative_to(venv)
    # the checkout's package is reachable from no path entry, and no editable finder is loaded
    assert not any((Path(p or work) / "glasscam_mpi").exists() for p in path
                   if not Path(p or work).is_relative_to(venv))
    assert not any("editable" in f.lower() for f in finders)


def _dry_run(installed, run_dir: Path, profile: str, **env) -> tuple[str, Path]:
    py, glasscam, work = installed
    res = _run([str(glasscam), "submit", "prepare", "train", "--dry-run", "--profile", profile,
                "--preset", "demo", "--run-dir", str(run_dir)],
               cwd=work, env=_env(py.parent, **env))
    return res.stdout, py


def _expected(stages, profile: Profile, run_dir: Path, py: Path) -> str:
    """What the checkout renders for the installed python's glasscam command."""
    out = ""
    for stage in stages:
        text = render(stage, profile, run_dir, glasscam=[str(py), "-m", "glasscam_mpi.cli"])
        assert (run_dir / "jobs" / f"{stage}.sbatch").read_text() == text
        out += f"# ---- {run_dir / 'jobs' / f'{stage}.sbatch'}\n{text}\n"
    return out


def test_submit_dry_run_with_a_packaged_profile(installed):
    _, _, work = installed
    run_dir = work / "packaged"
    out, py = _dry_run(installed, run_dir, "generic")
    # the installed templates and profile give what the checkout gives, byte for byte
    assert out == _expected(["prepare", "train"], load_profile("generic"), run_dir, py)
    assert "#SBATCH --partition=compute\n" in out and "#SBATCH --gpus-per-node=4\n" in out
    assert f"{py} -m glasscam_mpi.cli prepare --run-dir {run_dir}" in out
    assert (run_dir / "config.toml").exists() and not (run_dir / "jobs.json").exists()


def test_submit_dry_run_with_a_profile_file_and_with_site_profiles(installed, tmp_path):
    _, _, work = installed
    site_dir = tmp_path / "site profiles"
    site_dir.mkdir()
    (site_dir / "generic.toml").write_text(   # shadows the packaged 'generic'
        'partition = "site_gpu"\nnodes = 2\nntasks_per_node = 4\ngpus_per_node = 1\n'
        'setup = ["module load site-mpi"]\n')
    by_path = tmp_path / "mine.toml"
    by_path.write_text('partition = "by_path"\nntasks_per_node = 2\n')

    run_dir = work / "by-path"
    out, py = _dry_run(installed, run_dir, str(by_path))
    assert out == _expected(["prepare", "train"], load_profile(str(by_path)), run_dir, py)
    assert "#SBATCH --partition=by_path\n" in out and "(profile 'mine')" in out

    run_dir = work / "site"
    out, py = _dry_run(installed, run_dir, "generic", GLASSCAM_PROFILES=str(site_dir))
    assert out == _expected(["prepare", "train"], load_profile(str(site_dir / "generic.toml")),
                            run_dir, py)
    assert "#SBATCH --partition=site_gpu\n" in out and "module load site-mpi\n" in out

    # an unknown name: one error naming the site folder and the installed package's profiles
    res = subprocess.run([str(installed[1]), "submit", "prepare", "--dry-run", "--profile",
                          "nosuch", "--preset", "demo", "--run-dir", str(work / "none")],
                         cwd=work, env=_env(py.parent, GLASSCAM_PROFILES=str(site_dir)),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                        ).stdout.strip())
    assert res.stderr == ("glasscam submit: error: Slurm profile 'nosuch' not found; known: "
                          "generic, local, local2 (looked in: GLASSCAM_PROFILES folder "
                          f"{site_dir}; the packaged profiles {purelib}/glasscam_mpi/profiles); "
                          "or give the path of a TOML file\n")
    assert not (work / "none").exists()


def test_plan_with_a_site_profile(installed, tmp_path):
    py, glasscam, work = installed
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "small.toml").write_text('partition = "p"\nnodes = 3\nntasks_per_node = 8\n')
    cfg = work / "tiny.toml"
    cfg.write_text(TINY_TOML)
    res = _run([str(glasscam), "plan", "--config", cfg.name, "--profile", "small", "--json"],
               cwd=work, env=_env(py.parent, GLASSCAM_PROFILES=str(site_dir)))
    plan = json.loads(res.stdout)
    assert plan["profile"]["name"] == "small"
    assert (plan["profile"]["nodes"], plan["profile"]["ntasks_per_node"]) == (3, 8)
    assert {"prepare", "train", "report"} <= set(plan["stages"])
    assert plan["stages"]["prepare"]["core_hours"] > 0 and plan["total"]["jobs"] >= 1
