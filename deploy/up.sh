#!/usr/bin/env bash
# Start the whole system locally: Keycloak (the identity provider), Kafka, PostgreSQL, the
# database roles and schemas, and the three services and the web console. Leaves everything
# running; deploy/down.sh stops it.
source "$(dirname "$0")/lib.sh"
# Keycloak starts slowly (a minute or more on 2 cores): in the background, beside Kafka and PostgreSQL.
bash "$ROOT/deploy/keycloak.sh" start &
keycloak=$!
bash "$ROOT/deploy/kafka.sh" start
bash "$ROOT/deploy/postgres.sh" start
wait $keycloak || { log "Keycloak did not start"; exit 1; }
(cd "$ROOT" && uv run --frozen -q homecare db provision)
bash "$ROOT/deploy/services.sh" start
