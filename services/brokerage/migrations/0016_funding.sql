-- Funding (decision 0089): who pays for a package, in periods with effective dates ("the NHS pays the
-- first four weeks, then the council" is one record), each period split between funders by per cent,
-- and whether a third party (or the person) tops up a provider chosen above the band rate. Each
-- revision replaces the last; all are kept.
CREATE TABLE package_funding (
    package_id    uuid NOT NULL REFERENCES packages (package_id),
    revision      integer NOT NULL CHECK (revision >= 1),
    periods       jsonb NOT NULL,               -- [{effective_from, funder, shares: [{funder, percent}]}]
    top_up_paid_by text CHECK (top_up_paid_by IN ('third_party', 'person')),
    reason_text   text,                         -- the broker's words: kept here, never on an event
    recorded_by   text NOT NULL,                -- the verified token's user
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (package_id, revision)
);
ALTER TABLE packages ADD COLUMN funding_revision integer NOT NULL DEFAULT 0;
