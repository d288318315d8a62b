-- A committed outbox row wakes the relays at once (decision 0137): each INSERT statement on the
-- outbox queues a notification on the channel 'outbox:<schema>', which PostgreSQL delivers when the
-- transaction commits (and never if it rolls back), once per transaction however many rows it wrote.
-- The relays LISTEN there and poll only as a fallback, instead of asking twenty times a second.
CREATE FUNCTION outbox_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox:' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_written AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_written();
