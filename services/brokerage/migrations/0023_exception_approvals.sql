-- A second approver where the scheme of delegation requires one (decision record 0123): every
-- approval of an above-rate bid, the first of two and the one that places the package, with who,
-- when, the role and limit it was given under (per cent above the band rate; NULL: no limit) and
-- whether that limit covered the bid. The bid approved is named: a first approval counts only for
-- that bid. Nobody approves the same bid twice (the unique key).
CREATE TABLE exception_approvals (
    approval_id    bigserial PRIMARY KEY,
    exception_id   bigint NOT NULL REFERENCES exceptions (id),
    package_id     uuid NOT NULL REFERENCES packages (package_id),
    approver       text NOT NULL,
    approver_role  text NOT NULL,
    limit_percent  numeric(7,2),
    within_limit   boolean NOT NULL,
    provider_id    text NOT NULL,
    hourly_rate    numeric(8,2) NOT NULL,
    step           text NOT NULL CHECK (step IN ('first', 'final')),
    reason         text NOT NULL,
    reason_text    text,
    approved_at    timestamptz NOT NULL,
    UNIQUE (exception_id, approver, provider_id, hourly_rate)
);
CREATE INDEX exception_approvals_package ON exception_approvals (package_id, approval_id);
