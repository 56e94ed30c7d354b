"""A run directory: everything one pipeline run owns, in one place.

    RUN_DIR/
      config.toml          the resolved configuration (every stage re-reads it)
      <stage>.h5           one HDF5 file per completed stage (see glasscam_mpi.store);
                           analyze writes analysis.h5
      shards/<stage>/      per-task results while a stage runs (the resume ledger)
      logs/<stage>.json    timings, rank count, host and failures of the last run
      .lock                held by the job that is writing here

Only rank 0 of a job uses this class's file-system side; the stages broadcast what it finds.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from glasscam_mpi.config import (Config, ConfigError, build_config, config_diff,
                                 load_saved_config)
from glasscam_mpi.jsonio import dumps
from glasscam_mpi.store import ShardStore


class RunDirBusy(RuntimeError):
    """Another job holds the run directory's lock."""


class RunDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock_fh = None

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    # the file of a stage is <stage>.h5, except where a noun reads better
    FILE_NAMES = {"analyze": "analysis.h5"}

    def stage_file(self, stage: str) -> Path:
        return self.path / self.FILE_NAMES.get(stage, f"{stage}.h5")

    def shards(self, stage: str) -> ShardStore:
        return ShardStore(self.path / "shards" / stage)

    def training_files(self, member: int = 0) -> dict[str, Path]:
        """The files ``glasscam train`` keeps for network ``member`` of the run's seed
        ensemble (0: the run's own network, in ``train/``; k: ``train/member-k/``): its
        folder, ``checkpoint.pt``, ``best.pt``, ``history.json`` and ``curves.png``."""
        d = self.path / "train" if member == 0 else self.path / "train" / f"member-{member}"
        return {"dir": d, "checkpoint": d / "checkpoint.pt", "best": d / "best.pt",
                "history": d / "history.json", "curves": d / "curves.png"}

    def model_paths(self, ensemble: int) -> list[Path]:
        """The best model of every member of a seed ensemble of ``ensemble`` networks
        (member 0 first): what Grad-CAM explains."""
        return [self.training_files(m)["best"] for m in range(ensemble)]

    def log_path(self, stage: str) -> Path:
        return self.path / "logs" / f"{stage}.json"

    # -- what a stage needs and what is left to do ---------------------------------------------
    def require(self, stage: str) -> Path:
        """The stage file of an earlier ``stage``, or a ConfigError saying which to run.

        Every reader of an earlier stage's file comes through here, so the schema rule of
        :func:`glasscam_mpi.store.check_schema` holds for all of them: a file of a newer
        schema is refused here (a damaged file is left to the reader's own message)."""
        path = self.stage_file(stage)
        if not path.exists():
            raise ConfigError(f"{self.path} has no {path.name}: run 'glasscam {stage}' first")
        import h5py

        from glasscam_mpi.store import check_schema

        try:
            fh = h5py.File(path, "r")
        except OSError:
            return path
        with fh:
            check_schema(fh, stage)
        return path

    def intact(self, stage: str) -> bool:
        """Whether ``stage``'s file exists and opens as the HDF5 file of that stage (a
        truncated or foreign file is not a finished stage)."""
        path = self.stage_file(stage)
        if not path.exists():
            return False
        import h5py

        try:
            with h5py.File(path, "r") as fh:
                return str(fh.attrs.get("stage", "")) == stage
        except OSError:
            return False

    def task_summary(self, stage: str) -> dict:
        """``{"complete": bool}`` for ``glasscam info``, with the tasks done so far while
        the stage is unfinished."""
        out: dict = {"complete": self.stage_file(stage).exists()}
        if not out["complete"]:
            found = self.shards(stage).scan()
            if found:
                out["tasks"] = {"done": sum(found.values())}
        return out

    def pending(self, stage: str, n_tasks: int, retry_failed: bool = False) -> list[int]:
        """Tasks of ``stage`` still to run: those without a shard, plus the failed ones
        when ``retry_failed``. Partial shards of a killed job are removed first."""
        shards = self.shards(stage)
        shards.clean_partial()
        found = shards.scan()
        keep = {i for i, ok in found.items() if ok or not retry_failed}
        return [i for i in range(n_tasks) if i not in keep]

    # -- configuration -----------------------------------------------------------------------
    def saved_config(self) -> Config | None:
        if not self.config_path.exists():
            return None
        return load_saved_config(self.config_path)

    # Sections every stage's results depend on: fixed once the run directory exists.
    BASE_SECTIONS = ("run", "system", "prepare")

    def started(self, stage: str) -> bool:
        """Whether ``stage`` has written anything (a task shard or its stage file)."""
        shard_dir = self.path / "shards" / stage
        return self.stage_file(stage).exists() or (shard_dir.is_dir() and any(shard_dir.iterdir()))

    def resolve_config(self, requested: Config | None) -> Config:
        """The run directory's config: saved on first use, then required to stay the same.

        [run], [system] and [prepare] never change in a run directory. The section of a
        later stage (e.g. [propensity]) may change until that stage has started; the new
        config is then saved. Anything else is refused with the differences listed.
        """
        saved = self.saved_config()
        if saved is None:
            if requested is None:
                raise ConfigError(f"{self.path} has no config.toml yet: give --preset NAME or "
                                  "--config FILE for a new run directory")
            self._save(requested)
            return requested
        if requested is None or requested == saved:
            return saved
        diff = config_diff(saved, requested)
        sections = {line[1:line.index("]")] for line in diff}
        frozen = sorted(s for s in sections if s in self.BASE_SECTIONS or self.started(s))
        if frozen:
            lines = "\n  ".join(line for line in diff if line[1:line.index("]")] in frozen)
            raise ConfigError(
                f"{self.path} was made with a different configuration (saved -> requested):\n  "
                f"{lines}\n[run], [system] and [prepare] are fixed for a run directory, and a "
                "stage's own section once that stage has started. Rerun without "
                "--preset/--config to continue it, or use a new --run-dir.")
        self._save(requested)
        return requested

    def _save(self, cfg: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(cfg.to_toml())
        os.replace(tmp, self.config_path)

    # -- exclusive use -------------------------------------------------------------------------
    def lock(self, what: str) -> None:
        """Take the directory for this job, or raise :class:`RunDirBusy` naming the holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirBusy(f"run directory {self.path} is in use by {holder}; wait for that "
                             "job to end, or use another --run-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} ({what}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def finish(self, stage: str, what: str, seconds: float, ranks: int, outcomes=None,
               unit: str = "task", **extra) -> dict:
        """Rank 0 at the end of a stage: print each failed task (``outcomes``: the farm's
        :class:`~glasscam_mpi.parallel.Outcome` list) and what was written, and keep the
        job's record in ``logs/<stage>.json``. Returns the record."""
        record = {"stage": stage, "ranks": ranks, **extra, "seconds_total": round(seconds, 3)}
        if outcomes is not None:
            failed = [o for o in outcomes if not o.ok]
            for o in failed:
                print(f"{stage}: {unit} {o.index} FAILED: {o.message}", flush=True)
            record["tasks_run"] = len(outcomes)
            record["tasks_failed"] = [{"index": o.index, "error": o.message} for o in failed]
        print(f"{stage}: wrote {self.stage_file(stage)} ({what}; {seconds:.1f} s)", flush=True)
        self.write_log(stage, record)
        return record

    def write_log(self, stage: str, record: dict) -> None:
        path = self.log_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"argv": sys.argv, "host": socket.gethostname(), **record}
        path.write_text(dumps(record, indent=2, default=str) + "\n")


def config_from_text(text: str) -> Config:
    """A :class:`Config` from TOML text (the ``config`` attribute of a stage file)."""
    import tomllib

    return build_config(tomllib.loads(text), origin="stage file")
