# Shared helpers for the deploy/ scripts. Sourced, not run.
# Everything local lives under .run/ (state, logs, pids) and .cache/ (downloaded jars): both git-ignored.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${HOMECARE_RUN_DIR:-$ROOT/.run}"
CACHE_DIR="${HOMECARE_CACHE_DIR:-$ROOT/.cache}"
LOG_DIR="$RUN_DIR/logs"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$CACHE_DIR"

# Project ports (loopback only). Override with the environment.
KAFKA_PORT="${HOMECARE_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${HOMECARE_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${HOMECARE_PG_PORT:-15432}"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# pid_alive FILE -> 0 when the pid in FILE is a running process
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_port PORT SECONDS -> 0 once something listens on 127.0.0.1:PORT
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

# port_taken PORT -> 0 when something already listens on 127.0.0.1:PORT
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid FILE NAME SECONDS: SIGTERM, wait, then SIGKILL
stop_pid() {
  local file=$1 name=$2 grace=${3:-30}
  if pid_alive "$file"; then
    local pid; pid=$(cat "$file")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in ${grace}s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}
