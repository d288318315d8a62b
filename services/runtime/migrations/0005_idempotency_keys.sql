-- Idempotency-Key of a command sent over HTTP (services/runtime/idempotency.py): the request's
-- fingerprint and the response it got, kept so that the same request sent again (a client that
-- lost the response) gets that response instead of a second effect or a refusal. Keys are per
-- caller (scope: e.g. the provider id), so one caller's keys never meet another's.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
