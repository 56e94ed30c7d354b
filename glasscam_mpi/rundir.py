"""A run directory: everything one pipeline run owns, in one place.

    RUN_DIR/
      config.toml          the resolved configuration (every stage re-reads it)
      <stage>.h5           one HDF5 file per completed stage (see glasscam_mpi.store)
      shards/<stage>/      per-task results while a stage runs (the resume ledger)
      logs/<stage>.json    timings, rank count, host and failures of the last run
      .lock                held by the job that is writing here

Only rank 0 of a job uses this class's file-system side; the stages broadcast what it finds.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from glasscam_mpi.config import Config, ConfigError, build_config, config_diff, load_config
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

    def stage_file(self, stage: str) -> Path:
        return self.path / f"{stage}.h5"

    def shards(self, stage: str) -> ShardStore:
        return ShardStore(self.path / "shards" / stage)

    def log_path(self, stage: str) -> Path:
        return self.path / "logs" / f"{stage}.json"

    # -- configuration -----------------------------------------------------------------------
    def saved_config(self) -> Config | None:
        if not self.config_path.exists():
            return None
        return load_config(path=self.config_path)

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

    def write_log(self, stage: str, record: dict) -> None:
        path = self.log_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"argv": sys.argv, "host": socket.gethostname(), **record}
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def config_from_text(text: str) -> Config:
    """A :class:`Config` from TOML text (the ``config`` attribute of a stage file)."""
    import tomllib

    return build_config(tomllib.loads(text), origin="stage file")
