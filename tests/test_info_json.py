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
