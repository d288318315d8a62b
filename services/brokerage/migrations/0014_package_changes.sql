-- Changes to a running package (decision 0082): more or fewer hours, a different visit pattern, new
-- needs. Each change is offered to the provider holding the package; accepted, the package's spec
-- changes; declined or unanswered, the package is re-brokered with the new pattern while the
-- provider carries on at the old hours until a new placement replaces its own.
CREATE TABLE package_changes (
    change_id             uuid PRIMARY KEY,
    package_id            uuid NOT NULL REFERENCES packages (package_id),
    provider_id           text NOT NULL,             -- the provider holding the package when it was asked
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'accepted', 'declined', 'window_closed', 'withdrawn')),
    previous_spec         jsonb NOT NULL,
    spec                  jsonb NOT NULL,            -- the PackageSpec after the change (no personal data)
    previous_hours        numeric(5,2) NOT NULL,
    hours_per_week        numeric(5,2) NOT NULL,
    reason                text NOT NULL,             -- a ChangeReason code
    reason_text           text,                      -- the broker's words: kept here, never on an event
    discussed_with_person boolean NOT NULL,
    effective_date        date NOT NULL,             -- UK date: the first day of the new pattern
    changed_by            text NOT NULL,             -- the verified token's user
    requested_at          timestamptz NOT NULL,
    window_closes_at      timestamptz NOT NULL,
    answered_at           timestamptz,
    decline_reason        text,                      -- a DeclineReason code
    CHECK (hours_per_week < previous_hours IS NOT TRUE OR discussed_with_person)
);
CREATE UNIQUE INDEX package_changes_one_pending ON package_changes (package_id) WHERE status = 'pending';
CREATE INDEX package_changes_by_package ON package_changes (package_id, requested_at);

ALTER TABLE packages ADD COLUMN pending_change_id uuid;
ALTER TABLE packages ADD COLUMN change_window_closes_at timestamptz;  -- the change window timer's deadline
-- While a package is re-brokered after its provider declined a change, that provider carries on at
-- the old hours until a new placement replaces its own: who it is, and those hours.
ALTER TABLE packages ADD COLUMN carried_on_by text;
ALTER TABLE packages ADD COLUMN carried_hours numeric(5,2);
CREATE INDEX packages_change_window ON packages (change_window_closes_at) WHERE pending_change_id IS NOT NULL;
