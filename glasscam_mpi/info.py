"""``glasscam info DIR``: what a run directory holds, as a JSON-ready dict."""

from __future__ import annotations

from pathlib import Path

from glasscam_mpi.config import ConfigError
from glasscam_mpi.jsonio import json_safe  # noqa: F401 - also imported from here
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
