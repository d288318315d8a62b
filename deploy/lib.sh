# Shared helpers for the deploy/ scripts. Sourced, not run.
# Everything local lives under .run/ (state, logs, pids) and .cache/ (downloaded jars): both git-ignored.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${HOMECARE_RUN_DIR:-$ROOT/.run}"
CACHE_DIR="${HOMECARE_CACHE_DIR:-$ROOT/.cache}"
LOG_DIR="$RUN_DIR/logs"

# Project ports (loopback only). Override with the environment.
KAFKA_PORT="${HOMECARE_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${HOMECARE_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${HOMECARE_PG_PORT:-15432}"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# ---- failures say what failed, why (the failing component's log) and what to do ---------------
# A script names the component it is working on with `component NAME LOG HINT`; any command that
# fails after that (set -e) ends the script through on_error, which prints the failed step, the
# last lines of LOG and HINT. `fail MESSAGE HINT` does the same for a failure the script detects.
# docs/guide/troubleshooting.md lists the usual causes.
CURRENT_COMPONENT=""
CURRENT_LOG=""
CURRENT_HINT=""
component() { CURRENT_COMPONENT=$1 CURRENT_LOG=${2:-} CURRENT_HINT=${3:-}; }

show_log_tail() {
  local file=${1:-$CURRENT_LOG} lines=${2:-25}
  [ "$file" != none ] || return 0
  if [ -n "$file" ] && [ -s "$file" ]; then
    # The cause is often far above the tail (a port taken, then a page of tracebacks of the tasks
    # cancelled after it): the first lines naming an error come first.
    local named
    named=$(grep -n -m 8 -E 'Errno|ERROR|FATAL|Error: |Exception: |"level": ?"error"' "$file" 2>/dev/null | cut -c1-400 || true)
    if [ -n "$named" ]; then
      printf '[%s] the first lines of %s naming an error:\n' "$(basename "$0")" "$file" >&2
      printf '%s\n' "$named" | sed 's/^/    /' >&2
    fi
    printf '[%s] last lines of %s:\n' "$(basename "$0")" "$file" >&2
    tail -n "$lines" "$file" | sed 's/^/    /' >&2
  elif [ -n "$file" ]; then
    printf '[%s] (its log %s is empty or missing)\n' "$(basename "$0")" "$file" >&2
  fi
}

# fail MESSAGE [HINT] [LOG]: report a failure the script found itself, then exit 1.
# A failure is reported once: a subshell that reports one leaves a mark for its parent shell
# ($$ is the script's pid in its subshells too), which then exits quietly.
REPORTED_MARK="${TMPDIR:-/tmp}/homecare-deploy-failure-$$"
already_reported() {
  [ -f "$REPORTED_MARK" ] || return 1
  [ "$BASHPID" != "$$" ] || rm -f "$REPORTED_MARK"
  return 0
}
mark_reported() { [ "$BASHPID" = "$$" ] || : > "$REPORTED_MARK"; }

fail() {
  trap - ERR
  mark_reported
  printf '[%s] FAILED%s: %s\n' "$(basename "$0")" "${CURRENT_COMPONENT:+ ($CURRENT_COMPONENT)}" "$1" >&2
  show_log_tail "${3:-$CURRENT_LOG}"
  printf '[%s] what to do: %s\n' "$(basename "$0")" \
    "${2:-${CURRENT_HINT:-read the log above; docs/guide/troubleshooting.md lists the usual causes}}" >&2
  exit 1
}

on_error() {
  local rc=$? command=$BASH_COMMAND line=${BASH_LINENO[0]}
  trap - ERR
  if already_reported; then
    printf '[%s] stopped: %s failed (exit %s); its cause is printed above\n' "$(basename "$0")" "$command" "$rc" >&2
    exit "$rc"
  fi
  mark_reported
  case "$command" in
    # Another deploy script failed and has already said why: one line here, not the story twice.
    bash\ *deploy/*)
      printf '[%s] stopped: %s failed (exit %s); its cause is printed above\n' "$(basename "$0")" "$command" "$rc" >&2
      exit "$rc" ;;
  esac
  printf '[%s] FAILED%s (exit %s) at line %s: %s\n' "$(basename "$0")" "${CURRENT_COMPONENT:+ ($CURRENT_COMPONENT)}" \
    "$rc" "$line" "$command" >&2
  show_log_tail
  printf '[%s] what to do: %s\n' "$(basename "$0")" \
    "${CURRENT_HINT:-read the output above; docs/guide/troubleshooting.md lists the usual causes}" >&2
  exit "$rc"
}
set -o errtrace
trap on_error ERR

component "setup" "" "make $RUN_DIR and $CACHE_DIR writable, or point HOMECARE_RUN_DIR/HOMECARE_CACHE_DIR elsewhere"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$CACHE_DIR"
component ""

# export_settings [FILE] -> export each KEY=value line of FILE (or stdin), a value the environment
# already has winning. Split at the first '=' only: `IFS='=' read` drops a value's trailing '='
# (a Fernet key's padding), and the services then refuse the key.
export_settings() {
  local line key
  while IFS= read -r line; do
    [ -n "$line" ] && [ "${line#\#}" = "$line" ] || continue
    key=${line%%=*}
    [ -n "${!key:-}" ] || export "$key=${line#*=}"
  done < "${1:-/dev/stdin}"
}

# add_missing_setting FILE KEY VALUE -> append KEY=VALUE to FILE (made mode 600) unless FILE has
# KEY already: generated secrets are made once, and a file from an older checkout gains the keys
# added since (a new client's secret) while keeping every value it has.
add_missing_setting() {
  local file=$1 key=$2 value=$3
  [ -f "$file" ] || (umask 077; : > "$file")
  grep -q "^$key=" "$file" && return 0
  [ ! -s "$file" ] || [ -z "$(tail -c 1 "$file")" ] || echo >> "$file"  # a last line without its newline
  (umask 077; printf '%s=%s\n' "$key" "$value" >> "$file")
}

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
