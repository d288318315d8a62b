#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, combined broker+controller) on 127.0.0.1, run from the jars
# that Maven resolves from Maven Central (deploy/kafka/pom.xml) - no Docker needed.
#   deploy/kafka.sh start|stop|status|restart|reset|fetch
# Starting twice is harmless. KAFKA_BOOTSTRAP_SERVERS in the environment means "use that cluster",
# and this script then does nothing.
#
# HOMECARE_KAFKA_SECURE=1 starts it with SASL/SCRAM-SHA-512 and ACLs (deploy/kafka/server-sasl.properties):
# the storage is formatted with a SCRAM credential for the administrator (HOMECARE_KAFKA_ADMIN_PASSWORD)
# and for each service (HOMECARE_KAFKA_<SERVICE>_PASSWORD); then `homecare kafka acls` grants each
# service its topics. With HOMECARE_RUN_DIR and the port variables, a second broker runs beside the first.
source "$(dirname "$0")/lib.sh"

KAFKA_DIR="$RUN_DIR/kafka"
LIBS="$CACHE_DIR/kafka/libs"
PID="$KAFKA_DIR/kafka.pid"
LOG="$LOG_DIR/kafka.log"
CONF="$KAFKA_DIR/server.properties"

fetch_jars() {
  if [ ! -f "$LIBS/.complete" ]; then
    log "resolving Kafka jars from Maven Central into $LIBS"
    command -v mvn >/dev/null || { log "mvn is missing (run deploy/setup.sh)"; exit 1; }
    rm -rf "$LIBS"
    mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime
    touch "$LIBS/.complete"
  fi
}

SECURE="${HOMECARE_KAFKA_SECURE:-0}"
TEMPLATE="$ROOT/deploy/kafka/server.properties"
SCRAM_ARGS=()
if [ "$SECURE" = 1 ]; then
  TEMPLATE="$ROOT/deploy/kafka/server-sasl.properties"
  : "${HOMECARE_KAFKA_ADMIN_PASSWORD:?set HOMECARE_KAFKA_ADMIN_PASSWORD (and HOMECARE_KAFKA_<SERVICE>_PASSWORD) for a secured broker}"
  SCRAM_ARGS+=(--add-scram "SCRAM-SHA-512=[name=admin,password=$HOMECARE_KAFKA_ADMIN_PASSWORD]")
  for service in brokerage providers notifications; do
    var="HOMECARE_KAFKA_${service^^}_PASSWORD"
    [ -n "${!var:-}" ] || { log "set $var for a secured broker"; exit 1; }
    SCRAM_ARGS+=(--add-scram "SCRAM-SHA-512=[name=$service,password=${!var}]")
  done
fi

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  sed -e "s#@DATA_DIR@#$KAFKA_DIR/data#" \
      -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" \
      -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
      -e "s#@ADMIN_PASSWORD@#${HOMECARE_KAFKA_ADMIN_PASSWORD:-}#g" \
      "$TEMPLATE" > "$CONF"
  chmod 600 "$CONF"  # holds the administrator's password when secured
}

JAVA_OPTS=(-Xms256m "-Xmx${KAFKA_HEAP:-768m}" -XX:+UseG1GC
  "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.yaml" "-Dkafka.logs.dir=$LOG_DIR" -cp "$LIBS/*")
java_run() { java "${JAVA_OPTS[@]}" "$@"; }

start() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then log "KAFKA_BOOTSTRAP_SERVERS is set; using $KAFKA_BOOTSTRAP_SERVERS"; return; fi
  if pid_alive "$PID"; then log "Kafka already running (pid $(cat "$PID")) on 127.0.0.1:$KAFKA_PORT"; return; fi
  if port_taken "$KAFKA_PORT"; then log "port $KAFKA_PORT is taken by another process; stop it or set HOMECARE_KAFKA_PORT"; exit 1; fi
  fetch_jars
  write_config
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    log "formatting KRaft storage"
    java_run kafka.tools.StorageTool format --standalone -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$CONF" \
      "${SCRAM_ARGS[@]}" >>"$LOG" 2>&1
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT (log: $LOG)"
  local log_from; log_from=$(( $( [ -f "$LOG" ] && stat -c %s "$LOG" || echo 0) + 1 ))
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$CONF" >>"$LOG" 2>&1 &
  echo $! > "$PID"
  if ! wait_port "$KAFKA_PORT" 90; then log "Kafka did not open its port; see $LOG"; tail -30 "$LOG" >&2; exit 1; fi
  # The port opens before the broker has joined its own controller quorum; wait for the log line.
  local deadline=$((SECONDS + 60))
  until tail -c +"$log_from" "$LOG" | grep -q "Kafka Server started"; do
    [ $SECONDS -lt $deadline ] || { log "Kafka did not report started; see $LOG"; exit 1; }
    sleep 0.5
  done
  log "Kafka ready"
}

case "${1:-start}" in
  fetch) fetch_jars ;;
  start) start ;;
  stop) stop_pid "$PID" kafka 60 ;;
  restart) stop_pid "$PID" kafka 60; start ;;
  status) if pid_alive "$PID"; then echo "kafka running (pid $(cat "$PID")) 127.0.0.1:$KAFKA_PORT"; else echo "kafka stopped"; exit 1; fi ;;
  reset) stop_pid "$PID" kafka 60; rm -rf "$KAFKA_DIR" ;;
  *) echo "usage: $0 start|stop|status|restart|reset" >&2; exit 2 ;;
esac
