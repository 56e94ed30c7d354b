"""``glasscam info DIR``: what a run directory holds, as a JSON-ready dict."""

from __future__ import annotations

from pathlib import Path

from glasscam_mpi.config import ConfigError
from glasscam_mpi.rundir import RunDir


def describe(run_dir: str | Path) -> dict:
    """Stages complete or not, tasks done / failed / missing, config, headline figures."""
    from glasscam_mpi.stages import STAGES

    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise ConfigError(f"run directory {rd.path} does not exist")
    cfg = rd.saved_config()
    if cfg is None:
        raise ConfigError(f"{rd.path} is not a run directory (no config.toml)")
    out: dict = {"run_dir": str(rd.path.resolve()), "system": cfg.sys.name,
                 "stages": {name: stage.summarize(rd, cfg) for name, stage in STAGES.items()},
                 "config": cfg.to_dict()}
    out["complete"] = [name for name, s in out["stages"].items() if s.get("complete")]
    sweep = _sweep(rd.path)
    if sweep:
        out["sweep"] = sweep
    return json_safe(out)


def _sweep(path: Path) -> dict:
    """A ``glasscam sweep``'s table in short: per variant, C^max of Gamma with Delta of its
    seed ensemble and the mean, std, min, max over its seeds (empty without a sweep)."""
    import csv

    table = path / "sweep" / "table.csv"
    if not table.is_file():
        return {}
    with table.open() as fh:
        rows = list(csv.DictReader(fh))

    def num(text: str):
        return round(float(text), 4) if text else None

    out: dict = {"table": str(table.with_suffix(".md")), "variants": {}}
    for r in rows:
        v = out["variants"].setdefault(r["variant"], {"C_max_gamma": {}})
        v["C_max_gamma"][r["row"]] = num(r["C_max_gamma"])
    return out


def json_safe(value):
    """``value`` with every non-finite float (NaN, +-inf) as None and numpy scalars and
    arrays as Python numbers and lists: ``json.dumps`` would print NaN / Infinity, which is
    not JSON (a strict parser, ``jq`` included, refuses it)."""
    import math

    import numpy as np

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
