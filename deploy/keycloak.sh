#!/usr/bin/env bash
# Keycloak, the local OpenID Connect identity provider, on 127.0.0.1, run from its server
# distribution on Maven Central (deploy/keycloak/pom.xml) - no Docker needed. Like Kafka.
#   deploy/keycloak.sh fetch|start|stop|status|restart|reset|env
# It runs in development mode (`kc.sh start-dev`: plain HTTP on loopback, its own H2 database
# file under .run/keycloak/) - for this machine's demo and tests only. A council points the
# services at its own issuer instead (OIDC_ISSUER: Entra ID, or a production Keycloak), and then
# this script is not used: OIDC_ISSUER in the environment means "use that issuer" and this script
# does nothing.
#
# The realm is imported from deploy/keycloak/realm-homecare.json on the first start. Its secrets
# are not in the repository: the clients' secrets, the demo users' password and Keycloak's own
# administrator's password are generated on the first start into .run/keycloak/secrets.env
# (mode 600; values already in the environment win) and substituted into the realm at import.
# `deploy/keycloak.sh env` prints the services' settings (OIDC_ISSUER, client ids and secrets).
# Keycloak needs Java 21+: KEYCLOAK_JAVA_HOME, else a JDK 25 or 21 under /usr/lib/jvm (the
# system's default Java, Kafka's, is left alone).
source "$(dirname "$0")/lib.sh"

KC_PORT="${HOMECARE_KEYCLOAK_PORT:-18080}"
KC_VERSION=$(sed -n 's#.*<keycloak.version>\(.*\)</keycloak.version>.*#\1#p' "$ROOT/deploy/keycloak/pom.xml")
DIST="$CACHE_DIR/keycloak/keycloak-$KC_VERSION"
KC_DIR="$RUN_DIR/keycloak"
SERVER="$KC_DIR/server"  # a copy of the distribution: Keycloak keeps its data and build under its home
PID="$KC_DIR/keycloak.pid"
LOG="$LOG_DIR/keycloak.log"
SECRETS="$KC_DIR/secrets.env"
ISSUER="http://127.0.0.1:$KC_PORT/realms/homecare"

fetch() {
  if [ ! -f "$DIST/.complete" ]; then
    log "resolving Keycloak $KC_VERSION from Maven Central into $CACHE_DIR/keycloak"
    command -v mvn >/dev/null || { log "mvn is missing (run deploy/setup.sh)"; exit 1; }
    rm -rf "$DIST"
    mvn -q -B -f "$ROOT/deploy/keycloak/pom.xml" dependency:unpack -Dkeycloak.dir="$CACHE_DIR/keycloak"
    rm -rf "$ROOT/deploy/keycloak/target"
    touch "$DIST/.complete"
  fi
}

