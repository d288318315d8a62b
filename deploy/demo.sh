#!/usr/bin/env bash
# The README's first command: set everything up, start the system, place a batch of synthetic
# packages end to end through the HTTP API, print the summary, and leave the services running.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/setup.sh"
bash "$ROOT/deploy/up.sh"
(cd "$ROOT" && uv run --frozen homecare demo --packages "${DEMO_PACKAGES:-60}")
cat <<MSG

The services are still running:
  brokerage      http://127.0.0.1:8001/docs    (package requests, offers, awards)
  providers      http://127.0.0.1:8002/docs    (registry, providers' offers)
  notifications  http://127.0.0.1:8003/docs    (confirmations)
  Kafka          127.0.0.1:$KAFKA_PORT      PostgreSQL  127.0.0.1:$PG_PORT (database homecare)
Logs: $LOG_DIR     Stop everything: deploy/down.sh
MSG
