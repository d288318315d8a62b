#!/usr/bin/env bash
# docker-compose's Kafka (apache/kafka image): the same closed broker as deploy/kafka.sh -
# SASL/SCRAM-SHA-512 for clients, SASL/PLAIN for the controller listener (bound to the
# container's loopback), the StandardAuthorizer and the administrator as the only super user -
# with the passwords from the environment (HOMECARE_KAFKA_<PRINCIPAL>_PASSWORD, all required).
set -euo pipefail
CONF=/tmp/server.properties
for name in admin brokerage providers notifications console reporting ops; do
  var="HOMECARE_KAFKA_${name^^}_PASSWORD"
  [ -n "${!var:-}" ] || { echo "set $var" >&2; exit 1; }
done
text=$(sed -e 's#^listeners=.*#listeners=SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093#' \
    -e 's#^advertised.listeners=.*#advertised.listeners=SASL_PLAINTEXT://kafka:9092#' \
    -e 's#@CONTROLLER_PORT@#9093#g' -e 's#@DATA_DIR@#/var/lib/kafka/data#' /homecare/server-sasl.properties)
printf '%s\n' "${text//@ADMIN_PASSWORD@/"$HOMECARE_KAFKA_ADMIN_PASSWORD"}" > "$CONF"  # bash, not sed: no password in `ps`
# The health check's client identity.
printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
  "$HOMECARE_KAFKA_ADMIN_PASSWORD" > /tmp/admin.properties
chmod 600 "$CONF" /tmp/admin.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  args=()
  for name in admin brokerage providers notifications console reporting ops; do
    var="HOMECARE_KAFKA_${name^^}_PASSWORD"
    args+=(--add-scram "SCRAM-SHA-512=[name=$name,password=${!var}]")
  done
  /opt/kafka/bin/kafka-storage.sh format --standalone -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" -c "$CONF" "${args[@]}"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
