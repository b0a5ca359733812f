#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (loopback only), with accounting:
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd -> node idle -> `srun true` works.
# Needs root (CI, a container, a VM). Installs the Debian packages when missing. Idempotent: running it
# again on a live cluster only checks it. Everything lives under $CROWNQ_SLURM_DIR (default
# /tmp/crownq-slurm); stop it with scripts/slurm/stop.sh. Clients need `source scripts/slurm/env.sh`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
BASE="$CROWNQ_SLURM_DIR"
CTLD_PORT="${CROWNQ_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${CROWNQ_SLURMD_PORT:-6818}"
DBD_PORT="${CROWNQ_SLURMDBD_PORT:-6819}"
DB_PORT="${CROWNQ_SLURM_DB_PORT:-33061}"
DB_SOCKET="$BASE/mysql/run/mysqld.sock"
T0=$SECONDS

say() { printf '[slurm %3ds] %s\n' "$((SECONDS - T0))" "$*"; }

fail() {  # fail MESSAGE LOGFILE... : explain, show the end of each log, exit
  local msg="$1"; shift
  echo "ERROR: $msg" >&2
  for log in "$@"; do
    if [ -f "$log" ]; then echo "----- last lines of $log -----" >&2; tail -n 25 "$log" >&2; fi
  done
  exit 1
}

wait_for() {  # wait_for SECONDS DESCRIPTION LOGFILE COMMAND... : poll COMMAND until it succeeds
  local limit="$1" what="$2" log="$3"; shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up within ${limit}s (check: $*)" "$log"
    if [ -n "${WATCH_PID:-}" ] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
      fail "$what exited during start-up" "$log"
    fi
    sleep 0.5
  done
  WATCH_PID=""
}

alive() {  # alive PIDFILE : the process named in PIDFILE is running
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

[ "$(id -u)" -eq 0 ] || fail "start.sh must run as root (it installs packages and starts daemons)"

# --- 1. packages -------------------------------------------------------------------------------------
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts would try to start services: there is no init system here, so forbid it.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"/tmp/crownq-slurm-apt.log" 2>&1; then
    apt-get update -q >>"/tmp/crownq-slurm-apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"/tmp/crownq-slurm-apt.log" 2>&1 \
      || fail "apt-get install ${missing[*]} failed" /tmp/crownq-slurm-apt.log
  fi
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

mkdir -p "$BASE"/{etc,log,run,state,spool,mysql/data,mysql/run}
chmod 755 "$BASE"
chown -R mysql:mysql "$BASE/mysql"   # mariadbd runs as mysql and fails silently on root-owned folders

# --- 2. munge ----------------------------------------------------------------------------------------
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  say "starting munged"
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge   # no systemd: nothing else creates it
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged || fail "munged did not start" /var/log/munge/munged.log
  wait_for 20 "munged" /var/log/munge/munged.log bash -c 'munge -n | unmunge'
fi

# --- 3. MariaDB (accounting storage) ------------------------------------------------------------------
DB_PASS_FILE="$BASE/etc/db_password"
[ -s "$DB_PASS_FILE" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE")
DB_PASS="$(cat "$DB_PASS_FILE")"
if ! alive "$BASE/mysql/run/mysqld.pid"; then
  if [ ! -d "$BASE/mysql/data/mysql" ]; then
    say "initialising MariaDB in $BASE/mysql/data"
    mariadb-install-db --user=mysql --datadir="$BASE/mysql/data" --skip-test-db \
      >"$BASE/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed" "$BASE/log/mariadb-install.log"
  fi
  say "starting mariadbd on 127.0.0.1:$DB_PORT"
  # setsid + nohup: the daemon must outlive this script (and the CI step's process group).
  setsid nohup mariadbd --user=mysql --datadir="$BASE/mysql/data" --socket="$DB_SOCKET" \
    --pid-file="$BASE/mysql/run/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --log-error="$BASE/mysql/mariadb.err" --skip-name-resolve </dev/null >>"$BASE/log/mariadb.out" 2>&1 &
  WATCH_PID=$!
  wait_for 60 "mariadbd" "$BASE/mysql/mariadb.err" mariadb-admin --socket="$DB_SOCKET" ping
fi
mariadb --socket="$DB_SOCKET" -u root <<SQL || fail "could not create the slurm database user" "$BASE/mysql/mariadb.err"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON crownq_slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- 4. configuration files ---------------------------------------------------------------------------
fill() {  # fill TEMPLATE OUTPUT MODE : substitute @VARS@, write atomically
  local tmp="$2.tmp.$$"
  sed -e "s|@BASE@|$BASE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
      -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" \
      -e "s|@NODE_HARDWARE@|$NODE_HARDWARE|g" "$1" >"$tmp"
  chmod "$3" "$tmp" && mv "$tmp" "$2"
}
# Hardware as slurmd sees it, minus the name and uptime (the node is always called localhost).
NODE_HARDWARE="$(slurmd -C | head -n 1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')"
[ -n "$NODE_HARDWARE" ] || fail "slurmd -C printed no hardware line"
fill "$HERE/slurm.conf.in" "$SLURM_CONF" 644
fill "$HERE/slurmdbd.conf.in" "$BASE/etc/slurmdbd.conf" 600   # slurmdbd refuses a readable password

# --- 5. slurmdbd -> slurmctld -> slurmd ----------------------------------------------------------------
if ! alive "$BASE/run/slurmdbd.pid"; then
  say "starting slurmdbd"
  # slurmdbd finds its config next to slurm.conf (same folder as SLURM_CONF).
  slurmdbd || fail "slurmdbd did not start" "$BASE/log/slurmdbd.log"
fi
wait_for 60 "slurmdbd" "$BASE/log/slurmdbd.log" sacctmgr -i -n list cluster
if ! alive "$BASE/run/slurmctld.pid"; then
  say "starting slurmctld"
  slurmctld || fail "slurmctld did not start" "$BASE/log/slurmctld.log"
fi
wait_for 60 "slurmctld" "$BASE/log/slurmctld.log" bash -c 'scontrol ping | grep -q "is UP"'
if ! alive "$BASE/run/slurmd.pid"; then
  say "starting slurmd"
  slurmd -N localhost || fail "slurmd did not start" "$BASE/log/slurmd.log"
fi

# --- 6. ready? -------------------------------------------------------------------------------------------
node_idle() {
  local state
  state="$(sinfo -h -N -n localhost -o %T)"
  case "$state" in
    idle|mixed|allocated) return 0 ;;
    down*|drain*|fail*) scontrol update nodename=localhost state=resume >/dev/null 2>&1; return 1 ;;
    *) return 1 ;;
  esac
}
wait_for 60 "node localhost (sinfo state idle)" "$BASE/log/slurmd.log" node_idle
timeout 60 srun -N1 -n1 -t 1 true >"$BASE/log/srun-check.log" 2>&1 \
  || fail "srun -N1 -n1 true failed on an idle node" "$BASE/log/srun-check.log" "$BASE/log/slurmctld.log" \
       "$BASE/log/slurmd.log"
sacctmgr -n list cluster format=cluster | grep -q crownq \
  || fail "the cluster is not registered in slurmdbd (no accounting)" "$BASE/log/slurmdbd.log"
say "cluster ready: $(sinfo -h -o '%P %a %D %T %c cpus %m MB') (SLURM_CONF=$SLURM_CONF)"
