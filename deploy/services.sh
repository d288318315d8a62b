#!/usr/bin/env bash
# The four services and the web console as background processes (pid files in .run/, logs in .run/logs/).
#   deploy/services.sh start|stop|status|restart [brokerage|providers|notifications|reporting|console]
source "$(dirname "$0")/lib.sh"

ALL=(providers brokerage notifications reporting console)
declare -A PORT=([brokerage]="${BROKERAGE_HTTP_PORT:-8001}" [providers]="${PROVIDERS_HTTP_PORT:-8002}" [notifications]="${NOTIFICATIONS_HTTP_PORT:-8003}" [console]="${CONSOLE_HTTP_PORT:-8004}" [reporting]="${REPORTING_HTTP_PORT:-8005}")
# Each one's internal listener (health, readiness, metrics without a token; never published):
# <SERVICE>_INTERNAL_PORT, default its API port + 1000 (services/runtime/settings.py).
declare -A INTERNAL_PORT
for s in "${!PORT[@]}"; do var="${s^^}_INTERNAL_PORT"; INTERNAL_PORT[$s]="${!var:-$((PORT[$s] + 1000))}"; done
# The console calls the services' APIs where this script starts them. It is served over plain HTTP
# on loopback here, so its cookies cannot be Secure-only (behind an HTTPS proxy, leave this unset).
export CONSOLE_COOKIE_SECURE="${CONSOLE_COOKIE_SECURE:-false}"
export CONSOLE_BROKERAGE_URL="${CONSOLE_BROKERAGE_URL:-http://127.0.0.1:${PORT[brokerage]}}"
export CONSOLE_PROVIDERS_URL="${CONSOLE_PROVIDERS_URL:-http://127.0.0.1:${PORT[providers]}}"
export CONSOLE_NOTIFICATIONS_URL="${CONSOLE_NOTIFICATIONS_URL:-http://127.0.0.1:${PORT[notifications]}}"
export CONSOLE_REPORTING_URL="${CONSOLE_REPORTING_URL:-http://127.0.0.1:${PORT[reporting]}}"
# Staff sign in to the console through the identity provider (below), which sends them back to
# this address; the button names it. The console's own password accounts stay off unless
# CONSOLE_LOCAL_ACCOUNTS=true (an installation without an identity provider).
export CONSOLE_PUBLIC_URL="${CONSOLE_PUBLIC_URL:-http://127.0.0.1:${PORT[console]}}"
[ -n "${OIDC_ISSUER:-}" ] || export CONSOLE_OIDC_PROVIDER_NAME="${CONSOLE_OIDC_PROVIDER_NAME:-Keycloak (demo)}"
PY="$ROOT/.venv/bin/python"

# Identity: every API validates access tokens from OIDC_ISSUER; the providers service and the
# console get their own tokens with client credentials. OIDC_ISSUER in the environment (the
# council's issuer, with <SERVICE>_OIDC_CLIENT_ID/_SECRET) wins; else the local Keycloak's
# settings and generated secrets (deploy/keycloak.sh, started by deploy/up.sh).
if [ -z "${OIDC_ISSUER:-}" ]; then
  export_settings < <(bash "$ROOT/deploy/keycloak.sh" env)
fi
# The key sealing secrets at rest (webhook signing secrets: services/runtime/sealing.py), made
# once per installation (random), kept in .run/secrets.env (mode 600); values in the environment win.
SECRETS="$RUN_DIR/secrets.env"
add_missing_setting "$SECRETS" SECRETS_KEYS "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')"
export_settings "$SECRETS"
export PROVIDERS_BROKERAGE_URL="${PROVIDERS_BROKERAGE_URL:-http://127.0.0.1:${BROKERAGE_HTTP_PORT:-8001}}"
# The provider API where providers reach it: the award message's link to the person's details.
export NOTIFICATIONS_PROVIDERS_URL="${NOTIFICATIONS_PROVIDERS_URL:-http://127.0.0.1:${PORT[providers]}}"

start_one() {
  local name=$1 pid="$RUN_DIR/$1.pid"
  if pid_alive "$pid"; then log "$name already running (pid $(cat "$pid"))"; return; fi
  local port
  for port in "${PORT[$name]}" "${INTERNAL_PORT[$name]}"; do
    if port_taken "$port"; then
      fail "port $port, $name's, is taken by another process" \
        "stop that process, or choose other ports: ${name^^}_HTTP_PORT and ${name^^}_INTERNAL_PORT (the same in every command)" none
    fi
  done
  log "starting $name on http://127.0.0.1:${PORT[$name]} (log: $LOG_DIR/$name.log)"
  # `cd` first, on its own: `cd && cmd &` would background a subshell, and $! would be its pid.
  cd "$ROOT"
  LOG_FORMAT="${LOG_FORMAT:-json}" nohup "$PY" -m "services.$name" >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! > "$pid"
}

wait_ready() {
  local name=$1 deadline=$((SECONDS + ${2:-120}))
  component "$name" "$LOG_DIR/$name.log" "read the log lines above: a port taken (set ${name^^}_HTTP_PORT or ${name^^}_INTERNAL_PORT), Kafka or PostgreSQL away (bash deploy/up.sh starts them), Kafka refusing the service (bash deploy/up.sh grants the ACLs); docs/guide/troubleshooting.md"
  until curl -fsS "http://127.0.0.1:${INTERNAL_PORT[$name]}/health/ready" >/dev/null 2>&1; do
    pid_alive "$RUN_DIR/$name.pid" || fail "$name exited while starting"
    [ $SECONDS -lt $deadline ] || fail "$name was not ready within ${2:-120} s"
    sleep 0.5
  done
  log "$name ready"
}

targets=("${@:2}")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
case "${1:-start}" in
  start) for s in "${targets[@]}"; do start_one "$s"; done; for s in "${targets[@]}"; do wait_ready "$s"; done ;;
  stop) for s in "${targets[@]}"; do stop_pid "$RUN_DIR/$s.pid" "$s" 30; done ;;
  restart) for s in "${targets[@]}"; do stop_pid "$RUN_DIR/$s.pid" "$s" 30; start_one "$s"; done; for s in "${targets[@]}"; do wait_ready "$s"; done ;;
  status) rc=0; for s in "${targets[@]}"; do if pid_alive "$RUN_DIR/$s.pid"; then echo "$s running (pid $(cat "$RUN_DIR/$s.pid")) http://127.0.0.1:${PORT[$s]} (internal: ${INTERNAL_PORT[$s]})"; else echo "$s stopped"; rc=1; fi; done; exit $rc ;;
  *) echo "usage: $0 start|stop|status|restart [service...]" >&2; exit 2 ;;
esac
