#!/usr/bin/env bash
# Stop the services, Kafka, PostgreSQL and Keycloak started by deploy/up.sh. Their data is kept: in
# .run/, except a PostgreSQL cluster the postgres user could not keep there (see deploy/postgres.sh:
# .run/postgres/location says where). `deploy/kafka.sh reset`, `deploy/postgres.sh reset` and
# `deploy/keycloak.sh reset` delete it.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/deploy/services.sh" stop
bash "$ROOT/deploy/kafka.sh" stop
bash "$ROOT/deploy/postgres.sh" stop
bash "$ROOT/deploy/keycloak.sh" stop
