-- Notifications: one row per (package, recipient, channel) - the uniqueness is the
-- "exactly once per recipient and channel" guarantee.
CREATE TABLE confirmations (
    id              bigserial PRIMARY KEY,
    package_id      uuid NOT NULL,
    event_id        uuid NOT NULL,
    recipient_kind  text NOT NULL,
    recipient_id    text NOT NULL,
    channel         text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'sent',
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (package_id, recipient_kind, recipient_id, channel)
);
