#!/usr/bin/env bash
# CI preparation for the SLURM tests (tests/test_slurm.py, marker `slurm`).
# Call it from .ci/run before pytest, as root:
#
#     bash tests/slurm/ci_setup.sh
#
# It installs the Debian packages (munge slurmctld slurmd slurm-client), brings
# up the one-node cluster with slurm_up.sh, and checks that a job asking for a
# GPU (--gres=gpu:1) is scheduled and sees CUDA_VISIBLE_DEVICES.  The cluster is
# left running; the pytest session reuses it and tears it down at the end
# (tests/slurm/slurm_down.sh, by pid file).  Run pytest with CI=true so that a
# SLURM that cannot start fails the SLURM test instead of skipping it.
# Exits non-zero, with the daemons' log tails, if anything does not work.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${VLARISK_SLURM_DIR:-/tmp/vlarisk-slurm}"

show_logs() {
  local f
  for f in "$STATE/slurmctld.log" "$STATE/slurmd.log" /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "---- tail $f" >&2; tail -n 30 "$f" >&2; }
  done
  return 0
}
trap 'echo "[ci_setup] FAILED" >&2; show_logs' ERR

[ "$(id -u)" -eq 0 ] || { echo "[ci_setup] must run as root" >&2; exit 1; }

bash "$here/slurm_up.sh"

# smoke test: one GPU job, waited for; it must see the fake GPU
out="$STATE/ci-smoke.out"
rm -f "$out"
sbatch --wait --quiet --job-name vlarisk-ci-smoke --output "$out" \
  --ntasks=1 --cpus-per-task=1 --mem=100 -t 2 --gres=gpu:1 \
  --wrap 'echo "gpus=${CUDA_VISIBLE_DEVICES:-none}"; test -n "${CUDA_VISIBLE_DEVICES:-}"'
grep -q '^gpus=' "$out"
echo "[ci_setup] SLURM is up; GPU smoke job: $(cat "$out")" >&2
