-- Who can be told (contacts and preferences: personal details live in this schema and no other
-- place the notifications service controls) and every message sent or attempted.

CREATE TABLE recipients (
    kind            text NOT NULL CHECK (kind IN ('provider', 'broker', 'person', 'brokerage_team')),
    recipient_id    text NOT NULL,           -- provider id, staff id, 'brokerage-team', or the package id (person)
    name            text,
    email           text,
    phone           text,
    webhook_url     text,
    webhook_secret  text,
    channels        text[] NOT NULL DEFAULT '{}',   -- in order of preference; every usable one is used
    opted_out       text[] NOT NULL DEFAULT '{}',   -- messages not wanted (essential ones are sent anyway)
    opted_in        text[] NOT NULL DEFAULT '{}',   -- optional messages wanted (new_offer)
    large_print     boolean NOT NULL DEFAULT false,
    language        text NOT NULL DEFAULT 'en',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, recipient_id)
);

-- One row per (event, recipient, channel): the unique key is the "exactly one message" guarantee.
-- Written by the consumer in the transaction that records the event in the inbox; sent by the
-- dispatcher, which claims due rows with SKIP LOCKED.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    delivery_id     uuid NOT NULL UNIQUE,    -- sent along (webhook header, Notify reference, Message-ID)
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    package_id      uuid NOT NULL,
    message         text NOT NULL,           -- placement_award, placement_person, ...
    recipient_role  text NOT NULL,           -- provider, broker, person, losing_bidder, brokerage_team
    recipient_kind  text NOT NULL,
    recipient_id    text NOT NULL,
    channel         text NOT NULL,           -- email, notify_email, notify_sms, webhook, log, none
    address         text,                    -- where it goes (email, phone, URL); never leaves this schema
    context         jsonb NOT NULL,          -- the template's variables (no personal details)
    template        text,                    -- the template file rendered
    subject         text,
    body            text,
    large_print     boolean NOT NULL DEFAULT false,
    notes           text[] NOT NULL DEFAULT '{}',  -- preferences that could not be honoured, and why
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped', 'awaiting_contact')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    failed_at       timestamptz,
    UNIQUE (event_id, recipient_role, recipient_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'awaiting_contact');
CREATE INDEX deliveries_package ON deliveries (package_id);
CREATE INDEX deliveries_awaiting ON deliveries (recipient_kind, recipient_id) WHERE status = 'awaiting_contact';

-- Confirmations written before deliveries existed were logged ("log" channel): keep them as sent.
INSERT INTO deliveries (delivery_id, event_id, event_type, package_id, message, recipient_role, recipient_kind,
                        recipient_id, channel, context, subject, body, status, attempts, created_at, sent_at)
SELECT md5(c.package_id::text || c.recipient_kind || c.recipient_id || c.channel)::uuid, c.event_id, 'PackagePlaced',
       c.package_id, CASE c.recipient_kind WHEN 'provider' THEN 'placement_award' ELSE 'placement_broker' END,
       c.recipient_kind, c.recipient_kind, c.recipient_id, c.channel, '{}'::jsonb, c.subject, c.body, 'sent', 1,
       c.created_at, c.created_at
  FROM confirmations c;
DROP TABLE confirmations;
