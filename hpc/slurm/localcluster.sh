#!/usr/bin/env bash
# A real Slurm (munged + slurmctld + slurmd) on this machine, for the job-script tests and
# for trying glasscam's Slurm scripts on a workstation: one node, or K "nodes" that are
# separate hosts to MPI and Slurm. Needs root and Debian's slurm-wlm + munge
# (hpc/bootstrap.sh --dev installs them).
#
#   hpc/slurm/localcluster.sh start STATE_DIR [--nodes K]  # prints: export SLURM_CONF=STATE_DIR/slurm.conf
#   hpc/slurm/localcluster.sh hosts STATE_DIR --nodes K    # the K hosts without Slurm (mpiexec)
#   hpc/slurm/localcluster.sh start-node STATE_DIR NODE    # restart one node's slurmd (after a test killed it)
#   hpc/slurm/localcluster.sh stop  STATE_DIR
#
# Everything (config, spool, state, logs, pid files, munge socket) lives in STATE_DIR.
#
# --nodes 1 (the default): one slurmd on this host, as it is.
# --nodes K >= 2: K hosts gcn1..gcnK, each a Linux network namespace (its own address
# 10.213.0.(10+i)/24 on a veth pair whose other end is on the bridge gcbr0, 10.213.0.1)
# entered with its own UTS namespace (its own hostname). They share this machine's file
# system, as cluster nodes share a parallel file system. The addresses exist only inside
# these namespaces and on the bridge: nothing is routed anywhere else. slurmctld runs in
# this network namespace under the hostname gcctl (10.213.0.1); munged runs here too and
# its socket (a path) serves every node; one slurmd per node runs inside the node's
# namespaces, so jobs run there. /etc/hosts gets one line per host (tagged, removed by
# stop). `hosts` makes the same K hosts without Slurm and writes STATE_DIR/hostfile and
# STATE_DIR/rsh, an rsh stand-in for MPICH's hydra:
#     mpiexec -launcher rsh -launcher-exec STATE_DIR/rsh -f STATE_DIR/hostfile -iface gcbr0 -n 4 CMD
# (-iface gcbr0: the proxies on the nodes reach mpiexec at the bridge's address.)
# `stop` removes everything it made, listed in STATE_DIR/made: processes (by pid file,
# then whatever still runs in a node's namespace), namespaces, links, bridge, /etc/hosts lines.
set -euo pipefail

BRIDGE=gcbr0
NET=10.213.0
CTL=gcctl
HOSTS_TAG="# glasscam-localcluster"

usage() {
  echo "usage: $0 start STATE_DIR [--nodes K] | hosts STATE_DIR --nodes K |" \
       "start-node STATE_DIR NODE | stop STATE_DIR" >&2
  exit 2
}
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
nodes=1; node_arg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || usage; nodes=$2; shift 2 ;;
    --nodes=*) nodes=${1#--nodes=}; shift ;;
    *) if [ "$cmd" = start-node ] && [ -z "$node_arg" ]; then node_arg=$1; shift
       else echo "$0: unknown argument '$1'" >&2; usage; fi ;;
  esac
done
case "$nodes" in
  ''|*[!0-9]*) echo "$0: --nodes $nodes: allowed: an integer from 1 to 50" >&2; exit 2 ;;
esac
if [ "$nodes" -lt 1 ] || [ "$nodes" -gt 50 ]; then
  echo "$0: --nodes $nodes: allowed: an integer from 1 to 50" >&2; exit 2
fi
if [ "$cmd" = hosts ] && [ "$nodes" -lt 2 ]; then
  echo "$0: hosts needs --nodes K with K >= 2 (one host is this machine: use mpiexec as it is)" >&2
  exit 2
fi
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

