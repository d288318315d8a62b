#!/usr/bin/env bash
# The README's second command: set everything up, start Keycloak, Kafka and PostgreSQL, run every test.
# Extra arguments go to pytest (e.g. deploy/test.sh tests/unit -x).
# It leaves the machine as it found it: what it started it stops when it ends, however it ends (a
# failed start included); what was already running (the demo, deploy/up.sh) it uses and leaves
# running. HOMECARE_KEEP_RUNNING=1 keeps what it started, for quicker runs after it.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/setup.sh"

STARTED=()
for part in keycloak kafka postgres; do
  bash "$ROOT/deploy/$part.sh" status >/dev/null 2>&1 || STARTED+=("$part")
done
stop_started() {
  local rc=$?
  trap - ERR  # the run's outcome is already decided; a part that will not stop says so below
  if [ "${HOMECARE_KEEP_RUNNING:-0}" = 1 ]; then
    [ ${#STARTED[@]} -eq 0 ] || log "left running (HOMECARE_KEEP_RUNNING=1): ${STARTED[*]}"
    return $rc
  fi
  for part in "${STARTED[@]}"; do
    bash "$ROOT/deploy/$part.sh" stop || log "could not stop $part: see the lines above"
  done
  return $rc
}
trap stop_started EXIT

bash "$ROOT/deploy/keycloak.sh" start &
keycloak=$!
bash "$ROOT/deploy/kafka.sh" start
bash "$ROOT/deploy/postgres.sh" start
wait $keycloak || fail "Keycloak did not start" "read the Keycloak log above (bash deploy/keycloak.sh status); docs/guide/troubleshooting.md" "$LOG_DIR/keycloak.log"
cd "$ROOT"
# Failing tests say why themselves: not the deploy scripts' failure report (`||` keeps the ERR trap off).
rc=0
uv run --frozen pytest -p no:cacheprovider "$@" || rc=$?
# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
[ $rc -eq 5 ] && { log "no tests were collected"; exit 1; }
exit $rc
