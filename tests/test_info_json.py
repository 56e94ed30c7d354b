"""``glasscam info`` prints strict JSON: a missing number is null, never NaN or Infinity."""

import json
import math

import numpy as np

from glasscam_mpi.info import json_safe


def test_non_finite_numbers_become_null_and_numpy_becomes_python():
    raw = {"a": float("nan"), "b": [1.0, np.float32("inf"), -math.inf], "c": np.int64(3),
           "d": {"e": np.array([0.5, np.nan])}, "f": np.bool_(True), "g": "text", "h": None}
    safe = json_safe(raw)
    assert safe == {"a": None, "b": [1.0, None, None], "c": 3, "d": {"e": [0.5, None]},
                    "f": True, "g": "text", "h": None}
    json.dumps(safe, allow_nan=False)  # raises on any NaN / Infinity left


# -- every JSON the package writes, on real run directories -------------------------------------
def _refuse(constant):
    raise AssertionError(f"not JSON: {constant} (a missing number must be null)")


def strict(text):
    """json.loads that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_refuse)


def check_run_dir(rd) -> list[str]:
    """Parse strictly what the run directory holds as JSON: ``glasscam info``, ``status
    --json``, every logs/*.json, train/history.json, jobs.json, and every HDF5 attribute
    of the stage files that is JSON. Returns the names parsed."""
    import h5py

    from conftest import glasscam

    seen = []
    info = strict(glasscam(["info", str(rd)]).stdout)
    status = strict(glasscam(["status", str(rd), "--json"]).stdout)
    assert info["run_dir"] and status
    seen += ["info", "status"]
    for path in [*sorted((rd / "logs").glob("*.json")), rd / "train" / "history.json",
                 rd / "jobs.json"]:
        if path.exists():
            strict(path.read_text())
            seen.append(str(path.relative_to(rd)))
    for h5 in sorted(rd.glob("*.h5")):
        with h5py.File(h5, "r") as fh:
            for key, value in fh.attrs.items():
                if isinstance(value, bytes):
                    value = value.decode()
                if not isinstance(value, str) or value[:1] not in "[{\"n" or not value:
                    continue
                try:
                    json.loads(value)          # is it JSON at all (lenient)?
                except ValueError:
                    continue
                strict(value)                  # then it must be strict JSON
                seen.append(f"{h5.name}:{key}")
    return seen


def test_everything_a_full_run_writes_is_strict_json(tiny_full_run):
    """Every stage, with a failed replica (injected) and the analyze task it fails."""
    seen = check_run_dir(tiny_full_run)
    for name in ("logs/train.json", "logs/gradcam.json", "logs/propensity.json",
                 "logs/analyze.json", "train/history.json", "analysis.h5:headline",
                 "analysis.h5:forms", "analysis.h5:study", "gradcam.h5:model_spec",
                 "train.h5:model_spec", "train.h5:data_meta"):
        assert name in seen, (name, seen)
    log = strict((tiny_full_run / "logs" / "propensity.json").read_text())
    assert [t["index"] for t in log["tasks_failed"]] == [1]


def test_a_run_with_failed_cooling_runs_writes_strict_json(tiny_config, tmp_path):
    """prepare with a failed test run (a real LAMMPS failure, injected), then indicators:
    the failed rows are NaN in the stage files, never NaN in the JSON."""
    import h5py

    from conftest import glasscam
    from glasscam_mpi.config import load_config
    from glasscam_mpi.stages.prepare import split_of

    rd = tmp_path / "run"
    test_run = int(np.flatnonzero(split_of(load_config(path=tiny_config)) == 2)[0])
    glasscam(["prepare", "--config", str(tiny_config), "--run-dir", str(rd)], n=2,
             env={"GLASSCAM_INJECT_FAULT": f"prepare:{test_run}"})
    glasscam(["indicators", "--run-dir", str(rd)], n=2)
    seen = check_run_dir(rd)
    assert {"logs/prepare.json", "logs/indicators.json"} <= set(seen)
    info = strict(glasscam(["info", str(rd)]).stdout)
    assert info["stages"]["prepare"]["tasks"]["failed"] == 1, info["stages"]["prepare"]
    with h5py.File(rd / "prepare.h5", "r") as fh:
        assert fh["status"][test_run] == 2 and np.isnan(fh["glass"][test_run]).all()


def test_dumps_maps_non_finite_to_null_and_refuses_nothing_else():
    from glasscam_mpi.jsonio import dumps, loads_strict

    text = dumps({"a": np.float32("nan"), "b": (np.int64(2), -np.inf), "c": np.arange(2.0)})
    assert loads_strict(text) == {"a": None, "b": [2, None], "c": [0.0, 1.0]}
    try:
        loads_strict('{"x": NaN}')
    except ValueError as exc:
        assert "NaN" in str(exc)
    else:
        raise AssertionError("loads_strict accepted NaN")