kill_pidfile() {   # kill the process of a pid file (TERM, then KILL), remove the file
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

remove_hosts_lines() {   # our tagged lines only; /etc/hosts rewritten in place (it may be a mount)
  local tag="$HOSTS_TAG $dir"
  if grep -qF -- "$tag" /etc/hosts 2>/dev/null; then
    local keep
    keep=$(grep -vF -- "$tag" /etc/hosts || true)
    printf '%s\n' "$keep" > /etc/hosts
  fi
}

stop() {
  local f ns pid
  for f in "$dir"/slurmd-*.pid "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    kill_pidfile "$f"
  done
  [ -f "$dir/made" ] || return 0
  # whatever still runs inside a node (job steps, ranks) goes with it: by namespace, by pid
  while read -r kind name; do
    [ "$kind" = ns ] || continue
    [ -e "/var/run/netns/$name" ] || continue
    for pid in $(ip netns pids "$name" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done < "$dir/made"
  while read -r kind name; do
    case "$kind" in
      ns) ip netns del "$name" 2>/dev/null || true ;;
      link) ip link del "$name" 2>/dev/null || true ;;
      bridge) ip link del "$name" 2>/dev/null || true ;;
      hosts) remove_hosts_lines ;;
    esac
  done < <(tac "$dir/made")
  rm -f "$dir/made"
}

refuse() { echo "$0: $*" >&2; stop; exit 1; }

# K hosts: namespaces, veth pairs, the bridge, /etc/hosts; recorded in $dir/made as made
make_hosts() {
  command -v ip >/dev/null && command -v nsenter >/dev/null && command -v unshare >/dev/null ||
    refuse "cannot make $nodes hosts: ip (iproute2), nsenter and unshare (util-linux) are needed"
  [ "$(id -u)" -eq 0 ] || refuse "cannot make $nodes hosts: network namespaces need root"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    refuse "the bridge $BRIDGE exists already (a multi-node localcluster.sh started from another" \
           "directory is running: stop it first)"
  fi
  : > "$dir/made"
  local err i
  if ! err=$(ip link add "$BRIDGE" type bridge 2>&1); then
    refuse "cannot make $nodes hosts: creating the bridge $BRIDGE failed ($err); multi-node" \
           "needs root with network-namespace support (CAP_NET_ADMIN; not an unprivileged container)"
  fi
  echo "bridge $BRIDGE" >> "$dir/made"
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  echo "hosts -" >> "$dir/made"
  remove_hosts_lines
  printf '%s\n' "$NET.1 $CTL $HOSTS_TAG $dir" >> /etc/hosts
  for i in $(seq "$nodes"); do
    local node="gcn$i" addr="$NET.$((10 + i))"
    if ! err=$(ip netns add "$node" 2>&1); then
      refuse "cannot make $nodes hosts: 'ip netns add $node' failed ($err); multi-node needs" \
             "root with network-namespace support (not an unprivileged container)"
    fi
    echo "ns $node" >> "$dir/made"
    ip link add "gcv$i" type veth peer name "gcv${i}n"
    echo "link gcv$i" >> "$dir/made"
    ip link set "gcv${i}n" netns "$node"
    ip link set "gcv$i" master "$BRIDGE"
    ip link set "gcv$i" up
    nsenter --net="/var/run/netns/$node" sh -ec "
      ip link set lo up
      ip addr add $addr/24 dev gcv${i}n
      ip link set gcv${i}n up"
    printf '%s\n' "$addr $node $HOSTS_TAG $dir" >> /etc/hosts
  done
  # the rsh stand-in: 'rsh HOST COMMAND...' runs COMMAND (a shell line, as rsh/ssh run it)
  # inside HOST's namespaces, under HOST's hostname
  cat > "$dir/rsh" <<'RSH'
#!/bin/sh
# rsh stand-in for the hosts of hpc/slurm/localcluster.sh: rsh HOST COMMAND...
host=$1; shift
[ -e "/var/run/netns/$host" ] || { echo "rsh: no host $host (no /var/run/netns/$host)" >&2; exit 255; }
exec nsenter --net="/var/run/netns/$host" unshare --uts sh -c 'hostname "$1"; shift; exec sh -c "$*"' rsh "$host" "$@"
RSH
  chmod 755 "$dir/rsh"
  : > "$dir/hostfile"
  for i in $(seq "$nodes"); do echo "gcn$i:$cpus" >> "$dir/hostfile"; done
}

