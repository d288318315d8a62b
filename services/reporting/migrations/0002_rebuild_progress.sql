-- How far `homecare reporting rebuild` has read each partition (the next offset to read), written
-- in the transaction that applies the records before it: an interrupted rebuild resumes here.
CREATE TABLE rebuild_progress (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
