-- The outbox relays of this service's instances, each as last seen. They share the outbox's
-- buckets between the live ones (a fair share each, services/runtime/outbox.py: Relay), and a
-- relay not seen for a while leaves its share to the others (decision 0081).
CREATE TABLE outbox_relays (
    relay_id  text PRIMARY KEY,
    seen_at   timestamptz NOT NULL DEFAULT now()
);
