#!/usr/bin/env bash
# Stop the single-node cluster started by scripts/slurm/start.sh (slurmd, slurmctld, slurmdbd, mariadbd,
# munged), each by the pid in its pid file. Keeps $CROWNQ_SLURM_DIR (state, logs, accounting) so a later
# start.sh resumes; pass --purge to delete it too.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
BASE="$CROWNQ_SLURM_DIR"

stop_pidfile() {  # stop_pidfile NAME PIDFILE : SIGTERM, wait up to 20 s, then SIGKILL
  local name="$1" pidfile="$2" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "[slurm] stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[slurm] $name did not exit on SIGTERM, killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile"
}

if [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null; then
  timeout 10 scancel --full --user=root >/dev/null 2>&1 || true   # running jobs first: slurmd kills steps
fi
stop_pidfile slurmd "$BASE/run/slurmd.pid"
stop_pidfile slurmctld "$BASE/run/slurmctld.pid"
stop_pidfile slurmdbd "$BASE/run/slurmdbd.pid"
stop_pidfile mariadbd "$BASE/mysql/run/mysqld.pid"
stop_pidfile munged /run/munge/munged.pid

if [ "${1:-}" = "--purge" ]; then
  echo "[slurm] removing $BASE"
  rm -rf "$BASE"
fi
