-- Reviews (decision 0088): a running package's review falls due a configured time after care started
-- (six weeks by default), then a configured number of months after each review (yearly). The due date
-- is a column of the package (the queue reads it); each review's outcome is a row of package_reviews.
ALTER TABLE packages ADD COLUMN review_due_on date;  -- UK date; NULL unless started, paused (or never reviewed)
-- Packages already running when this arrives: due six weeks after their start (the default; a
-- council with another setting edits the dates once).
UPDATE packages SET review_due_on = started_on + 42 WHERE status IN ('started', 'paused') AND started_on IS NOT NULL;
CREATE INDEX packages_review_due ON packages (review_due_on) WHERE status IN ('started', 'paused');

CREATE TABLE package_reviews (
    review_id          uuid PRIMARY KEY,
    package_id         uuid NOT NULL REFERENCES packages (package_id),
    provider_id        text NOT NULL,            -- the provider holding the package when reviewed
    outcome            text NOT NULL
                       CHECK (outcome IN ('no_change', 'changed', 'technology_enabled_care', 'ended')),
    due_on             date,                     -- when it was due (UK date)
    reviewed_on        date NOT NULL,            -- the day of the review (UK date)
    technology         text[] NOT NULL DEFAULT '{}',  -- TechnologyEnabledCare codes
    change_id          uuid REFERENCES package_changes (change_id),
    next_review_due_on date,                     -- none once the package ends
    notes              text,                     -- the reviewer's words: kept here, never on an event
    reviewed_by        text NOT NULL,            -- the verified token's user
    recorded_at        timestamptz NOT NULL,
    CHECK ((outcome IN ('changed', 'technology_enabled_care')) = (change_id IS NOT NULL)),
    CHECK ((outcome = 'technology_enabled_care') = (cardinality(technology) > 0))
);
CREATE INDEX package_reviews_by_package ON package_reviews (package_id, recorded_at);
