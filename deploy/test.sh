#!/usr/bin/env bash
# The README's second command: set everything up, start Kafka and PostgreSQL, run every test.
# Extra arguments go to pytest (e.g. deploy/test.sh tests/unit -x).
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/setup.sh"
bash "$ROOT/deploy/keycloak.sh" start &
keycloak=$!
bash "$ROOT/deploy/kafka.sh" start
bash "$ROOT/deploy/postgres.sh" start
wait $keycloak || { log "Keycloak did not start"; exit 1; }
cd "$ROOT"
set +e
uv run --frozen pytest -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
[ $rc -eq 5 ] && { log "no tests were collected"; exit 1; }
exit $rc
