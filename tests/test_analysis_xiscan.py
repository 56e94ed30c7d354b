"""The xi scan a box allows and the per-system xi_pairs (glasscam_mpi.analysis.xiscan).

Issue 18, defects 2, 3 and 5: the default scan reaches 10 where the box allows it, an xi
whose kernel (cut at 2 xi) exceeds half the box is left out and said so, and xi_pairs
defaults to the system's value (KAM 4, ABM 3, KA3D 4) instead of 4 for every system.
"""

from __future__ import annotations

import pytest

from glasscam_mpi.analysis.xiscan import fits, resolve_xis
from glasscam_mpi.config import build_config
from glasscam_mpi.systems import get_system


def _box(system: str, n: int):
    s = get_system(system)
    return [s.box_length(n)] * s.dim


def _resolved(system: str, n: int, **analyze):
    cfg = build_config({"system": {"name": system, "n_particles": n}, "analyze": analyze})
    a = cfg.analyze
    return resolve_xis(_box(system, n), a.xis, a.xi_pairs, a.xi_delta, cfg.sys.xi_pairs)


def test_xi_pairs_defaults_to_the_systems_value():
    """Paper Fig. 6: KAM 4, ABM 3 (ABM's came only from its preset before); KA3D 4."""
    assert build_config({}).analyze.xi_pairs == "auto"
    assert _resolved("KAM", 2000).xi_pairs == 4.0
    assert _resolved("ABM", 2000).xi_pairs == 3.0
    assert _resolved("ABM-code", 2000).xi_pairs == 3.0
    assert _resolved("KA3D", 16000).xi_pairs == 4.0
    assert _resolved("ABM", 2000, xi_pairs=5.0).xi_pairs == 5.0   # a set value is kept


def test_default_scan_reaches_10_where_the_box_allows():
    """KAM at N = 2000: L/2 = 20.4, so xi = 10 (2 xi = 20) is scanned: a peak at the
    paper's 8 can be told from a rising curve."""
    scan = _resolved("KAM", 2000)
    assert scan.xis == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    assert scan.skipped == () and scan.notes == ()


def test_xi_beyond_half_the_box_is_left_out_and_said_so():
    """KA3D at N = 16000: L/2 = 11.9, so xi = 6, 8, 10 would be clipped by the box."""
    scan = _resolved("KA3D", 16000)
    L = get_system("KA3D").box_length(16000)
    assert scan.skipped == (6.0, 8.0, 10.0)
    assert all(2 * x <= L / 2 for x in scan.xis) and max(scan.xis) == 5.0
    assert scan.limit == pytest.approx(L / 4)
    assert len(scan.notes) == 1 and "6, 8, 10 left out" in scan.notes[0]


def test_auto_xi_pairs_falls_back_to_the_largest_allowed_in_a_small_box():
    """The demo (KAM, N = 200: L/2 = 6.45): KAM's 4 does not fit; the largest xi of the
    scan that does (3) is used, with a note."""
    scan = _resolved("KAM", 200)
    assert scan.xi_pairs == 3.0 and 4.0 not in scan.xis
    assert any("xi_pairs = 3" in n for n in scan.notes)


def test_a_set_xi_pairs_or_xi_delta_beyond_the_box_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[analyze\]\.xi_pairs = 4: .*allowed: xi <= 3\.2"):
        _resolved("KAM", 200, xi_pairs=4.0)
    with pytest.raises(ValueError, match=r"\[analyze\]\.xi_delta = 5"):
        _resolved("KAM", 200, xi_delta=5.0)
    with pytest.raises(ValueError, match=r"no xi > 0 fits"):
        _resolved("KAM", 200, xis=[0.0, 8.0], xi_pairs=2.0)


def test_fits_is_the_half_box_rule():
    assert fits([8.0, 10.0], 2.0) and not fits([8.0, 10.0], 2.0001)
