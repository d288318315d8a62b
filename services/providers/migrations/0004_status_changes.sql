-- The council's decisions on a provider's framework membership (suspended, reinstated, left):
-- who decided, when and why. Append-only: the record of a provider's standing.
CREATE TABLE status_changes (
    id          bigserial PRIMARY KEY,
    provider_id text NOT NULL REFERENCES providers (provider_id),
    status      text NOT NULL CHECK (status IN ('active', 'suspended', 'left')),
    reason      text NOT NULL,
    decided_by  text NOT NULL,
    decided_at  timestamptz NOT NULL
);
CREATE INDEX status_changes_provider ON status_changes (provider_id);
