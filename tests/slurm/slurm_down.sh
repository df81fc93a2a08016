#!/usr/bin/env bash
# Stop the one-node SLURM cluster that slurm_up.sh started.  Processes are found
# through the pid files slurm_up.sh / the daemons wrote in $VLARISK_SLURM_DIR,
# never by name.  Jobs still queued or running are cancelled first, so no
# slurmstepd outlives slurmd.  Must run as root.
#
#   VLARISK_SLURM_DIR    state dir given to slurm_up.sh  (default /tmp/vlarisk-slurm)
#   VLARISK_SLURM_PURGE=1  also delete that directory (job state, logs)
set -uo pipefail

STATE="${VLARISK_SLURM_DIR:-/tmp/vlarisk-slurm}"
say() { printf '[slurm_down] %s\n' "$*" >&2; }

# pid_in PIDFILE COMM: print the pid if the file names a live process called COMM
pid_in() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ] || return 1
  echo "$pid"
}

stopped=()
halt() {  # halt PIDFILE COMM
  local pid i
  if ! pid=$(pid_in "$1" "$2"); then rm -f "$1"; return 0; fi
  stopped+=("$pid")
  say "stopping $2 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 75); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then
    say "$2 still alive after 15 s, SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$1"
}

# 1. cancel our cluster's jobs while the daemons are still there to do it
if pid_in "$STATE/slurmctld.pid" slurmctld >/dev/null && command -v scancel >/dev/null; then
  ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    say "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    for i in $(seq 60); do
      [ -z "$(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

# 2. daemons, last started first
halt "$STATE/slurmd.pid" slurmd
halt "$STATE/slurmctld.pid" slurmctld     # slurmscriptd, its child, goes with it
halt "$STATE/munged.pid" munged           # present only if slurm_up.sh started munged
if [ -e /run/munge/munged.pid ] && ! pid_in /run/munge/munged.pid munged >/dev/null; then
  rm -f /run/munge/munged.pid
fi

# 3. check; report (never kill) look-alike daemons we have no pid file for
rc=0
for pid in "${stopped[@]}"; do
  if [ -d "/proc/$pid" ]; then say "pid $pid did not exit"; rc=1; fi
done
others=$(ps -eo pid=,comm= | awk '$2 ~ /^(slurmctld|slurmd|slurmstepd|slurmscriptd|munged)$/')
if [ -n "$others" ]; then
  say "note: these slurm/munge processes are not ours (no pid file); left running:"
  printf '%s\n' "$others" >&2
fi
[ "$rc" -eq 0 ] || exit 1
if [ "${VLARISK_SLURM_PURGE:-0}" = 1 ]; then rm -rf "$STATE"; fi
say "stopped"
