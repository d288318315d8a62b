#!/usr/bin/env bash
# Start the whole system locally: Kafka, PostgreSQL, the database roles and schemas, and the
# three services and the web console. Leaves everything running; deploy/down.sh stops it.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/kafka.sh" start
bash "$ROOT/deploy/postgres.sh" start
(cd "$ROOT" && uv run --frozen -q homecare db provision)
bash "$ROOT/deploy/services.sh" start
