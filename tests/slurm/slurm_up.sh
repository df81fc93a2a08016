#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for vlarisk's cluster tests.
#
# What it does (Debian 12 packages "slurm-wlm" 22.05 + munge, no systemd needed):
#   * installs munge, slurmctld, slurmd, slurm-client if missing (apt, no recommends);
#   * writes /etc/slurm/slurm.conf + gres.conf for a node called "localhost" with
#     this machine's CPUs/memory and N fake GPUs (GRES backed by char devices with
#     /dev/null's numbers, so --gres=gpu:1 / --gpus=1 jobs are schedulable);
#   * starts munged, slurmctld and `slurmd -N localhost`, recording every pid it
#     starts in $VLARISK_SLURM_DIR so that slurm_down.sh stops exactly those;
#   * waits until the node is idle and prints `sinfo`.
#
# Safe to run twice: daemons that are up with an unchanged config are left alone.
# Refuses to overwrite an /etc/slurm/slurm.conf it did not write (a real cluster
# config) unless VLARISK_SLURM_FORCE=1.  Must run as root.
#
# Knobs (environment, all optional):
#   VLARISK_SLURM_DIR       state, logs, pid files         (default /tmp/vlarisk-slurm)
#   VLARISK_SLURM_PARTITION default partition name          (default debug)
#   VLARISK_SLURM_GPUS      fake GPUs on the node, 0 = none (default 1)
#   VLARISK_SLURM_GPU_TYPE  GRES type, empty = untyped      (default fake)
#   VLARISK_SLURM_MIN_JOB_AGE  MinJobAge seconds; keep >= 120 so that the executor
#                           plugin can poll with squeue     (default 600)
#   VLARISK_SLURM_DEF_MEM_PER_CPU  DefMemPerCPU MB          (default 1000)
#   VLARISK_SLURM_SKIP_APT=1  never call apt-get (fail if packages are missing)
#   VLARISK_SLURM_FORCE=1   overwrite a foreign /etc/slurm/slurm.conf
set -euo pipefail

STATE="${VLARISK_SLURM_DIR:-/tmp/vlarisk-slurm}"
PARTITION="${VLARISK_SLURM_PARTITION:-debug}"
NGPU="${VLARISK_SLURM_GPUS:-1}"
GPU_TYPE="${VLARISK_SLURM_GPU_TYPE-fake}"
MIN_JOB_AGE="${VLARISK_SLURM_MIN_JOB_AGE:-600}"
DEF_MEM="${VLARISK_SLURM_DEF_MEM_PER_CPU:-1000}"
ETC=/etc/slurm
MARK="# written by vlarisk tests/slurm/slurm_up.sh"