start_slurmd() {   # start_slurmd NODE: slurmd inside NODE's namespaces
  local node=$1
  [ -e "/var/run/netns/$node" ] || { echo "$0: no node $node in $dir" >&2; exit 2; }
  mkdir -p "$dir/spool/$node"
  kill_pidfile "$dir/slurmd-$node.pid"
  SLURM_CONF="$dir/slurm.conf" nsenter --net="/var/run/netns/$node" unshare --uts \
    sh -c 'hostname "$1"; exec slurmd -f "$2"' slurmd "$node" "$dir/slurm.conf"
}

cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc obeys OMP_NUM_THREADS
case "$cmd" in
  stop) stop; exit 0 ;;
  start|hosts) ;;
  start-node)
    [ -n "$node_arg" ] || usage
    start_slurmd "$node_arg"
    SLURM_CONF="$dir/slurm.conf" scontrol update nodename="$node_arg" state=resume 2>/dev/null || true
    exit 0 ;;
  *) echo "$0: unknown command '$cmd' (allowed: start, hosts, start-node, stop)" >&2; exit 2 ;;
esac

if [ "$cmd" = hosts ]; then
  [ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces)" >&2; exit 1; }
  stop
  make_hosts
  echo "hosts: $(seq -f 'gcn%g' -s ' ' "$nodes") (hostfile $dir/hostfile)"
  echo "mpiexec -launcher rsh -launcher-exec $dir/rsh -f $dir/hostfile -iface $BRIDGE -n N CMD"
  exit 0
fi

for exe in munged slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || {
    echo "$0: $exe not found; run 'bash hpc/bootstrap.sh --dev' (installs slurm-wlm and munge)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (slurmd runs jobs as their user)" >&2; exit 1; }
stop
for port in 16817 16818; do   # the ports of slurm.conf below; one Slurm per machine
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$0: port $port is in use (another Slurm, e.g. a localcluster.sh started from" \
         "another directory, is running: stop it first)" >&2; exit 1
  fi
done

host=$(hostname -s)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$dir"/{spool,state,log,munge}
chmod 755 "$dir/munge"   # the socket's folder must be searchable by every job's user
if [ "$nodes" -gt 1 ]; then
  make_hosts
  mem=$(( mem / nodes ))
fi

# munge (as root, in this folder only): a fresh key, its own socket
if [ ! -f "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
cp "$dir/munge/munged.pid" "$dir/munged.pid"

if [ "$nodes" -eq 1 ]; then
  ctl_host=$host
  spool="$dir/spool"; slurmd_pid="$dir/slurmd.pid"; slurmd_log="$dir/log/slurmd.log"
  node_lines="NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  node_list=$host
  extra=""
else
  ctl_host="$CTL($NET.1)"
  spool="$dir/spool/%n"; slurmd_pid="$dir/slurmd-%n.pid"; slurmd_log="$dir/log/slurmd-%n.log"
  node_lines=""
  for i in $(seq "$nodes"); do
    node_lines+="NodeName=gcn$i NodeAddr=$NET.$((10 + i)) CPUs=$cpus RealMemory=$mem State=UNKNOWN"$'\n'
  done
  node_lines=${node_lines%$'\n'}
  node_list="gcn[1-$nodes]"
  # a lost node is noticed within SlurmdTimeout; its job ends NODE_FAIL and is not requeued
  # behind the user's back (they resubmit; the stage resumes from its shards)
  extra=$'SlurmdTimeout=20\nJobRequeue=0'
fi

cat > "$dir/slurm.conf" <<CONF
ClusterName=glasscam-local
SlurmctldHost=$ctl_host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$slurmd_pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$slurmd_log
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
$extra
$node_lines
PartitionName=local Nodes=$node_list Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$dir/slurm.conf"
if [ "$nodes" -eq 1 ]; then
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
else
  # slurmctld knows itself by its hostname: gcctl, in a UTS namespace of its own
  unshare --uts sh -c 'hostname "$1"; exec slurmctld -f "$2"' slurmctld "$CTL" "$SLURM_CONF"
  for i in $(seq "$nodes"); do start_slurmd "gcn$i"; done
fi
for _ in $(seq 150); do
  up=$(sinfo -h -N -o '%t' 2>/dev/null | grep -cE '^(idle|mix|alloc)' || true)
  if [ "$up" -eq "$nodes" ]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "$0: Slurm did not come up ($nodes node(s)); see $dir/log/" >&2
sinfo -N >&2 || true
exit 1
