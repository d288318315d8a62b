-- Every disclosure of a person's details to a provider: which provider, with which credential,
-- when, which fields. Append-only: no role, not even the owner, may change or remove a row.
CREATE TABLE disclosures (
    disclosure_id  bigserial PRIMARY KEY,
    package_id     uuid NOT NULL REFERENCES packages (package_id),
    provider_id    text NOT NULL,
    credential_id  text NOT NULL,
    fields         text[] NOT NULL,
    disclosed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disclosures_package ON disclosures (package_id, disclosed_at);

CREATE FUNCTION disclosures_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the disclosure log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER disclosures_no_update BEFORE UPDATE OR DELETE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION disclosures_append_only();
CREATE TRIGGER disclosures_no_truncate BEFORE TRUNCATE ON disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION disclosures_append_only();
