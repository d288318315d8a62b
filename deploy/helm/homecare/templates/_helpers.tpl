{{/* Names and labels, one definition each. */}}
{{- define "homecare.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "homecare.labels" -}}
app.kubernetes.io/part-of: homecare
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The pods of one service: call with (dict "root" $ "name" "brokerage"). */}}
{{- define "homecare.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ .name }}
{{- end -}}

{{- define "homecare.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* An environment variable from the one Secret of existingSecret. */}}
{{- define "homecare.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.existingSecret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* What every process needs to reach Kafka, PostgreSQL and the issuer. */}}
{{- define "homecare.commonEnv" -}}
- name: HOMECARE_ENVIRONMENT
  value: {{ .Values.environment | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: OUTBOX_BUCKETS
  value: {{ .Values.outboxBuckets | quote }}
- name: DATABASE_URL
  value: {{ .Values.postgresql.url | quote }}
- name: OIDC_ISSUER
  value: {{ .Values.oidc.issuer | quote }}
- name: OIDC_ROLES_CLAIM
  value: {{ .Values.oidc.rolesClaim | quote }}
- name: OIDC_PROVIDER_CLAIM
  value: {{ .Values.oidc.providerClaim | quote }}
- name: OIDC_CONSOLE_CLIENT_ID
  value: {{ .Values.oidc.consoleClientId | quote }}
{{- if .Values.kafka.caSecret.name }}
- name: SSL_CERT_FILE  # OpenSSL's default trust, so the Kafka clients verify the broker's CA
  value: /etc/homecare/kafka-ca/{{ .Values.kafka.caSecret.key }}
{{- end }}
{{- end -}}
