-- The disclosure log moves to the audit schema, owned by a role the brokerage cannot act as
-- (services/runtime/provisioning/audit.sql): the brokerage may add rows and read them, never change
-- or remove them, nor disable the triggers. Rows written so far are carried over; `disclosures`
-- stays the name the brokerage reads and writes, as a view over the audit table.
INSERT INTO audit.disclosures (package_id, provider_id, credential_id, fields, disclosed_at, reader, staff_user)
SELECT package_id, provider_id, credential_id, fields, disclosed_at, reader, staff_user
  FROM disclosures ORDER BY disclosure_id;
DROP TABLE disclosures;
DROP FUNCTION disclosures_append_only();
CREATE VIEW disclosures AS SELECT * FROM audit.disclosures;