say() { printf '[slurm_up] %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run me as root (the daemons and /etc/slurm need it)"
for v in NGPU MIN_JOB_AGE DEF_MEM; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a non-negative integer, got '${!v}'"
done
t0=$(date +%s)

# ------------------------------------------------------------------ packages
want=(munge slurmctld slurmd slurm-client)
need=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  [ "${VLARISK_SLURM_SKIP_APT:-0}" = 1 ] && fail "packages missing: ${need[*]}"
  command -v apt-get >/dev/null || fail "packages missing (${need[*]}) and no apt-get here"
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/dev"
chmod 755 "$STATE"

# ------------------------------------------------------------------ helpers
# running PIDFILE COMM: the pid file names a live process whose comm is COMM
running() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
# halt PIDFILE COMM: stop that process (TERM, then KILL after 10 s), drop the file
halt() {
  local pid i
  if ! running "$1" "$2"; then rm -f "$1"; return 0; fi
  pid=$(tr -dc '0-9' <"$1")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$1"
}
# until_ok SECONDS CMD...: retry CMD every 0.25 s until it succeeds or time is up
until_ok() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

# ------------------------------------------------------------------ munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then
    mungekey --create --force --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge 2>/dev/null || true
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running"
else
  say "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  until_ok 10 test -s /run/munge/munged.pid || fail "munged did not start (/var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$STATE/munged.pid"   # only what we start is ours to stop
  until_ok 10 sh -c 'munge -n | unmunge' || fail "munge credential round trip failed"
fi

# ------------------------------------------------------------------ fake GPUs
node_gres=""
gres_line=""
if [ "$NGPU" -gt 0 ]; then
  devs=()
  for i in $(seq 0 $((NGPU - 1))); do
    dev="$STATE/dev/fakegpu$i"
    # slurmd insists on a device file per GPU; a char device 1,3 (= /dev/null) is harmless
    if [ ! -c "$dev" ]; then rm -f "$dev"; mknod "$dev" c 1 3 2>/dev/null || true; fi
    if [ -c "$dev" ]; then devs+=("$dev"); fi
  done
  if [ "${#devs[@]}" -eq "$NGPU" ]; then
    if [ "$NGPU" -eq 1 ]; then files="${devs[0]}"; else files="$STATE/dev/fakegpu[0-$((NGPU - 1))]"; fi
  elif [ "$NGPU" -eq 1 ]; then
    files=/dev/null          # no mknod allowed (unprivileged container): one GPU on /dev/null
  else
    fail "mknod refused, cannot fake $NGPU GPUs; use VLARISK_SLURM_GPUS=1"
  fi
  if [ -n "$GPU_TYPE" ]; then
    node_gres=" Gres=gpu:$GPU_TYPE:$NGPU"
    gres_line="NodeName=localhost Name=gpu Type=$GPU_TYPE Count=$NGPU File=$files"
  else
    node_gres=" Gres=gpu:$NGPU"
    gres_line="NodeName=localhost Name=gpu Count=$NGPU File=$files"
  fi
fi

# ------------------------------------------------------------------ slurm.conf
if [ -s "$ETC/slurm.conf" ] && ! head -1 "$ETC/slurm.conf" | grep -qF "$MARK"; then
  [ "${VLARISK_SLURM_FORCE:-0}" = 1 ] \
    || fail "$ETC/slurm.conf exists and was not written by this script; set VLARISK_SLURM_FORCE=1 to replace it"
fi
# node geometry as slurmd detects it, memory with 5 % headroom (more than real => node INVAL)
hw=$(slurmd -C | head -1)
geometry=$(grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' <<<"$hw" | tr '\n' ' ')
mem=$(grep -oE 'RealMemory=[0-9]+' <<<"$hw" | cut -d= -f2)
mem=$(( mem * 95 / 100 ))

mkdir -p "$ETC"
conf_new=$(mktemp)
gres_new=$(mktemp)
cat >"$conf_new" <<EOF
$MARK
ClusterName=vlarisk-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# pgid, not linuxproc: on scancel (Ctrl-C of snakemake) linuxproc lost the job's
# snakemake process once its shell parent had died, leaving an orphan behind
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# no slurmdbd: sacct cannot work, the executor plugin must poll with squeue,
# which needs finished jobs to stay in slurmctld for a while (MinJobAge)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
MailProg=/bin/true
DefMemPerCPU=$DEF_MEM
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 ${geometry}RealMemory=$mem$node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
printf '%s\n' "$gres_line" >"$gres_new"

changed=0
cmp -s "$conf_new" "$ETC/slurm.conf" || changed=1
cmp -s "$gres_new" "$ETC/gres.conf" || changed=1
install -m 0644 "$conf_new" "$ETC/slurm.conf"
install -m 0644 "$gres_new" "$ETC/gres.conf"
rm -f "$conf_new" "$gres_new"
if [ "$changed" = 1 ]; then
  say "wrote $ETC/slurm.conf and $ETC/gres.conf"
  halt "$STATE/slurmd.pid" slurmd          # restart ours so they read the new config
  halt "$STATE/slurmctld.pid" slurmctld
fi

# ------------------------------------------------------------------ daemons
if ! running "$STATE/slurmctld.pid" slurmctld; then
  say "starting slurmctld"
  /usr/sbin/slurmctld                      # forks; writes $STATE/slurmctld.pid
  until_ok 30 scontrol ping || fail "slurmctld does not answer (see $STATE/slurmctld.log)"
fi
if ! running "$STATE/slurmd.pid" slurmd; then
  say "starting slurmd"
  /usr/sbin/slurmd -N localhost            # -N: node name is localhost, whatever the hostname
fi

node_ready() { sinfo -h -n localhost -o '%T' | grep -qE '^(idle|mixed|allocated)'; }
if ! until_ok 30 node_ready; then
  scontrol show node localhost >&2 || true
  fail "node localhost not ready (see $STATE/slurmd.log and $STATE/slurmctld.log)"
fi
say "up after $(( $(date +%s) - t0 )) s; state in $STATE"
sinfo -o '%P %a %l %D %T %N %G'
