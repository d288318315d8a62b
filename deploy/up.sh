#!/usr/bin/env bash
# Start the whole system locally: Keycloak (the identity provider), Kafka, PostgreSQL, the
# database roles and schemas, and the four services and the web console. Leaves everything
# running; deploy/down.sh stops it.
source "$(dirname "$0")/lib.sh"
# Keycloak starts slowly (a minute or more on 2 cores): in the background, beside Kafka and PostgreSQL.
bash "$ROOT/deploy/keycloak.sh" start &
keycloak=$!
bash "$ROOT/deploy/kafka.sh" start
bash "$ROOT/deploy/postgres.sh" start
component "keycloak" "$LOG_DIR/keycloak.log" "read the Keycloak log above; bash deploy/keycloak.sh status; docs/guide/troubleshooting.md"
wait $keycloak || fail "Keycloak did not start"
component "provisioning" "" "check that Kafka and PostgreSQL are running (bash deploy/kafka.sh status; bash deploy/postgres.sh status) and read the error above; docs/guide/troubleshooting.md"
(cd "$ROOT" && uv run --frozen -q homecare db provision)
# On the closed broker the services may not create topics: the administrator makes them and
# grants each principal its rights (docs/guide/kafka-security.md).
(cd "$ROOT" && uv run --frozen -q homecare kafka acls)
bash "$ROOT/deploy/services.sh" start
