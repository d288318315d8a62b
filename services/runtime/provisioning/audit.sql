-- The audit log, owned by a role no service logs in as (homecare_audit, NOLOGIN). The services are
-- granted INSERT and SELECT only, so none of them can update, delete or truncate a row, disable the
-- append-only triggers, or drop the table: only the database administrator could. Applied by
-- provisioning (services/runtime/db.py), as the administrator, with SET ROLE homecare_audit.
-- Safe to apply again. (The schema itself is made by the administrator, owned by homecare_audit.)

-- Every disclosure of a person's details: to a provider (which provider, with which credential) or
-- to a member of the brokerage staff (who); when; which fields. (Was brokerage.disclosures.)
CREATE TABLE IF NOT EXISTS audit.disclosures (
    disclosure_id  bigserial PRIMARY KEY,
    package_id     uuid NOT NULL,
    provider_id    text,
    credential_id  text,
    fields         text[] NOT NULL,
    disclosed_at   timestamptz NOT NULL DEFAULT now(),
    reader         text NOT NULL DEFAULT 'provider' CHECK (reader IN ('provider', 'staff')),
    staff_user     text,
    CONSTRAINT disclosures_reader_named CHECK (
        (reader = 'provider' AND provider_id IS NOT NULL AND credential_id IS NOT NULL)
        OR (reader = 'staff' AND staff_user IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS disclosures_package ON audit.disclosures (package_id, disclosed_at);
-- The whole log newest first (the console's disclosure log page, GET /disclosures).
CREATE INDEX IF NOT EXISTS disclosures_when ON audit.disclosures (disclosed_at);

CREATE OR REPLACE FUNCTION audit.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER disclosures_no_update BEFORE UPDATE OR DELETE ON audit.disclosures
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE OR REPLACE TRIGGER disclosures_no_truncate BEFORE TRUNCATE ON audit.disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();

REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO brokerage;
GRANT SELECT, INSERT ON audit.disclosures TO brokerage;
GRANT USAGE ON SEQUENCE audit.disclosures_disclosure_id_seq TO brokerage;

-- Every read of a safeguarding concern (its words and personal details) by the safeguarding team:
-- who, with which role, when (decision record 0108). Written by the providers service, which holds
-- the concerns.
CREATE TABLE IF NOT EXISTS audit.concern_reads (
    read_id     bigserial PRIMARY KEY,
    concern_id  uuid NOT NULL,
    reader      text NOT NULL,
    reader_role text NOT NULL,
    read_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS concern_reads_concern ON audit.concern_reads (concern_id, read_at);
CREATE OR REPLACE TRIGGER concern_reads_no_update BEFORE UPDATE OR DELETE ON audit.concern_reads
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE OR REPLACE TRIGGER concern_reads_no_truncate BEFORE TRUNCATE ON audit.concern_reads
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();
GRANT USAGE ON SCHEMA audit TO providers;
GRANT SELECT, INSERT ON audit.concern_reads TO providers;
GRANT USAGE ON SEQUENCE audit.concern_reads_read_id_seq TO providers;
