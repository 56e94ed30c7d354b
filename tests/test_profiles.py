"""Where job templates and cluster profiles come from: the package's own data, and the
checkout's ``jobscripts``/``hpc/profiles`` (symlinks to it).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from conftest import ROOT
from glasscam_mpi.slurm import packaged, stages_with_scripts

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
