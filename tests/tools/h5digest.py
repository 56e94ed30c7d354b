"""Digest of every dataset in a run directory's stage files, for identity checks.

``python tests/tools/h5digest.py RUN_DIR [--out FILE] [--compare FILE]``

Each dataset is hashed from its dtype, shape and raw bytes (sha256). Attributes are not
hashed: they hold wall times, hostnames and versions that differ between runs. Datasets of wall
times (named ``seconds`` or ``*_seconds``, e.g. train.h5's per-epoch timings) differ between
any two runs, so only their dtype and shape are hashed. Shards, logs and checkpoints are
left out; the stage files (``*.h5`` at the top of the run
directory and of ``sweep/*/``) are what later stages and users read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np


WALL_TIME = re.compile(r"(^|/|_)seconds$")


def dataset_digest(ds: h5py.Dataset) -> str:
    if WALL_TIME.search(ds.name):
        return "wall-time " + hashlib.sha256(
            (ds.dtype.str + repr(ds.shape)).encode()).hexdigest()
    data = ds[()]
    arr = np.asarray(data)
    h = hashlib.sha256()
    h.update(arr.dtype.str.encode())
    h.update(repr(arr.shape).encode())
    if arr.dtype.kind == "O":
        for item in arr.ravel():
            h.update(item if isinstance(item, bytes) else str(item).encode())
    else:
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def file_digests(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = dataset_digest(obj)
        f.visititems(visit)
    return out


def run_digests(run_dir: str | Path) -> dict[str, dict[str, str]]:
    run_dir = Path(run_dir)
    return {p.name: file_digests(p) for p in sorted(run_dir.glob("*.h5"))}


def compare(got: dict, want: dict) -> list[str]:
    """Differences as lines ('file:dataset differs / missing / new'); empty when equal."""
    lines = []
    for fname in sorted(set(want) | set(got)):
        w, g = want.get(fname), got.get(fname)
        if w is None or g is None:
            lines.append(f"{fname}: {'missing' if g is None else 'new'} file")
            continue
        for name in sorted(set(w) | set(g)):
            if name not in g:
                lines.append(f"{fname}:{name} missing")
            elif name not in w:
                lines.append(f"{fname}:{name} new")
            elif w[name] != g[name]:
                lines.append(f"{fname}:{name} differs")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="write the digests here (JSON)")
    ap.add_argument("--compare", help="compare with the digests in this JSON file")
    a = ap.parse_args(argv)
    got = run_digests(a.run_dir)
    if a.out:
        Path(a.out).write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if a.compare:
        diff = compare(got, json.loads(Path(a.compare).read_text()))
        print("\n".join(diff) if diff else "identical")
        return 1 if diff else 0
    if not a.out:
        print(json.dumps(got, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
