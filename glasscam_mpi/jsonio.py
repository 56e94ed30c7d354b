"""Strict JSON for everything glasscam writes: ``glasscam info``, ``plan --json``,
``status --json``, ``logs/<stage>.json``, ``jobs.json``, ``train/history.json`` and the
HDF5 attributes that hold JSON (``headline``, ``forms``, ``model_spec``, ...).

Python's ``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` for non-finite
floats: not JSON (RFC 8259), and a strict parser (``jq``, JavaScript's ``JSON.parse``,
``json.loads(..., parse_constant=refuse)``) rejects the whole document. Here a missing
number (NaN, +-inf) is written as ``null``, numpy scalars and arrays as Python numbers and
lists, and ``allow_nan=False`` makes any non-finite float that slipped through an error
at the writer rather than a file nobody can read.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) as None and numpy scalars and
    arrays as Python numbers and lists (dicts, lists and tuples walked through)."""
    import numpy as np  # here, not at import: the CLI imports this module before it sets
    #                     the thread counts that numpy's BLAS reads (glasscam_mpi.cli)

    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)`` with ``allow_nan=False``; other
    keyword arguments (``indent``, ``sort_keys``, ``default``) are passed on."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def _refuse(constant: str):
    raise ValueError(f"not JSON: {constant} (a missing number must be null)")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse)
