#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, combined broker+controller) on 127.0.0.1, run from the jars
# that Maven resolves from Maven Central (deploy/kafka/pom.xml) - no Docker needed.
#   deploy/kafka.sh start|stop|status|restart|reset|fetch|rotate PRINCIPAL
# Starting twice is harmless. KAFKA_BOOTSTRAP_SERVERS in the environment means "use that cluster",
# and this script then does nothing.
#
# Closed by default (deploy/kafka/server-sasl.properties, docs/guide/kafka-security.md): clients
# sign in with SASL/SCRAM-SHA-512 and may do only what an ACL grants them. On first start the
# script makes a password for the administrator and for each principal (brokerage, providers,
# notifications, console, reporting, ops) and keeps them in .run/kafka/credentials.env (mode 600;
# HOMECARE_KAFKA_<NAME>_PASSWORD in the environment chooses one instead); the storage is
# formatted with their SCRAM credentials. `homecare kafka acls` (deploy/up.sh runs it) then
# creates the topics and each principal's ACLs. HOMECARE_KAFKA_SECURE=0 runs the old open
# PLAINTEXT broker (development only). With HOMECARE_RUN_DIR and the port variables, a second
# broker runs beside the first.
source "$(dirname "$0")/lib.sh"

KAFKA_DIR="$RUN_DIR/kafka"
POM="$ROOT/deploy/kafka/pom.xml"
# One folder per version of the POM: a changed dependency list is resolved afresh, and a broker
# already running from the old folder is not disturbed.
LIBS="$CACHE_DIR/kafka/libs-$(sha256sum "$POM" | cut -c1-12)"
PID="$KAFKA_DIR/kafka.pid"
LOG="$LOG_DIR/kafka.log"
CONF="$KAFKA_DIR/server.properties"
CREDENTIALS="$KAFKA_DIR/credentials.env"
PROTOCOL_FILE="$KAFKA_DIR/protocol"  # what clients must speak to this broker (read by services/runtime/settings.py)
PRINCIPALS=(admin brokerage providers notifications console reporting ops)
SECURE="${HOMECARE_KAFKA_SECURE:-1}"
component "Kafka" "$LOG" "read the log lines above; docs/guide/troubleshooting.md#kafka lists the usual causes (a port taken: set HOMECARE_KAFKA_PORT/HOMECARE_KAFKA_CONTROLLER_PORT; broken storage: bash deploy/kafka.sh reset, which deletes the local broker's events)"

fetch_jars() {
  if [ ! -f "$LIBS/.complete" ]; then
    log "resolving Kafka jars from Maven Central into $LIBS"
    command -v mvn >/dev/null || fail "mvn is missing" "run: bash deploy/setup.sh"
    rm -rf "$LIBS"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$LOG_DIR/maven.log" 2>&1 ||
      fail "Maven could not resolve Kafka's jars" "check the network access to Maven Central (repo1.maven.org), then run again" "$LOG_DIR/maven.log"
    touch "$LIBS/.complete"
  fi
}

new_password() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }

