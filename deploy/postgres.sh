#!/usr/bin/env bash
# A project-local PostgreSQL cluster on 127.0.0.1, from Debian's packages - no Docker needed.
#   deploy/postgres.sh start|stop|status|restart|reset
# Trust authentication on loopback: for development and tests only. Starting twice is harmless.
# DATABASE_URL in the environment means "use that server", and this script then does nothing.
source "$(dirname "$0")/lib.sh"

PG_DIR="$RUN_DIR/postgres"
DATA="$PG_DIR/data"
LOG="$LOG_DIR/postgres.log"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"

# initdb refuses to run as root, so as root the cluster belongs to the 'postgres' system user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if [ -n "${DATABASE_URL:-}" ]; then log "DATABASE_URL is set; using it"; return; fi
  [ -x "$PG_BIN/initdb" ] || { log "PostgreSQL is not installed (run deploy/setup.sh)"; exit 1; }
  mkdir -p "$PG_DIR" "$LOG_DIR"
  touch "$LOG"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR" "$LOG"; chmod 755 "$RUN_DIR"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initdb $DATA"
    as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >>"$LOG" 2>&1
    cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
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
  if port_taken "$PG_PORT"; then log "port $PG_PORT is taken by another process; stop it or set HOMECARE_PG_PORT"; exit 1; fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $LOG)"
  as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null
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
  reset) stop; rm -rf "$PG_DIR" ;;
  *) echo "usage: $0 start|stop|status|restart|reset" >&2; exit 2 ;;
esac
