#!/usr/bin/env bash
# The README's first command: set everything up, start the system, place a batch of synthetic
# packages end to end through the HTTP API, print the summary, and leave the services running.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/setup.sh"
bash "$ROOT/deploy/up.sh"
component "demo" "" "the services' logs are in $LOG_DIR; bash deploy/services.sh status shows which are running; docs/guide/troubleshooting.md"
(cd "$ROOT" && uv run --frozen homecare demo --packages "${DEMO_PACKAGES:-60}" \
  --brokerage "http://127.0.0.1:${BROKERAGE_HTTP_PORT:-8001}" --providers "http://127.0.0.1:${PROVIDERS_HTTP_PORT:-8002}" \
  --notifications "http://127.0.0.1:${NOTIFICATIONS_HTTP_PORT:-8003}")
# Console accounts for the demo, one per role; the password is printed below (set
# DEMO_STAFF_PASSWORD to choose it). Accounts made by an earlier run are left as they were.
DEMO_STAFF_PASSWORD="${DEMO_STAFF_PASSWORD:-demo-$(head -c 9 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')}"
for role in broker ops admin; do
  (cd "$ROOT" && HOMECARE_STAFF_PASSWORD="$DEMO_STAFF_PASSWORD" uv run --frozen -q homecare staff add "demo-$role" \
     --name "Demo $role" --role "$role" --exist-ok)
done
cat <<MSG

The services are still running:
  console        http://127.0.0.1:${CONSOLE_HTTP_PORT:-8004}/        (sign in as demo-broker, demo-ops or demo-admin;
                                                password for accounts made now: $DEMO_STAFF_PASSWORD)
  brokerage      http://127.0.0.1:${BROKERAGE_HTTP_PORT:-8001}/docs    (package requests, offers, awards)
  providers      http://127.0.0.1:${PROVIDERS_HTTP_PORT:-8002}/docs    (registry, providers' offers)
  notifications  http://127.0.0.1:${NOTIFICATIONS_HTTP_PORT:-8003}/docs    (confirmations)
  Kafka          127.0.0.1:$KAFKA_PORT      (SASL/SCRAM with ACLs; credentials in $RUN_DIR/kafka/credentials.env)
  PostgreSQL     127.0.0.1:$PG_PORT      (database homecare)
Logs: $LOG_DIR     Stop everything: deploy/down.sh
MSG
