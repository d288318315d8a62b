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
# The identity provider's demo users (one per role), all with one generated password kept in
# .run/keycloak/secrets.env (mode 600): shown here, once per run of the demo.
while IFS= read -r line; do
  [ "${line%%=*}" = HOMECARE_DEMO_PASSWORD ] && IDP_PASSWORD=${line#*=}
done < <(bash "$ROOT/deploy/keycloak.sh" env)
cat <<MSG

The services are still running:
  console        http://127.0.0.1:${CONSOLE_HTTP_PORT:-8004}/        ("Sign in with Keycloak (demo)", then demo-broker,
                                                 demo-manager, demo-ops or demo-admin with the Keycloak password below)
  provider portal http://127.0.0.1:${CONSOLE_HTTP_PORT:-8004}/portal/sign-in (demo-provider: Bluebell Home Care's admin user)
  brokerage      http://127.0.0.1:${BROKERAGE_HTTP_PORT:-8001}/docs    (package requests, offers, awards)
  providers      http://127.0.0.1:${PROVIDERS_HTTP_PORT:-8002}/docs    (registry, providers' offers)
  notifications  http://127.0.0.1:${NOTIFICATIONS_HTTP_PORT:-8003}/docs    (confirmations)
  reporting      http://127.0.0.1:${REPORTING_HTTP_PORT:-8005}/docs    (KPIs for any period, CSV and Parquet exports)
  Keycloak       http://127.0.0.1:${HOMECARE_KEYCLOAK_PORT:-18080}/realms/homecare (identity provider, development mode)
                 users demo-broker, demo-senior, demo-manager, demo-head, demo-ops, demo-admin, demo-provider (and demo-quality, demo-safeguarding, demo-finance, demo-reviewer);
                 password ${IDP_PASSWORD:-(from your OIDC_ISSUER)}  - the APIs want their access tokens
  Kafka          127.0.0.1:$KAFKA_PORT      (SASL/SCRAM with ACLs; credentials in $RUN_DIR/kafka/credentials.env)
  PostgreSQL     127.0.0.1:$PG_PORT      (database homecare)
Logs: $LOG_DIR     Stop everything: deploy/down.sh
MSG
