-- Joining the framework (decision records 0112-0114): applications the contracts and quality team
-- records from the council's tender portal, the due-diligence checks on each, and the decision.
-- Self-contained: depends only on 0001 (providers).

CREATE TABLE applications (
    application_id   uuid PRIMARY KEY,
    provider_id      text NOT NULL,                  -- the id it will have in the registry
    name             text NOT NULL,
    zones            text[] NOT NULL,
    bands            text[] NOT NULL,
    skills           text[] NOT NULL,
    double_handed    boolean NOT NULL,
    weekly_capacity_hours numeric(7,2) NOT NULL CHECK (weekly_capacity_hours > 0),
    cqc_location_id  text NOT NULL,
    cqc_rating       text NOT NULL,
    adapter          jsonb NOT NULL,                 -- the adapter it asked for (automatic, webhook, portal)
    tender_reference text NOT NULL UNIQUE,           -- the tender portal's reference: recorded once
    received_on      date NOT NULL,                  -- the portal's receipt date (UK)
    window_id        text NOT NULL,                  -- the re-opening window it was received in
    recorded_by      text NOT NULL,                  -- the verified identity that recorded it
    recorded_at      timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'approved', 'refused')),
    decided_by       text,
    decided_at       timestamptz,
    refusal_reason   text,                           -- a code (services/providers/domain.py RefusalReason)
    decision_note    text,                           -- staff's words; never on an event
    CHECK ((status = 'received') = (decided_at IS NULL)),
    CHECK ((status = 'refused') = (refusal_reason IS NOT NULL))
);
-- One live application per provider id: a refused provider may apply again in a later window.
CREATE UNIQUE INDEX applications_live_provider ON applications (provider_id) WHERE status <> 'refused';
CREATE INDEX applications_status ON applications (status, received_on);

-- Each due-diligence check as recorded (append-only): the latest per item counts.
CREATE TABLE due_diligence_checks (
    id                 bigserial PRIMARY KEY,
    application_id     uuid NOT NULL REFERENCES applications (application_id),
    item               text NOT NULL,                -- an item of joining.yaml's checklist
    outcome            text NOT NULL CHECK (outcome IN ('passed', 'failed')),
    evidence_reference text NOT NULL,                -- where the evidence is kept (a document reference)
    reviewed_by        text NOT NULL,                -- the verified identity of the reviewer
    reviewed_on        date NOT NULL,                -- UK date of the review
    note               text,
    recorded_at        timestamptz NOT NULL
);
CREATE INDEX due_diligence_checks_application ON due_diligence_checks (application_id, item, id);
