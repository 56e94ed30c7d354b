#!/usr/bin/env bash
# A real single-node Slurm (munged + slurmctld + slurmd) on this machine, for the job-script
# tests and for trying glasscam's Slurm scripts on a workstation. Needs root and Debian's
# slurm-wlm + munge (hpc/bootstrap.sh --dev installs them).
#
#   hpc/slurm/localcluster.sh start STATE_DIR    # prints: export SLURM_CONF=STATE_DIR/slurm.conf
#   hpc/slurm/localcluster.sh stop  STATE_DIR
#
# Everything (config, spool, state, logs, pid files, munge socket) lives in STATE_DIR.
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)

stop() {
  for name in slurmd slurmctld munged; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "$0: unknown command '$cmd' (allowed: start, stop)" >&2; exit 2 ;;
esac

for exe in munged slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || {
    echo "$0: $exe not found; run 'bash hpc/bootstrap.sh --dev' (installs slurm-wlm and munge)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (slurmd runs jobs as their user)" >&2; exit 1; }
export PATH="$PATH:/usr/sbin"
stop
for port in 16817 16818; do   # the ports of slurm.conf below; one Slurm per machine
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$0: port $port is in use (another Slurm, e.g. a localcluster.sh started from" \
         "another directory, is running: stop it first)" >&2; exit 1
  fi
done

host=$(hostname -s)
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc obeys OMP_NUM_THREADS
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$dir"/{spool,state,log,munge}
chmod 755 "$dir/munge"   # the socket's folder must be searchable by every job's user

# munge (as root, in this folder only): a fresh key, its own socket
if [ ! -f "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
cp "$dir/munge/munged.pid" "$dir/munged.pid"

cat > "$dir/slurm.conf" <<EOF
ClusterName=glasscam-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
InactiveLimit=0
KillWait=5
MinJobAge=3600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "$0: Slurm did not come up; see $dir/log/" >&2
sinfo >&2 || true
exit 1