# The principals' passwords: kept from the first start; made now for a new broker.
load_credentials() {
  if [ ! -f "$CREDENTIALS" ]; then
    (umask 077
     {
       echo "# SASL/SCRAM credentials of the local Kafka broker (deploy/kafka.sh). Secret: mode 600, never print it."
       echo "HOMECARE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
       for name in "${PRINCIPALS[@]}"; do
         var="HOMECARE_KAFKA_${name^^}_PASSWORD"
         echo "$var=${!var:-$(new_password)}"
       done
     } > "$CREDENTIALS.tmp" && mv "$CREDENTIALS.tmp" "$CREDENTIALS")
  fi
  chmod 600 "$CREDENTIALS"
  # The address the processes match it by: this start's port (HOMECARE_KAFKA_PORT may have changed).
  (umask 077
   while IFS= read -r line; do
     if [[ $line == HOMECARE_KAFKA_BOOTSTRAP=* ]]; then echo "HOMECARE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"; else printf '%s\n' "$line"; fi
   done < "$CREDENTIALS" > "$CREDENTIALS.tmp" && mv "$CREDENTIALS.tmp" "$CREDENTIALS")
  while IFS= read -r line; do  # split at the first '=' only (IFS='=' drops a trailing '=')
    key=${line%%=*}; value=${line#*=}
    case "$key" in HOMECARE_KAFKA_*_PASSWORD) [ -n "${!key:-}" ] || printf -v "$key" '%s' "$value" ;; esac
  done < "$CREDENTIALS"
}

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  local template="$ROOT/deploy/kafka/server.properties"
  [ "$SECURE" != 1 ] || template="$ROOT/deploy/kafka/server-sasl.properties"
  # Filled in by bash itself, not sed: a password on a command line would show in `ps`.
  local text; text=$(<"$template")
  text=${text//@DATA_DIR@/"$KAFKA_DIR/data"}
  text=${text//@KAFKA_PORT@/"$KAFKA_PORT"}
  text=${text//@CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}
  text=${text//@ADMIN_PASSWORD@/"${HOMECARE_KAFKA_ADMIN_PASSWORD:-}"}
  (umask 077; printf '%s\n' "$text" > "$CONF")
  chmod 600 "$CONF"  # holds the administrator's password when secured
}

JAVA_OPTS=(-Xms256m "-Xmx${KAFKA_HEAP:-768m}" -XX:+UseG1GC
  "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.yaml" "-Dkafka.logs.dir=$LOG_DIR" -cp "$LIBS/*")

# Format the KRaft storage; when secured, with a SCRAM credential per principal. The arguments
# go through a java @argfile (mode 600) so that no password is on a command line `ps` shows.
format_storage() {
  local args="$KAFKA_DIR/format.args" cluster_id
  cluster_id=$(java "${JAVA_OPTS[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG")
  (umask 077
   {
     echo "kafka.tools.StorageTool format --standalone -t $cluster_id -c \"$CONF\""
     if [ "$SECURE" = 1 ]; then
       for name in "${PRINCIPALS[@]}"; do
         var="HOMECARE_KAFKA_${name^^}_PASSWORD"
         echo "--add-scram \"SCRAM-SHA-512=[name=$name,password=${!var}]\""
       done
     fi
   } > "$args")
  log "formatting KRaft storage"
  local rc=0
  java "${JAVA_OPTS[@]}" "@$args" >>"$LOG" 2>&1 || rc=$?
  rm -f "$args"
  [ $rc -eq 0 ] || { rm -rf "$KAFKA_DIR/data"; fail "formatting Kafka's storage failed"; }
}

start() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then log "KAFKA_BOOTSTRAP_SERVERS is set; using $KAFKA_BOOTSTRAP_SERVERS"; return; fi
  if pid_alive "$PID"; then log "Kafka already running (pid $(cat "$PID")) on 127.0.0.1:$KAFKA_PORT"; return; fi
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_taken "$port"; then
      fail "port $port is taken by another process" \
        "stop that process, or choose other ports: HOMECARE_KAFKA_PORT=<port> HOMECARE_KAFKA_CONTROLLER_PORT=<port> (the same in every command)" none
    fi
  done
  command -v java >/dev/null || fail "java is missing" "run: bash deploy/setup.sh"
  fetch_jars
  mkdir -p "$KAFKA_DIR"
  if [ "$SECURE" = 1 ]; then
    if [ -f "$KAFKA_DIR/data/meta.properties" ] && [ ! -f "$CREDENTIALS" ]; then
      fail "this broker's storage ($KAFKA_DIR/data) was made before Kafka was secured by default: it has no SCRAM credentials" \
        "bash deploy/kafka.sh reset (deletes the local broker's events), then start again; or keep it open with HOMECARE_KAFKA_SECURE=0 (development only)" none
    fi
    load_credentials
    echo SASL_PLAINTEXT > "$PROTOCOL_FILE"
  else
    echo PLAINTEXT > "$PROTOCOL_FILE"
  fi
  write_config
  [ -f "$KAFKA_DIR/data/meta.properties" ] || format_storage
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT ($( [ "$SECURE" = 1 ] && echo "SASL/SCRAM with ACLs" || echo "PLAINTEXT, open" ); log: $LOG)"
  local log_from; log_from=$(( $( [ -f "$LOG" ] && stat -c %s "$LOG" || echo 0) + 1 ))
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$CONF" >>"$LOG" 2>&1 &
  echo $! > "$PID"
  # The port opens before the broker has joined its own controller quorum; wait for the log line.
  local deadline=$((SECONDS + 120))
  until tail -c +"$log_from" "$LOG" | grep -q "Kafka Server started"; do
    pid_alive "$PID" || { rm -f "$PID"; fail "Kafka exited while starting"; }
    [ $SECONDS -lt $deadline ] || fail "Kafka did not report started within 120 s"
    sleep 0.5
  done
  log "Kafka ready"
}

# rotate PRINCIPAL: a new SCRAM password for PRINCIPAL on the running broker (as the administrator,
# with Kafka's ConfigCommand), kept in the credentials file. Connections already signed in stay;
# restart the principal's process to use the new one. HOMECARE_KAFKA_<PRINCIPAL>_PASSWORD chooses it.
rotate() {
  local name=${1:-} var args="$KAFKA_DIR/rotate.args" client="$KAFKA_DIR/admin-client.properties"
  [[ " ${PRINCIPALS[*]} " == *" $name "* ]] || fail "unknown principal '${name}'" "one of: ${PRINCIPALS[*]}" none
  [ "$SECURE" = 1 ] && [ -f "$CREDENTIALS" ] || fail "this broker is not secured (no $CREDENTIALS)" "nothing to rotate" none
  pid_alive "$PID" || fail "Kafka is not running" "bash deploy/kafka.sh start, then rotate" none
  var="HOMECARE_KAFKA_${name^^}_PASSWORD"
  local new="${!var:-$(new_password)}" old_admin
  old_admin=$(sed -n 's/^HOMECARE_KAFKA_ADMIN_PASSWORD=//p' "$CREDENTIALS")
  (umask 077
   printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
     "$old_admin" > "$client"
   echo "kafka.admin.ConfigCommand --bootstrap-server 127.0.0.1:$KAFKA_PORT --command-config \"$client\" --alter --entity-type users --entity-name $name --add-config \"SCRAM-SHA-512=[password=$new]\"" > "$args")
  local rc=0
  java "${JAVA_OPTS[@]}" "@$args" >>"$LOG" 2>&1 || rc=$?
  rm -f "$args" "$client"
  [ $rc -eq 0 ] || fail "Kafka refused the new credential for $name"
  (umask 077
   while IFS= read -r line; do
     if [[ $line == "$var="* ]]; then printf '%s=%s\n' "$var" "$new"; else printf '%s\n' "$line"; fi
   done < "$CREDENTIALS" > "$CREDENTIALS.tmp" && mv "$CREDENTIALS.tmp" "$CREDENTIALS")
  if [ "$name" = admin ]; then
    log "rotated admin's password; the broker signs in as admin too: restarting it"
    HOMECARE_KAFKA_ADMIN_PASSWORD=$new
    stop_pid "$PID" kafka 60; start
  else
    log "rotated $name's password; restart its process to use it (e.g. bash deploy/services.sh restart $name)"
  fi
}

case "${1:-start}" in
  fetch) fetch_jars ;;
  rotate) rotate "${2:-}" ;;
  start) start ;;
  stop) stop_pid "$PID" kafka 60 ;;
  restart) stop_pid "$PID" kafka 60; start ;;
  status) if pid_alive "$PID"; then echo "kafka running (pid $(cat "$PID")) 127.0.0.1:$KAFKA_PORT"; else echo "kafka stopped"; exit 1; fi ;;
  reset) stop_pid "$PID" kafka 60; rm -rf "$KAFKA_DIR" ;;
  *) echo "usage: $0 start|stop|status|restart|reset|fetch|rotate PRINCIPAL" >&2; exit 2 ;;
esac
