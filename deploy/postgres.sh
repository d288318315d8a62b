#!/usr/bin/env bash
# A project-local PostgreSQL cluster on 127.0.0.1, from Debian's packages - no Docker needed.
#   deploy/postgres.sh start|stop|status|restart|reset
# Trust authentication on loopback: for development and tests only. Starting twice is harmless.
# DATABASE_URL in the environment means "use that server", and this script then does nothing.
#
# Where the cluster lives: .run/postgres/ - unless the script runs as root and the 'postgres'
# system user (which initdb and the server must run as: both refuse root) cannot enter that
# folder, as in a clone under /root (mode 700). The cluster then lives in a folder of its own
# under the postgres user's home, /var/lib/postgresql/homecare-<hash of the run dir>/, recorded in
# .run/postgres/location so every later command finds it (docs/decisions/0045).
source "$(dirname "$0")/lib.sh"

PG_DIR="$RUN_DIR/postgres"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
LOCATION_FILE="$PG_DIR/location"
PG_LOG_LINK="$LOG_DIR/postgres.log"

as_root() { [ "$(id -u)" = 0 ]; }

# initdb refuses to run as root, so as root the cluster belongs to the 'postgres' system user.
as_owner() {
  # From /: the current folder may be one the postgres user cannot enter (it would complain).
  if as_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where the cluster's files are: decided once (when it is made), then read from LOCATION_FILE.
cluster_home() {
  if [ -f "$LOCATION_FILE" ]; then cat "$LOCATION_FILE"; return; fi
  if as_root && ! runuser -u postgres -- test -x "$PG_DIR" 2>/dev/null; then
    local hash; hash=$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-12)
    echo "$(getent passwd postgres | cut -d: -f6)/homecare-$hash"
  else
    echo "$PG_DIR"
  fi
}

mkdir -p "$PG_DIR" "$LOG_DIR"
HOME_DIR="$(cluster_home)"
DATA="$HOME_DIR/data"
if [ "$HOME_DIR" = "$PG_DIR" ]; then LOG="$PG_LOG_LINK"; else LOG="$HOME_DIR/postgres.log"; fi
component "PostgreSQL" "$LOG" "read the log lines above; docs/guide/troubleshooting.md#postgresql lists the usual causes (port taken: set HOMECARE_PG_PORT; a broken cluster: bash deploy/postgres.sh reset, which deletes its data)"

start() {
  if [ -n "${DATABASE_URL:-}" ]; then log "DATABASE_URL is set; using it"; return; fi
  [ -x "$PG_BIN/initdb" ] || fail "PostgreSQL is not installed (no initdb under /usr/lib/postgresql)" "run: bash deploy/setup.sh"
  if as_root; then
    id postgres >/dev/null 2>&1 || fail "running as root, but there is no 'postgres' system user to own the cluster" \
      "install Debian's postgresql package (bash deploy/setup.sh), or run as an ordinary user"
    mkdir -p "$HOME_DIR"
    chown postgres "$HOME_DIR"
  else
    mkdir -p "$HOME_DIR"
  fi
  echo "$HOME_DIR" > "$LOCATION_FILE"
  [ "$LOG" = "$PG_LOG_LINK" ] || ln -sfn "$LOG" "$PG_LOG_LINK"  # one place to look, whoever owns the file
  touch "$LOG" 2>/dev/null || as_owner touch "$LOG"
  if as_root; then chown postgres "$LOG"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    [ "$HOME_DIR" = "$PG_DIR" ] || log "the postgres user cannot enter $PG_DIR; the cluster lives in $HOME_DIR"
    log "initdb $DATA"
    as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >>"$LOG" 2>&1 ||
      fail "initdb could not make the cluster in $DATA" \
        "check that $(as_root && echo "the postgres user" || echo you) can write $HOME_DIR and that the disk has room; then bash deploy/postgres.sh reset"
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$HOME_DIR'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
# Per-statement counts and times for operations (and the benchmark's analysis): pg_stat_statements.
shared_preload_libraries = 'pg_stat_statements'
CONF
  fi
  if as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"; return
  fi
  if port_taken "$PG_PORT"; then
    fail "port $PG_PORT is taken by another process" "stop that process, or choose another port: HOMECARE_PG_PORT=<port> (the same in every command)" none
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG_LINK)"
  as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null ||
    fail "PostgreSQL did not start"
  log "PostgreSQL ready"
}

stop() {
  [ -f "$DATA/PG_VERSION" ] || return 0
  as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then echo "postgres running 127.0.0.1:$PG_PORT"; else echo "postgres stopped"; exit 1; fi ;;
  reset) stop; rm -rf "$HOME_DIR" "$PG_DIR" "$PG_LOG_LINK" ;;
  *) echo "usage: $0 start|stop|status|restart|reset" >&2; exit 2 ;;
esac
