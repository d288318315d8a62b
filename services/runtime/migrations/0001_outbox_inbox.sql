-- The delivery contract's tables, created in every service's own schema.

-- Transactional outbox. Column names follow Debezium's outbox event router (id,
-- aggregatetype, aggregateid, type, payload) so a CDC relay could replace the polling relay.
CREATE TABLE outbox (
    id             uuid PRIMARY KEY,                    -- the event id
    seq            bigserial NOT NULL UNIQUE,           -- commit-order hint for the relay
    aggregatetype  text NOT NULL,                       -- 'package' or 'provider'
    aggregateid    text NOT NULL,                       -- also the Kafka key
    type           text NOT NULL,                       -- event type
    topic          text NOT NULL,
    payload        jsonb NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}',
    -- Rows of one aggregate share a bucket; a relay publishes a bucket only while it holds
    -- that bucket's advisory lock, so two relays keep each aggregate's events in order.
    bucket         smallint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Inbox: the events each consumer has applied. The primary key makes a redelivered event a
-- no-op; it is written in the same transaction as the handler's effects.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    topic        text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
