-- Each relay says which bucket count (OUTBOX_BUCKETS) it uses: a relay publishes nothing while a
-- live one uses another count, since one aggregate's rows in two buckets could leave out of order
-- (decision 0115). NULL: a relay from before the setting, which used the default of 16.
ALTER TABLE outbox_relays ADD COLUMN buckets smallint;