java_home() {
  if [ -n "${KEYCLOAK_JAVA_HOME:-}" ]; then echo "$KEYCLOAK_JAVA_HOME"; return; fi
  local candidate
  for candidate in /usr/lib/jvm/*25* /usr/lib/jvm/*21*; do
    [ -x "$candidate/bin/java" ] && { echo "$candidate"; return; }
  done
  log "Keycloak needs Java 21+: none under /usr/lib/jvm (run deploy/setup.sh, or set KEYCLOAK_JAVA_HOME)"
  exit 1
}

secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }

# The generated secrets, each made once per run directory; values in the environment win. Every
# client secret the realm substitutes (${HOMECARE_KC_<CLIENT>_SECRET}) has one, so a client added
# to the realm gets its secret on a machine whose secrets.env predates it.
load_secrets() {
  mkdir -p "$KC_DIR"
  local key
  for key in $(grep -o '\${HOMECARE_KC_[A-Z_]*_SECRET}' "$ROOT/deploy/keycloak/realm-homecare.json" | tr -d '${}' | sort -u); do
    add_missing_setting "$SECRETS" "$key" "$(secret)"
  done
  add_missing_setting "$SECRETS" HOMECARE_DEMO_PASSWORD "demo-$(secret | head -c 12)"
  add_missing_setting "$SECRETS" KC_BOOTSTRAP_ADMIN_PASSWORD "$(secret)"
  export_settings "$SECRETS"
}

ready() { curl -fsS "$ISSUER/.well-known/openid-configuration" >/dev/null 2>&1; }

start() {
  if [ -n "${OIDC_ISSUER:-}" ]; then log "OIDC_ISSUER is set; using $OIDC_ISSUER"; return; fi
  if pid_alive "$PID"; then
    log "Keycloak already running (pid $(cat "$PID")) at $ISSUER"
    # Left running (others may be using it), but said: its realm lacks what the repository's has.
    [ "$(cat "$KC_DIR/realm.sha256" 2>/dev/null)" = "$(sha256sum "$ROOT/deploy/keycloak/realm-homecare.json" | cut -d' ' -f1)" ] ||
      log "warning: the realm in deploy/keycloak/ changed since this server imported it (new clients or audiences are missing); bash deploy/keycloak.sh restart imports it again"
    return
  fi
  if port_taken "$KC_PORT"; then log "port $KC_PORT is taken by another process; stop it or set HOMECARE_KEYCLOAK_PORT"; exit 1; fi
  fetch
  load_secrets
  local jh; jh=$(java_home)
  if [ ! -f "$SERVER/.complete" ]; then
    rm -rf "$SERVER"
    cp -a "$DIST" "$SERVER"
    touch "$SERVER/.complete"
  fi
  mkdir -p "$SERVER/data/import"
  cp "$ROOT/deploy/keycloak/realm-homecare.json" "$SERVER/data/import/"
  # --import-realm skips a realm that exists: when the repository's realm changed since this
  # server imported it (new clients, redirect URIs, mappers), its development database goes, so
  # the new realm is imported (development data only: demo users and sessions).
  local realm_hash; realm_hash=$(sha256sum "$ROOT/deploy/keycloak/realm-homecare.json" | cut -d' ' -f1)
  if [ -d "$SERVER/data/h2" ] && [ "$(cat "$KC_DIR/realm.sha256" 2>/dev/null)" != "$realm_hash" ]; then
    log "the realm in deploy/keycloak/ changed since it was imported: importing it again (development database reset)"
    rm -rf "$SERVER/data/h2"
  fi
  echo "$realm_hash" > "$KC_DIR/realm.sha256"
  log "starting Keycloak $KC_VERSION (development mode) at $ISSUER (log: $LOG)"
  local log_from; log_from=$(( $( [ -f "$LOG" ] && stat -c %s "$LOG" || echo 0) + 1 ))
  # setsid: its own process group, so stopping it never touches the caller's.
  JAVA_HOME="$jh" KC_BOOTSTRAP_ADMIN_USERNAME=admin JAVA_OPTS_KC_HEAP="-Xms128m -Xmx${KEYCLOAK_HEAP:-640m}" \
    nohup setsid bash "$SERVER/bin/kc.sh" start-dev \
      --http-host=127.0.0.1 --http-port="$KC_PORT" --hostname-strict=false \
      --import-realm --log-console-color=false >>"$LOG" 2>&1 &
  echo $! > "$PID"
  local deadline=$((SECONDS + ${KEYCLOAK_START_TIMEOUT:-600}))
  until ready; do
    if ! pid_alive "$PID"; then log "Keycloak exited; last lines of $LOG:"; tail -c +"$log_from" "$LOG" | tail -40 >&2; rm -f "$PID"; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then log "Keycloak not ready in time; last lines of $LOG:"; tail -c +"$log_from" "$LOG" | tail -40 >&2; exit 1; fi
    sleep 1
  done
  log "Keycloak ready: issuer $ISSUER"
}

# The settings the services, the CLI and the tests need, as shell assignments.
print_env() {
  load_secrets
  cat <<ENV
OIDC_ISSUER=$ISSUER
PROVIDERS_OIDC_CLIENT_ID=providers
PROVIDERS_OIDC_CLIENT_SECRET=$HOMECARE_KC_PROVIDERS_SECRET
BROKERAGE_OIDC_CLIENT_ID=brokerage
BROKERAGE_OIDC_CLIENT_SECRET=$HOMECARE_KC_BROKERAGE_SECRET
NOTIFICATIONS_OIDC_CLIENT_ID=notifications
NOTIFICATIONS_OIDC_CLIENT_SECRET=$HOMECARE_KC_NOTIFICATIONS_SECRET
CONSOLE_OIDC_CLIENT_ID=console
CONSOLE_OIDC_CLIENT_SECRET=$HOMECARE_KC_CONSOLE_SECRET
HOMECARE_OIDC_CLI_CLIENT_ID=homecare-cli
HOMECARE_DEMO_PASSWORD=$HOMECARE_DEMO_PASSWORD
ENV
}

stop() {
  # kc.sh execs java, so the pid is Keycloak's JVM; its group is its own (setsid).
  stop_pid "$PID" keycloak 60
}

case "${1:-start}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if pid_alive "$PID"; then echo "keycloak running (pid $(cat "$PID")) $ISSUER"; else echo "keycloak stopped"; exit 1; fi ;;
  reset) stop; rm -rf "$KC_DIR" ;;
  env) print_env ;;
  *) echo "usage: $0 fetch|start|stop|status|restart|reset|env" >&2; exit 2 ;;
esac
