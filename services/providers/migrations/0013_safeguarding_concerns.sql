-- Safeguarding concerns (decision records 0106-0108): raised by the brokerage team, operations or a
-- provider about a package or a provider; read only by the safeguarding team (every read audited in
-- audit.concern_reads); a concern about a provider may pause new offers to it until its outcome.
-- The words and any personal details stay in these rows: no event, notification or log carries them.
-- A provider's pause is also its profile's "offers_paused" (sent on ProviderUpdated, without why).
CREATE TABLE concerns (
    concern_id      uuid PRIMARY KEY,
    reference       bigserial UNIQUE,        -- what people quote: SG-<reference>
    package_id      uuid,                    -- the subject: a package, a provider, or both
    provider_id     text REFERENCES providers (provider_id),
    category        text NOT NULL,           -- the Care Act's categories of abuse or neglect
    details         text NOT NULL,           -- what the raiser wrote: personal details, safeguarding role only
    adult_at_risk   text,                    -- who may be at risk, in the raiser's words
    immediate_risk  boolean NOT NULL,
    raised_by       text NOT NULL,           -- a staff member's username, or the provider's id
    raised_by_kind  text NOT NULL CHECK (raised_by_kind IN ('staff', 'provider')),
    raised_by_role  text,                    -- the staff member's role (the token's)
    credential_id   text,                    -- the provider's credential it was raised with
    raised_at       timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    paused          boolean NOT NULL DEFAULT false,  -- holds a pause of new offers to provider_id
    outcome         text,
    closed_by       text,
    closed_at       timestamptz,
    CONSTRAINT concerns_subject CHECK (package_id IS NOT NULL OR provider_id IS NOT NULL),
    CONSTRAINT concerns_pause_needs_provider CHECK (NOT paused OR (provider_id IS NOT NULL AND status = 'open')),
    CONSTRAINT concerns_outcome_closes CHECK ((status = 'closed') = (outcome IS NOT NULL))
);
CREATE INDEX concerns_queue ON concerns (status, raised_at);
CREATE INDEX concerns_pausing ON concerns (provider_id) WHERE paused;

-- Every decision on a concern: a pause of new offers (with its reason code), the outcome, the pause
-- lifted by it. Who is the token's user; when is the service's clock. Append-only.
CREATE TABLE concern_decisions (
    decision_id  bigserial PRIMARY KEY,
    concern_id   uuid NOT NULL REFERENCES concerns (concern_id),
    decision     text NOT NULL CHECK (decision IN ('offers_paused', 'outcome', 'offers_resumed')),
    code         text NOT NULL,
    decided_by   text NOT NULL,
    decided_at   timestamptz NOT NULL
);
CREATE INDEX concern_decisions_concern ON concern_decisions (concern_id, decision_id);

CREATE FUNCTION concern_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the decisions on a concern are append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER concern_decisions_no_update BEFORE UPDATE OR DELETE ON concern_decisions
    FOR EACH ROW EXECUTE FUNCTION concern_decisions_append_only();
CREATE TRIGGER concern_decisions_no_truncate BEFORE TRUNCATE ON concern_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION concern_decisions_append_only();
